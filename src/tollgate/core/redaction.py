"""Helpers that keep personal data and secrets out of logs, error reports and audit details.

Two layers: values under sensitive keys are replaced whole (``is_sensitive_key``), and free text is
searched for things that are secret or personal whatever key they sit under (``scrub_text``): card-like
numbers, emails, bearer/basic credentials, provider API keys, AWS access keys, private key blocks,
passwords in URLs and ``password=...``-style pairs. Every pattern is anchored so that scanning stays
linear in the length of the text, even on hostile input.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import re
import uuid
from collections.abc import Mapping, Set
from typing import Any

REDACTED = "[redacted]"
MAX_DEPTH = 12

# A key containing any of these is sensitive, whatever else it says (matched case-insensitively).
_ALWAYS_SENSITIVE_PARTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "session",
    "csrf",
    "xsrf",
    "cookie",
    "authorization",
    "credential",
    "signature",
    "private",
    "api_key",
    "apikey",
    "dsn",
    "cvc",
    "cvv",
)
# Sensitive unless the whole key is a known harmless name (``status_code``, ``currency_code``...).
_USUALLY_SENSITIVE_PARTS = ("key", "code", "card", "otp", "iban")
_HARMLESS_KEYS = frozenset(
    {
        "event",
        "request_id",
        "status_code",
        "error_code",
        "decline_code",
        "reason_code",
        "currency_code",
        "country_code",
        "language_code",
        "code_version",
        "message_id",
        "idempotency",
        "card_brand",
        "card_last4",
    }
)
# Identifiers of the error-reporting protocol: kept verbatim when they look like ids (a run of digits
# in a random hex id must not be mistaken for a card number and break the event).
_ID_KEYS = frozenset(
    {"event_id", "trace_id", "span_id", "parent_span_id", "segment_id", "profile_id", "replay_id"}
)
_HEX_ID = re.compile(r"[0-9a-fA-F-]{8,64}")

# The name part leaves out "=", "?" and "/" (valid but rare): in logs they are delimiters, as in
# ``email=jane@example.org``. The masked part can be empty, so ``a=@example.org`` is masked too.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+^_`{|}~.-])"
    r"([A-Za-z0-9!#$%&'*+^_`{|}~.-]?)[A-Za-z0-9!#$%&'*+^_`{|}~.-]*+"
    r"(@)((?:[A-Za-z0-9-]++\.)+[A-Za-z][A-Za-z0-9-]++)"
)
# The same, URL-encoded (``jane%40example.org`` in a query string); "%" cannot be part of the name.
_ENCODED_EMAIL = re.compile(
    r"(?<![A-Za-z0-9!#$&'*+^_`{|}~.-])"
    r"([A-Za-z0-9!#$&'*+^_`{|}~.-]?)[A-Za-z0-9!#$&'*+^_`{|}~.-]*+"
    r"(%40)((?:[A-Za-z0-9-]++\.)+[A-Za-z][A-Za-z0-9-]++)"
)
# 13 or more digits in a row, single spaces or dashes allowed between them: every card number
# (12-19 digits) however it is grouped, also when glued to letters or inside a longer number.
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}(?!\d)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# An Authorization header written out as text: everything after the name, whatever the scheme.
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n]+")
_PROVIDER_KEY = re.compile(
    r"(?:sk|rk|pk|tg)_(?:live|test)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9+/=_-]+"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*+://[^\s:/?#@]*+:)[^\s@/?#]++@"
)
# ``password=...``, ``"token": "..."``, ``Cookie: sessionid=...``: the value after a sensitive name.
# Names are found word by word (one scan), then the value after the name is redacted; a single regex
# with the keywords inside a word would backtrack quadratically on long words.
_ASSIGNED_NAME = re.compile(r"(?<![\w-])[\w-]++(?=['\"]?\s*+[:=])")
_ASSIGNED_VALUE = re.compile(r"['\"]?\s*+[:=]\s*+(\"[^\"\n]*+\"?|'[^'\n]*+'?|[^\s'\"&;,}\]]++)")
_SENSITIVE_NAME = re.compile(
    r"(?i)password|passwd|pwd|secret|token|session_?id|session_?key|csrf|xsrf|cookie|"
    r"api[_-]?key|access[_-]?key|private[_-]?key|signing[_-]?key|credential|cvc|cvv|otp|"
    r"card[_-]?number"
)


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``."""
    local, _, domain = email.partition("@")
    if not local or not domain:
        return REDACTED
    return f"{local[:1]}***@{domain}"


