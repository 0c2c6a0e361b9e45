"""CPU time of one warm entitlement check in process, and its round trips; optionally paired
against another copy of the code.

The production profile (PostgreSQL, Redis, HTTPS behind one trusted proxy, rate limits on, every
request logged) is set up once: the demo catalog, an operator key for the check and a customer on
a trial of Pro with 3 projects reported, as in ``bench/entitlements.py``. Then each round starts a
fresh process that builds the served WSGI application (``tollgate.config.wsgi``), warms it up and
calls it ``--checks`` times with ``POST /api/v1/entitlements/check`` (every answer must be the
correct one), measuring ``time.process_time()`` over batches of 100 checks: no server, no client,
no sockets but those to PostgreSQL and Redis. A round's figures are its batches' median and least
CPU time per check (the least is the one other work on a shared machine disturbs least). Each
round also counts the Redis round trips (cache and rate limiter) and SQL statements of 20 warm
checks.

With ``--against SRC`` (a ``src`` directory of another commit, e.g. from ``git archive``), the
rounds alternate between this checkout's code and that one, the order swapping every pair, so
both see the machine in the same state; the result is the ratio of each pair (this / other):

    check_cpu_ms=0.98 min=.. max=.. least=.. round_trips=2 sql=0 against_cpu_ms=1.21 min=..
        max=.. against_least=.. ratio=0.81 min=.. max=.. least_ratio=.. against_round_trips=4
        against_sql=0 rounds=6 checks=400

The database comes from DATABASE_URL (a PostgreSQL on this machine; created if missing, migrated,
never dropped: each run adds its own key and customer), Redis from REDIS_URL (on this machine;
the keys this run writes are deleted afterwards).

Usage: python bench/check_cpu.py [--rounds 6] [--checks 400] [--against OTHER/src] [--profile]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _procs
from _procs import HOST, LOOPBACK, PROXY_HEADERS, ROOT

CHECK_PATH = "/api/v1/entitlements/check"
CHECK_RATE = "1000000/minute"
PLAN, FEATURE, PROJECTS_USED = "pro", "projects", 3
WARMUP_CHECKS = 200
COUNTED_CHECKS = 20
BATCH = 100  # checks timed together; a round's figures are its batches' median and least
CHILD_TIMEOUT_SECONDS = 600


# --- Set-up (once, in this process) --------------------------------------------------------------
def set_up(env: dict[str, str]) -> dict[str, Any]:
    """The catalog, a key, a customer on a trial with reported use; what a round needs."""
    import entitlements as ent

    _database_create(env["DATABASE_URL"])
    ent.tollgate(["migrate", "--no-input"], env)
    ent.tollgate(["catalog_load", "demo"], env)
    check_key = ent.tollgate(
        ["api_key_create", "--name", "check probe", "--scopes", "entitlements:read",
         "--rate-limit", f"check={CHECK_RATE}"],
        env,
    ).strip()  # fmt: skip
    setup_key = ent.tollgate(
        ["api_key_create", "--name", "check probe set-up", "--scopes",
         "customers:write,usage:write"],
        env,
    ).strip()  # fmt: skip
    ent.django_setup(env)
    from django.test import Client

    web = Client(HTTP_HOST=HOST)
    external_id = f"probe-{secrets.token_hex(6)}"

    def post(key: str, path: str, payload: dict[str, Any]) -> bytes:
        headers = {**PROXY_HEADERS, "Authorization": f"Bearer {key}"}
        response = web.post(path, json.dumps(payload), "application/json", headers=headers)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.content[:300]!r}")
        return bytes(response.content)

    post(setup_key, "/api/v1/customers",
         {"email": f"{external_id}@example.com", "external_id": external_id, "name": "Probe"})  # fmt: skip
    limit = ent.trial_start(external_id)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    post(setup_key, "/api/v1/usage",
         {"events": [{"id": f"{external_id}-p", "customer": external_id, "metric": FEATURE,
                      "quantity": PROJECTS_USED, "timestamp": stamp}]})  # fmt: skip
    body = {"customer": external_id, "feature": FEATURE, "quantity": 1}
    expected = {
        "allowed": True,
        "reason": None,
        "remaining": limit - PROJECTS_USED,
        "upgrade": None,
    }
    ent.django_close()
    return {"key": check_key, "body": json.dumps(body), "expected": expected}


def _database_create(database_url: str) -> None:
    from psycopg import sql

    name = urlsplit(database_url).path.lstrip("/")
    with _procs.admin_connect(database_url) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if found is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# --- One round (a process of its own) ------------------------------------------------------------
def round_run(state: dict[str, Any], checks: int, profile: bool) -> dict[str, Any]:
    from entitlements import redis_round_trips

    from tollgate.config.wsgi import application

    body = state["body"].encode()
    expected = state["expected"]
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": CHECK_PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": HOST,
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": HOST,
        "HTTP_X_FORWARDED_PROTO": PROXY_HEADERS["X-Forwarded-Proto"],
        "HTTP_X_FORWARDED_FOR": PROXY_HEADERS["X-Forwarded-For"],
        "HTTP_AUTHORIZATION": f"Bearer {state['key']}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def check(verify: bool) -> None:
        statuses.clear()
        answer = application({**environ, "wsgi.input": io.BytesIO(body)}, start_response)
        content = b"".join(answer)
        getattr(answer, "close", lambda: None)()
        if verify and (not statuses[0].startswith("200") or json.loads(content) != expected):
            raise RuntimeError(f"the check answered {statuses[0]} {content[:300]!r}")

    for _ in range(WARMUP_CHECKS):
        check(True)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries, redis_round_trips() as trips:
        for _ in range(COUNTED_CHECKS):
            check(True)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    batches = []  # CPU seconds per check of each batch
    for _ in range(max(1, checks // BATCH)):
        started = time.process_time()
        for _ in range(BATCH):
            check(False)
        batches.append((time.process_time() - started) / BATCH)
    profiled = ""
    if profiler is not None:
        import pstats

        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(70)
        stats.sort_stats("tottime").print_stats(40)
        profiled = out.getvalue()
    check(True)
    return {
        "profile": profiled,
        "cpu_ms": statistics.median(batches) * 1000,
        "cpu_ms_least": min(batches) * 1000,
        "round_trips": trips[0] / COUNTED_CHECKS,
        "sql": len(queries.captured_queries) / COUNTED_CHECKS,
    }


def child_start(
    src: Path, env: dict[str, str], state_path: Path, checks: int, profile: bool
) -> dict[str, Any]:
    out = state_path.with_suffix(f".{secrets.token_hex(4)}.json")
    child_env = env | {"PYTHONPATH": str(src), "DJANGO_SETTINGS_MODULE": "tollgate.config.settings"}
    argv = [sys.executable, __file__, "--child", str(state_path), "--out", str(out),
            "--checks", str(checks), *(["--profile"] if profile else [])]  # fmt: skip
    done = subprocess.run(
        argv, cwd=ROOT, env=child_env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, timeout=CHILD_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"round with {src} failed:\n{(done.stderr or b'')[-3000:].decode()}")
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    profiled = result.pop("profile")
    if profiled:
        print(profiled, file=sys.stderr, flush=True)
    return result


def spread(values: list[float], digits: int = 2) -> str:
    return (
        f"{statistics.median(values):.{digits}f} min={min(values):.{digits}f}"
        f" max={max(values):.{digits}f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds (pairs with --against)")
    parser.add_argument("--checks", type=int, default=400, help="measured checks per round")
    parser.add_argument("--against", type=Path, help="the src directory of the code to compare")
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU clock) to stderr")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (1 <= args.rounds <= 40 and 1 <= args.checks <= 100_000):
        parser.error("need 1 <= --rounds <= 40 and 1 <= --checks <= 100000")
    if args.child is not None:
        state = json.loads(args.child.read_text())
        result = round_run(state, args.checks, args.profile)
        args.out.write_text(json.dumps(result))
        return 0

    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    for url, what in ((database_url, "DATABASE_URL"), (redis_url, "REDIS_URL")):
        if not url or (urlsplit(url).hostname or "") not in LOOPBACK:
            raise SystemExit(f"{what} must name a server on this machine")
    key_prefix = f"probe-check-{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-check-cpu-"))
    (data_dir / "static").mkdir()
    env = _procs.production_environment(
        database_url=database_url, redis_url=redis_url, data_dir=data_dir, key_prefix=key_prefix
    ) | {"TOLLGATE_GATEWAY": "sandbox", "TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION": "true"}
    this = ROOT / "src"
    env["PYTHONPATH"] = str(this)  # the set-up's commands run this checkout's code
    sys.path.insert(0, str(this))
    sources = [this] if args.against is None else [this, args.against.resolve()]
    results: dict[Path, list[dict[str, Any]]] = {src: [] for src in sources}
    try:
        state_path = data_dir / "state.json"
        state_path.write_text(json.dumps(set_up(env)))
        for number in range(args.rounds):
            order = sources if number % 2 == 0 else sources[::-1]
            for src in order:
                result = child_start(src, env, state_path, args.checks, args.profile)
                results[src].append(result)
                print(f"round {number + 1} {src}: {json.dumps(result)}", flush=True)
    finally:
        _procs.redis_cleanup(redis_url, key_prefix)
        shutil.rmtree(data_dir, ignore_errors=True)
    mine = results[this]
    line = (
        f"check_cpu_ms={spread([r['cpu_ms'] for r in mine])}"
        f" least={spread([r['cpu_ms_least'] for r in mine])}"
        f" round_trips={statistics.median(r['round_trips'] for r in mine):g}"
        f" sql={statistics.median(r['sql'] for r in mine):g}"
    )
    if args.against is not None:
        other = results[args.against.resolve()]
        pairs = list(zip(mine, other, strict=True))
        ratios = [a["cpu_ms"] / b["cpu_ms"] for a, b in pairs]
        least_ratios = [a["cpu_ms_least"] / b["cpu_ms_least"] for a, b in pairs]
        line += (
            f" against_cpu_ms={spread([r['cpu_ms'] for r in other])}"
            f" against_least={spread([r['cpu_ms_least'] for r in other])}"
            f" ratio={spread(ratios)} least_ratio={spread(least_ratios)}"
            f" against_round_trips={statistics.median(r['round_trips'] for r in other):g}"
            f" against_sql={statistics.median(r['sql'] for r in other):g}"
        )
    print(f"{line} rounds={args.rounds} checks={args.checks}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
