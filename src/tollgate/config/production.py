"""The checks that keep an unsafe configuration from starting in production."""

from __future__ import annotations

MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARS = 5
KNOWN_DEFAULT_KEY_MARKERS = ("django-insecure", "changeme", "change-me", "secret", "test-only")


def secret_key_problem(name: str, key: str) -> str | None:
    if not key:
        return f"{name} is missing."
    if len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARS:
        return (
            f"{name} is too weak: use at least {MIN_SECRET_KEY_LENGTH} random characters"
            " (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    lowered = key.lower()
    if any(marker in lowered for marker in KNOWN_DEFAULT_KEY_MARKERS):
        return f"{name} looks like a known default or placeholder; generate a random one."
    return None


def production_problems(
    *,
    debug: bool,
    secret_key: str,
    secret_key_fallbacks: list[str],
    allowed_hosts: list[str],
    using_sqlite: bool,
    allow_sqlite: bool,
    redis_url: str,
    ssl_redirect: bool,
    secure_cookies: bool,
    hsts_seconds: int,
    site_url_scheme: str,
    metrics_token: str,
) -> list[str]:
    """Every reason the given production configuration is unsafe, in one list."""
    problems: list[str] = []
    if debug:
        problems.append("DEBUG is on; set DEBUG=false.")
    if (problem := secret_key_problem("SECRET_KEY", secret_key)) is not None:
        problems.append(problem)
    for index, fallback in enumerate(secret_key_fallbacks):
        if (problem := secret_key_problem(f"SECRET_KEY_FALLBACKS[{index}]", fallback)) is not None:
            problems.append(problem)
    if not allowed_hosts:
        problems.append("ALLOWED_HOSTS is empty; list the host names Tollgate is served on.")
    elif "*" in allowed_hosts:
        problems.append("ALLOWED_HOSTS contains '*'; list the host names explicitly.")
    if using_sqlite and not allow_sqlite:
        problems.append(
            "DATABASE_URL points at SQLite; use PostgreSQL, or set"
            " TOLLGATE_ALLOW_SQLITE_IN_PRODUCTION=true for a single-machine install."
        )
    if not redis_url:
        problems.append("REDIS_URL is not set; production needs Redis for cache and rate limits.")
    if not ssl_redirect:
        problems.append("TOLLGATE_SSL_REDIRECT is off; HTTPS must be enforced.")
    if not secure_cookies:
        problems.append("TOLLGATE_SECURE_COOKIES is off; cookies must be Secure in production.")
    if hsts_seconds < 31536000:
        problems.append("TOLLGATE_HSTS_SECONDS is below one year (31536000).")
    if site_url_scheme != "https":
        problems.append("TOLLGATE_SITE_URL must be an https:// URL in production.")
    if len(metrics_token) < 32:
        problems.append(
            "TOLLGATE_METRICS_TOKEN must be set (32+ characters): /metrics is not public in production."
        )
    return problems
