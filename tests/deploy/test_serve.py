"""`serve` follows the HOST / PORT / WEB_CONCURRENCY conventions and stops gracefully: the web
server finishes the requests in flight, the worker its running tasks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings
from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer

from tollgate.ops.management.commands import serve

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_with(**environ: str) -> subprocess.CompletedProcess[str]:
    """A fresh process that loads the settings with ``environ`` and prints HOST, PORT and
    WEB_WORKERS as JSON."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in {"HOST", "PORT", "WEB_CONCURRENCY", "TOLLGATE_WEB_WORKERS"}
    }
    code = (
        "import json; from tollgate.config import settings as s;"
        " print(json.dumps({'HOST': s.HOST, 'PORT': s.PORT, 'WEB_WORKERS': s.WEB_WORKERS,"
        " }))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**base, "TOLLGATE_ENV": "test", **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def settings_in_a_fresh_process(**environ: str) -> dict[str, object]:
    completed = start_with(**environ)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


class TestConventions:
    def test_without_configuration_it_listens_on_loopback_port_8000_with_one_process(self):
        assert settings_in_a_fresh_process() == {
            "HOST": "127.0.0.1",
            "PORT": 8000,
            "WEB_WORKERS": 1,
        }

    def test_host_port_and_web_concurrency_are_honoured(self):
        read = settings_in_a_fresh_process(HOST="0.0.0.0", PORT="9100", WEB_CONCURRENCY="3")  # noqa: S104
        assert (read["HOST"], read["PORT"], read["WEB_WORKERS"]) == ("0.0.0.0", 9100, 3)  # noqa: S104

    def test_tollgate_web_workers_wins_over_web_concurrency(self):
        read = settings_in_a_fresh_process(WEB_CONCURRENCY="3", TOLLGATE_WEB_WORKERS="2")
        assert read["WEB_WORKERS"] == 2

    def test_a_malformed_web_concurrency_stops_start_up_naming_it(self):
        completed = start_with(WEB_CONCURRENCY="0")
        assert completed.returncode != 0
        assert "WEB_CONCURRENCY='0' is not a valid integer >= 1." in completed.stderr

    def test_serve_takes_its_defaults_from_those_settings(self):
        with override_settings(HOST="0.0.0.0", PORT=9100, WEB_WORKERS=3):  # noqa: S104
            parser = serve.Command().create_parser("tollgate", "serve")
            options = parser.parse_args([])
        assert (options.host, options.port, options.workers) == ("0.0.0.0", 9100, 3)  # noqa: S104

    def test_serve_starts_granian_with_those_values_and_a_bound_on_finishing_requests(self):
        argv = serve.web_command(host="0.0.0.0", port=9100, workers=3)  # noqa: S104
        assert argv[argv.index("--host") + 1] == "0.0.0.0"  # noqa: S104
        assert argv[argv.index("--port") + 1] == "9100"
        assert argv[argv.index("--workers") + 1] == "3"
        assert argv[argv.index("--workers-kill-timeout") + 1] == str(serve.WEB_GRACEFUL_SECONDS)
        assert max(serve.WEB_GRACEFUL_SECONDS, serve.WORKER_GRACEFUL_SECONDS) < serve.STOP_TIMEOUT


class TestWorkerStopSignal:
    @pytest.mark.parametrize("queue", [SqliteHuey, RedisHuey])
    def test_the_signal_serve_sends_the_worker_is_hueys_graceful_one(self, tmp_path, queue):
        # Huey's consumer finishes running tasks on its graceful signal (SIGINT unless configured
        # otherwise) and interrupts them on the other (SIGTERM); serve must send the first.
        huey = (
            SqliteHuey("stop-signal", filename=str(tmp_path / "q.sqlite3"))
            if queue is SqliteHuey
            else RedisHuey("stop-signal", url="redis://127.0.0.1:1/0")
        )
        consumer = Consumer(huey, workers=1)
        restart, graceful = consumer._signal_actions[serve.STOP_SIGNALS["worker"]]
        assert (restart, graceful) == (False, True)
        assert serve.STOP_SIGNALS["web"] == signal.SIGTERM  # granian: graceful on SIGTERM too

    def test_the_worker_waits_for_its_tasks_only_as_long_as_serve_allows(self):
        argv = serve.worker_command()
        assert argv[argv.index("--shutdown-timeout") + 1] == str(serve.WORKER_GRACEFUL_SECONDS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(tmp_path: Path, *arguments: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "TOLLGATE_ENV": "development",
        "TOLLGATE_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tollgate.sqlite3'}",
        "REDIS_URL": "",
        "SENTRY_DSN": "",
        "TOLLGATE_WEB_THREADS": "2",
    }
    # Unset, not empty: prometheus-client takes an empty directory name for the current one.
    environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", *arguments],
        cwd=REPO_ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=60)


def _connect_when_listening(port: int, process: subprocess.Popen[bytes]) -> socket.socket:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            time.sleep(0.1)
    pytest.fail(f"serve did not listen on {port}")


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has installed a SIGTERM handler (Huey's consumer does once it runs; Python
    alone does not)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _wait_until_the_consumer_handles_signals(serve_pid: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        children = Path(f"/proc/{serve_pid}/task/{serve_pid}/children").read_text().split()
        if children and _catches_sigterm(int(children[0])):
            return
        time.sleep(0.1)
    pytest.fail("the worker did not start")


class TestGracefulStop:
    def test_on_sigterm_the_web_server_stops_accepting_finishes_the_request_in_flight_and_exits(
        self, tmp_path
    ):
        port = _free_port()
        process = _serve(tmp_path, "--no-worker", "--port", str(port))
        try:
            sock = _connect_when_listening(port, process)
            with sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert _read_response(sock).startswith(b"HTTP/1.1 200")
                # A second request on the accepted connection, its body only half sent: in flight.
                sock.sendall(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n12345"
                )
                process.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 60
                while not _refuses_connections(port):
                    assert time.monotonic() < deadline, "still accepting connections"
                    time.sleep(0.05)
                sock.sendall(b"67890")
                answer = _read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert answer.split(b"\r\n\r\n", 1)[1] == b'{"status": "ok"}'
            assert process.wait(timeout=serve.STOP_TIMEOUT + 30) == 0
        finally:
            _stop(process)

    @pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
    def test_on_sigterm_the_worker_stops_cleanly(self, tmp_path):
        process = _serve(tmp_path, "--no-web")
        try:
            assert process.stdout is not None
            first = process.stdout.readline().decode()
            assert "running (worker)" in first, first
            _wait_until_the_consumer_handles_signals(process.pid)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=serve.STOP_TIMEOUT + 30) == 0
            output = process.stdout.read().decode()
            assert "Stopped." in output
            assert "interrupt" not in output.lower(), output
        finally:
            _stop(process)
