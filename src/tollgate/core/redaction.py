"""Helpers that keep personal data and secrets out of logs and error reports."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Keys whose values are never written anywhere but the database (matched case-insensitively, by part).
SENSITIVE_KEY_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "session",
    "csrf",
    "cookie",
    "authorization",
    "card",
    "cvc",
    "cvv",
    "otp",
    "code",
    "signature",
    "dsn",
)
_ALLOWED_KEYS = {"event", "request_id", "status_code", "code_version", "message_id", "idempotency"}

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SECRETISH = re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+")


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``."""
    local, _, domain = email.partition("@")
    if not domain:
        return REDACTED
    return f"{local[:1]}***@{domain}"


def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in _ALLOWED_KEYS:
        return False
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def scrub_text(text: str) -> str:
    """Mask emails, card-like numbers, bearer credentials and API keys inside free text."""
    text = _SECRETISH.sub(REDACTED, text)
    text = _BEARER.sub(r"\1 " + REDACTED, text)
    text = _CARD.sub(REDACTED, text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def scrub(value: Any, *, depth: int = 0) -> Any:
    """Recursively redact sensitive keys and scrub strings in a structure of dicts, lists and text."""
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_sensitive_key(key) else scrub(
                item, depth=depth + 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(scrub(item, depth=depth + 1) for item in value)
    if isinstance(value, str):
        return scrub_text(value)
    return value
