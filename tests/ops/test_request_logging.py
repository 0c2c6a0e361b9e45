from __future__ import annotations

import json
import re

import pytest
import structlog
from django.test import Client

from tests.ops.conftest import CapturedLogs
from tollgate.core import context
from tollgate.core.redaction import REDACTED
from tollgate.ops.middleware import new_request_id, request_id_accepted
from tollgate.ops.paths import redacted_path

pytestmark = pytest.mark.django_db


def test_a_well_formed_request_id_is_accepted_echoed_and_logged(
    client: Client, captured_logs: CapturedLogs
) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "edge-proxy:7f3a.91"})
    assert response.status_code == 200
    assert response["X-Request-ID"] == "edge-proxy:7f3a.91"
    [line] = captured_logs.events("request")
    assert line["request_id"] == "edge-proxy:7f3a.91"
    assert line["route"] == "healthz"
    assert line["status_code"] == 200
    assert line["method"] == "GET"
    assert line["path"] == "/healthz"
    assert line["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", line["timestamp"])


def test_a_request_without_an_id_is_issued_one(client: Client, captured_logs: CapturedLogs) -> None:
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{24}", first)
    assert first != second
    assert [line["request_id"] for line in captured_logs.events("request")] == [first, second]


@pytest.mark.parametrize(
    "malformed",
    [
        "short",
        "x" * 65,
        "has space in it",
        "semi;colon-injection",
        "tab\tinside-0001",
        "jane@example.org",
        "4242424242424242",
        "<script>alert(1)</script>",
    ],
)
def test_a_malformed_request_id_is_replaced(
    client: Client, captured_logs: CapturedLogs, malformed: str
) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": malformed})
    issued = response["X-Request-ID"]
    assert issued != malformed
    assert re.fullmatch(r"[0-9a-f]{24}", issued)
    [line] = captured_logs.events("request")
    assert line["request_id"] == issued
    assert malformed not in captured_logs.text


def test_issued_request_ids_are_never_masked_by_the_scrubber() -> None:
    for _ in range(2000):
        assert request_id_accepted(new_request_id())


def test_logs_written_while_serving_a_request_carry_its_id(captured_logs: CapturedLogs) -> None:
    token = context.bind(context.RequestContext(request_id="req-0000abcd"))
    try:
        structlog.get_logger("tollgate.test").info("something.happened", detail="ok")
        # Only the request's own id (accepted or issued, so never one the scrubber would change)
        # is written as it is; any other value under that name is scrubbed like any value.
        structlog.get_logger("tollgate.test").info("forwarded", request_id="4242424242424242")
    finally:
        context.reset(token)
    [line] = captured_logs.events("something.happened")
    assert line["request_id"] == "req-0000abcd"
    assert line["logger"] == "tollgate.test"
    [forwarded] = captured_logs.events("forwarded")
    assert forwarded["request_id"] == REDACTED


def test_each_log_line_is_one_json_object_with_secrets_redacted(
    captured_logs: CapturedLogs,
) -> None:
    import logging

    log = structlog.get_logger("tollgate.test")
    log.info(
        "payment.debug",
        password="hunter2-hunter2",
        nested={"deeper": {"api_token": "tok_abcdef"}},
        note="card 4242 4242 4242 4242 for jane@example.org",
    )
    logging.getLogger("some.library").warning("login failed for jane@example.org password=hunter3")
    try:
        raise ValueError("charge of 4000000000000002 failed")
    except ValueError:
        log.exception("payment.failed")
    lines = captured_logs.json_stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["event"] for record in records][:2] == [
        "payment.debug",
        "login failed for j***@example.org password=[redacted]",
    ]
    first = records[0]
    assert first["password"] == REDACTED
    assert first["nested"] == {"deeper": {"api_token": REDACTED}}
    assert first["note"] == f"card {REDACTED} for j***@example.org"
    failed = records[2]
    assert "ValueError" in failed["exception"]
    for secret in ("hunter2", "hunter3", "tok_abcdef", "4242 4242", "4000000000000002", "jane@"):
        assert secret not in captured_logs.text


def test_secret_route_parameters_are_redacted_from_logged_paths(
    client: Client, captured_logs: CapturedLogs
) -> None:
    key = "MQ:1tVerif:abcdefghijklmnop"
    client.get(f"/accounts/confirm-email/{key}/")
    client.get("/accounts/password/reset/key/1z-c8x9ya-0123456789abcdef0123/")
    paths = [line["path"] for line in captured_logs.events("request")]
    assert paths == [
        f"/accounts/confirm-email/{REDACTED}/",
        f"/accounts/password/reset/key/1z-{REDACTED}/",
    ]
    assert key not in captured_logs.text
    assert "0123456789abcdef0123" not in captured_logs.text


def test_paths_that_resolve_only_with_a_trailing_slash_are_redacted_too() -> None:
    assert redacted_path("/accounts/confirm-email/MQ:1tVerif:abcdefgh") == (
        f"/accounts/confirm-email/{REDACTED}"
    )
    assert redacted_path("/pricing/") == "/pricing/"
    assert redacted_path("/no/such/page/") == "/no/such/page/"


def test_the_s3_clients_debug_records_stay_out_even_at_debug_level(
    captured_logs: CapturedLogs,
) -> None:
    import logging

    for name in ("botocore.endpoint", "boto3.resources", "s3transfer.upload"):
        logging.getLogger(name).debug("Sending http request: headers={'X-Amz-Security-Token': ...}")
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    lines = captured_logs.records()
    assert not [line for line in lines if "Sending http request" in str(line.get("event"))]
    assert [line["event"] for line in lines] == ["Found credentials in environment variables."]
