"""Signed links the operator's product hands to a customer: into a checkout of a chosen plan, into
their billing pages, and to an invoice's receipt PDF. The product never handles cards or passwords.

Checkout and portal links sign in one account that manages the customer's billing: an owner or
admin of its organisation the operator names, or else the account that opened the customer (an
account with no password included). They are bound to that one customer and that account,
short-lived, and work once; when used, the account must still be active and an owner or admin
there. They never sign in a staff account. A checkout link may carry a promotion code, checked
when the link is made and filled in on the checkout it leads to. Success and cancel addresses must
be on a host the operator allows (``TOLLGATE_API_REDIRECT_HOSTS``), so a link cannot send a
customer anywhere else. Receipt links show one invoice's PDF for an hour, to anyone
holding the link, and sign nobody in.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import discounts
from tollgate.billing.errors import PromotionCodeRefused
from tollgate.billing.models import Customer, Invoice
from tollgate.billing.selectors import customers_of_account
from tollgate.billing.states import SUBSCRIPTION_ENDED
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.errors import BadRequest, Conflict, NotFound, ValidationFailed
from tollgate.integrations.customers import MEMBER_ID
from tollgate.integrations.models import SignedLinkUse
from tollgate.organisations.models import BILLING_ROLES

CHECKOUT_LIFETIME = dt.timedelta(hours=24)
PORTAL_LIFETIME = dt.timedelta(minutes=5)
RECEIPT_LIFETIME = dt.timedelta(hours=1)
URL_MAX_LENGTH = 2000
_SALT = "tollgate.integrations.links"


class LinkInvalid(BadRequest):
    code = "link_invalid"
    default_message = (
        "This link has expired or was used already. Go back to where you came from and open "
        "a new one."
    )


class RedirectHostNotAllowed(ValidationFailed):
    code = "redirect_host_not_allowed"
    default_message = (
        "The address is not on a host this installation allows (TOLLGATE_API_REDIRECT_HOSTS)."
    )


class CustomerHasSubscription(Conflict):
    code = "subscription_exists"
    default_message = (
        "The customer has a subscription already; send them a portal link to change its plan."
    )


class LinkUserRefused(ValidationFailed):
    code = "link_user_refused"
    default_message = (
        "This account is not an owner or admin of the customer's organisation; a link signs in "
        "only someone who manages its billing."
    )


class LinkUserRequired(ValidationFailed):
    code = "link_user_required"
    default_message = (
        "The account that opened this customer has left its organisation: name an owner or "
        "admin of the organisation in user (their usr_ id) to sign in."
    )


@dataclass(frozen=True, slots=True)
class SignedLink:
    url: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Redeemed:
    """A used checkout or portal link: whose it is and where it leads."""

    kind: str
    user: User
    customer: Customer
    price_id: str | None
    success_url: str | None
    cancel_url: str | None
    return_url: str | None
    promotion_code: str | None = None


def redirect_url_check(url: str | None, field: str) -> str | None:
    """``url`` if it is an http(s) address on an allowed host (https in production)."""
    if url is None:
        return None
    parts = urlsplit(url)
    schemes = ("https",) if settings.PRODUCTION else ("https", "http")
    if len(url) > URL_MAX_LENGTH or parts.scheme not in schemes or not parts.hostname:
        raise ValidationFailed(
            f"{field} must be an absolute {' or '.join(schemes)} address.",
            details={"field": field},
        )
    allowed = {host.lower() for host in settings.API_REDIRECT_HOSTS}
    if parts.hostname.lower() not in allowed or parts.username or parts.password:
        raise RedirectHostNotAllowed(details={"field": field, "host": parts.hostname[:255]})
    return url


def _link(kind: str, data: dict[str, Any], lifetime: dt.timedelta) -> SignedLink:
    now = clock.now()
    token = signing.dumps(
        {"k": kind, "n": secrets.token_urlsafe(18), "t": int(now.timestamp()), **data},
        salt=_SALT,
        compress=True,
    )
    path = reverse("billing:signed_link", args=[token])
    return SignedLink(url=f"{settings.SITE_URL}{path}", expires_at=now + lifetime)


def _manages_billing(customer: Customer, user: User) -> bool:
    """Whether ``user`` is an owner or admin of ``customer``'s organisation (for a customer that
    has no organisation yet: whether it opened it), as the billing pages see it."""
    return Customer.objects.filter(
        customers_of_account(user.pk, roles=BILLING_ROLES), pk=customer.pk
    ).exists()


def _signer_refusal(customer: Customer, user: User | None) -> str | None:
    """Why a link of ``customer`` may not sign ``user`` in, or None when it may."""
    if user is None or not _manages_billing(customer, user):
        return LinkUserRefused.default_message
    if user.is_staff or user.is_superuser:
        return "Links never sign in a staff account; name another owner or admin."
    if not user.is_active:
        return "This account is deactivated; name another owner or admin."
    return None


def _signer(customer: Customer, user: str | None) -> User:
    """The account a link of ``customer`` signs in: ``user`` (a ``usr_`` id), else the account
    that opened the customer; an active owner or admin of its organisation, never staff."""
    if user is None:
        if customer.user is None:
            raise LinkUserRequired(details={"field": "user", "customer": customer.public_id})
        found: User | None = customer.user
    else:
        found = (
            User.objects.filter(public_id=user[:64]).first() if MEMBER_ID.fullmatch(user) else None
        )
    refusal = _signer_refusal(customer, found)
    if refusal is not None or found is None:
        raise LinkUserRefused(refusal, details={"field": "user", "customer": customer.public_id})
    return found


def _opener_signable(customer: Customer) -> User | None:
    """The account a link made before links named theirs signs in: the customer's opener."""
    user = customer.user
    if user is None or user.is_staff or user.is_superuser or not user.is_active:
        return None
    return user


