"""Tollgate settings, read from the environment (see ``.env.example`` for every variable).

Profiles (``TOLLGATE_ENV``): ``development`` (the embedded default), ``test`` and ``production``.
Production refuses to start on an unsafe configuration and lists every problem at once.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext

from tollgate.config.email import email_config
from tollgate.config.env import Env
from tollgate.config.payments import dunning_retry_days, sandbox_webhook_secrets, stripe_csp_add
from tollgate.config.production import payment_gateway_problems, production_problems
from tollgate.ops.backup_conf import backup_key_problem, backup_s3_problems
from tollgate.security.conf import (
    parse_csp_extra,
    parse_rate_overrides,
    ratelimit_key_prefix_problem,
    ratelimit_storage_problem,
)

django_stubs_ext.monkeypatch()  # generic admin/queryset classes at run time, for typing
env = Env()

BASE_DIR = Path(__file__).resolve().parents[3]
TOLLGATE_ENV = env.choice("TOLLGATE_ENV", ("development", "test", "production"), "development")
PRODUCTION = TOLLGATE_ENV == "production"
TESTING = TOLLGATE_ENV == "test"
DATA_DIR = Path(env.str("TOLLGATE_DATA_DIR", str(BASE_DIR / "var"))).resolve()


def _development_secret_key() -> str:
    """A per-installation key kept under var/, so sessions survive restarts of the embedded default."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


# --- Core -----------------------------------------------------------------------------------------
# Off in every profile: Django's debug pages list every URL pattern and show tracebacks to whoever
# reaches the server. A developer opts in with DEBUG=true (`DEBUG=true make run`).
DEBUG = env.bool("DEBUG", False)
if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY", "")
elif TESTING:
    SECRET_KEY = env.str("SECRET_KEY", "test-only-" + "x" * 50)
else:
    SECRET_KEY = env.str("SECRET_KEY", "") or _development_secret_key()
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
# The address and port `serve` (`make run`) listens on, by the usual HOST/PORT conventions (a
# container sets HOST=0.0.0.0); the site's address, in links and emails, follows the port unless
# TOLLGATE_SITE_URL says otherwise (a proxy in front, another host name).
HOST = env.str("HOST", "127.0.0.1")
PORT = env.int("PORT", 8000, minimum=1)
if PORT > 65535:
    env.problems.append("PORT must be a TCP port, 1 to 65535.")
SITE_URL = env.str("TOLLGATE_SITE_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "tollgate.config.admin.TollgateAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "corsheaders",
    "huey.contrib.djhuey",
    "ninja",  # serves the API docs' assets locally (no CDN)
    "pgtrigger",  # database triggers keeping the audit trail and the ledger append-only
    # Tollgate's apps come before allauth so their templates override allauth's.
    "tollgate.core",
    "tollgate.audit",
    "tollgate.accounts",
    "tollgate.catalog",
    "tollgate.organisations",
    "tollgate.billing",
    "tollgate.notifications",
    "tollgate.security",
    "tollgate.ops",
    "tollgate.integrations",
    "tollgate.legacy",
    "tollgate.api",
    "tollgate.web",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
]

MIDDLEWARE = [
    "tollgate.ops.middleware.RequestContextMiddleware",
    "tollgate.security.middleware.SecurityHeadersMiddleware",
    "tollgate.security.middleware.RequestLimitsMiddleware",
    "tollgate.security.middleware.ControlCharactersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tollgate.accounts.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "tollgate.accounts.middleware.UserSessionActivityMiddleware",
    "tollgate.security.middleware.RateLimitMiddleware",
    "tollgate.accounts.middleware.AtomicAccountViewsMiddleware",
]
# Health, metrics, the API and the inbound webhooks never use a session: they skip the middleware
# that only pages need (tollgate.config.handlers). Exact paths, then path prefixes.
LEAN_ROUTES = (("/healthz", "/readyz", "/metrics"), ("/api/", "/webhooks/"))
PAGE_ONLY_MIDDLEWARE = {
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tollgate.accounts.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "tollgate.accounts.middleware.UserSessionActivityMiddleware",
    "tollgate.accounts.middleware.AtomicAccountViewsMiddleware",
}
LEAN_MIDDLEWARE = [name for name in MIDDLEWARE if name not in PAGE_ONLY_MIDDLEWARE]

