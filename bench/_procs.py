"""What the benchmarks share: the processes they start (always stopped by process group, however a
run ends) and the throw-away PostgreSQL databases they create on this machine."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
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


def stop(process: subprocess.Popen[Any]) -> None:
    """Stop a process and everything it forked: SIGTERM to its process group (whose id is its pid,
    as it was started in a new session), SIGKILL after a grace period."""
    pgid = process.pid
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _group_alive(pgid):
        process.poll()
        time.sleep(0.05)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
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
