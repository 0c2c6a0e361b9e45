"""EMAIL_URL, EMAIL_BACKEND and the EMAIL_HOST variables, parsed as a pure function."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tollgate.config.email import (
    CONSOLE_BACKEND,
    EML_FILE_BACKEND,
    LOCMEM_BACKEND,
    SMTP_BACKEND,
    email_config,
)

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "tollgate:Zq3kT9vB1mN6xR2pL8wY"


def config(**values):
    arguments = {
        "url": "",
        "backend": "",
        "host": "",
        "port": None,
        "user": "",
        "password": "",
        "use_tls": None,
        "use_ssl": False,
        "webhook_secrets": [],
        "testing": False,
        "production": True,
        **values,
    }
    return email_config(**arguments)


def test_smtp_url_is_starttls_on_587_with_decoded_credentials():
    password = "s%3Ac%2Fr%40t%25"  # percent-encoded "s:c/r@t%"
    result = config(url=f"smtp://mailer%40example.org:{password}@mail.example.org")
    assert result.problems == []
    assert (result.backend, result.host, result.port) == (SMTP_BACKEND, "mail.example.org", 587)
    assert (result.user, result.password) == ("mailer@example.org", "s:c/r@t%")
    assert (result.use_tls, result.use_ssl) == (True, False)


def test_smtps_url_is_implicit_tls_on_465():
    result = config(url="smtps://user:pass@mail.example.org")
    assert result.problems == []
    assert (result.port, result.use_tls, result.use_ssl) == (465, False, True)


def test_an_explicit_port_wins_over_the_schemes_default():
    assert config(url="smtps://mail.example.org:2465").port == 2465
    assert config(url="smtp://mail.example.org:2525").port == 2525


def test_smtp_insecure_url_is_plain_smtp_on_25_for_a_local_relay():
    result = config(url="smtp+insecure://127.0.0.1")
    assert result.problems == []
    assert (result.port, result.use_tls, result.use_ssl) == (25, False, False)


def test_a_password_without_tls_is_refused_in_production_only():
    url = "smtp+insecure://user:hunter2-password@relay.internal:25"
    [problem] = config(url=url).problems
    assert "without TLS" in problem
    assert config(url=url, production=False).problems == []


def test_console_and_file_urls():
    assert config(url="console://").backend == CONSOLE_BACKEND
    result = config(url="file:///srv/tollgate/mail")
    assert (result.backend, result.mail_dir, result.problems) == (
        EML_FILE_BACKEND,
        "/srv/tollgate/mail",
        [],
    )
    assert config(url="file://").mail_dir == ""  # the default directory
    assert config(url="file://var/mail").problems  # "var" would be a host: a relative path


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtpx://user:sekret-pass@host", "unknown scheme ('smtpx')"),
        ("mail.example.org:587", "unknown scheme (none)"),
        ("user:sekret-pass@host://x", "unknown scheme (none)"),
        ("smtp://user:sekret-pass@host:99999", "invalid port"),
        ("smtp://user:sekret-pass@host:abc", "invalid port"),
        ("smtp://user:sekret-pass@host:0", "invalid port"),
        ("smtp://user:sekret-pass@:587", "names no host"),
        ("smtp://user:sekret-pass@host/path?x=1", "no path and no query"),
        ("smtp://user:sekret-pass@[::1", "not a valid URL"),
    ],
)
def test_malformed_urls_are_named_without_quoting_the_password(url, expected):
    problems = config(url=url).problems
    assert len(problems) == 1
    assert expected in problems[0]
    assert "sekret" not in problems[0]


def test_email_url_and_email_host_together_are_two_sources_of_truth():
    problems = config(url="smtp://mail.example.org", host="other.example.org").problems
    assert problems == ["EMAIL_URL and EMAIL_HOST are both set; keep one."]


def test_email_host_keeps_working_with_starttls_by_default():
    result = config(host="mail.example.org", user="u", password="p")
    assert result.problems == []
    assert (result.backend, result.port, result.use_tls, result.use_ssl) == (
        SMTP_BACKEND,
        587,
        True,
        False,
    )


def test_email_host_with_use_ssl_is_implicit_tls_on_465():
    result = config(host="mail.example.org", use_ssl=True)
    assert (result.port, result.use_tls, result.use_ssl, result.problems) == (465, False, True, [])
    assert config(host="mail.example.org", use_ssl=True, port=2465).port == 2465


def test_email_host_with_both_tls_flags_is_refused():
    [problem] = config(host="mail.example.org", use_ssl=True, use_tls=True).problems
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL" in problem


def test_email_port_past_65535_is_refused():
    assert config(host="mail.example.org", port=70000).problems == [
        "EMAIL_PORT must be a TCP port, 1 to 65535."
    ]


def test_without_configuration_tests_keep_mail_in_memory_and_others_write_eml_files():
    assert config(testing=True).backend == LOCMEM_BACKEND
    assert config(testing=False).backend == EML_FILE_BACKEND


def test_email_backend_overrides_the_backend_but_keeps_the_transport():
    result = config(url="smtps://u:p@mail.example.org", backend="myproject.mail.Backend")
    assert (result.backend, result.host, result.use_ssl) == (
        "myproject.mail.Backend",
        "mail.example.org",
        True,
    )


def test_anymail_url_selects_the_providers_backend_and_its_settings():
    result = config(
        url="anymail://postmark?server_token=abc%2Fdef+ghi&api_url=https%3A%2F%2Fapi.example.org%2F"
    )
    assert result.problems == []
    assert result.backend == "anymail.backends.postmark.EmailBackend"
    assert result.esp == "postmark"
    assert result.anymail == {
        "POSTMARK_SERVER_TOKEN": "abc/def+ghi",  # a plus stays a plus
        "POSTMARK_API_URL": "https://api.example.org/",
    }


def test_an_unknown_anymail_provider_is_refused():
    [problem] = config(url="anymail://nosuchesp?api_key=x").problems
    assert "does not know ('nosuchesp')" in problem
    assert config(url="anymail://?api_key=x").problems


def test_anymail_not_installed_is_a_clear_configuration_error():
    def nothing_installed(name: str) -> bool:
        return False

    [problem] = config(url="anymail://postmark", module_exists=nothing_installed).problems
    assert "pip install 'tollgate[anymail]'" in problem
    [problem] = config(
        backend="anymail.backends.postmark.EmailBackend", module_exists=nothing_installed
    ).problems
    assert "pip install 'tollgate[anymail]'" in problem


def test_webhook_secret_is_user_and_a_long_password():
    assert config(webhook_secrets=[WEBHOOK_SECRET]).anymail == {"WEBHOOK_SECRET": [WEBHOOK_SECRET]}
    for weak in ("nocolon", "user:short", ":Zq3kT9vB1mN6xR2pL8wY"):
        [problem] = config(webhook_secrets=[WEBHOOK_SECRET, weak]).problems
        assert "ANYMAIL_WEBHOOK_SECRET" in problem
        assert weak not in problem


def test_the_config_repr_never_shows_the_password():
    result = config(url="smtps://user:hunter2-password@mail.example.org")
    assert "hunter2" not in repr(result)


def run_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "ANYMAIL_"))}
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_SSL, s.ANYMAIL)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={
            **clean,
            "TOLLGATE_ENV": "test",
            "DJANGO_SETTINGS_MODULE": "tollgate.config.settings",
            **env,
        },
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_settings_read_email_url_from_a_secret_file(tmp_path):
    secret = tmp_path / "email_url"
    secret.write_text("smtps://user:pass@mail.example.org\n")
    result = run_settings({"EMAIL_URL_FILE": str(secret), "EMAIL_HOST": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:4] == [SMTP_BACKEND, "mail.example.org", "465", "True"]


def test_settings_refuse_to_start_on_a_bad_email_url_without_showing_it():
    result = run_settings({"EMAIL_URL": "smtp://user:hunter2-password@mail.example.org:99999"})
    assert result.returncode != 0
    assert "EMAIL_URL has an invalid port" in result.stderr
    assert "hunter2" not in result.stderr
