"""How outgoing email is sent, from ``EMAIL_URL`` or the ``EMAIL_HOST`` variables (pure parsing).

Precedence, highest first:

1. ``EMAIL_BACKEND`` names the backend class outright (the transport settings below still apply);
2. ``EMAIL_URL``: ``smtp://`` (STARTTLS, port 587), ``smtps://`` (implicit TLS, port 465),
   ``smtp+insecure://`` (no TLS, port 25: a relay on the same machine), ``console://``,
   ``file:///path`` (.eml files) or ``anymail://<esp>?<setting>=<value>`` (a provider's API through
   the optional ``anymail`` extra);
3. ``EMAIL_HOST`` with ``EMAIL_PORT``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``,
   ``EMAIL_USE_TLS`` / ``EMAIL_USE_SSL``;
4. nothing: Django's in-memory outbox in tests, .eml files under ``TOLLGATE_MAIL_DIR`` otherwise.

Problems never quote the URL or a password: they name the part that is wrong.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"
LOCMEM_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
EML_FILE_BACKEND = "tollgate.notifications.backends.EmlFileBackend"
ANYMAIL_INSTALL_HINT = "pip install 'tollgate[anymail]'"

# scheme -> (use_tls, use_ssl, default port)
_SMTP_SCHEMES = {
    "smtp": (True, False, 587),
    "smtps": (False, True, 465),
    "smtp+insecure": (False, False, 25),
}
_SCHEMES = (*_SMTP_SCHEMES, "console", "file", "anymail")
_SCHEME_NAME = re.compile(r"^[a-z][a-z0-9+.-]{0,19}$")
_ESP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SETTING_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MIN_WEBHOOK_PASSWORD_LENGTH = 16


@dataclass
class EmailConfig:
    """The Django email settings chosen, plus the anymail ones (``ANYMAIL``)."""

    backend: str
    host: str = ""
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False
    mail_dir: str = ""  # .eml files: overrides TOLLGATE_MAIL_DIR when set
    esp: str = ""  # the anymail provider, when one is chosen
    anymail: dict[str, str | list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # the password never reaches a log line or a traceback
        return f"EmailConfig(backend={self.backend!r}, host={self.host!r}, port={self.port})"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


def email_config(
    *,
    url: str,
    backend: str,
    host: str,
    port: int | None,
    user: str,
    password: str,
    use_tls: bool | None,
    use_ssl: bool,
    webhook_secrets: list[str],
    testing: bool,
    production: bool,
    module_exists: Callable[[str], bool] = _module_exists,
) -> EmailConfig:
    """The email settings for these environment values (``None`` where a variable is unset)."""
    if url:
        config = _from_url(url, production=production, module_exists=module_exists)
        if host:
            config.problems.append("EMAIL_URL and EMAIL_HOST are both set; keep one.")
    elif host:
        config = _from_host(
            host=host, port=port, user=user, password=password, use_tls=use_tls, use_ssl=use_ssl
        )
    else:
        config = EmailConfig(backend=LOCMEM_BACKEND if testing else EML_FILE_BACKEND)
    if backend:
        config.backend = backend
        if backend.startswith("anymail.") and not module_exists("anymail"):
            config.problems.append(
                f"EMAIL_BACKEND is an anymail backend but anymail is not installed"
                f" ({ANYMAIL_INSTALL_HINT})."
            )
    config.problems += _webhook_secret_problems(webhook_secrets)
    if webhook_secrets:
        config.anymail["WEBHOOK_SECRET"] = webhook_secrets
    return config


def _from_host(
    *, host: str, port: int | None, user: str, password: str, use_tls: bool | None, use_ssl: bool
) -> EmailConfig:
    if use_tls is None:
        use_tls = not use_ssl
    config = EmailConfig(
        backend=SMTP_BACKEND,
        host=host,
        port=port if port is not None else (465 if use_ssl else 587),
        user=user,
        password=password,
        use_tls=use_tls,
        use_ssl=use_ssl,
    )
    if use_tls and use_ssl:
        config.problems.append(
            "EMAIL_USE_TLS and EMAIL_USE_SSL are both on: use EMAIL_USE_SSL for implicit TLS"
            " (port 465) or EMAIL_USE_TLS for STARTTLS (port 587), not both."
        )
    if not 1 <= config.port <= 65535:
        config.problems.append("EMAIL_PORT must be a TCP port, 1 to 65535.")
    return config


def _from_url(url: str, *, production: bool, module_exists: Callable[[str], bool]) -> EmailConfig:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        # Only a well-formed scheme is quoted: "user:secret@host://" must not echo the secret.
        shown = f"{scheme!r}" if _SCHEME_NAME.match(scheme) else "none"
        return EmailConfig(
            backend=SMTP_BACKEND,
            problems=[
                f"EMAIL_URL has an unknown scheme ({shown}): use smtp:// (STARTTLS),"
                " smtps:// (implicit TLS), smtp+insecure://, console://, file:///path"
                " or anymail://<provider>."
            ],
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket
        return EmailConfig(backend=SMTP_BACKEND, problems=["EMAIL_URL is not a valid URL."])
    if scheme in _SMTP_SCHEMES:
        return _smtp_from_url(parts, scheme=scheme, production=production)
    if scheme == "console":
        return EmailConfig(backend=CONSOLE_BACKEND)
    if scheme == "file":
        return _file_from_url(parts)
    return _anymail_from_url(parts, module_exists=module_exists)


def _smtp_from_url(parts: SplitResult, *, scheme: str, production: bool) -> EmailConfig:
    use_tls, use_ssl, default_port = _SMTP_SCHEMES[scheme]
    problems: list[str] = []
    try:
        port = parts.port if parts.port is not None else default_port
    except ValueError:  # not a number, or past 65535
        port = 0
    if port == 0:
        problems.append("EMAIL_URL has an invalid port: use a TCP port, 1 to 65535.")
        port = default_port
    host = parts.hostname or ""
    if not host:
        problems.append(f"EMAIL_URL names no host: {scheme}://user:password@host:port.")
    if parts.query or (parts.path not in ("", "/")):
        problems.append("EMAIL_URL for SMTP takes no path and no query parameters.")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if production and scheme == "smtp+insecure" and password:
        problems.append(
            "EMAIL_URL sends a password without TLS (smtp+insecure://) in production:"
            " use smtp:// or smtps://."
        )
    return EmailConfig(
        backend=SMTP_BACKEND,
        host=host,
        port=port,
        user=user,
        password=password,
        use_tls=use_tls,
        use_ssl=use_ssl,
        problems=problems,
    )


def _file_from_url(parts: SplitResult) -> EmailConfig:
    # file:// alone keeps TOLLGATE_MAIL_DIR; file:///srv/mail writes there.
    config = EmailConfig(backend=EML_FILE_BACKEND, mail_dir=unquote(parts.path))
    if parts.netloc not in ("", "localhost"):  # file://var/mail: "var" would be a host
        config.problems.append(
            "EMAIL_URL file:// needs an absolute directory, like file:///srv/tollgate/mail."
        )
    return config


def _anymail_from_url(parts: SplitResult, *, module_exists: Callable[[str], bool]) -> EmailConfig:
    esp = parts.netloc.lower()
    config = EmailConfig(backend=f"anymail.backends.{esp}.EmailBackend", esp=esp)
    if not _ESP_NAME.match(esp):
        config.problems.append(
            "EMAIL_URL anymail:// names no provider: anymail://postmark?server_token=..."
        )
        return config
    if not module_exists("anymail"):
        config.problems.append(
            f"EMAIL_URL selects anymail, which is not installed ({ANYMAIL_INSTALL_HINT})."
        )
    elif not module_exists(f"anymail.backends.{esp}"):
        config.problems.append(f"EMAIL_URL names a provider anymail does not know ({esp!r}).")
    for pair in filter(None, parts.query.split("&")):
        name, _, value = pair.partition("=")
        name = unquote(name).lower()
        if not _SETTING_NAME.match(name):
            config.problems.append("EMAIL_URL has a malformed anymail setting name.")
            continue
        # "+" stays a plus: provider keys may contain one; spaces are written %20.
        config.anymail[f"{esp.upper()}_{name.upper()}"] = unquote(value)
    return config


def _webhook_secret_problems(secrets: list[str]) -> list[str]:
    for secret in secrets:
        user, colon, password = secret.partition(":")
        if not colon or not user or len(password) < MIN_WEBHOOK_PASSWORD_LENGTH:
            return [
                "ANYMAIL_WEBHOOK_SECRET must be user:password with a password of at least"
                f" {MIN_WEBHOOK_PASSWORD_LENGTH} random characters (several: comma-separated)."
            ]
    return []
