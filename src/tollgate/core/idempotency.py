"""Idempotent requests: a request that moves money is done once per key, and its result is stored.

Every request that moves money or creates billable state carries a key chosen by the client (API:
the ``Idempotency-Key`` header; forms: a hidden single-use token from :func:`form_token_issue`). The
services run their work through :func:`idempotent`::

    same key, same request       -> the first request's result (its stored response)
    same key, different request  -> IdempotencyKeyReused (422)
    same key, first still running -> IdempotencyKeyInProgress (409)

"The same request" means the same operation with the same parameters: the record keeps the SHA-256
of their canonical JSON. Keys belong to a scope (whose key it is: a customer's public id), so two
clients never collide; a key is remembered for ``IDEMPOTENCY_RETENTION_HOURS``, then purged, and a
key reused after that is a new request.

How a request goes, and why it survives a crash at any point:

1. **Claim**: the record is inserted ``in_progress`` in its own committed transaction *before* any
   work starts, so a concurrent duplicate finds it (on PostgreSQL its insert waits on the unique
   index until the claim commits, then reads it). The claim carries a lease token.
2. **Checkpoint**: the work writes the reference of its first committed effect (the subscription it
   created, the payment attempt it recorded) into the record *in the same transaction* as that
   effect, with :meth:`IdempotencyClaim.checkpoint`. Either both commit or neither does.
3. **Complete**: the final result is stored and the record becomes ``completed``.

If the work raises, the record is released: ``failed`` when nothing was committed (the same request
may be sent again and runs afresh), ``completed`` with the checkpoint when an effect was (its result
stands; the error is still raised to this caller). If the process dies, the claim stays in progress
until its lease (``IDEMPOTENCY_LEASE_SECONDS``) runs out; then the next request with the key
completes it from its checkpoint, or, when there is none, takes the claim over and runs the work. A
claim taken over can no longer checkpoint or complete (its lease token no longer matches), so the
old worker's transaction is rolled back rather than recording a second effect. The money itself is
guarded below this layer too: one live subscription per customer and one live payment attempt per
invoice are database constraints, and gateway calls carry a key derived from (invoice, attempt).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog
from django.conf import settings
from django.core import signing
from django.db import DatabaseError, IntegrityError, models, transaction

from tollgate.core import clock
from tollgate.core.errors import (
    FormTokenInvalid,
    IdempotencyKeyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
)
from tollgate.core.models import IdempotencyRecord

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=models.Model)

KEY_MAX_LENGTH = 255
PURGE_BATCH_SIZE = 1000
_State = IdempotencyRecord.State


@dataclass(frozen=True, slots=True)
class IdempotencySettings:
    retention: dt.timedelta
    lease: dt.timedelta


def idempotency_settings() -> IdempotencySettings:
    return IdempotencySettings(
        retention=dt.timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS),
        lease=dt.timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS),
    )


# --- Keys and fingerprints ----------------------------------------------------------------------------
def idempotency_key_check(key: str) -> str:
    """The key if it is 1 to 255 printable ASCII characters (as Stripe accepts); refused otherwise."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= KEY_MAX_LENGTH
        or not all(" " <= char <= "~" for char in key)
        or key.strip() != key
    ):
        raise IdempotencyKeyInvalid(details={"field": "idempotency_key"})
    return key


