"""Billing's options, gathered in one typed object and read from Django settings at call time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from tollgate.catalog.models import Plan


class InvoiceNumbering(StrEnum):
    # Prefix + gapless sequence per customer (7F3KQ2AB-0004): finalizations of different customers
    # never wait for each other.
    CUSTOMER = "customer"
    # One gapless sequence for the installation (INV-000123): every finalization in every worker
    # waits for one row lock, so invoice finalization is serialized installation-wide.
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class BillingSettings:
    invoice_numbering: InvoiceNumbering
    invoice_number_prefix: str
    # Retries of a failed renewal payment, counted from the first failure.
    dunning_retries: tuple[dt.timedelta, ...]
    # What a subscription becomes when the retries are exhausted or a hard decline stops them.
    dunning_final_status: str
    # What a trial that ends without a card becomes: "canceled" or "incomplete".
    trial_end_without_card: str
    # How long a payment may wait for the customer's authentication (3-D Secure) before it fails.
    payment_action_expiry: dt.timedelta
    # The daily reconciliation with the gateway: at which hour (UTC) and over how many days back.
    reconciliation_hour: int
    reconciliation_window: dt.timedelta


def billing_settings() -> BillingSettings:
    return BillingSettings(
        invoice_numbering=InvoiceNumbering(settings.BILLING_INVOICE_NUMBERING),
        invoice_number_prefix=settings.BILLING_INVOICE_NUMBER_PREFIX,
        dunning_retries=tuple(
            dt.timedelta(days=days) for days in settings.BILLING_DUNNING_RETRY_DAYS
        ),
        dunning_final_status=settings.BILLING_DUNNING_FINAL_STATUS,
        trial_end_without_card=settings.BILLING_TRIAL_END_WITHOUT_CARD,
        payment_action_expiry=dt.timedelta(hours=settings.BILLING_PAYMENT_ACTION_EXPIRY_HOURS),
        reconciliation_hour=settings.BILLING_RECONCILIATION_HOUR,
        reconciliation_window=dt.timedelta(days=settings.BILLING_RECONCILIATION_DAYS),
    )


def trial_end_without_card(plan: Plan) -> str:
    """What a trial of ``plan`` that ends without a card becomes: the plan's rule, else the setting."""
    return plan.trial_end_without_card or billing_settings().trial_end_without_card
