from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tollgate.config.env import Env
from tollgate.config.production import production_problems

SAFE = {
    "debug": False,
    "secret_key": "Zq3" + "kT9vB1mN6xR2pL8wY4cH7jF0sD5gA" * 2,
    "secret_key_fallbacks": [],
    "allowed_hosts": ["billing.example.com"],
    "using_sqlite": False,
    "allow_sqlite": False,
    "redis_url": "redis://cache:6379/0",
    "ssl_redirect": True,
    "secure_cookies": True,
    "hsts_seconds": 31536000,
    "site_url_scheme": "https",
    "metrics_token": "m" * 16 + "Q7xR2pL8wY4cH7jF",
}


def test_a_safe_production_configuration_has_no_problems():
    assert production_problems(**SAFE) == []


def test_every_unsafe_production_setting_is_reported_at_once():
    problems = production_problems(
        debug=True,
        secret_key="django-insecure-abc",
        secret_key_fallbacks=["short"],
        allowed_hosts=[],
        using_sqlite=True,
        allow_sqlite=False,
        redis_url="",
        ssl_redirect=False,
        secure_cookies=False,
        hsts_seconds=0,
        site_url_scheme="http",
        metrics_token="",
    )
    text = "\n".join(problems)
    for expected in (
        "DEBUG",
        "SECRET_KEY is too weak",
        "SECRET_KEY_FALLBACKS[0]",
        "ALLOWED_HOSTS is empty",
        "SQLite",
        "REDIS_URL",
        "SSL_REDIRECT",
        "SECURE_COOKIES",
        "HSTS",
        "https://",
        "METRICS_TOKEN",
    ):
        assert expected in text
    assert len(problems) == 11


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "missing"),
        ("a" * 60, "too weak"),
        ("changeme-" + "Xy7pQ2rT9vB4nM6kL1wZ3cF8hJ5dS0gA" * 2, "known default"),
    ],
)
def test_weak_or_default_secret_keys_are_refused(key, message):
    assert any(message in p for p in production_problems(**{**SAFE, "secret_key": key}))


def test_sqlite_in_production_needs_an_explicit_opt_in():
    assert production_problems(**{**SAFE, "using_sqlite": True, "allow_sqlite": True}) == []
    assert production_problems(**{**SAFE, "allowed_hosts": ["*"]})


