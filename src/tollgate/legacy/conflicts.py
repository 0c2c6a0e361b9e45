"""A legacy data set against what Tollgate already holds: an email address, a Stripe customer or a
payment that belongs to something the import did not create from that same record. Reads only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models.functions import Lower

from tollgate.accounts.models import User
from tollgate.billing.models import Customer, PaymentAttempt
from tollgate.legacy.models import LegacyRecord
from tollgate.legacy.validation import (
    DB_CHUNK,
    LEGACY_GATEWAY,
    PAYMENTS_FILE,
    USERS_FILE,
    Dataset,
    LegacyPayment,
    LegacyUser,
    Problem,
)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), DB_CHUNK):
        yield items[start : start + DB_CHUNK]


def _imported(kind: LegacyRecord.Kind, legacy_ids: Sequence[str]) -> dict[str, int]:
    return dict(
        LegacyRecord.objects.filter(kind=kind, legacy_id__in=legacy_ids).values_list(
            "legacy_id", "object_id"
        )
    )


def dataset_check_database(dataset: Dataset) -> None:
    """Add a problem for each record whose email address, Stripe customer or payment Tollgate
    already holds for something this import did not create from that same record."""
    for users in _chunks([user for user in dataset.users if user.ok]):
        ours = _imported(LegacyRecord.Kind.USER, [user.legacy_id for user in users])
        by_email = dict(
            User.objects.annotate(email_lower=Lower("email"))
            .filter(email_lower__in=[user.email.lower() for user in users])
            .values_list("email_lower", "pk")
        )
        by_customer = dict(
            Customer.objects.filter(
                gateway=LEGACY_GATEWAY,
                gateway_reference__in=[u.stripe_customer_id for u in users if u.stripe_customer_id],
            ).values_list("gateway_reference", "user_id")
        )
        for user in users:
            owner = by_email.get(user.email.lower())
            if owner is not None and owner != ours.get(user.legacy_id):
                _conflict(dataset, user, USERS_FILE, "a Tollgate account already has this email")
            owner = by_customer.get(user.stripe_customer_id)
            if owner is not None and owner != ours.get(user.legacy_id):
                _conflict(
                    dataset, user, USERS_FILE, "a Tollgate customer already has this Stripe id"
                )
    for payments in _chunks([payment for payment in dataset.payments if payment.ok]):
        ours_payments = set(
            _imported(LegacyRecord.Kind.PAYMENT, [p.legacy_id for p in payments]).values()
        )
        recorded = dict(
            PaymentAttempt.objects.filter(
                gateway=LEGACY_GATEWAY,
                gateway_reference__in=[payment.stripe_payment_id for payment in payments],
            ).values_list("gateway_reference", "pk")
        )
        for payment in payments:
            found = recorded.get(payment.stripe_payment_id)
            if found is not None and found not in ours_payments:
                _conflict(dataset, payment, PAYMENTS_FILE, "Tollgate already recorded this payment")


def _conflict(dataset: Dataset, row: LegacyUser | LegacyPayment, file: str, message: str) -> None:
    row.ok = False
    dataset.problems.append(Problem(file, row.index, row.legacy_id, message))
