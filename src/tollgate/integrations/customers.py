"""Customers as the operator's product knows them: created or found by the product's own user id
(``external_id``), named in every call by either that id or Tollgate's (``cus_...``).

A customer created here gets an account with no password: nobody can sign in with it until the
operator asks for a login (an email invites the person to set a password), and the person reaches
their billing pages through the signed links of ``integrations.links``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from tollgate.accounts.models import User
from tollgate.accounts.services import password_set_invite
from tollgate.audit.services import audit_record
from tollgate.billing.models import Customer
from tollgate.billing.selectors import customer_of_member
from tollgate.core import outbox
from tollgate.core.errors import Conflict, NotFound, ValidationFailed
from tollgate.core.events import event_publish
from tollgate.organisations.cache import account_cache_key
from tollgate.organisations.steps import personal_organisation_create_locked

# Tollgate's own customer ids; a member's account id names the customer of their organisation;
# any other value names a customer by its external id.
PUBLIC_ID = re.compile(r"cus_[0-9A-HJKMNP-TV-Z]{20}")
MEMBER_ID = re.compile(r"usr_[0-9A-HJKMNP-TV-Z]{20}")
EXTERNAL_ID_MAX_LENGTH = 255
CACHE_SECONDS = 3600
OUTBOX_KIND = "integrations.customer_changed"


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    default_message = "No customer has this id or external id."


class CustomerEmailTaken(Conflict):
    code = "customer_email_taken"
    default_message = (
        "An account with this email address exists already. To link it to your user, set its "
        "external_id with PATCH /api/v1/customers/{id}."
    )


class ExternalIdTaken(Conflict):
    code = "external_id_taken"
    default_message = "Another customer has this external id already."


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """What the API needs to know about a customer on its hot path (cached; no personal data)."""

    pk: int
    public_id: str
    created_at: dt.datetime


def _ref_cache_key(ref: str) -> str:
    # A reference is the caller's text: keep the cache key short and free of personal data.
    # (v2: the reference no longer carries the opening account; older copies are never read.)
    return f"integrations:customer-ref:v2:{_digest(ref)}"


def _ref_cache_key_v1(ref: str) -> str:
    return f"integrations:customer-ref:{_digest(ref)}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _ref_check(ref: str) -> str:
    if (
        not isinstance(ref, str)
        or not 1 <= len(ref) <= EXTERNAL_ID_MAX_LENGTH
        or not all(" " < char <= "~" for char in ref)
    ):
        raise CustomerNotFound()
    return ref


def customer_lookup(ref: str) -> Customer:
    """The customer ``ref`` names (a ``cus_`` id; a member's ``usr_`` id: their organisation's;
    else an external id), or CustomerNotFound."""
    ref = _ref_check(ref)
    if MEMBER_ID.fullmatch(ref):
        user_pk = User.objects.filter(public_id=ref).values_list("pk", flat=True).first()
        customer = customer_of_member(user_id=user_pk) if user_pk is not None else None
    else:
        field = "public_id" if PUBLIC_ID.fullmatch(ref) else "external_id"
        customer = Customer.objects.filter(**{field: ref}).first()
    if customer is None:
        raise CustomerNotFound()
    return customer


def _owner_pk(customer: Customer) -> int:
    if customer.user_id is None:  # handed over to its organisation when its opener left
        raise CustomerEmailTaken(
            "This customer belongs to an organisation; its owners manage its account.",
            details={"customer": customer.public_id},
        )
    return customer.user_id


def customer_ref_of(customer: Customer) -> CustomerRef:
    return CustomerRef(
        pk=customer.pk,
        public_id=customer.public_id,
        created_at=customer.created_at,
    )


def _resolve_cache_key(ref: str) -> str:
    # A member's reference is dropped when their membership changes (``organisations.cache``).
    return account_cache_key(ref, "api-ref") if MEMBER_ID.fullmatch(ref) else _ref_cache_key(ref)


def customer_resolve_cache_keys(ref: object) -> list[str]:
    """What :func:`customer_resolve` reads from the cache for ``ref`` (nothing for a reference it
    refuses), for a caller that reads several keys at once and passes what it found."""
    try:
        return [_resolve_cache_key(_ref_check(ref))]  # type: ignore[arg-type]
    except CustomerNotFound:
        return []


def customer_resolve(ref: str, *, found: Mapping[str, Any] | None = None) -> CustomerRef:
    """:func:`customer_lookup` for the hot path: cached for every process, dropped after commit
    when the customer's external id changes. ``found``: what the caller read already of
    :func:`customer_resolve_cache_keys` (a key missing from it is read here)."""
    ref = _ref_check(ref)
    key = _resolve_cache_key(ref)
    cached = found[key] if found is not None and key in found else cache.get(key)
    if isinstance(cached, CustomerRef):
        return cached
    resolved = customer_ref_of(customer_lookup(ref))
    cache.set(key, resolved, CACHE_SECONDS)
    return resolved


def customer_ref_forget(payload: dict[str, Any]) -> None:
    """Outbox handler: drop cached references to a customer (idempotent)."""
    refs = payload["refs"]
    # The v1 copies too: a process of the release before serving during a rolling deploy.
    cache.delete_many([*map(_ref_cache_key, refs), *map(_ref_cache_key_v1, refs)])


def _refs_changed(refs: list[str]) -> None:
    outbox.outbox_enqueue(
        kind=OUTBOX_KIND,
        payload={"refs": refs},
        dedupe_key=f"{OUTBOX_KIND}:{secrets.token_hex(12)}",
    )


def _email_check(email: str) -> str:
    email = (email or "").strip()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed("Send a valid email address.", details={"field": "email"}) from exc
    return email


def _external_id_check(external_id: str | None) -> str | None:
    if external_id is None:
        return None
    if (
        not 1 <= len(external_id) <= EXTERNAL_ID_MAX_LENGTH
        or not all(" " < char <= "~" for char in external_id)
        or PUBLIC_ID.fullmatch(external_id)
    ):
        raise ValidationFailed(
            "external_id is 1 to 255 printable characters without spaces, and not a Tollgate "
            "customer id.",
            details={"field": "external_id"},
        )
    return external_id


def _name_check(name: str) -> str:
    name = (name or "").strip()
    if len(name) > 150:
        raise ValidationFailed("name is at most 150 characters.", details={"field": "name"})
    return name


@dataclass(frozen=True, slots=True)
class CustomerFound:
    customer: Customer
    created: bool


def customer_create_or_find(
    *,
    email: str,
    external_id: str | None = None,
    name: str = "",
    create_login: bool = False,
    actor: Any = None,
) -> CustomerFound:
    """The customer with ``external_id`` if there is one (nothing changes); else a new customer
    and its password-less account. With ``create_login`` the person is emailed a link to set a
    password, so they can also sign in directly. A new customer is audited and published as
    ``customer.created``. Refused when another account has the email (CustomerEmailTaken)."""
    external_id = _external_id_check(external_id)
    email, name = _email_check(email), _name_check(name)
    if external_id is not None:
        existing = Customer.objects.filter(external_id=external_id).first()
        if existing is not None:
            return CustomerFound(customer=existing, created=False)
    try:
        with transaction.atomic(durable=True):
            customer = _create(email=email, external_id=external_id, name=name, actor=actor)
            if create_login:
                _login_invite(User.objects.get(pk=_owner_pk(customer)))
    except IntegrityError as exc:
        # A concurrent request created the same external id, or the email was taken meanwhile.
        if external_id is not None:
            existing = Customer.objects.filter(external_id=external_id).first()
            if existing is not None:
                return CustomerFound(customer=existing, created=False)
        raise _email_taken(email) from exc
    return CustomerFound(customer=customer, created=True)


def _email_taken(email: str) -> CustomerEmailTaken:
    owner = Customer.objects.filter(user__email__iexact=email).only("public_id").first()
    return CustomerEmailTaken(details={"customer": owner.public_id} if owner else {})


def _create(*, email: str, external_id: str | None, name: str, actor: Any) -> Customer:
    if User.objects.filter(email__iexact=email).exists():
        raise _email_taken(email)
    user = User.objects.create_user(email=email, password=None, name=name)
    customer = Customer.objects.create(
        user=user,
        email=email,
        name=name,
        external_id=external_id,
        organisation=personal_organisation_create_locked(user=user, name=name),
    )
    audit_record(
        action="customer.created",
        actor=actor,
        target=customer,
        details={"external_id": external_id, "source": "api"},
    )
    event_publish(
        event_type="customer.created",
        object_type="customer",
        object_id=customer.public_id,
        key=customer.public_id,
    )
    return customer


def _login_invite(user: User) -> None:
    """Email the person a link to choose a password (the password-reset flow, which also marks
    the address verified when they use it)."""
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"primary": True, "verified": False}
    )
    password_set_invite(user=user)


def customer_update(
    *,
    customer: Customer,
    email: str | None = None,
    name: str | None = None,
    external_id: str | None = None,
    actor: Any = None,
) -> Customer:
    """Change what the operator's product knows about the customer: the email (where receipts
    go, and the account's address), the name, or the external id (to link an existing account to
    the product's user). Audited; published as ``customer.updated``."""
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = _email_check(email)
    if name is not None:
        changes["name"] = _name_check(name)
    if external_id is not None:
        changes["external_id"] = _external_id_check(external_id)
    try:
        with transaction.atomic(durable=True):
            locked = Customer.objects.select_for_update().get(pk=customer.pk)
            changed = {k: v for k, v in changes.items() if getattr(locked, k) != v}
            if not changed:
                return locked
            owner = User.objects.get(pk=_owner_pk(locked))
            if "email" in changed:
                _account_email_change(owner, changed["email"])
            if "name" in changed:
                owner.name = changed["name"]
                owner.save(update_fields=["name"])
            old_external_id = locked.external_id
            for name_, value in changed.items():
                setattr(locked, name_, value)
            locked.save(update_fields=list(changed))
            audit_record(
                action="customer.updated",
                actor=actor,
                target=locked,
                details={"fields": sorted(changed)},
            )
            if "external_id" in changed and old_external_id:
                _refs_changed([old_external_id])
            event_publish(
                event_type="customer.updated",
                object_type="customer",
                object_id=locked.public_id,
                key=f"{locked.public_id}:{secrets.token_hex(8)}",
            )
    except IntegrityError as exc:
        if "external_id" in changes:
            raise ExternalIdTaken(details={"field": "external_id"}) from exc
        raise CustomerEmailTaken(details={"field": "email"}) from exc
    return locked


def _account_email_change(user: User, email: str) -> None:
    if User.objects.filter(email__iexact=email).exclude(pk=user.pk).exists():
        raise CustomerEmailTaken(details={"field": "email"})
    user.email = email
    user.save(update_fields=["email"])
    # The new address has not been verified by the person; the old one no longer applies.
    EmailAddress.objects.filter(user=user).delete()
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
