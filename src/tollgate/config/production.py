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


def payment_gateway_problems(
    *,
    gateway: str,
    production: bool,
    allow_sandbox: bool,
    stripe_secret_key: str,
    stripe_publishable_key: str,
    stripe_webhook_secrets: list[str],
    stripe_allow_test_keys: bool,
    stripe_urls: list[str],
) -> list[str]:
    """Every reason the payment configuration is unsafe for the profile: the offline sandbox in
    production, test keys in production or live keys anywhere else, Stripe without its keys."""
    problems: list[str] = []
    if gateway == "sandbox" and production and not allow_sandbox:
        problems.append(
            "TOLLGATE_GATEWAY=sandbox takes no real payments; use stripe in production, or set"
            " TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION=true for a demonstration installation."
        )
    if gateway != "stripe":
        return problems
    if not stripe_secret_key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
        problems.append(
            "TOLLGATE_STRIPE_SECRET_KEY must be a Stripe secret (sk_) or restricted (rk_) key."
        )
    if not stripe_publishable_key.startswith(("pk_test_", "pk_live_")):
        problems.append("TOLLGATE_STRIPE_PUBLISHABLE_KEY must be a Stripe publishable key (pk_).")
    if not stripe_webhook_secrets or not all(
        secret.startswith("whsec_") for secret in stripe_webhook_secrets
    ):
        problems.append(
            "TOLLGATE_STRIPE_WEBHOOK_SECRETS must list the endpoint's signing secrets (whsec_)."
        )
    keys = (stripe_secret_key, stripe_publishable_key)
    live = any("_live_" in key[:8] for key in keys)
    test = any("_test_" in key[:8] for key in keys)
    if live and test:
        problems.append("The Stripe keys mix test mode and live mode; use keys of one mode.")
    if production and test and not stripe_allow_test_keys:
        problems.append(
            "The Stripe keys are test-mode keys: production takes no real payments with them. Use"
            " live keys, or set TOLLGATE_STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION=true for staging."
        )
    if not production and live:
        problems.append(
            "The Stripe keys are live-mode keys outside production: use test-mode keys here."
        )
    for url in stripe_urls:
        if not url.startswith("https://") and (production or not url.startswith("http://")):
            problems.append(f"The Stripe address {url!r} must be an https:// URL.")
    return problems
