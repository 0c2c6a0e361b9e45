"""Which server should run Tollgate? Measure granian (WSGI), gunicorn (gthread) and uvicorn (ASGI).

Each candidate serves this project on a loopback port with the same number of worker processes
(and, where the server has them, the same number of threads per worker), against a fresh SQLite
database with the demo catalog in a temporary data directory. A bounded load generator (a fixed
number of requests, a time cap, keep-alive connections from a few threads, 127.0.0.1 only) hits
/healthz (no I/O) and /pricing/ (reads the catalog from the database), and one line per server and
path is printed:

    server=granian path=/pricing/ rps=812.4 p50_ms=18.9 p99_ms=41.2 errors=0 ...

Every process started here is stopped by the id of the process group it was started in, also when
the run fails or is interrupted. A server that is not installed is skipped with a note
(gunicorn and uvicorn are not Tollgate dependencies: ``pip install gunicorn uvicorn[standard]`` to
measure them).

Usage: python bench/servers.py [--servers granian,gunicorn,uvicorn] [--workers 2] [--threads 8]
       [--requests 3000] [--concurrency 16] [--time-cap 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import itertools
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import _procs
from _procs import free_port, stop, stopped_on_exit, wait_until_ready

ROOT = _procs.ROOT
HOST = _procs.HOST
PATHS = ("/healthz", "/pricing/")
_VERSION = re.compile(r"\d+\.\d+")


@dataclass(frozen=True)
class Candidate:
    name: str
    module: str
    interface: str
    command: Callable[[int, int, int], list[str]]


def _granian(port: int, workers: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "granian",
        "--interface", "wsgi",
        "--host", HOST, "--port", str(port),
        "--workers", str(workers),
        "--blocking-threads", str(threads),
        "--no-ws",
        "--log-level", "warning",
        "tollgate.config.wsgi:application",
    ]  # fmt: skip


def _gunicorn(port: int, workers: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gthread",
        "--workers", str(workers),
        "--threads", str(threads),
        "--bind", f"{HOST}:{port}",
        "--log-level", "warning",
        "tollgate.config.wsgi:application",
    ]  # fmt: skip


def _uvicorn(port: int, workers: int, threads: int) -> list[str]:
    # Django runs sync views and middleware under ASGI in a thread; uvicorn has no thread setting.
    return [
        sys.executable, "-m", "uvicorn",
        "--host", HOST, "--port", str(port),
        "--workers", str(workers),
        "--log-level", "warning",
        "--no-access-log",
        "tollgate.config.asgi:application",
    ]  # fmt: skip


CANDIDATES = {
    "granian": Candidate("granian", "granian", "wsgi", _granian),
    "gunicorn": Candidate("gunicorn", "gunicorn", "wsgi (gthread)", _gunicorn),
    "uvicorn": Candidate("uvicorn", "uvicorn", "asgi", _uvicorn),
}


@dataclass
class Result:
    server: str
    path: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# --- Processes ------------------------------------------------------------------------------------
def run_checked(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)


def prepare_project(data_dir: Path) -> dict[str, str]:
    """The environment every server gets, and a migrated database with the demo catalog."""
    env = {
        **os.environ,
        "TOLLGATE_ENV": "development",
        "DEBUG": "false",
        "ALLOWED_HOSTS": HOST,
        "TOLLGATE_DATA_DIR": str(data_dir),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "INFO",
        "TOLLGATE_LOG_FORMAT": "json",
        # Every request comes from 127.0.0.1: the limits would measure themselves, not the server.
        "TOLLGATE_RATELIMIT_ENABLED": "false",
        "TOLLGATE_MAIL_ECHO_LINKS": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    run_checked([sys.executable, "-m", "tollgate", "migrate", "--no-input"], env)
    run_checked([sys.executable, "-m", "tollgate", "catalog_load", "demo"], env)
    return env


def get(connection: http.client.HTTPConnection, path: str) -> http.client.HTTPResponse:
    connection.request("GET", path, headers={"Host": HOST})
    response = connection.getresponse()
    response.read()
    return response


def family_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, from /proc (Linux)."""
    total_pages = 0
    for member in _procs.family(pid):
        try:
            total_pages += int(Path(f"/proc/{member}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


# --- Load -----------------------------------------------------------------------------------------
def load(
    port: int, path: str, *, requests: int, concurrency: int, time_cap: float, server: str
) -> Result:
    """``requests`` GETs of ``path`` from ``concurrency`` threads over keep-alive connections,
    stopping early at ``time_cap`` seconds."""
    tickets = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    started = time.perf_counter()
    deadline = started + time_cap

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            while (
                not _procs.stopping.is_set()
                and next(tickets) < requests
                and time.perf_counter() < deadline
            ):
                sent = time.perf_counter()
                try:
                    status = get(connection, path).status
                except (OSError, http.client.HTTPException):
                    errors[index] += 1
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, port, timeout=10)
                    continue
                latencies[index].append((time.perf_counter() - sent) * 1000)
                if status != 200:
                    errors[index] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_cap + 15)  # each request has a 10 s timeout; never wait without end
    elapsed = time.perf_counter() - started
    flat = [value for chunk in latencies for value in chunk]
    return Result(server, path, len(flat), sum(errors), elapsed, flat)