def checkout_link_create(
    *,
    customer: Customer,
    price: Price,
    success_url: str,
    cancel_url: str | None = None,
    user: str | None = None,
    promotion_code: str | None = None,
) -> SignedLink:
    """A link where ``customer`` subscribes to ``price`` (a price on sale), signed in without a
    password as ``user`` (a ``usr_`` id of an owner or admin; by default the account that opened
    the customer). After a successful checkout they are sent to ``success_url``; the checkout
    page offers ``cancel_url`` to go back. ``promotion_code``, if the customer may use it on
    ``price`` now, is filled in on the checkout (which checks it again when they subscribe).
    Works once, for 24 hours."""
    if not price.active or not price.plan.active or not price.plan.product.active:
        raise NotFound("This price is not on sale.", details={"field": "price"})
    signer = _signer(customer, user)
    if customer.subscriptions.exclude(status__in=sorted(SUBSCRIPTION_ENDED)).exists():
        raise CustomerHasSubscription(details={"customer": customer.public_id})
    data = {
        "c": customer.public_id,
        "u": signer.public_id,
        "p": price.public_id,
        "s": redirect_url_check(success_url, "success_url"),
        "x": redirect_url_check(cancel_url, "cancel_url"),
    }
    if promotion_code and promotion_code.strip():
        data["d"] = _promotion_code_checked(promotion_code, customer, price)
    return _link("checkout", data, CHECKOUT_LIFETIME)


def _promotion_code_checked(code: str, customer: Customer, price: Price) -> str:
    """``code`` as stored, if ``customer`` may use it on ``price`` now; else the refusal, with
    its reason, on the ``promotion_code`` field."""
    try:
        promotion = discounts.promotion_code_check(
            code=code, customer=customer, price=price, now=clock.now()
        )
    except PromotionCodeRefused as exc:
        reason = exc.details.get("reason", "unknown")
        raise PromotionCodeRefused(
            exc.message, details={"field": "promotion_code", "reason": reason}
        ) from exc
    return promotion.code


def portal_link_create(
    *, customer: Customer, return_url: str | None = None, user: str | None = None
) -> SignedLink:
    """A link into ``customer``'s billing pages (plan, card, invoices, cancel), signed in without
    a password as ``user`` (as for ``checkout_link_create``); the pages offer ``return_url`` to
    go back. Works once, for 5 minutes."""
    signer = _signer(customer, user)
    data = {
        "c": customer.public_id,
        "u": signer.public_id,
        "r": redirect_url_check(return_url, "return_url"),
    }
    return _link("portal", data, PORTAL_LIFETIME)


