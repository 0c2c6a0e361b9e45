"""Run the web server and the background worker together; Ctrl-C (or SIGTERM) stops both gracefully.

The web server (granian) stops accepting connections, finishes the requests in flight (at most
``WEB_GRACEFUL_SECONDS``) and exits; the worker (Huey's consumer, whose graceful signal is SIGINT:
its SIGTERM interrupts running tasks) finishes the tasks it runs (at most
``WORKER_GRACEFUL_SECONDS``). The children run in their own process group, so a Ctrl-C reaches them
once, through this command, and a service manager only needs to signal this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

# How long a stopping web process may take to finish its requests in flight, and a stopping worker
# its running tasks; then they are cut off. STOP_TIMEOUT (after which this command kills what is
# left) is longer than both, and service managers wait longer still (deploy/systemd, compose).
WEB_GRACEFUL_SECONDS = 20
WORKER_GRACEFUL_SECONDS = 20
STOP_TIMEOUT = 30
# The signal each child stops gracefully on.
STOP_SIGNALS = {"web": signal.SIGTERM, "worker": signal.SIGINT}


def web_command(*, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(settings.WEB_THREADS),
        "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        str(WEB_GRACEFUL_SECONDS),
        "--log-level",
        "warning",
        "tollgate.config.wsgi:application",
    ]


def threads_notice(*, threads: int, cpus: int) -> str | None:
    """One line explaining granian's warning about "quite high" threads before granian prints it:
    granian warns when a WSGI worker may run more than 2 x CPU cores + 1 threads."""
    suggested = 2 * cpus + 1
    if threads <= suggested:
        return None
    return (
        f"TOLLGATE_WEB_THREADS={threads} is more than granian suggests for {cpus} CPU cores"
        f" ({suggested}), so it warns below; threads mostly wait on the database, so that is fine"
        " unless the CPU is busy (then lower it)."
    )


def metrics_environment(*, configured: str, data_dir: Path) -> dict[str, str]:
    """The environment that makes the web processes and the worker share their metrics: the
    operator's ``PROMETHEUS_MULTIPROC_DIR`` as it is, or else ``metrics/`` under the data
    directory, emptied first (files of processes that are gone would be counted again)."""
    if configured:
        return {"PROMETHEUS_MULTIPROC_DIR": configured}
    directory = data_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory)}


def worker_command() -> list[str]:
    return [
        sys.executable,
        "-m",
        "tollgate",
        "run_huey",
        "--quiet",
        "--shutdown-timeout",
        str(WORKER_GRACEFUL_SECONDS),
    ]


class Command(BaseCommand):
    help = "Start the web server and the worker; stop both gracefully on Ctrl-C or SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST, help="default: $HOST or 127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=settings.PORT, help="default: $PORT or 8000"
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.WEB_WORKERS,
            help="web processes; default: $TOLLGATE_WEB_WORKERS, $WEB_CONCURRENCY or 1",
        )
        only = parser.add_mutually_exclusive_group()
        only.add_argument("--no-worker", action="store_true", help="start the web server only")
        only.add_argument("--no-web", action="store_true", help="start the worker only")

    def handle(self, *args: Any, **options: Any) -> None:
        commands: dict[str, list[str]] = {}
        if not options["no_web"]:
            commands["web"] = web_command(
                host=options["host"], port=options["port"], workers=options["workers"]
            )
        if not options["no_worker"]:
            commands["worker"] = worker_command()
        notice = threads_notice(threads=settings.WEB_THREADS, cpus=os.cpu_count() or 1)
        if notice is not None:
            self.stdout.write(notice)
            self.stdout.flush()  # before granian's own warning, which the child prints
        environment = {
            **os.environ,
            **metrics_environment(
                configured=settings.METRICS_MULTIPROC_DIR, data_dir=Path(settings.DATA_DIR)
            ),
        }
        # Before the children start: a stop requested while they start still reaches them.
        stopping = False

        def request_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        children = {
            name: subprocess.Popen(argv, env=environment, start_new_session=True)  # noqa: S603
            for name, argv in commands.items()
        }
        where = f" at http://{options['host']}:{options['port']}/" if "web" in children else ""
        self.stdout.write(
            f"Tollgate is running{where} ({', '.join(children)}); press Ctrl-C to stop."
        )
        self.stdout.flush()
        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with status {child.returncode}; stopping.")
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(STOP_SIGNALS[name])
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.stdout.write("Stopped.")
        if exit_code:
            raise SystemExit(exit_code)