def server_header(port: int) -> str:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        return get(connection, "/healthz").getheader("Server") or ""
    finally:
        connection.close()


def measure(candidate: Candidate, env: dict[str, str], args: argparse.Namespace) -> list[str]:
    port = free_port()
    log_path = Path(env["TOLLGATE_DATA_DIR"]) / f"{candidate.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            candidate.command(port, args.workers, args.threads),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _procs.started(process)
    lines = []
    try:
        wait_until_ready(port, process)
        header = server_header(port)
        header_label = re.sub(r"\s+", "_", header) or "none"
        with_version = "yes" if _VERSION.search(header) else "no"
        for path in PATHS:
            load(port, path, requests=args.warmup, concurrency=args.concurrency, time_cap=10,
                 server=candidate.name)  # fmt: skip
            result = load(
                port,
                path,
                requests=args.requests,
                concurrency=args.concurrency,
                time_cap=args.time_cap,
                server=candidate.name,
            )
            lines.append(
                f"server={candidate.name} path={path} rps={result.rps:.1f}"
                f" p50_ms={result.percentile(50):.2f} p99_ms={result.percentile(99):.2f}"
                f" requests={result.requests} errors={result.errors}"
                f" workers={args.workers} rss_mib={family_rss_mib(process.pid):.0f}"
                f" server_header={header_label} header_has_version={with_version}"
            )
            print(lines[-1], flush=True)
    finally:
        stop(process)
    return lines


def summarise(lines: list[str]) -> None:
    """Median of each figure over the rounds, as a Markdown table (not a result line)."""
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    for line in lines:
        fields = dict(part.split("=", 1) for part in line.split())
        rows.setdefault((fields["server"], fields["path"]), []).append(fields)
    print("\n| server | path | req/s | p50 ms | p99 ms | errors | RSS MiB | Server header |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for (server, path), runs in rows.items():

        def median(key: str, runs: list[dict[str, str]] = runs) -> float:
            return statistics.median(float(run[key]) for run in runs)

        print(
            f"| {server} | {path} | {median('rps'):.0f} | {median('p50_ms'):.1f} |"
            f" {median('p99_ms'):.1f} | {sum(int(r['errors']) for r in runs)} |"
            f" {median('rss_mib'):.0f} | {runs[0]['server_header']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(CANDIDATES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time-cap", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}")
    if args.requests < 1 or args.concurrency < 1 or not 0 < args.time_cap <= 120:
        parser.error("need --requests >= 1, --concurrency >= 1 and 0 < --time-cap <= 120")

    available = [CANDIDATES[name] for name in names if importlib.util.find_spec(name) is not None]
    for name in names:
        if CANDIDATES[name] not in available:
            print(f"note: {name} is not installed here; skipped", flush=True)
    if not available:
        return 1
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-bench-"))
    lines: list[str] = []
    try:
        with stopped_on_exit():
            env = prepare_project(data_dir)
            for _ in range(args.rounds):
                for candidate in available:
                    lines += measure(candidate, env, args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    summarise(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
