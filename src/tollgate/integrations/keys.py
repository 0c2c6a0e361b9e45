"""API keys: issued, rotated and revoked here; checked on every API request.

A key reads ``tg_<mode>_<lookup><secret>``: the mode (``live`` or ``test``) so a key is never used
on the wrong installation and secret scanners can find leaked ones, 12 characters that find the key
(not secret), then 40 random characters (238 bits). Only the SHA-256 of the whole key is stored; a
presented key is found by its lookup part and compared in constant time. A key that is missing,
malformed, unknown, revoked, expired or of the other mode is refused with one and the same answer.

Checking a key costs no database query once it is cached: the cache holds what the check needs
(never the secret), for every process alike, and every change to a key drops the cached copy after
commit through the outbox. When a key was last used is written at most once per few minutes per key
and process, by the worker, never in the request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from tollgate.audit.services import audit_record
from tollgate.billing.entitlements import entitlements_for_customer
from tollgate.billing.models import Customer
from tollgate.catalog.services import API_OPERATION_CLASSES
from tollgate.core import clock, outbox
from tollgate.core.errors import NotAuthenticated, PermissionDenied, ValidationFailed
from tollgate.integrations.models import ApiKey
from tollgate.security.policies import parse_rate

SCOPES = (
    "entitlements:read",
    "usage:write",
    "customers:write",
    "billing:read",
    "webhooks:manage",
)
# What a customer's own key may do: read its entitlements and billing, report its usage.
CUSTOMER_SCOPES = ("entitlements:read", "usage:write", "billing:read")
# The plan feature that lets a customer create keys of their own.
CUSTOMER_KEYS_FEATURE = "api_access"

_ALPHABET = string.ascii_letters + string.digits
_LOOKUP_LENGTH = 12
_SECRET_LENGTH = 40
_KEY_FORMAT = re.compile(
    rf"tg_(live|test)_([A-Za-z0-9]{{{_LOOKUP_LENGTH}}})([A-Za-z0-9]{{{_SECRET_LENGTH}}})"
)
CACHE_SECONDS = 300
OUTBOX_KIND = "integrations.api_key_changed"
TOUCH_EVERY = dt.timedelta(minutes=5)
NAME_MAX_LENGTH = 100


class ApiKeyInvalid(NotAuthenticated):
    code = "not_authenticated"
    default_message = (
        "Send a valid API key as 'Authorization: Bearer tg_...'. The key may be missing, "
        "mistyped, revoked or expired."
    )


class ApiKeyScopeMissing(PermissionDenied):
    code = "scope_missing"
    default_message = "This API key does not have the scope this endpoint needs."


class ApiKeysNotInPlan(PermissionDenied):
    code = "api_keys_not_in_plan"
    default_message = "Your plan does not include API access; upgrade to create API keys."


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just created: ``secret`` is the whole key, shown to its owner once and kept nowhere."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class ApiIdentity:
    """Who is calling, as the API needs it on every request (cached; no secret inside)."""

    key_pk: int
    key_id: str
    kind: str
    scopes: frozenset[str]
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    customer_pk: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == ApiKey.Kind.OPERATOR

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiKeyScopeMissing(details={"scope": scope})

    def rate_for(self, operation: str) -> str | None:
        """The rate this caller gets for ``operation`` (read, write, usage, check); None: the
        installation's default policy. Customer keys follow their plan now, so an upgrade raises
        them at once."""
        if self.is_operator:
            rates: Mapping[str, str] = self.rate_limits
        elif self.customer_pk is not None:
            rates = entitlements_for_customer(customer_pk=self.customer_pk).api_rate_limits
        else:
            rates = {}
        return rates.get(operation) or rates.get("default")


@dataclass(frozen=True, slots=True)
class _Cached:
    secret_hash: str
    identity: ApiIdentity
    expires_at: dt.datetime | None
    revoked: bool


# --- Issuing -------------------------------------------------------------------------------------------
def _secret_hash(presented: str) -> str:
    return hashlib.sha256(presented.encode("ascii")).hexdigest()


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _scopes_check(scopes: Iterable[str], *, allowed: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes))
    allowed = tuple(allowed)
    unknown = [scope for scope in chosen if scope not in allowed]
    if not chosen or unknown:
        raise ValidationFailed(
            f"Choose one or more scopes from: {', '.join(allowed)}.",
            details={"field": "scopes", "unknown": unknown},
        )
    return chosen


def _name_check(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ValidationFailed(
            f"Give the key a name of 1 to {NAME_MAX_LENGTH} characters (what uses it).",
            details={"field": "name"},
        )
    return name


def _expiry_check(expires_at: dt.datetime | None) -> dt.datetime | None:
    if expires_at is not None and expires_at <= clock.now():
        raise ValidationFailed("The expiry must be in the future.", details={"field": "expires_at"})
    return expires_at


def rate_limits_check(rates: Mapping[str, str] | None) -> dict[str, str]:
    """Per-operation rates of an operator key, each in the ``600/minute`` notation."""
    checked: dict[str, str] = {}
    for name, rate in (rates or {}).items():
        if name not in API_OPERATION_CLASSES:
            raise ValidationFailed(
                f"Rate limits are set per {', '.join(API_OPERATION_CLASSES)}.",
                details={"field": "rate_limits", "name": str(name)[:32]},
            )
        try:
            parse_rate(str(rate))
        except ValueError as exc:
            raise ValidationFailed(
                "Write each rate as a number per period, such as '600/minute'.",
                details={"field": "rate_limits", "name": name},
            ) from exc
        checked[name] = str(rate)
    return checked


def _issue(**fields: Any) -> IssuedKey:
    mode = settings.API_KEY_MODE
    for _ in range(3):  # a clash of 12 random characters is all but impossible; be sure anyway
        lookup = _random(_LOOKUP_LENGTH)
        if not ApiKey.objects.filter(lookup=lookup).exists():
            break
    secret = f"tg_{mode}_{lookup}{_random(_SECRET_LENGTH)}"
    key = ApiKey.objects.create(
        mode=mode, lookup=lookup, secret_hash=_secret_hash(secret), **fields
    )
    return IssuedKey(key=key, secret=secret)


def _audit_details(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "kind": key.kind,
        "prefix": key.display_prefix,
        "scopes": key.scopes,
        "customer": key.customer.public_id if key.customer else None,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }


def api_key_create(
    *,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None = None,
    rate_limits: Mapping[str, str] | None = None,
    actor: Any = None,
) -> IssuedKey:
    """Issue an operator key (the operator's product: every customer) with ``scopes``. The whole
    key is returned once, in ``IssuedKey.secret``; only its hash is kept. Audited."""
    fields = {
        "name": _name_check(name),
        "kind": ApiKey.Kind.OPERATOR,
        "scopes": _scopes_check(scopes, allowed=SCOPES),
        "expires_at": _expiry_check(expires_at),
        "rate_limits": rate_limits_check(rate_limits),
    }
    return _create(fields, actor=actor)


def customer_api_key_create(
    *,
    customer: Customer,
    name: str,
    scopes: Iterable[str],
    expires_at: dt.datetime | None = None,
    actor: Any = None,
) -> IssuedKey:
    """Issue a key of ``customer``'s own: it sees and reports for that customer only, within
    :data:`CUSTOMER_SCOPES`, at the rates of the customer's plan. Refused unless the plan has the
    ``api_access`` feature. Audited."""
    if not _plan_allows_keys(customer):
        raise ApiKeysNotInPlan()
    fields = {
        "name": _name_check(name),
        "kind": ApiKey.Kind.CUSTOMER,
        "customer": customer,
        "scopes": _scopes_check(scopes, allowed=CUSTOMER_SCOPES),
        "expires_at": _expiry_check(expires_at),
    }
    return _create(fields, actor=actor)


def _create(fields: dict[str, Any], *, actor: Any) -> IssuedKey:
    created_by = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic(durable=True):
        issued = _issue(**fields, created_by=created_by)
        audit_record(
            action="api_key.created",
            actor=actor,
            target=issued.key,
            details=_audit_details(issued.key),
        )
    return issued


def _plan_allows_keys(customer: Customer) -> bool:
    return entitlements_for_customer(customer_pk=customer.pk).has(CUSTOMER_KEYS_FEATURE)


def _locked(key: ApiKey) -> ApiKey:
    # of=self: the customer is an outer join (operator keys have none), which PostgreSQL will
    # not lock.
    return ApiKey.objects.select_for_update(of=("self",)).select_related("customer").get(pk=key.pk)


def _changed(key: ApiKey) -> None:
    outbox.outbox_enqueue(
        kind=OUTBOX_KIND,
        payload={"lookup": key.lookup},
        dedupe_key=f"{OUTBOX_KIND}:{key.public_id}:{secrets.token_hex(8)}",
    )


def api_key_rotate(
    *, key: ApiKey, overlap: dt.timedelta | None = None, actor: Any = None
) -> IssuedKey:
    """Replace ``key`` with a new key of the same name, scopes, limits and owner. The old key keeps
    working for ``overlap`` (default ``TOLLGATE_API_KEY_ROTATION_OVERLAP_HOURS``), so the caller
    can switch without downtime; then it stops. A revoked or expired key cannot be rotated. Audited.
    """
    if overlap is None:
        overlap = dt.timedelta(hours=settings.API_KEY_ROTATION_OVERLAP_HOURS)
    if overlap < dt.timedelta(0) or overlap > dt.timedelta(days=30):
        raise ValidationFailed(
            "The overlap must be between 0 and 30 days.", details={"field": "overlap"}
        )
    now = clock.now()
    with transaction.atomic(durable=True):
        old = _locked(key)
        if old.customer is not None and not _plan_allows_keys(old.customer):
            raise ApiKeysNotInPlan()
        if not api_key_usable(old, at=now) or old.replaced_by_id is not None:
            raise ValidationFailed(
                "Only a working key that was not rotated before can be rotated.",
                details={"key": old.public_id},
            )
        issued = _issue(
            name=old.name,
            kind=old.kind,
            customer=old.customer,
            scopes=old.scopes,
            rate_limits=old.rate_limits,
            expires_at=old.expires_at,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        ends = now + overlap
        old.expires_at = min(old.expires_at, ends) if old.expires_at else ends
        old.replaced_by = issued.key
        old.save(update_fields=["expires_at", "replaced_by"])
        audit_record(
            action="api_key.rotated",
            actor=actor,
            target=old,
            details={
                **_audit_details(old),
                "replaced_by": issued.key.public_id,
                "old_key_works_until": old.expires_at.isoformat(),
            },
        )
        _changed(old)
    key.refresh_from_db()
    return issued


def api_key_revoke(*, key: ApiKey, actor: Any = None) -> ApiKey:
    """Stop ``key`` now (idempotent: revoking a revoked key changes nothing). Audited."""
    with transaction.atomic(durable=True):
        locked = _locked(key)
        if locked.revoked_at is None:
            locked.revoked_at = clock.now()
            locked.save(update_fields=["revoked_at"])
            audit_record(
                action="api_key.revoked", actor=actor, target=locked, details=_audit_details(locked)
            )
            _changed(locked)
    key.refresh_from_db()
    return key


def api_key_usable(key: ApiKey, *, at: dt.datetime) -> bool:
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > at)


# --- Checking a presented key -----------------------------------------------------------------------
def _cache_key(lookup: str) -> str:
    # v2: the identity no longer carries the customer's opening account; older copies are never
    # read, but still dropped for a process of the release before during a rolling deploy.
    return f"integrations:apikey:v2:{lookup}"


def api_key_cached_forget(payload: dict[str, Any]) -> None:
    """Outbox handler: drop a key's cached copy after a change (idempotent)."""
    lookup = str(payload["lookup"])
    cache.delete_many([_cache_key(lookup), f"integrations:apikey:{lookup}"])


def _lookup_of(presented: str) -> str | None:
    match = _KEY_FORMAT.fullmatch(presented or "")
    if match is None or match.group(1) != settings.API_KEY_MODE:
        return None
    return match.group(2)


def api_key_cache_keys(*, presented: str) -> list[str]:
    """What :func:`api_key_authenticate` reads from the cache for ``presented`` (nothing for a
    malformed key), for a caller that reads several keys at once and passes what it found."""
    lookup = _lookup_of(presented)
    return [] if lookup is None else [_cache_key(lookup)]


def api_key_authenticate(*, presented: str, found: Mapping[str, Any] | None = None) -> ApiIdentity:
    """The caller ``presented`` identifies, or :class:`ApiKeyInvalid` (the same refusal whatever is
    wrong with it, so nothing hints at which part was). ``found``: what the caller read already
    of :func:`api_key_cache_keys` (a key missing from it is read here)."""
    lookup = _lookup_of(presented)
    if lookup is None:
        raise ApiKeyInvalid()
    cached = _load(lookup, found)
    presented_hash = _secret_hash(presented)
    if cached is None or not hmac.compare_digest(cached.secret_hash, presented_hash):
        raise ApiKeyInvalid()
    now = clock.now()
    if cached.revoked or (cached.expires_at is not None and cached.expires_at <= now):
        raise ApiKeyInvalid()
    _touch(cached.identity, now)
    return cached.identity


def _load(lookup: str, found: Mapping[str, Any] | None = None) -> _Cached | None:
    key = _cache_key(lookup)
    cached = found[key] if found is not None and key in found else cache.get(key)
    if isinstance(cached, _Cached):
        return cached
    row = (
        ApiKey.objects.filter(lookup=lookup, mode=settings.API_KEY_MODE)
        .select_related("customer")
        .first()
    )
    if row is None:
        return None
    loaded = _Cached(
        secret_hash=row.secret_hash,
        identity=ApiIdentity(
            key_pk=row.pk,
            key_id=row.public_id,
            kind=row.kind,
            scopes=frozenset(row.scopes),
            rate_limits=dict(row.rate_limits),
            customer_pk=row.customer_id,
        ),
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
    )
    cache.set(key, loaded, CACHE_SECONDS)
    return loaded


_touched: dict[str, dt.datetime] = {}
_touched_lock = threading.Lock()


def _touch(identity: ApiIdentity, now: dt.datetime) -> None:
    """Note that the key was used: at most once per :data:`TOUCH_EVERY` per key in this process,
    and written by the worker, so a request never waits on it."""
    with _touched_lock:
        last = _touched.get(identity.key_id)
        if last is not None and abs(now - last) < TOUCH_EVERY:
            return
        _touched[identity.key_id] = now
    from tollgate.integrations.tasks import api_key_touch_task

    api_key_touch_task(identity.key_pk, now.isoformat())


def api_key_touch(*, key_pk: int, at: dt.datetime) -> None:
    """Record that the key was used at ``at`` (only ever moves forward)."""
    ApiKey.objects.filter(pk=key_pk).exclude(last_used_at__gte=at).update(last_used_at=at)
