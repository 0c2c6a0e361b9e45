from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import override_settings

from tollgate.security.conf import (
    parse_csp_extra,
    parse_rate_overrides,
    ratelimit_key_prefix_problem,
    ratelimit_storage_problem,
)
from tollgate.security.policies import POLICIES, parse_rate, rate_for


def test_every_default_rate_parses():
    for policy in POLICIES.values():
        assert parse_rate(policy.default_rate).amount >= 1, policy.name


def test_rate_overrides_parse_into_a_mapping():
    overrides, problems = parse_rate_overrides(" login-ip=20/5minute, api-ip = 600/minute ,")
    assert overrides == {"login-ip": "20/5minute", "api-ip": "600/minute"}
    assert problems == []


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("login-ipp=20/minute", "does not name a policy"),
        ("login-ip", "does not name a policy"),
        ("login-ip=twenty", "is not a rate"),
        ("login-ip=0/minute", "is not a rate"),
        ("login-ip=1/second;5/minute", "is not a rate"),
    ],
)
def test_malformed_rate_overrides_are_reported(text, complaint):
    overrides, problems = parse_rate_overrides(text)
    assert overrides == {}
    assert len(problems) == 1
    assert complaint in problems[0]


@override_settings(RATE_LIMIT_OVERRIDES={"login-ip": "20/5minute"})
def test_an_override_replaces_the_default_rate():
    item = rate_for("login-ip")
    assert (item.amount, item.get_expiry(), item.namespace) == (20, 300, "login-ip")
    assert rate_for("api-ip").amount == 300


def test_csp_extra_accepts_host_sources():
    extra, problems = parse_csp_extra(
        "script-src=https://js.stripe.com https://*.example.com;"
        " frame-src=https://js.stripe.com; img-src=data: https://cdn.example.com:8443/img/;"
        " connect-src=wss://events.example.com http://localhost:8420"
    )
    assert problems == []
    assert extra == {
        "script-src": ["https://js.stripe.com", "https://*.example.com"],
        "frame-src": ["https://js.stripe.com"],
        "img-src": ["data:", "https://cdn.example.com:8443/img/"],
        "connect-src": ["wss://events.example.com", "http://localhost:8420"],
    }


@pytest.mark.parametrize(
    "text",
    [
        "script-src='unsafe-inline'",
        "script-src='unsafe-eval'",
        "script-src=*",
        "script-src=https:",
        "script-src=data:",
        "style-src=https://ok.example.com 'unsafe-inline'",
        "frame-ancestors=https://example.com",
        "object-src=https://example.com",
        "base-uri=https://example.com",
        "script-src=",
        "script-src https://js.stripe.com",
        "script-src=https://x.example.com;report-uri=https://evil.example.net",
    ],
)
def test_csp_extra_refuses_what_would_weaken_the_policy(text):
    _extra, problems = parse_csp_extra(text)
    assert problems, text


def test_the_storage_must_support_moving_windows():
    assert ratelimit_storage_problem("memory://") is None
    assert ratelimit_storage_problem("redis://:secret@redis:6379/0") is None
    problem = ratelimit_storage_problem("memcached://:secret@cache:11211")
    assert problem is not None
    assert "secret" not in problem


def test_the_key_prefix_cannot_widen_a_reset_to_other_keys():
    assert ratelimit_key_prefix_problem("tollgate-rl") is None
    assert ratelimit_key_prefix_problem("shop_2.limits") is None
    for prefix in ("*", "tollgate*", "a?", "[a]", "", "has space", "x" * 65):
        assert ratelimit_key_prefix_problem(prefix) is not None, prefix


def test_a_misconfigured_rate_limit_stops_start_up_with_every_problem_listed():
    env = {
        **os.environ,
        "TOLLGATE_ENV": "test",
        "TOLLGATE_RATE_LIMITS": "login-ip=lots,nope=1/minute",
        "TOLLGATE_CSP_EXTRA": "script-src='unsafe-inline'",
        "TOLLGATE_RATELIMIT_STORAGE_URL": "memcached://cache:11211",
        "TOLLGATE_RATELIMIT_KEY_PREFIX": "*",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import tollgate.config.settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "'lots' for login-ip is not a rate" in result.stderr
    assert "'nope=1/minute' does not name a policy" in result.stderr
    assert "TOLLGATE_CSP_EXTRA" in result.stderr
    assert "TOLLGATE_RATELIMIT_STORAGE_URL" in result.stderr
    assert "TOLLGATE_RATELIMIT_KEY_PREFIX" in result.stderr
