"""The security headers every response carries: Content-Security-Policy and Permissions-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from functools import lru_cache

from django.template import TemplateDoesNotExist
from django.template.loader import get_template

# The fixed part of the policy. Nothing here allows inline code: scripts and styles run only from
# our own origin or with the per-request nonce.
_BASE_POLICY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default-src", ("'self'",)),
    ("script-src", ("'self'", "{nonce}")),
    ("style-src", ("'self'", "{nonce}")),
    ("img-src", ("'self'", "data:")),
    ("font-src", ("'self'",)),
    ("connect-src", ("'self'",)),
    ("form-action", ("'self'",)),
    ("frame-ancestors", ("'none'",)),
    ("base-uri", ("'none'",)),
    ("object-src", ("'none'",)),
)

# Every powerful feature is off, except payment (gateways' payment sheets) and WebAuthn (passkeys)
# for our own origin.
PERMISSIONS_POLICY = ", ".join(
    (
        "accelerometer=()",
        "autoplay=()",
        "bluetooth=()",
        "camera=()",
        "display-capture=()",
        "encrypted-media=()",
        "geolocation=()",
        "gyroscope=()",
        "hid=()",
        "idle-detection=()",
        "magnetometer=()",
        "microphone=()",
        "midi=()",
        "payment=(self)",
        "picture-in-picture=()",
        "publickey-credentials-create=(self)",
        "publickey-credentials-get=(self)",
        "screen-wake-lock=()",
        "serial=()",
        "usb=()",
        "xr-spatial-tracking=()",
    )
)

ADMIN_PATH_PREFIX = "/admin/"  # where tollgate.config.urls mounts the admin site


def new_nonce() -> str:
    """A fresh nonce: base64 of 16 random bytes, unguessable and never reused."""
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


def content_security_policy(*, nonce: str, extra: Mapping[str, Sequence[str]], path: str) -> str:
    """The policy for one response: the fixed policy, the operator's extra sources, and (for admin
    pages only) the hashes of the admin's own inline styles. Built once per set of sources; each
    response only puts its own nonce in."""
    admin = path.startswith(ADMIN_PATH_PREFIX)
    key = (id(extra), admin)
    cached = _policies.get(key)
    if cached is None or cached[0] is not extra:
        cached = _policies[key] = (extra, _policy_template(extra, admin=admin))
    return cached[1].replace(_NONCE_MARK, f"'nonce-{nonce}'")


# The built policies, by (identity of the extra sources, admin page): a handful per process.
_policies: dict[tuple[int, bool], tuple[Mapping[str, Sequence[str]], str]] = {}
_NONCE_MARK = "{nonce}"


def _policy_template(extra: Mapping[str, Sequence[str]], *, admin: bool) -> str:
    directives: dict[str, list[str]] = {name: list(sources) for name, sources in _BASE_POLICY}
    for name, sources in extra.items():
        current = directives.setdefault(name, ["'self'"])
        for source in sources:
            if source not in current:
                current.append(source)
    if admin:
        # Django 5.2's admin has no inline scripts, but the change list inlines one <style> block
        # (a column width, rendered when a ModelAdmin hides its actions). Allowing that exact text
        # by hash, on admin pages only, keeps the admin intact without opening 'unsafe-inline'.
        directives["style-src"].extend(admin_inline_style_hashes())
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def style_hash(text: str) -> str:
    """The CSP hash source allowing an inline <style> element whose content is exactly ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@lru_cache(maxsize=1)
def admin_inline_style_hashes() -> tuple[str, ...]:
    """Hashes of the inline <style> blocks in the installed admin's change-list template, read
    from the template itself so they follow Django upgrades."""
    try:
        source = get_template("admin/change_list.html").template.source  # type: ignore[attr-defined]
    except TemplateDoesNotExist:
        return ()
    blocks = re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)
    return tuple(style_hash(block) for block in blocks)