@functools.lru_cache(maxsize=4096)  # keys come from code and repeat on every log line
def is_sensitive_key(key: str) -> bool:
    """Whether a value stored under ``key`` must never be written out."""
    lowered = key.lower()
    if any(part in lowered for part in _ALWAYS_SENSITIVE_PARTS):
        return True
    if lowered in _HARMLESS_KEYS:
        return False
    return any(part in lowered for part in _USUALLY_SENSITIVE_PARTS)


def scrub_text(text: str) -> str:
    """Mask emails and redact card-like numbers, credentials and keys inside free text.

    Passes repeat until nothing changes (at most a few): a redaction can expose a pattern that was
    glued to its neighbour (``4242...4242Bearer abc`` reads as ``[redacted]Bearer abc``).
    """
    if not text or _PUBLIC_ID.fullmatch(text):
        return text  # nothing any pattern below can match
    if len(text) <= _CACHED_LENGTH:
        return _scrub_text_cached(text)
    return _scrub_text(text)


# Tollgate's own public ids (``inv_`` + 20 Crockford base32 digits): no pattern below matches one.
_PUBLIC_ID = re.compile(r"[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{20}")
# Short texts (keys, statuses, codes) repeat endlessly in logs and audit details: scrubbing is a
# pure function of the text, so their results are kept.
_CACHED_LENGTH = 64


@functools.lru_cache(maxsize=4096)
def _scrub_text_cached(text: str) -> str:
    return _scrub_text(text)


def _scrub_text(text: str) -> str:
    for _ in range(4):
        scrubbed = _scrub_text_once(text)
        if scrubbed == text:
            break
        text = scrubbed
    return text


def _scrub_text_once(text: str) -> str:
    # Card numbers first: a key pattern that ends inside a spaced card number (``whsec_0000 0000
    # 0000 0000``) would leave the rest too short to read as a card.
    text = _CARD.sub(REDACTED, text)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _PROVIDER_KEY.sub(REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _redact_assignments(text)
    text = _CARD.sub(REDACTED, text)
    text = _EMAIL.sub(_mask_email_match, text)
    return _ENCODED_EMAIL.sub(_mask_email_match, text)


def _mask_email_match(match: re.Match[str]) -> str:
    name = match.group(0)[: match.start(2) - match.start(0)]
    if name in ("***", f"{match.group(1)}***"):
        return match.group(0)  # already masked
    return f"{match.group(1)}***{match.group(2)}{match.group(3)}"


def _redact_assignments(text: str) -> str:
    parts: list[str] = []
    done = 0
    for name in _ASSIGNED_NAME.finditer(text):
        if name.start() < done or not _SENSITIVE_NAME.search(name.group()):
            continue
        value = _ASSIGNED_VALUE.match(text, name.end())
        if value is None or text.startswith(REDACTED, value.start(1)):
            continue
        quote = value.group(1)[0] if value.group(1)[0] in "'\"" else ""
        parts.append(text[done : value.start(1)])
        parts.append(f"{quote}{REDACTED}{quote}")
        done = value.end(1)
    parts.append(text[done:])
    return "".join(parts)


# Values of these types carry no free text and are kept as they are.
_PLAIN_TYPES = (bool, int, float, decimal.Decimal, dt.date, dt.time, dt.timedelta, uuid.UUID)


def scrub(value: Any, *, depth: int = 0) -> Any:
    """Recursively redact sensitive keys and scrub text in dicts, lists, tuples and sets.

    Anything else that is not a plain number, date or id (a model instance, an exception, bytes) is
    turned into its scrubbed text, since its ``repr`` is what would otherwise be written out.
    Structures nested deeper than ``MAX_DEPTH`` are redacted whole.
    """
    if depth > MAX_DEPTH:
        return REDACTED
    if value is None or isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {_scrub_key(key): _scrub_item(key, item, depth=depth) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(item, depth=depth + 1) for item in value)
    if isinstance(value, Set):
        return [scrub(item, depth=depth + 1) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return scrub_text(bytes(value).decode("utf-8", errors="replace"))
    return scrub_text(str(value))


def _scrub_key(key: Any) -> Any:
    return scrub_text(key) if isinstance(key, str) else key


def _scrub_item(key: Any, item: Any, *, depth: int) -> Any:
    name = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
    if not isinstance(name, str):
        return scrub(item, depth=depth + 1)
    if is_sensitive_key(name):
        return REDACTED
    if name in _ID_KEYS and isinstance(item, str) and _HEX_ID.fullmatch(item):
        return item
    return scrub(item, depth=depth + 1)
