"""A rolling restart of both web processes behind nginx, under steady load, fails no request:
each web process stops accepting, finishes what it has, and nginx sends new requests to the other."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

from tests.deploy.cluster import LoadLoop, running_cluster


def _request_id(port: int, headers: dict[str, str]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/healthz", headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        return response.getheader("X-Request-ID") or ""
    finally:
        connection.close()


def test_restarting_each_web_process_in_turn_under_load_fails_no_request(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as (cluster, _postgresql, _redis):
        port = cluster.nginx_port  # type: ignore[attr-defined]
        # nginx passes the caller's request id on, or gives the request its own.
        assert _request_id(port, {"X-Request-ID": "trace-12345678"}) == "trace-12345678"
        assert re.fullmatch(r"[0-9a-f]{32}", _request_id(port, {}))
        windows = []
        with LoadLoop(port=port) as load:
            load.wait_for(200)
            for index in range(2):
                stopped_at = time.monotonic()
                cluster.restart_web(index)  # type: ignore[attr-defined]
                windows.append((stopped_at, time.monotonic()))
                load.wait_for(200)  # both processes serve again before the next one goes
        outcomes = load.summary()
        # The load ran while each process was away, and nothing failed.
        for start, end in windows:
            assert sum(load.between(start, end).values()) > 0
        assert set(outcomes) == {200}, outcomes
        assert sum(outcomes.values()) >= 600
        # nginx did meet a stopped process (so the restarts happened under this load).
        error_log = (tmp_path / "cluster" / "logs" / "nginx-error.log").read_text()
        assert "Connection refused" in error_log
