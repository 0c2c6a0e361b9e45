from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from django.core.management import CommandError, call_command

from tollgate.accounts.models import User


@pytest.mark.django_db
def test_staff_bootstrap_creates_a_verified_superuser_once(capsys):
    call_command("staff_bootstrap", "--email", "boss@example.org")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    user = User.objects.get(email="boss@example.org")
    assert user.is_staff
    assert user.is_superuser
    assert user.check_password(password)
    assert user.emailaddress_set.get().verified

    call_command("staff_bootstrap", "--email", "boss@example.org")
    assert "already exists" in capsys.readouterr().out
    assert User.objects.get(email="boss@example.org").check_password(password)
    with pytest.raises(CommandError):
        call_command("staff_bootstrap", "--email", "not-an-email")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_starts_web_and_worker_and_ctrl_c_stops_both(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "DATABASE_URL", "REDIS_URL"))
    }
    env |= {
        "TOLLGATE_ENV": "development",
        "TOLLGATE_DATA_DIR": str(tmp_path),
        "TOLLGATE_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "-m", "tollgate", "migrate", "-v", "0"], env=env, check=True, timeout=120
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tollgate", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as response:
                    body = response.read()
                    break
            except OSError:
                time.sleep(0.3)
        assert body == b'{"status": "ok"}'
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, output
    assert "Stopped." in output
    # The default threads per web process are ones granian accepts without a warning.
    assert "seems quite high" not in output, output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