ROOT_URLCONF = "tollgate.config.urls"
WSGI_APPLICATION = "tollgate.config.wsgi.application"
ASGI_APPLICATION = "tollgate.config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Operators override any template by placing a file of the same name here.
        "DIRS": [
            str(p) for p in [Path(env.str("TOLLGATE_TEMPLATE_DIR", str(DATA_DIR / "templates")))]
        ],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tollgate.web.context_processors.branding",
                "tollgate.web.context_processors.billing_alerts",
                "tollgate.web.context_processors.integration_return",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'tollgate.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
DB_ENGINE = DATABASES["default"]["ENGINE"]
USING_SQLITE = DB_ENGINE == "django.db.backends.sqlite3"
if USING_SQLITE:
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the worker write while web processes read; IMMEDIATE avoids upgrade deadlocks.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
            " PRAGMA busy_timeout=20000;"
        ),
    }
    if TOLLGATE_ENV == "development":  # the embedded default makes its own data directory
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
else:
    DATABASES["default"]["OPTIONS"] = {
        # A request waits at most 5 s for a pooled connection, then fails rather than piling up.
        "pool": {
            "min_size": 1,
            "max_size": env.int("TOLLGATE_DB_POOL_MAX", 10, minimum=1),
            "timeout": 5,
        },
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, rate limits and the worker ------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "tollgate.ops.cache.RedisCache",  # core's, counting hits and misses
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "tollgate",
            # A Redis that stops answering must fail requests fast, not hang every thread.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
elif TESTING:
    CACHES = {"default": {"BACKEND": "tollgate.ops.cache.LocMemCache"}}
else:
    # The embedded default runs a web process and a worker: a per-process memory cache would keep
    # what the worker drops (a plan change, a revoked API key). Files under var/ are one cache
    # for every process on the machine.
    CACHES = {
        "default": {
            "BACKEND": "tollgate.ops.cache.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    }
RATELIMIT_STORAGE_URL = env.str(
    "TOLLGATE_RATELIMIT_STORAGE_URL", REDIS_URL if REDIS_URL else "memory://"
)
if (_problem := ratelimit_storage_problem(RATELIMIT_STORAGE_URL)) is not None:
    env.problems.append(_problem)
RATELIMIT_ENABLED = env.bool("TOLLGATE_RATELIMIT_ENABLED", True)
# Every rate-limit key in a shared Redis starts with this, so resetting limits never touches other
# data; give each installation sharing one Redis its own prefix.
RATELIMIT_KEY_PREFIX = env.str("TOLLGATE_RATELIMIT_KEY_PREFIX", "tollgate-rl")
if (_problem := ratelimit_key_prefix_problem(RATELIMIT_KEY_PREFIX)) is not None:
    env.problems.append(_problem)
# Per-policy rates replacing the defaults in tollgate.security.policies: "login-ip=20/5minute,...".
RATE_LIMIT_OVERRIDES, _problems = parse_rate_overrides(env.str("TOLLGATE_RATE_LIMITS", ""))
env.problems.extend(_problems)
TRUSTED_PROXIES = env.int("TOLLGATE_TRUSTED_PROXIES", 0, minimum=0)
# Web server processes `serve` starts: TOLLGATE_WEB_WORKERS, else the conventional WEB_CONCURRENCY.
WEB_WORKERS = env.int("TOLLGATE_WEB_WORKERS", env.int("WEB_CONCURRENCY", 1, minimum=1), minimum=1)
# Threads per web process: at most 8, and no more than granian runs without warning that they
# "seem quite high" (2 x CPU cores + 1): 5 on a 2-core machine. A request's thread mostly waits on
# the database, so an operator may raise it (`serve` says why granian then warns).
WEB_THREADS = env.int("TOLLGATE_WEB_THREADS", min(8, 2 * (os.cpu_count() or 1) + 1), minimum=1)

HUEY = {
    "name": "tollgate",
    "immediate": TESTING,
    "utc": True,
    "consumer": {
        "workers": env.int("TOLLGATE_WORKER_THREADS", 2, minimum=1),
        "worker_type": "thread",
    },
}
if REDIS_URL and not TESTING:
    HUEY |= {"huey_class": "huey.RedisHuey", "url": REDIS_URL}
else:
    HUEY |= {"huey_class": "huey.SqliteHuey", "filename": str(DATA_DIR / "huey.sqlite3")}

# --- Accounts ---------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# auth.W004: email uniqueness is enforced case-insensitively by a functional unique constraint.
# security.W021: HSTS preload is an operator's opt-in (TOLLGATE_HSTS_PRELOAD); it is hard to undo.
SILENCED_SYSTEM_CHECKS = ["auth.W004", "security.W021"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    # Hashing cost is not what the tests are about; Argon2 is still exercised by a dedicated test.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
MFA_TOTP_ISSUER = env.str("TOLLGATE_SITE_NAME", "Tollgate")

from tollgate.config.accounts import *  # noqa: E402, F403  (allauth's fixed options)
from tollgate.config.accounts import PASSWORD_MAX_LENGTH  # noqa: E402

# Sessions: rotated at login (Django), idle timeout and an absolute lifetime (accounts.middleware).
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_IDLE_TIMEOUT = env.int("TOLLGATE_SESSION_IDLE_SECONDS", 2 * 60 * 60, minimum=60)
SESSION_ABSOLUTE_LIFETIME = env.int("TOLLGATE_SESSION_MAX_AGE_SECONDS", 24 * 60 * 60, minimum=300)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_LIFETIME
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "tollgate.web.errors.csrf_failure"

# --- Transport security ---------------------------------------------------------------------------
SECURE_COOKIES = env.bool("TOLLGATE_SECURE_COOKIES", PRODUCTION)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
if SECURE_COOKIES:
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
SECURE_SSL_REDIRECT = env.bool("TOLLGATE_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("TOLLGATE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("TOLLGATE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Sources added to the Content-Security-Policy (payment gateways' scripts, frames and form targets):
# "script-src=https://js.example.com;frame-src=https://js.example.com". Host sources only.
CSP_EXTRA, _problems = parse_csp_extra(env.str("TOLLGATE_CSP_EXTRA", ""))
env.problems.extend(_problems)
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = False

# Request limits: bodies over the limit get 413, too many fields 400; never truncated.
MAX_REQUEST_BODY_BYTES = env.int("TOLLGATE_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("TOLLGATE_MAX_FIELDS", 200, minimum=10)
MAX_FIELD_VALUE_LENGTH = env.int("TOLLGATE_MAX_FIELD_LENGTH", 10_000, minimum=PASSWORD_MAX_LENGTH)

# CORS: only the JSON API, only listed origins, no credentials unless asked for.
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOWED_ORIGINS = env.list("TOLLGATE_CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "idempotency-key", "x-request-id")
CORS_ALLOW_CREDENTIALS = env.bool("TOLLGATE_CORS_ALLOW_CREDENTIALS", False)
CORS_PREFLIGHT_MAX_AGE = 600

# --- Static files and templates ---------------------------------------------------------------------
STATIC_URL = "/static/"
# Collected assets (production); development serves them straight from the apps.
STATIC_ROOT = (
    Path(env.str("TOLLGATE_STATIC_ROOT", str(DATA_DIR / "static"))) if PRODUCTION else None
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = TOLLGATE_ENV == "development"  # edited assets show without a restart

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Branding (operators change these without touching code) --------------------------------------
TOLLGATE_BRAND = {
    "name": env.str("TOLLGATE_SITE_NAME", "Tollgate"),
    "support_email": env.str("TOLLGATE_SUPPORT_EMAIL", "support@example.com"),
    "primary_color": env.str("TOLLGATE_BRAND_COLOR", "#3b5bdb"),
    "logo_url": env.str("TOLLGATE_LOGO_URL", ""),
}

# --- Email ------------------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env.str(
    "DEFAULT_FROM_EMAIL", f"{TOLLGATE_BRAND['name']} <no-reply@example.com>"
)
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# How mail leaves (tollgate.config.email): EMAIL_BACKEND, else EMAIL_URL (smtp://, smtps://,
# smtp+insecure://, console://, file:///dir, anymail://<provider>?<setting>=...), else EMAIL_HOST
# and its variables, else .eml files under TOLLGATE_MAIL_DIR (Django's memory outbox in tests).
# The URL is not kept as a setting: it may hold a password, and settings show up in error reports.
_email = email_config(
    url=env.str("EMAIL_URL", ""),
    backend=env.str("EMAIL_BACKEND", ""),
    host=env.str("EMAIL_HOST", ""),
    port=env.int("EMAIL_PORT", None, minimum=1),
    user=env.str("EMAIL_HOST_USER", ""),
    password=env.str("EMAIL_HOST_PASSWORD", ""),
    use_tls=env.bool("EMAIL_USE_TLS", None),
    use_ssl=env.bool("EMAIL_USE_SSL", False),
    # user:password pairs the provider's bounce and complaint webhooks authenticate with.
    webhook_secrets=env.list("ANYMAIL_WEBHOOK_SECRET", []),
    testing=TESTING,
    production=PRODUCTION,
)
env.problems.extend(_email.problems)
EMAIL_BACKEND = _email.backend
EMAIL_HOST = _email.host
EMAIL_PORT = _email.port
EMAIL_HOST_USER = _email.user
EMAIL_HOST_PASSWORD = _email.password
EMAIL_USE_TLS = _email.use_tls
EMAIL_USE_SSL = _email.use_ssl
EMAIL_TIMEOUT = 20
ANYMAIL = _email.anymail
MAIL_DIR = Path(_email.mail_dir or env.str("TOLLGATE_MAIL_DIR", str(DATA_DIR / "mail")))
# The embedded default prints links from outgoing mail so a developer can follow them.
MAIL_ECHO_LINKS = env.bool("TOLLGATE_MAIL_ECHO_LINKS", TOLLGATE_ENV == "development")

# --- Payments -----------------------------------------------------------------------------------------
PAYMENT_GATEWAY = env.choice("TOLLGATE_GATEWAY", ("sandbox", "stripe"), "sandbox")
# Production runs the offline sandbox only when asked to explicitly (a demo installation).
ALLOW_SANDBOX_IN_PRODUCTION = env.bool("TOLLGATE_ALLOW_SANDBOX_IN_PRODUCTION", False)

# --- Integration API and outgoing webhooks --------------------------------------------------------------
# API keys start tg_live_ or tg_test_; a key of the other mode is refused (a test key never works on
# the live installation).
API_KEY_MODE = env.choice(
    "TOLLGATE_API_KEY_MODE", ("live", "test"), "live" if PRODUCTION else "test"
)
# How long a rotated key keeps working beside its replacement, unless the rotation says otherwise.
API_KEY_ROTATION_OVERLAP_HOURS = env.int("TOLLGATE_API_KEY_ROTATION_OVERLAP_HOURS", 24, minimum=0)
# Hosts the success and cancel URLs of checkout links may point at (the operator's product).
API_REDIRECT_HOSTS = env.list("TOLLGATE_API_REDIRECT_HOSTS", [])
# Outgoing webhooks to loopback, link-local and private addresses are refused unless allowed here
# (a receiver on the same machine or network).
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env.bool("TOLLGATE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", False)
WEBHOOKS_TIMEOUT_SECONDS = env.int("TOLLGATE_WEBHOOKS_TIMEOUT_SECONDS", 10, minimum=1)

# --- Stripe gateway -----------------------------------------------------------------------------------
# Keys from the Stripe dashboard: a secret (sk_) or restricted (rk_) key for the server, the
# publishable key (pk_) for Stripe.js on the card page, and the signing secrets (whsec_) of the
# webhook endpoint; several at once while a secret is rolled (old and new both accepted).
STRIPE_SECRET_KEY = env.str("TOLLGATE_STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = env.str("TOLLGATE_STRIPE_PUBLISHABLE_KEY", "")
STRIPE_WEBHOOK_SECRETS = env.list("TOLLGATE_STRIPE_WEBHOOK_SECRETS", [])
# Where the SDK sends its requests and where Stripe.js is loaded from (a local Stripe stand-in in
# tests); both origins are added to the Content-Security-Policy while Stripe is the gateway.
STRIPE_API_BASE = env.str("TOLLGATE_STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
STRIPE_JS_URL = env.str("TOLLGATE_STRIPE_JS_URL", "https://js.stripe.com/v3/")
# Test-mode keys in production (a staging installation that never takes real money).
STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION = env.bool(
    "TOLLGATE_STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", False
)
env.problems.extend(
    payment_gateway_problems(
        gateway=PAYMENT_GATEWAY,
        production=PRODUCTION,
        allow_sandbox=ALLOW_SANDBOX_IN_PRODUCTION,
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_publishable_key=STRIPE_PUBLISHABLE_KEY,
        stripe_webhook_secrets=STRIPE_WEBHOOK_SECRETS,
        stripe_allow_test_keys=STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION,
        stripe_urls=[STRIPE_API_BASE, STRIPE_JS_URL],
    )
)
if PAYMENT_GATEWAY == "stripe":
    stripe_csp_add(CSP_EXTRA, js_url=STRIPE_JS_URL, api_base=STRIPE_API_BASE)

# --- Billing --------------------------------------------------------------------------------------
# Invoice numbers: "customer" = prefix + gapless sequence per customer (7F3KQ2AB-0004), so workers
# finalizing different customers' invoices never wait for each other; "account" = one gapless
# sequence for the whole installation (INV-000123), which serializes every finalization on one row.
BILLING_INVOICE_NUMBERING = env.choice(
    "TOLLGATE_INVOICE_NUMBERING", ("customer", "account"), "customer"
)
BILLING_INVOICE_NUMBER_PREFIX = env.str("TOLLGATE_INVOICE_NUMBER_PREFIX", "INV")
# Dunning: after a renewal payment fails, retry this many days after the first failure; after the
# last retry fails (or at once on a hard decline) the subscription becomes "canceled" or "unpaid".
BILLING_DUNNING_RETRY_DAYS, _problems = dunning_retry_days(
    env.list("TOLLGATE_DUNNING_RETRY_DAYS", ["1", "3", "5", "7"])
)
env.problems.extend(_problems)
BILLING_DUNNING_FINAL_STATUS = env.choice(
    "TOLLGATE_DUNNING_FINAL_STATUS", ("canceled", "unpaid"), "canceled"
)
# A trial that ends without a card on file: "canceled" ends the subscription; "incomplete" keeps it,
# with its first invoice open until the customer adds a card.
BILLING_TRIAL_END_WITHOUT_CARD = env.choice(
    "TOLLGATE_TRIAL_END_WITHOUT_CARD", ("canceled", "incomplete"), "canceled"
)

# --- Reconciliation -----------------------------------------------------------------------------------
# Once a day, at this hour (UTC, 0-23), the worker compares Tollgate's payments, refunds and ledger
# with the gateway's own list of transactions for the last TOLLGATE_RECONCILIATION_DAYS days. The
# windows overlap on purpose: a day missed (worker down) is still covered by the next run.
BILLING_RECONCILIATION_HOUR = env.int("TOLLGATE_RECONCILIATION_HOUR", 3, minimum=0)
if BILLING_RECONCILIATION_HOUR > 23:
    env.problems.append("TOLLGATE_RECONCILIATION_HOUR must be an hour of the day, 0 to 23.")
BILLING_RECONCILIATION_DAYS = env.int("TOLLGATE_RECONCILIATION_DAYS", 3, minimum=1)

# --- Sandbox gateway ----------------------------------------------------------------------------------
# The offline test processor signs the events it sends to Tollgate's inbox (card setups, 3-D Secure
# outcomes) the way Stripe signs webhooks, with this secret; the fallbacks (earlier secrets) stay
# valid during a rotation. Unset, both are derived from SECRET_KEY and its fallbacks, so every
# installation has its own secret and none is written in the code.
SANDBOX_WEBHOOK_SECRET, SANDBOX_WEBHOOK_SECRET_FALLBACKS, _problems = sandbox_webhook_secrets(
    secret=env.str("TOLLGATE_SANDBOX_WEBHOOK_SECRET", ""),
    fallbacks=env.list("TOLLGATE_SANDBOX_WEBHOOK_SECRET_FALLBACKS", []),
    secret_key=SECRET_KEY,
    secret_key_fallbacks=SECRET_KEY_FALLBACKS,
)
env.problems.extend(_problems)

# --- Idempotency and money flows --------------------------------------------------------------------
# Requests that move money are stored under their idempotency key (API header, form token) this long;
# a key reused after that is a new request. Hidden form tokens are accepted for as long.
IDEMPOTENCY_RETENTION_HOURS = env.int("TOLLGATE_IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1)
# How long a claimed key stays "in progress" (409 to duplicates) without finishing before another
# request may take it over (a crashed worker's claim); longer than any gateway call can take.
IDEMPOTENCY_LEASE_SECONDS = env.int("TOLLGATE_IDEMPOTENCY_LEASE_SECONDS", 300, minimum=30)
# A payment the bank wants the customer to authenticate (3-D Secure) fails after this many hours
# without it; dunning then goes on as after a decline.
BILLING_PAYMENT_ACTION_EXPIRY_HOURS = env.int("TOLLGATE_PAYMENT_ACTION_EXPIRY_HOURS", 23, minimum=1)

# --- Backups ------------------------------------------------------------------------------------------
# `python -m tollgate backup` writes here; keep it on another disk than the database, or copy it off.
BACKUP_DIR = Path(env.str("TOLLGATE_BACKUP_DIR", str(DATA_DIR / "backups"))).resolve()
# 32 random bytes as base64 (`python -m tollgate backup --generate-key`): backups are encrypted
# (AES-256-GCM) when set. Keep a copy of the key away from the backups: without it they are noise.
BACKUP_KEY = env.str("TOLLGATE_BACKUP_KEY", "")
if (_problem := backup_key_problem(BACKUP_KEY)) is not None:
    env.problems.append(_problem)
# Retention: the newest backup of each of the last N days and of each of the last M ISO weeks.
BACKUP_KEEP_DAILY = env.int("TOLLGATE_BACKUP_KEEP_DAILY", 7, minimum=1)
BACKUP_KEEP_WEEKLY = env.int("TOLLGATE_BACKUP_KEEP_WEEKLY", 4, minimum=0)
# The worker backs up daily at minute 30 of this hour (UTC), then runs the restore drill.
BACKUP_SCHEDULE = env.bool("TOLLGATE_BACKUP_SCHEDULE", False)
BACKUP_HOUR = env.int("TOLLGATE_BACKUP_HOUR", 2, minimum=0)
if BACKUP_HOUR > 23:
    env.problems.append("TOLLGATE_BACKUP_HOUR must be an hour of the day, 0 to 23.")
# PostgreSQL: the scratch database the restore drill creates and drops (default: <name>_restore_drill).
BACKUP_DRILL_DATABASE = env.str("TOLLGATE_BACKUP_DRILL_DATABASE", "")
# Optional copy of every backup to an S3-compatible bucket (s3://bucket/prefix), through boto3 (the
# s3 extra); credentials come from boto3's usual places (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
BACKUP_S3_URL = env.str("TOLLGATE_BACKUP_S3_URL", "")
# Another store than AWS (MinIO, Ceph, R2, ...): its URL; the region if the store wants one.
BACKUP_S3_ENDPOINT = env.str("TOLLGATE_BACKUP_S3_ENDPOINT", "")
BACKUP_S3_REGION = env.str("TOLLGATE_BACKUP_S3_REGION", "")
# Server-side encryption asked of the store for each object: "", "AES256" or "aws:kms".
BACKUP_S3_SSE = env.str("TOLLGATE_BACKUP_S3_SSE", "")
env.problems.extend(
    backup_s3_problems(
        BACKUP_S3_URL,
        endpoint=BACKUP_S3_ENDPOINT,
        region=BACKUP_S3_REGION,
        server_side_encryption=BACKUP_S3_SSE,
    )
)

# --- Observability ------------------------------------------------------------------------------------
LOG_LEVEL = env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOG_FORMAT = env.choice(
    "TOLLGATE_LOG_FORMAT", ("json", "console"), "json" if PRODUCTION else "console"
)
SENTRY_DSN = env.str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", TOLLGATE_ENV)
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0)
# The release events are reported under (the deployed build: a version or a commit).
SENTRY_RELEASE = env.str("SENTRY_RELEASE", "")
METRICS_TOKEN = env.str("TOLLGATE_METRICS_TOKEN", "")
# Set by multi-process servers so every process reports into one set of metrics files.
METRICS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", "")
# SQL statements at least this slow are counted (tollgate_db_slow_queries_total).
SLOW_QUERY_MS = env.int("TOLLGATE_SLOW_QUERY_MS", 50, minimum=1)
# /readyz reports the worker as failing when it has not checked in (once a minute) for this long,
# and fails readiness for it only when TOLLGATE_WORKER_REQUIRED is on (the production default).
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env.int(
    "TOLLGATE_WORKER_HEARTBEAT_MAX_AGE_SECONDS", 300, minimum=90
)
WORKER_REQUIRED = env.bool("TOLLGATE_WORKER_REQUIRED", PRODUCTION)
LOGGING_CONFIG = None  # tollgate.ops.logging configures logging once, below.

ALLOW_SQLITE_IN_PRODUCTION = env.bool("TOLLGATE_ALLOW_SQLITE_IN_PRODUCTION", False)

if PRODUCTION:
    env.problems.extend(
        production_problems(
            debug=DEBUG,
            secret_key=SECRET_KEY,
            secret_key_fallbacks=SECRET_KEY_FALLBACKS,
            allowed_hosts=ALLOWED_HOSTS,
            using_sqlite=USING_SQLITE,
            allow_sqlite=ALLOW_SQLITE_IN_PRODUCTION,
            redis_url=REDIS_URL,
            ssl_redirect=SECURE_SSL_REDIRECT,
            secure_cookies=SECURE_COOKIES,
            hsts_seconds=SECURE_HSTS_SECONDS,
            site_url_scheme=urlsplit(SITE_URL).scheme,
            metrics_token=METRICS_TOKEN,
        )
    )
env.raise_if_problems(f"Tollgate cannot start ({TOLLGATE_ENV} profile):")

from tollgate.ops.logging import configure_logging  # noqa: E402

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)
if SENTRY_DSN:
    from tollgate.ops.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )
