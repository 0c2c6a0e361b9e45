"""A person's own data, as the one JSON document the account page lets them download (the right to
data portability, GDPR article 20).

It reads the account, its billing customer (subscriptions, invoices, payments, saved cards), its API
keys and its audit events, so it lives above all of those apps: ``accounts`` sits below ``billing``
and ``integrations`` in the import layers and may not read them. Read-only, except the audit event
that records the download.

What it never holds: password hashes, API key secrets and hashes, gateway tokens and references,
idempotency keys, card numbers beyond the last four digits, other people's identities or addresses.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from allauth.account.models import EmailAddress
from django.db.models import Q

from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.audit.services import audit_record
from tollgate.billing.models import (
    Customer,
    Invoice,
    PaymentAttempt,
    PaymentMethod,
    Subscription,
)
from tollgate.billing.selectors import customer_for
from tollgate.core import clock
from tollgate.core.money import Money
from tollgate.integrations.models import ApiKey

EXPORT_FORMAT = 1


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"minor_units": amount, "formatted": Money(amount, currency).format()}


def _account(user: User) -> dict[str, Any]:
    addresses = EmailAddress.objects.filter(user=user).order_by("-primary", "email")
    return {
        "id": user.public_id,
        "email": user.email,
        "name": user.name,
        "created_at": _iso(user.date_joined),
        "last_login_at": _iso(user.last_login),
        "marketing_opt_out_at": _iso(user.marketing_opt_out_at),
        "email_addresses": [
            {"email": address.email, "primary": address.primary, "verified": address.verified}
            for address in addresses
        ],
    }


def _customer(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.public_id,
        "name": customer.name,
        "email": customer.email,
        "external_id": customer.external_id,
        "created_at": _iso(customer.created_at),
    }


def _subscriptions(customer: Customer) -> list[dict[str, Any]]:
    subscriptions = (
        Subscription.objects.filter(customer=customer)
        .select_related("price__plan")
        .order_by("created_at", "id")
    )
    return [
        {
            "id": subscription.public_id,
            "plan": subscription.price.plan.name,
            "price": _money(subscription.amount, subscription.price.currency),
            "seats": subscription.seats,
            "interval": subscription.price.interval,
            "status": subscription.status,
            "created_at": _iso(subscription.created_at),
            "current_period_start": _iso(subscription.current_period_start),
            "current_period_end": _iso(subscription.current_period_end),
            "trial_end": _iso(subscription.trial_end),
            "cancel_at_period_end": subscription.cancel_at_period_end,
            "canceled_at": _iso(subscription.canceled_at),
            "ended_at": _iso(subscription.ended_at),
        }
        for subscription in subscriptions
    ]


def _invoices(customer: Customer) -> list[dict[str, Any]]:
    invoices = (
        Invoice.objects.filter(customer=customer)
        .prefetch_related("lines")
        .order_by("created_at", "id")
    )
    return [
        {
            "id": invoice.public_id,
            "number": invoice.number,
            "status": invoice.status,
            "currency": invoice.currency,
            "total": _money(invoice.total, invoice.currency),
            "amount_paid": _money(invoice.amount_paid, invoice.currency),
            "period_start": _iso(invoice.period_start),
            "period_end": _iso(invoice.period_end),
            "created_at": _iso(invoice.created_at),
            "finalized_at": _iso(invoice.finalized_at),
            "paid_at": _iso(invoice.paid_at),
            "lines": [
                {
                    "kind": line.kind,
                    "description": line.description,
                    "amount": _money(line.amount, invoice.currency),
                    "period_start": _iso(line.period_start),
                    "period_end": _iso(line.period_end),
                }
                for line in sorted(invoice.lines.all(), key=lambda line: line.pk)
            ],
        }
        for invoice in invoices
    ]


def _card(method: PaymentMethod | None) -> dict[str, Any] | None:
    if method is None:
        return None
    return {"brand": method.brand, "last4": method.last4}


def _payments(customer: Customer) -> list[dict[str, Any]]:
    payments = (
        PaymentAttempt.objects.filter(invoice__customer=customer)
        .select_related("invoice", "payment_method")
        .order_by("created_at", "id")
    )
    return [
        {
            "id": payment.public_id,
            "invoice": payment.invoice.number or payment.invoice.public_id,
            "amount": _money(payment.amount, payment.currency),
            "amount_refunded": _money(payment.amount_refunded, payment.currency),
            "status": payment.status,
            "card": _card(payment.payment_method),
            "created_at": _iso(payment.created_at),
            "completed_at": _iso(payment.completed_at),
        }
        for payment in payments
    ]


def _payment_methods(customer: Customer) -> list[dict[str, Any]]:
    methods = PaymentMethod.objects.filter(customer=customer).order_by("created_at", "id")
    return [
        {
            "brand": method.brand,
            "last4": method.last4,
            "expires": f"{method.exp_month:02d}/{method.exp_year}",
            "default": method.is_default,
            "added_at": _iso(method.created_at),
            "removed_at": _iso(method.detached_at),
        }
        for method in methods
    ]


def _api_keys(customer: Customer) -> list[dict[str, Any]]:
    keys = ApiKey.objects.filter(customer=customer, kind=ApiKey.Kind.CUSTOMER).order_by(
        "created_at", "id"
    )
    return [
        {
            "name": key.name,
            "prefix": key.display_prefix,
            "mode": key.mode,
            "scopes": list(key.scopes),
            "created_at": _iso(key.created_at),
            "last_used_at": _iso(key.last_used_at),
            "expires_at": _iso(key.expires_at),
            "revoked_at": _iso(key.revoked_at),
        }
        for key in keys
    ]


def _audit_events(user: User, customer: Customer | None) -> list[dict[str, Any]]:
    """Events the person did, or that were done to their account or customer. The address is
    given only for their own actions: on the others it is whoever acted (staff, say)."""
    theirs = Q(actor=user) | Q(actor_repr=user.public_id)
    about = Q(target_type=User._meta.label_lower, target_id=user.public_id)
    if customer is not None:
        about |= Q(target_type=Customer._meta.label_lower, target_id=customer.public_id)
    events = (
        AuditEvent.objects.filter(theirs | about)
        .only("actor_id", "actor_repr", "action", "created_at", "ip")
        .order_by("created_at", "id")
    )
    rows = []
    for event in events:
        own = event.actor_id == user.pk or event.actor_repr == user.public_id
        rows.append(
            {
                "action": event.action,
                "at": _iso(event.created_at),
                "by_you": own,
                "ip": event.ip if own else None,
            }
        )
    return rows


def account_data_export(*, user: User) -> dict[str, Any]:
    """Everything Tollgate holds about ``user`` that is theirs to take away, as one JSON-ready
    document, and an audit event (``account.data_exported``) that it was taken. Only ``user``'s
    own rows are read; the export holds no secret (see the module docstring)."""
    customer = customer_for(user=user)
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": _iso(clock.now()),
        "account": _account(user),
        "customer": None,
        "subscriptions": [],
        "invoices": [],
        "payments": [],
        "payment_methods": [],
        "api_keys": [],
    }
    if customer is not None:
        document.update(
            customer=_customer(customer),
            subscriptions=_subscriptions(customer),
            invoices=_invoices(customer),
            payments=_payments(customer),
            payment_methods=_payment_methods(customer),
            api_keys=_api_keys(customer),
        )
    document["audit_events"] = _audit_events(user, customer)
    audit_record(action="account.data_exported", actor=user, target=user)
    return document
