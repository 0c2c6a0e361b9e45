#!/usr/bin/env python3
"""The production topology on one machine, without containers: nginx (Debian's) in front of two web
processes on their own ports, and two workers, on PostgreSQL and Redis.

    python deploy/local_cluster.py            # or: make cluster
    kill -HUP <pid>                           # rolling restart of the web processes
    Ctrl-C (or SIGTERM)                       # stops everything it started

Each process is `python -m tollgate serve --no-worker` (web) or `serve --no-web` (worker), as the
systemd units and the compose file run them; nginx's site is deploy/nginx/tollgate.conf.template.
The tests in tests/deploy/ drive the same class (`LocalCluster`).
"""

from __future__ import annotations

import argparse
import grp
import http.client
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
# serve's own bound on a graceful stop (STOP_TIMEOUT) plus start-up slack.
STOP_WAIT_SECONDS = 45
READY_WAIT_SECONDS = 120


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)),
        None,
    )


def render(template: Path, values: Mapping[str, str]) -> str:
    """Fill ``${NAME}`` placeholders, leaving nginx's own ``$variables`` alone."""
    return Template(template.read_text(encoding="utf-8")).safe_substitute(values)


def upstream_servers(ports: list[int]) -> str:
    return "\n    ".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in ports)


def http_status(port: int, path: str, *, timeout: float = 5.0) -> int | None:
    """The status of GET ``path`` on loopback ``port``, or None when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": "127.0.0.1"})
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_for_status(
    port: int, path: str, *, status: int = 200, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + READY_WAIT_SECONDS
    answered: int | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process for port {port} exited ({process.returncode})")
        answered = http_status(port, path)
        if answered == status:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"127.0.0.1:{port}{path} did not answer {status} (last: {answered}); see the logs"
    )


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal one process we started and wait for it; kill it if it outstays the bound."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database of ``database_url`` when it does not exist."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if exists is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class LocalCluster:
    """nginx on ``nginx_port`` in front of one web process per port in ``web_ports``, and
    ``workers`` workers; every process is started and stopped by this object, by PID."""

    run_dir: Path
    database_url: str
    redis_url: str
    nginx_port: int
    web_ports: list[int]
    workers: int = 2
    extra_environ: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def environment(self, name: str) -> dict[str, str]:
        metrics = self.run_dir / "metrics" / name
        metrics.mkdir(parents=True, exist_ok=True)
        for stale in metrics.glob("*.db"):
            stale.unlink()
        return {
            **os.environ,
            "TOLLGATE_ENV": "development",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TOLLGATE_DATA_DIR": str(self.run_dir / "data"),
            "TOLLGATE_SITE_URL": self.url,
            "TOLLGATE_TRUSTED_PROXIES": "1",
            "TOLLGATE_RATELIMIT_KEY_PREFIX": f"tollgate-rl-cluster-{self.nginx_port}",
            "TOLLGATE_LOG_FORMAT": "json",
            "TOLLGATE_MAIL_ECHO_LINKS": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
            **self.extra_environ,
        }

    def _spawn(self, name: str, argv: list[str], environ: dict[str, str]) -> None:
        log = (self.run_dir / "logs" / f"{name}.log").open("ab")
        with log:
            # A session of its own: a Ctrl-C reaches the cluster, which stops each process once.
            self.processes[name] = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
                argv,
                cwd=REPO_ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def manage(self, *arguments: str) -> None:
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "tollgate", *arguments],
            cwd=REPO_ROOT,
            env=self.environment("manage"),
            check=True,
            timeout=600,
        )

    def start_web(self, index: int) -> None:
        port = self.web_ports[index]
        name = f"web{index + 1}"
        argv = [sys.executable, "-m", "tollgate", "serve", "--no-worker"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        self._spawn(name, argv, self.environment(name))
        wait_for_status(port, "/readyz", process=self.processes[name])

    def stop_web(self, index: int) -> int:
        return stop_process(self.processes.pop(f"web{index + 1}"))

    def restart_web(self, index: int) -> None:
        """SIGTERM, wait for the exit (requests in flight finish), start again, wait until ready
        and until nginx sends it requests again: nginx skips a process that refused a connection
        for its fail_timeout, and stopping the next one before then would leave none."""
        self.stop_web(index)
        access_log = self.run_dir / "logs" / "nginx-access.log"
        offset = access_log.stat().st_size if access_log.exists() else 0
        self.start_web(index)
        if "nginx" in self.processes:
            self.wait_in_rotation(self.web_ports[index], access_log, offset)

    def wait_in_rotation(self, port: int, access_log: Path, offset: int) -> None:
        """Send requests through nginx until its log shows one served by ``port`` (after
        ``offset``)."""
        # After a retry $upstream_addr lists every process tried; the last one answered.
        served = (f"upstream=127.0.0.1:{port}\n", f", 127.0.0.1:{port}\n")
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while time.monotonic() < deadline:
            http_status(self.nginx_port, "/healthz")
            with access_log.open("rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines(keepends=True)
            if any(line.endswith(served) for line in lines):
                return
            time.sleep(0.2)
        raise RuntimeError(f"nginx did not send requests to 127.0.0.1:{port} again")

    def start_worker(self, index: int) -> None:
        name = f"worker{index + 1}"
        argv = [sys.executable, "-m", "tollgate", "serve", "--no-web"]
        self._spawn(name, argv, self.environment(name))

    def start_nginx(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (scripts/ensure-nginx installs it)")
        temp = self.run_dir / "nginx-temp"
        temp.mkdir(exist_ok=True)
        user = ""
        if os.geteuid() == 0:  # nginx's workers drop to an unprivileged user
            nobody = pwd.getpwnam("nobody")
            os.chown(temp, nobody.pw_uid, nobody.pw_gid)
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
        values = {
            "TOLLGATE_RUN_DIR": str(self.run_dir),
            "TOLLGATE_NGINX_USER": user,
            "TOLLGATE_LISTEN": f"127.0.0.1:{self.nginx_port}",
            "TOLLGATE_UPSTREAM_SERVERS": upstream_servers(self.web_ports),
        }
        (self.run_dir / "tollgate.conf").write_text(
            render(NGINX_DIR / "tollgate.conf.template", values), encoding="utf-8"
        )
        main = self.run_dir / "nginx.conf"
        main.write_text(render(NGINX_DIR / "nginx.conf.template", values), encoding="utf-8")
        self._spawn("nginx", [binary, "-p", str(self.run_dir), "-c", str(main)], dict(os.environ))
        wait_for_status(self.nginx_port, "/healthz", process=self.processes["nginx"])

    def start(self) -> None:
        for directory in ("logs", "data", "metrics"):
            (self.run_dir / directory).mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--no-input", "-v", "0")
        for index in range(len(self.web_ports)):
            self.start_web(index)
        for index in range(self.workers):
            self.start_worker(index)
        self.start_nginx()

    def stop(self) -> None:
        """Stop everything this object started: nginx first, then the web processes, then the
        workers (each gracefully, killed only past the bound)."""
        for name in sorted(self.processes, key=lambda name: (name != "nginx", name)):
            stop_process(
                self.processes[name], signal.SIGQUIT if name == "nginx" else signal.SIGTERM
            )
        self.processes.clear()

    def alive(self) -> dict[str, bool]:
        return {name: process.poll() is None for name, process in self.processes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    parser.add_argument("--web-ports", default="8101,8102", help="web processes' ports")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "CLUSTER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tollgate_cluster"
        ),
        help="PostgreSQL database (created when missing); default $CLUSTER_DATABASE_URL",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("CLUSTER_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="Redis (a database number of its own); default $CLUSTER_REDIS_URL",
    )
    parser.add_argument("--run-dir", help="logs, data and nginx files (default: a temporary one)")
    options = parser.parse_args()
    run_dir = Path(options.run_dir or tempfile.mkdtemp(prefix="tollgate-cluster-")).resolve()
    ensure_database(options.database_url)
    cluster = LocalCluster(
        run_dir=run_dir,
        database_url=options.database_url,
        redis_url=options.redis_url,
        nginx_port=options.port,
        web_ports=[int(port) for port in options.web_ports.split(",")],
        workers=options.workers,
    )
    requests: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requests.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        cluster.start()
        print(f"Tollgate cluster at {cluster.url}/ (logs in {run_dir}/logs)", flush=True)
        print("kill -HUP", os.getpid(), "restarts the web processes one by one; Ctrl-C stops.")
        while True:
            if requests and requests[-1] == signal.SIGHUP:
                requests.clear()
                for index in range(len(cluster.web_ports)):
                    print(f"restarting web{index + 1}...", flush=True)
                    cluster.restart_web(index)
                print("rolling restart done", flush=True)
            elif requests:
                break
            gone = [name for name, alive in cluster.alive().items() if not alive]
            if gone:
                print(f"{', '.join(gone)} exited; stopping (see {run_dir}/logs)", file=sys.stderr)
                raise SystemExit(1)
            time.sleep(0.5)
    finally:
        print("stopping...", flush=True)
        cluster.stop()


if __name__ == "__main__":
    main()
