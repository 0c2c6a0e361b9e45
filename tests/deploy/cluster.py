"""What the deployment tests share: a PostgreSQL and a Redis of their own (started and stopped by
PID, on free loopback ports, so they can be restarted without touching anyone else's), the local
cluster of deploy/local_cluster.py, and a bounded load loop through nginx."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120


def local_cluster_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tollgate_local_cluster", REPO_ROOT / "deploy" / "local_cluster.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def nginx_or_skip() -> str:
    module = local_cluster_module()
    if module.nginx_binary() is None:
        subprocess.run(  # the project's own installer; without root it only explains
            ["bash", str(REPO_ROOT / "scripts" / "ensure-nginx")], check=False, timeout=600
        )
    binary = module.nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed and could not be (scripts/ensure-nginx needs root)")
    return str(binary)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {WAIT_SECONDS} s")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _postgres_bin() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


@dataclass
class OwnPostgreSQL:
    """A PostgreSQL server in a temporary directory, run as an unprivileged user (it refuses
    root); only this object starts and stops it."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bin(self) -> Path:
        found = _postgres_bin()
        assert found is not None
        return found

    @property
    def user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user:
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        subprocess.run(
            [
                *(str(self.bin / "initdb"), "-D", str(self.directory / "data")),
                *("-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C"),
            ],
            user=self.user,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def start(self) -> None:
        log = (self.directory / "postgres.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    *(str(self.bin / "postgres"), "-D", str(self.directory / "data")),
                    *("-p", str(self.port), "-k", str(self.directory)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
                    *("-c", "full_page_writes=off", "-c", "max_connections=100"),
                ],
                user=self.user,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(self._accepts, "PostgreSQL accepts connections")

    def _accepts(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, (self.directory / "postgres.log").read_text()[-2000:]
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions are rolled back, clients are cut off."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class OwnRedis:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = (self.directory / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [
                    *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
                    *("--appendonly", "no", "--dir", str(self.directory)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(lambda: _listening(self.port), "Redis listens")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def services_or_skip() -> None:
    if _postgres_bin() is None:
        pytest.skip("PostgreSQL's server programs are not installed (/usr/lib/postgresql/*/bin)")
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed")


@contextlib.contextmanager
def running_cluster(
    tmp_path: Path, workers: int = 2, **environ: str
) -> Iterator[tuple[object, OwnPostgreSQL, OwnRedis]]:
    """Own PostgreSQL and Redis, and the local cluster on them (``workers`` workers started; the
    test may start the others); everything stopped afterwards."""
    nginx_or_skip()
    services_or_skip()
    module = local_cluster_module()
    # Not under pytest's tmp_path: that is private to the current user, and PostgreSQL runs as
    # another one when the tests run as root.
    postgresql = OwnPostgreSQL(Path(tempfile.mkdtemp(prefix="tollgate-test-pg-")))
    redis = OwnRedis(tmp_path / "redis")
    cluster = module.LocalCluster(
        run_dir=tmp_path / "cluster",
        database_url=postgresql.url("tollgate"),
        redis_url=redis.url,
        nginx_port=free_port(),
        web_ports=[free_port(), free_port()],
        workers=workers,
        extra_environ=environ,
    )
    try:
        postgresql.init()
        postgresql.start()
        redis.start()
        module.ensure_database(postgresql.url("tollgate"))
        cluster.start()
        yield cluster, postgresql, redis
    finally:
        try:
            cluster.stop()
        finally:
            redis.stop()
            postgresql.stop()
            shutil.rmtree(postgresql.directory, ignore_errors=True)


@dataclass
class LoadLoop:
    """A few threads sending GET requests through nginx until stopped, at most ``limit`` each;
    every outcome is kept (status code, or the exception's name) with when it happened."""

    port: int
    paths: tuple[str, ...] = ("/healthz", "/pricing/")
    threads: int = 4
    limit: int = 5000
    outcomes: list[tuple[float, int | str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        for count in range(self.limit):
            if self._stop.is_set():
                break
            outcome: int | str
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("GET", self.paths[count % len(self.paths)])
                response = connection.getresponse()
                response.read()
                outcome = response.status
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                connection = None
            with self._lock:
                self.outcomes.append((time.monotonic(), outcome))
        if connection is not None:
            connection.close()

    def __enter__(self) -> LoadLoop:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=WAIT_SECONDS)

    def wait_for(self, count: int) -> None:
        """Wait until ``count`` more requests have been answered (the load is flowing)."""
        target = len(self.outcomes) + count
        _wait(lambda: len(self.outcomes) >= target, f"{count} more requests answered")

    def between(self, start: float, end: float) -> Counter[int | str]:
        with self._lock:
            return Counter(outcome for at, outcome in self.outcomes if start <= at <= end)

    def summary(self) -> Counter[int | str]:
        with self._lock:
            return Counter(outcome for _, outcome in self.outcomes)