def test_env_reads_files_and_collects_malformed_values(tmp_path: Path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    env = Env(
        {
            "A_FILE": str(secret_file),
            "N": "twelve",
            "B": "maybe",
            "L": "a, b,,c",
            "C": "other",
            "BOTH": "x",
            "BOTH_FILE": str(secret_file),
            "GONE_FILE": str(tmp_path / "missing"),
            "LOW": "-1",
        }
    )
    assert env.str("A") == "from-a-file"
    assert env.list("L") == ["a", "b", "c"]
    assert env.int("N", 5) == 5
    assert env.bool("B", False) is False
    assert env.choice("C", ("x", "y"), "x") == "x"
    assert env.str("BOTH") == "x"
    assert env.str("GONE", "default") == "default"
    assert env.int("LOW", 1, minimum=0) == 1
    assert env.str("REQUIRED") is None
    assert env.bool("UNSET", True) is True
    assert env.float("UNSET_F", 0.5) == 0.5
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env.raise_if_problems("cannot start:")
    message = str(excinfo.value)
    for fragment in (
        "N=",
        "B=",
        "C=",
        "BOTH and BOTH_FILE",
        "GONE_FILE",
        "LOW=",
        "REQUIRED is required",
    ):
        assert fragment in message


def run_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "DATABASE_URL", "REDIS_URL"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "tollgate.config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refuses_to_start_and_lists_every_problem(tmp_path):
    result = run_settings(
        {"TOLLGATE_ENV": "production", "DEBUG": "true", "TOLLGATE_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "Tollgate cannot start (production profile)" in result.stderr
    for fragment in (
        "DEBUG is on",
        "SECRET_KEY is missing",
        "ALLOWED_HOSTS is empty",
        "REDIS_URL is not set",
        "SQLite",
    ):
        assert fragment in result.stderr


def test_production_starts_with_a_safe_configuration(tmp_path):
    result = run_settings(
        {
            "TOLLGATE_ENV": "production",
            "SECRET_KEY": SAFE["secret_key"],
            "SECRET_KEY_FALLBACKS": "Pw8" + "mZ2xK7cV4bN9qL3tR6yH1jD5fG0sA" * 2,
            "ALLOWED_HOSTS": "billing.example.com",
            "TOLLGATE_SITE_URL": "https://billing.example.com",
            "DATABASE_URL": "postgres://tollgate@127.0.0.1:5432/tollgate",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "TOLLGATE_METRICS_TOKEN": "t" * 40,
            "TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION": "true",
            "TOLLGATE_DATA_DIR": str(tmp_path),
        }
    )
    assert result.returncode == 0, result.stderr


def test_development_generates_and_keeps_a_secret_key(tmp_path):
    assert (
        run_settings({"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path)}).returncode
        == 0
    )
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    run_settings({"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path)})
    assert (tmp_path / "secret_key").read_text() == key


def test_key_rotation_accepts_sessions_signed_with_a_fallback_key(settings):
    from django.core import signing

    old_key = "Ol9" + "dK3mW8xQ2vB7nR4tY1cJ6hF5gS0pA" * 2
    token = signing.dumps({"user": 1}, key=old_key)
    settings.SECRET_KEY = "Nw4" + "eL8nX3yR7wC2oS5uZ9dK1iG6hT0qB" * 2
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert signing.loads(token) == {"user": 1}
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(signing.BadSignature):
        signing.loads(token)


def _in_process(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOLLGATE_", "DATABASE_URL", "REDIS_URL"))
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**clean, "DJANGO_SETTINGS_MODULE": "tollgate.config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_embedded_default_cache_is_shared_by_the_web_process_and_the_worker(tmp_path):
    """What the worker drops from the cache (after a plan change, a revoked API key) must be gone
    for the web process too: two processes of the embedded default see one cache."""
    env = {"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path)}
    setter = "from django.core.cache import cache; cache.set('shared-probe', 'seen', 60)"
    assert _in_process(env, setter).returncode == 0
    reader = "from django.core.cache import cache; print(cache.get('shared-probe'))"
    result = _in_process(env, reader)
    assert result.stdout.strip() == "seen", result.stderr
    dropper = "from django.core.cache import cache; cache.delete('shared-probe')"
    assert _in_process(env, dropper).returncode == 0
    assert _in_process(env, reader).stdout.strip() == "None"


_DEBUG_PAGE_PROBE = (
    "from django.conf import settings; from django.test import Client;"
    " response = Client().get('/no-such-page/');"
    " print(settings.DEBUG, settings.WHITENOISE_AUTOREFRESH, response.status_code,"
    " 'There is nothing at this address' in response.content.decode(),"
    " 'urlpatterns' in response.content.decode() or 'URLconf' in response.content.decode(),"
    " Client().get('/static/tollgate/app.css').status_code)"
)


def test_the_embedded_default_shows_the_house_error_pages_not_debug_pages(tmp_path):
    """`make run` must not list every URL pattern on a 404 (or a traceback on a 500) to whoever
    reaches it; the conveniences of the embedded default (its secret key, static files served by
    the app, assets refreshed when edited) do not depend on DEBUG."""
    env = {"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path), "DEBUG": ""}
    result = _in_process(env, _DEBUG_PAGE_PROBE)
    assert result.stdout.split() == ["False", "True", "404", "True", "False", "200"], result.stderr
    assert (tmp_path / "secret_key").exists()


def test_a_developer_can_opt_in_to_debug_pages(tmp_path):
    env = {"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path), "DEBUG": "true"}
    result = _in_process(env, _DEBUG_PAGE_PROBE)
    assert result.stdout.split() == ["True", "True", "404", "False", "True", "200"], result.stderr


@pytest.mark.parametrize(
    ("env", "site_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"PORT": "8123"}, "http://127.0.0.1:8123"),
        (
            {"PORT": "8123", "TOLLGATE_SITE_URL": "https://billing.example.com/"},
            "https://billing.example.com",
        ),
    ],
)
def test_the_site_url_follows_the_port_unless_it_is_set(tmp_path, env, site_url):
    base = {"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path), "PORT": ""}
    result = _in_process(
        {**base, **env}, "from django.conf import settings; print(settings.SITE_URL)"
    )
    assert result.stdout.strip() == site_url, result.stderr


def test_serve_listens_on_the_port_from_the_environment(settings):
    from tollgate.ops.management.commands.serve import Command

    settings.PORT = 8123
    parser = Command().create_parser("tollgate", "serve")
    assert parser.parse_args([]).port == 8123
    assert parser.parse_args(["--port", "9000"]).port == 9000


def test_the_default_web_threads_are_what_granian_runs_without_warning(tmp_path):
    """granian warns when a WSGI worker may run more threads than 2 x CPU cores + 1."""
    env = {"TOLLGATE_ENV": "development", "TOLLGATE_DATA_DIR": str(tmp_path)}
    code = (
        "import os; from django.conf import settings; print(settings.WEB_THREADS, os.cpu_count())"
    )
    threads, cpus = map(int, _in_process(env, code).stdout.split())
    assert 1 <= threads <= min(8, 2 * cpus + 1)
