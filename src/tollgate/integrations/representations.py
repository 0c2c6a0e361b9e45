"""The JSON form of Tollgate's objects for the operator's product: what the API returns and what
outgoing webhooks carry, one function per object so both always agree. Amounts are integers in
minor units; times are ISO 8601 in UTC; ids are public ids."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tollgate.billing.models import Customer, Invoice, Refund, Subscription


def iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else None


def customer_data(customer: Customer) -> dict[str, Any]:
    return {
        "object": "customer",
        "id": customer.public_id,
        "external_id": customer.external_id,
        "email": customer.email,
        "name": customer.name,
        "created_at": iso(customer.created_at),
    }


def subscription_data(subscription: Subscription) -> dict[str, Any]:
    """Needs ``price__plan`` and ``customer`` loaded (select_related) to stay at one query."""
    price = subscription.price
    return {
        "object": "subscription",
        "id": subscription.public_id,
        "customer": subscription.customer.public_id,
        "customer_external_id": subscription.customer.external_id,
        "status": subscription.status,
        "plan": price.plan.code,
        "price": {
            "id": price.public_id,
            "amount": price.amount,
            "currency": price.currency,
            "interval": price.interval,
            "interval_count": price.interval_count,
            "per_seat": price.per_seat,
        },
        "seats": subscription.seats,
        "scheduled_seats": subscription.scheduled_seats,
        "current_period_start": iso(subscription.current_period_start),
        "current_period_end": iso(subscription.current_period_end),
        "trial_end": iso(subscription.trial_end),
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "canceled_at": iso(subscription.canceled_at),
        "ended_at": iso(subscription.ended_at),
        "created_at": iso(subscription.created_at),
    }


def invoice_data(invoice: Invoice, *, receipt_pdf_url: str | None = None) -> dict[str, Any]:
    """Needs ``customer`` and ``subscription`` loaded (select_related)."""
    return {
        "object": "invoice",
        "id": invoice.public_id,
        "customer": invoice.customer.public_id,
        "subscription": invoice.subscription.public_id if invoice.subscription else None,
        "number": invoice.number,
        "status": invoice.status,
        "billing_reason": invoice.billing_reason,
        "currency": invoice.currency,
        "total": invoice.total,
        "amount_paid": invoice.amount_paid,
        "period_start": iso(invoice.period_start),
        "period_end": iso(invoice.period_end),
        "created_at": iso(invoice.created_at),
        "finalized_at": iso(invoice.finalized_at),
        "paid_at": iso(invoice.paid_at),
        "receipt_pdf_url": receipt_pdf_url,
    }


def refund_data(refund: Refund) -> dict[str, Any]:
    """Needs ``payment__invoice__customer`` loaded (select_related)."""
    invoice = refund.payment.invoice
    return {
        "object": "refund",
        "id": refund.public_id,
        "customer": invoice.customer.public_id,
        "invoice": invoice.public_id,
        "payment": refund.payment.public_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status,
        "reason": refund.reason,
        "created_at": iso(refund.created_at),
        "completed_at": iso(refund.completed_at),
    }