def _canonical(value: Any) -> Any:
    """``value`` if it is plain JSON without floats (no float ever stands near money here)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(name, str) for name in value):
        return {name: _canonical(item) for name, item in value.items()}
    raise TypeError(f"request parameters must be plain JSON values, not {type(value).__name__}")


def request_fingerprint(*, operation: str, parameters: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of the operation and its parameters."""
    canonical = json.dumps(
        {"operation": operation, "parameters": _canonical(parameters)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- Claim, checkpoint, complete, release ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The right to do the work of one key, held until completed, released or taken over."""

    record_id: int
    lease_token: str

    def checkpoint(self, response: dict[str, Any]) -> None:
        """Store the result of the work's first effect, in the transaction that commits the effect.

        Raises :class:`IdempotencyKeyInProgress` if the claim was taken over meanwhile, which rolls
        the effect back with the caller's transaction.
        """
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("checkpoint() belongs in the transaction that commits the effect")
        held = IdempotencyRecord.objects.filter(
            pk=self.record_id, lease_token=self.lease_token, state=_State.IN_PROGRESS
        ).update(response=response)
        if not held:
            raise IdempotencyKeyInProgress()


@dataclass(frozen=True, slots=True)
class IdempotencyReplay:
    """The stored response of a request already done with this key."""

    response: dict[str, Any]


def idempotency_claim(
    *, scope: str, key: str, operation: str, parameters: Mapping[str, Any]
) -> IdempotencyClaim | IdempotencyReplay:
    """Claim ``key`` in ``scope`` for this request, in a transaction of its own committed on return;
    or return the stored response of the same request; or refuse (see the module docstring)."""
    key = idempotency_key_check(key)
    fingerprint = request_fingerprint(operation=operation, parameters=parameters)
    _releases_retry()
    # Twice at most: the row we collided with can be purged (expired) before we read it.
    for _ in range(2):
        with transaction.atomic(durable=True):
            outcome = _claim_once(
                scope=scope, key=key, operation=operation, fingerprint=fingerprint
            )
        if outcome is not None:
            return outcome
    raise IdempotencyKeyInProgress()


def _claim_once(
    *, scope: str, key: str, operation: str, fingerprint: str
) -> IdempotencyClaim | IdempotencyReplay | None:
    now = clock.now()
    token = secrets.token_hex(16)
    try:
        with transaction.atomic():
            created = IdempotencyRecord.objects.create(
                scope=scope,
                key=key,
                operation=operation,
                fingerprint=fingerprint,
                lease_token=token,
                claimed_at=now,
                created_at=now,
            )
        return IdempotencyClaim(record_id=created.pk, lease_token=token)
    except IntegrityError:
        pass
    # The key is taken: on PostgreSQL our insert waited for the other claim to commit.
    record = IdempotencyRecord.objects.select_for_update().filter(scope=scope, key=key).first()
    if record is None:
        return None
    conf = idempotency_settings()
    if record.created_at <= now - conf.retention:
        # Forgotten, whether or not the purge has removed it yet: this is a new request.
        record.operation, record.fingerprint, record.created_at = operation, fingerprint, now
        record.response, record.completed_at = None, None
        return _take_over(record, token=token, now=now)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(details={"operation": record.operation})
    if record.state == _State.COMPLETED:
        return IdempotencyReplay(response=record.response or {})
    if record.state == _State.IN_PROGRESS and record.claimed_at > now - conf.lease:
        raise IdempotencyKeyInProgress()
    if record.response is not None:
        # A claim abandoned after its effect committed (the worker died): that effect is the result.
        record.state, record.completed_at = _State.COMPLETED, now
        record.save(update_fields=["state", "completed_at"])
        log.warning("idempotency.completed_from_checkpoint", operation=record.operation)
        return IdempotencyReplay(response=record.response)
    if record.state == _State.IN_PROGRESS:
        log.warning("idempotency.claim_taken_over", operation=record.operation)
    return _take_over(record, token=token, now=now)


def _take_over(record: IdempotencyRecord, *, token: str, now: dt.datetime) -> IdempotencyClaim:
    record.state, record.lease_token, record.claimed_at = _State.IN_PROGRESS, token, now
    record.error_code = ""
    record.save()
    return IdempotencyClaim(record_id=record.pk, lease_token=token)


def idempotency_complete(*, claim: IdempotencyClaim, response: dict[str, Any]) -> None:
    """Store the final response; from now on the same request gets it back."""
    with transaction.atomic(durable=True):
        held = IdempotencyRecord.objects.filter(
            pk=claim.record_id, lease_token=claim.lease_token, state=_State.IN_PROGRESS
        ).update(state=_State.COMPLETED, response=response, completed_at=clock.now())
    if not held:
        log.warning("idempotency.claim_lost", record=claim.record_id)


def idempotency_release(*, claim: IdempotencyClaim, error: BaseException) -> None:
    """The work raised: ``failed`` (free for a retry of the same request) when nothing committed,
    ``completed`` with the checkpoint when an effect did. Never masks ``error``.

    When the database refuses the release too (it is why the work failed, most likely), the
    process keeps it and writes it before its next claim (``_releases_retry``): the record decides
    then, from what committed, so a late release is as safe as a prompt one. Until then, or if the
    process ends first, the lease frees the key."""
    code = str(getattr(error, "code", "") or type(error).__name__)[:64]
    try:
        _release(claim, code)
    except DatabaseError:
        log.exception("idempotency.release_failed", record=claim.record_id)
        with _pending_lock:
            if len(_pending_releases) < _PENDING_RELEASES_MAX:
                _pending_releases.append((claim, code))


def _release(claim: IdempotencyClaim, code: str) -> None:
    with transaction.atomic(durable=True):
        record = (
            IdempotencyRecord.objects.select_for_update()
            .filter(pk=claim.record_id, lease_token=claim.lease_token, state=_State.IN_PROGRESS)
            .first()
        )
        if record is None:
            return
        record.error_code = code
        if record.response is None:
            record.state = _State.FAILED
        else:
            record.state, record.completed_at = _State.COMPLETED, clock.now()
        record.save(update_fields=["state", "error_code", "completed_at"])


# Releases the database refused, kept by this process until it answers again (bounded: past the
# bound, the lease frees the keys).
_PENDING_RELEASES_MAX = 1000
_pending_releases: list[tuple[IdempotencyClaim, str]] = []
_pending_lock = threading.Lock()


def _releases_retry() -> None:
    """Write the releases the database refused, oldest first; stop at the first refusal."""
    if not _pending_releases:
        return
    with _pending_lock:
        pending = _pending_releases[:]
        _pending_releases.clear()
    for index, (claim, code) in enumerate(pending):
        try:
            _release(claim, code)
        except DatabaseError:
            with _pending_lock:
                _pending_releases[:0] = pending[index:]
            return
        log.info("idempotency.release_retried", record=claim.record_id)


# --- The wrapper the services use ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PublicIdResult(Generic[M]):
    """Stores a model result as its public id and reads it back fresh on a replay."""

    model: type[M]

    def dump(self, result: M) -> dict[str, Any]:
        return {"object": self.model._meta.label_lower, "id": getattr(result, "public_id")}  # noqa: B009

    def load(self, response: Mapping[str, Any]) -> M:
        return self.model._default_manager.get(public_id=response["id"])


def idempotent(
    *,
    scope: str,
    key: str,
    operation: str,
    parameters: Mapping[str, Any],
    result: PublicIdResult[M],
    work: Callable[[IdempotencyClaim], M],
) -> M:
    """Run ``work`` once for ``key`` in ``scope``: the first request runs it; the same request again
    gets the first result (as it is now, read fresh); a different one is refused. ``work`` receives
    the claim and checkpoints its first effect with it. Must not run inside a transaction."""
    outcome = idempotency_claim(scope=scope, key=key, operation=operation, parameters=parameters)
    if isinstance(outcome, IdempotencyReplay):
        return result.load(outcome.response)
    try:
        produced = work(outcome)
    except BaseException as exc:
        idempotency_release(claim=outcome, error=exc)
        raise
    idempotency_complete(claim=outcome, response=result.dump(produced))
    return produced


# --- Retention --------------------------------------------------------------------------------------------
def idempotency_purge(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete records older than the retention period, in batches; returns how many."""
    cutoff = clock.now() - idempotency_settings().retention
    deleted = 0
    while ids := list(
        IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
            :batch_size
        ]
    ):
        with transaction.atomic():
            count, _ = IdempotencyRecord.objects.filter(pk__in=ids, created_at__lt=cutoff).delete()
        deleted += count
    return deleted


# --- Hidden form tokens -------------------------------------------------------------------------------
_FORM_SALT = "tollgate.core.idempotency.form"
_CLOCK_SKEW = dt.timedelta(minutes=1)  # between the machine that issued a token and ours


def form_token_issue(*, purpose: str, owner: str) -> str:
    """A hidden single-use token for a form that moves money, bound to what the form does
    (``purpose``, e.g. ``"subscription_start"``) and to whom it was shown (``owner``: the account's
    public id). Signed, so issuing it writes nothing; put it in the form as a hidden field."""
    issued = int(clock.now().timestamp())
    return signing.dumps(
        {"p": purpose, "o": owner, "n": secrets.token_urlsafe(24), "t": issued}, salt=_FORM_SALT
    )


def form_token_redeem(*, token: str, purpose: str, owner: str) -> str:
    """Verify a submitted form token and return the idempotency key its submission runs under.

    The token is consumed by the first submission: the service stores that request under the key,
    so submitting the form again (a double click, a reload, the back button) returns the first
    result, and the same token with other values is refused. A token that was not issued for this
    form and owner, or is older than the retention period, raises :class:`FormTokenInvalid`.
    """
    try:
        data = signing.loads(token, salt=_FORM_SALT)
    except signing.BadSignature as exc:
        raise FormTokenInvalid(details={"field": "form_token"}) from exc
    if (
        not isinstance(data, dict)
        or data.get("p") != purpose
        or data.get("o") != owner
        or not isinstance(data.get("t"), int)
        or not isinstance(data.get("n"), str)
    ):
        raise FormTokenInvalid(details={"field": "form_token"})
    # Never older than the record its first submission leaves, so a resubmission always finds it.
    age = clock.now() - dt.datetime.fromtimestamp(data["t"], tz=dt.UTC)
    if not -_CLOCK_SKEW <= age <= idempotency_settings().retention:
        raise FormTokenInvalid(details={"field": "form_token", "expired": True})
    return f"form-{data['n']}"