def _redeemer(customer: Customer, data: dict[str, Any]) -> User | None:
    """The account a link signs in, if it still may: the one it names, still an active owner or
    admin of the customer's organisation; for a link made before links named theirs, the
    customer's opener."""
    if "u" not in data:
        return _opener_signable(customer)
    named = data["u"]
    user = User.objects.filter(public_id=named).first() if isinstance(named, str) else None
    return user if _signer_refusal(customer, user) is None else None


def signed_link_redeem(*, token: str) -> Redeemed:
    """Check a checkout or portal link and use it up (audited). LinkInvalid when it is not ours,
    expired, used, or the account it signs in no longer may (removed from the organisation, no
    longer an owner or admin, deactivated, made staff)."""
    try:
        data = signing.loads(token, salt=_SALT)
    except signing.BadSignature as exc:
        raise LinkInvalid() from exc
    kind = data.get("k") if isinstance(data, dict) else None
    lifetime = {"checkout": CHECKOUT_LIFETIME, "portal": PORTAL_LIFETIME}.get(str(kind))
    if lifetime is None or not isinstance(data.get("t"), int):
        raise LinkInvalid()
    age = clock.now() - dt.datetime.fromtimestamp(data["t"], tz=dt.UTC)
    if not dt.timedelta(minutes=-1) <= age <= lifetime:
        raise LinkInvalid()
    customer = Customer.objects.select_related("user").filter(public_id=data.get("c")).first()
    user = _redeemer(customer, data) if customer is not None else None
    if customer is None or user is None:
        raise LinkInvalid()
    try:
        with transaction.atomic(durable=True):
            SignedLinkUse.objects.create(nonce=str(data["n"])[:64])
            audit_record(
                action=f"account.signed_in_by_{kind}_link",
                actor=user,
                target=user,
                details={"customer": customer.public_id},
            )
    except IntegrityError as exc:
        raise LinkInvalid() from exc
    return Redeemed(
        kind=str(kind),
        user=user,
        customer=customer,
        price_id=data.get("p"),
        success_url=data.get("s"),
        cancel_url=data.get("x"),
        return_url=data.get("r"),
        promotion_code=data.get("d"),
    )


def signed_link_uses_purge() -> int:
    """Forget used links older than the longest lifetime (they have expired anyway)."""
    cutoff = clock.now() - CHECKOUT_LIFETIME - dt.timedelta(hours=1)
    deleted, _ = SignedLinkUse.objects.filter(used_at__lt=cutoff).delete()
    return deleted


# --- Receipts ------------------------------------------------------------------------------------------
_RECEIPT_SALT = "tollgate.integrations.links.receipt"


def receipt_pdf_url(invoice: Invoice) -> str | None:
    """A link to ``invoice``'s receipt PDF that works for an hour without signing in; None for a
    draft (no receipt yet)."""
    if invoice.number is None:
        return None
    issued = int(clock.now().timestamp())
    token = signing.dumps({"i": invoice.public_id, "t": issued}, salt=_RECEIPT_SALT)
    return f"{settings.SITE_URL}{reverse('billing:receipt_pdf', args=[token])}"


def receipt_pdf_redeem(*, token: str) -> Invoice:
    """The invoice a receipt link names, or LinkInvalid when it is not ours or has expired."""
    try:
        data = signing.loads(token, salt=_RECEIPT_SALT)
    except signing.BadSignature as exc:
        raise LinkInvalid() from exc
    if not isinstance(data, dict) or not isinstance(data.get("t"), int):
        raise LinkInvalid()
    age = clock.now() - dt.datetime.fromtimestamp(data["t"], tz=dt.UTC)
    if not dt.timedelta(minutes=-1) <= age <= RECEIPT_LIFETIME:
        raise LinkInvalid()
    invoice = (
        Invoice.objects.select_related("customer")
        .filter(public_id=data.get("i"))
        .exclude(number=None)
        .first()
    )
    if invoice is None:
        raise LinkInvalid()
    return invoice
