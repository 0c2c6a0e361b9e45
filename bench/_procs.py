"""What the benchmarks share: the processes they start (always stopped by process group, however a
run ends), the throw-away PostgreSQL databases they create on this machine, and the production
profile some of them serve (its environment, its server, the Redis keys it leaves)."""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only, by construction
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}
# What the TLS-terminating proxy in front of a production server adds to every request.
PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
STOP_TIMEOUT_SECONDS = 10.0

# --- Processes -------------------------------------------------------------------------------------
_started: list[subprocess.Popen[Any]] = []
stopping = threading.Event()  # set on Ctrl-C / SIGTERM: load threads stop at once


def started(process: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Track a process started with ``start_new_session=True`` so that it is stopped on exit."""
    _started.append(process)
    return process


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stats() -> dict[int, list[str]]:
    """Every live process's /proc stat fields after its name (Linux; empty where unreadable)."""
    found: dict[int, list[str]] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
    return found


def family(pid: int) -> list[int]:
    """``pid`` and every live process descended from it, whatever process group or session a
    descendant moved to (a server may start its children in groups of their own)."""
    children: dict[int, list[int]] = {}
    for child, fields in _stats().items():
        try:
            children.setdefault(int(fields[1]), []).append(child)
        except (IndexError, ValueError):
            continue
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, ()))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a process and everything it started: SIGTERM to its process group (whose id is its
    pid, as it was started in a new session), then SIGKILL after a grace period to whatever of its
    family (also descendants in groups of their own) is still running."""
    pgid = process.pid
    members = family(pgid)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and (
        _group_alive(pgid) or any(_alive(pid) for pid in members[1:])
    ):
        process.poll()
        time.sleep(0.05)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    for pid in members[1:]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT_SECONDS)
    if process in _started:
        _started.remove(process)


@contextmanager
def stopped_on_exit() -> Iterator[None]:
    """Stop every tracked process, however the run ends (error, time cap, Ctrl-C, SIGTERM)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for process in list(_started):
            stop(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_ready(
    port: int,
    process: subprocess.Popen[Any],
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> None:
    """Wait until the server started as ``process`` answers ``GET /healthz`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} while starting")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            try:
                connection.request("GET", "/healthz", headers={"Host": HOST, **(headers or {})})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    return
            finally:
                connection.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer /healthz within {timeout:.0f} s")


def family_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) used so far by the live processes of ``pid``'s family (see
    :func:`family`), from /proc (Linux); 0.0 where /proc cannot be read."""
    stats = _stats()
    ticks = 0
    for member in family(pid):
        try:
            fields = stats[member]
            ticks += int(fields[11]) + int(fields[12])
        except (KeyError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- Databases -------------------------------------------------------------------------------------
def bench_database_url(default: str, purpose: str) -> str:
    """DATABASE_URL (or ``default``), refused unless it is a loopback PostgreSQL database whose name
    says it is for benchmarks: the benchmark drops it."""
    url = os.environ.get("DATABASE_URL") or default
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(
            f"the {purpose} benchmark needs PostgreSQL; DATABASE_URL is {parts.scheme}"
        )
    if (parts.hostname or "") not in LOOPBACK:
        raise SystemExit(f"the {purpose} benchmark only uses a PostgreSQL on this machine")
    if name == "test" or "bench" not in name:
        raise SystemExit(
            f"the {purpose} benchmark drops and recreates its database; {name!r} does not look "
            "like one of its own (the name must contain 'bench'). Set DATABASE_URL to, for "
            f"example, {default}."
        )
    return url


def admin_connect(database_url: str) -> Any:
    """A connection to the server's maintenance database, for CREATE and DROP DATABASE."""
    import psycopg

    parts = urlsplit(database_url)
    return psycopg.connect(
        urlunsplit(parts._replace(path="/postgres")), autocommit=True, connect_timeout=5
    )


def database_drop(database_url: str) -> None:
    from psycopg import sql

    name = urlsplit(database_url).path.lstrip("/")
    with admin_connect(database_url) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_recreate(database_url: str) -> None:
    from psycopg import sql

    database_drop(database_url)
    name = urlsplit(database_url).path.lstrip("/")
    with admin_connect(database_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --- The production profile ------------------------------------------------------------------------
def production_environment(
    *, database_url: str, redis_url: str, data_dir: Path, key_prefix: str
) -> dict[str, str]:
    """The environment of the production profile (PostgreSQL, Redis, HTTPS behind one trusted
    proxy, every request logged) on this machine. The caller adds its payment gateway's settings."""
    env = {
        **os.environ,
        "TOLLGATE_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "TOLLGATE_SITE_URL": f"https://{HOST}",
        "TOLLGATE_TRUSTED_PROXIES": "1",  # the load generator plays the proxy (PROXY_HEADERS)
        "TOLLGATE_METRICS_TOKEN": secrets.token_urlsafe(32),
        "TOLLGATE_RATELIMIT_KEY_PREFIX": key_prefix,
        "LOG_LEVEL": "INFO",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def serve_start(
    env: dict[str, str], log_path: Path, *, workers: int
) -> tuple[subprocess.Popen[bytes], int]:
    """``manage.py serve --no-worker`` (granian with the production server settings) on a free
    loopback port, in its own process group and tracked so that it is stopped on exit. Returns the
    process and its port once it answers /healthz."""
    port = free_port()
    with log_path.open("wb") as log:
        process = started(
            subprocess.Popen(
                [sys.executable, "-m", "tollgate", "serve", "--no-worker",
                 "--host", HOST, "--port", str(port), "--workers", str(workers)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    wait_until_ready(port, process, headers=PROXY_HEADERS)
    return process, port


def redis_cleanup(redis_url: str, key_prefix: str) -> None:
    """Delete the keys a production-profile run writes to ``redis_url``: the task queue, the
    rate-limit counters under ``key_prefix`` and the cache entries."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in ("huey.*tollgate*", f"{key_prefix}*", "tollgate:*"):
            for key in client.scan_iter(match=pattern, count=500):
                client.delete(key)
    finally:
        client.close()
