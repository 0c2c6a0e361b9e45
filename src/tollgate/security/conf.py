"""Parsers for the security settings, used by ``tollgate.config.settings`` at start-up.

Each returns the parsed value and a list of problems, so a misconfigured deployment is told about
every mistake at once (see ``tollgate.config.env``). Nothing here reads Django settings.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tollgate.security.policies import POLICIES, parse_rate

# Directives operators may extend (payment gateways load scripts, frames and form targets from
# their own hosts). frame-ancestors, base-uri and object-src stay locked whatever the configuration.
CSP_EXTENSIBLE_DIRECTIVES = frozenset(
    {
        "script-src",
        "style-src",
        "img-src",
        "font-src",
        "connect-src",
        "form-action",
        "frame-src",
        "media-src",
        "worker-src",
        "manifest-src",
    }
)
# data:/blob: can carry active content, so they are accepted only where browsers treat the result
# as passive media.
_SCHEME_SOURCES = {"data:": {"img-src", "font-src", "media-src"}, "blob:": {"img-src", "media-src"}}
_HOST_SOURCE = re.compile(r"^(https?|wss?)://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s;,'\"]*)?$")

# Storages that are shared between processes, or (memory) private to one, and that support the
# moving-window strategy Tollgate counts with.
RATELIMIT_STORAGE_SCHEMES = frozenset(
    {
        "memory",
        "redis",
        "rediss",
        "redis+unix",
        "redis+sentinel",
        "redis+cluster",
        "valkey",
        "valkeys",
        "valkey+unix",
    }
)


def parse_rate_overrides(text: str) -> tuple[dict[str, str], list[str]]:
    """``name=rate,name=rate`` (``TOLLGATE_RATE_LIMITS``) as a mapping, and every malformed entry.

    Unknown policy names and unparseable rates are reported, never ignored: an operator who mistypes
    a limit must find out at start-up, not during an attack.
    """
    overrides: dict[str, str] = {}
    problems: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, rate = (piece.strip() for piece in entry.partition("="))
        if not sep or name not in POLICIES:
            known = ", ".join(sorted(POLICIES))
            problems.append(f"TOLLGATE_RATE_LIMITS: {entry!r} does not name a policy ({known}).")
            continue
        try:
            parse_rate(rate)
        except ValueError:
            problems.append(
                f"TOLLGATE_RATE_LIMITS: {rate!r} for {name} is not a rate like 10/5minute."
            )
            continue
        overrides[name] = rate
    return overrides, problems


def parse_csp_extra(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """``directive=source source;directive=source`` (``TOLLGATE_CSP_EXTRA``) as a mapping, and
    every rejected entry.

    Only host sources (``https://js.example.com``, ``https://*.example.com``, ``wss://...``) are
    accepted, plus ``data:``/``blob:`` for media directives: keywords such as ``'unsafe-inline'``,
    bare wildcards and scheme-only sources would undo the policy, so they are refused.
    """
    extra: dict[str, list[str]] = {}
    problems: list[str] = []
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        directive, sep, sources_text = (piece.strip() for piece in entry.partition("="))
        directive = directive.lower()
        if not sep or directive not in CSP_EXTENSIBLE_DIRECTIVES:
            allowed = ", ".join(sorted(CSP_EXTENSIBLE_DIRECTIVES))
            problems.append(
                f"TOLLGATE_CSP_EXTRA: {entry!r} must be <directive>=<sources>, one of {allowed}."
            )
            continue
        sources = sources_text.split()
        rejected = [s for s in sources if not _acceptable_source(directive, s)]
        if rejected or not sources:
            problems.append(
                f"TOLLGATE_CSP_EXTRA: {directive} accepts host sources such as https://js.example.com;"
                f" refused: {' '.join(rejected) or '(nothing given)'}."
            )
            continue
        current = extra.setdefault(directive, [])
        for source in sources:
            if source not in current:
                current.append(source)
    return extra, problems


def _acceptable_source(directive: str, source: str) -> bool:
    if source in _SCHEME_SOURCES:
        return directive in _SCHEME_SOURCES[source]
    return bool(_HOST_SOURCE.match(source))


# The prefix becomes a KEYS pattern when limits are reset: glob characters would widen it to other
# applications' keys.
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def ratelimit_key_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot namespace Tollgate's rate-limit keys, or None when it can."""
    if not _KEY_PREFIX.match(prefix):
        return (
            "TOLLGATE_RATELIMIT_KEY_PREFIX may hold only letters, digits, '.', '_' and '-'"
            " (1 to 64 of them)."
        )
    return None


def ratelimit_storage_problem(url: str) -> str | None:
    """Why ``url`` cannot hold Tollgate's rate limits, or None when it can."""
    scheme = urlsplit(url).scheme
    if scheme not in RATELIMIT_STORAGE_SCHEMES:
        supported = ", ".join(sorted(RATELIMIT_STORAGE_SCHEMES))
        # Only the scheme is echoed: the URL may carry a password.
        return f"TOLLGATE_RATELIMIT_STORAGE_URL must use one of: {supported} (got {scheme!r})."
    return None
