"""Importing a checked legacy data set (see ``legacy.validation`` and docs/migration.md).

Users are imported in file order, in batches; each batch is one transaction that writes, for its
users, everything not imported before: the accounts (no password: a set-password email is sent
only by ``legacy_invitations_send``), their email addresses, their billing customers with their
Stripe customer ids and their personal organisations (the account the owner, as every customer
opened in Tollgate has: ``organisations.steps``), their subscriptions with their current period,
and each past payment as a paid invoice of one line with its succeeded payment at Stripe, dated
when the old portal took the money. The rows are built set-wise, like the billing clock's
renewals, by the same steps (``billing.steps``: invoice number, lines, paid, payment attempt;
``organisations.steps``) and booked in the ledger by the same posting builders
(``billing.ledger``): receivable against revenue when the invoice is issued, gateway clearing
against receivable when it is paid.

Every imported record is remembered in ``LegacyRecord`` by its old id, in the same transaction,
so a record is imported once: running the import again changes nothing, and after a crash it
resumes with the first batch that did not commit. A record changed in the old portal after it was
imported is not updated. The import publishes no events and sends no email.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from allauth.account.models import EmailAddress
from django.db import transaction

from tollgate.accounts.models import User
from tollgate.audit.services import audit_record
from tollgate.billing import ledger, services
from tollgate.billing.conf import InvoiceNumbering, billing_settings
from tollgate.billing.locks import PaymentLocks
from tollgate.billing.models import Customer, Invoice, InvoiceLine, PaymentAttempt, Subscription
from tollgate.billing.states import SUBSCRIPTION_ENDED, InvoiceStatus, PaymentStatus
from tollgate.billing.steps.invoices import (
    customer_invoice_number_take,
    invoice_line_rows,
    invoice_paid_apply,
)
from tollgate.billing.steps.payments import payment_attempt_build
from tollgate.core.errors import ValidationFailed
from tollgate.legacy.models import LegacyRecord
from tollgate.legacy.validation import (
    LEGACY_GATEWAY,
    SUBSCRIPTIONS_FILE,
    Dataset,
    LegacyPayment,
    LegacySubscription,
    LegacyUser,
    Problem,
)
from tollgate.organisations.steps import PersonalOwner, personal_organisations_create_locked

DEFAULT_BATCH_SIZE = 500
Kind = LegacyRecord.Kind


@dataclass
class ImportResult:
    """What an import wrote, what it found imported already, and the records it could not take
    because of what Tollgate holds now (a customer's live subscription started since)."""

    users: int = 0
    customers: int = 0
    subscriptions: int = 0
    payments: int = 0
    already_imported: int = 0
    batches: int = 0
    conflicts: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"users={self.users} customers={self.customers} subscriptions={self.subscriptions} "
            f"payments={self.payments} already_imported={self.already_imported} "
            f"conflicts={len(self.conflicts)} batches={self.batches}"
        )


@dataclass(frozen=True, slots=True)
class ImportPreview:
    """What an import of the data set would do now (for a dry run)."""

    users: int
    subscriptions: int
    payments: int
    already_imported: int


def legacy_import_preview(*, dataset: Dataset) -> ImportPreview:
    """Count the records an import would write and those imported already (reads only)."""
    users, subscriptions, payments = dataset.importable()
    done = 0
    counts = {}
    for kind, ids in (
        (Kind.USER, [user.legacy_id for user in users]),
        (Kind.SUBSCRIPTION, [s.legacy_id for rows in subscriptions.values() for s in rows]),
        (Kind.PAYMENT, [p.legacy_id for rows in payments.values() for p in rows]),
    ):
        imported = sum(
            LegacyRecord.objects.filter(kind=kind, legacy_id__in=ids[start : start + 1000]).count()
            for start in range(0, len(ids), 1000)
        )
        counts[kind] = len(ids) - imported
        done += imported
    return ImportPreview(
        users=counts[Kind.USER],
        subscriptions=counts[Kind.SUBSCRIPTION],
        payments=counts[Kind.PAYMENT],
        already_imported=done,
    )


def legacy_import(
    *,
    dataset: Dataset,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[int], Any] | None = None,
) -> ImportResult:
    """Import the records of ``dataset`` that have no problems and were not imported before, one
    transaction per batch of ``batch_size`` users (see the module's docstring). ``on_batch`` is
    called with the number of users of each committed batch. Refused (``ValidationFailed``) when
    invoices are numbered installation-wide: imported invoices take per-customer numbers."""
    if billing_settings().invoice_numbering != InvoiceNumbering.CUSTOMER:
        raise ValidationFailed(
            "The legacy import numbers invoices per customer; set TOLLGATE_INVOICE_NUMBERING to "
            "customer for the import."
        )
    if batch_size < 1:
        raise ValidationFailed("The batch size must be at least 1.")
    users, subscriptions, payments = dataset.importable()
    result = ImportResult()
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        _batch_import(
            users=batch,
            subscriptions=[s for user in batch for s in subscriptions.get(user.legacy_id, [])],
            payments=[p for user in batch for p in payments.get(user.legacy_id, [])],
            result=result,
        )
        result.batches += 1
        if on_batch is not None:
            on_batch(len(batch))
    return result


def _imported(kind: LegacyRecord.Kind, legacy_ids: Sequence[str]) -> dict[str, int]:
    return dict(
        LegacyRecord.objects.filter(kind=kind, legacy_id__in=legacy_ids).values_list(
            "legacy_id", "object_id"
        )
    )


@dataclass
class _Batch:
    """The rows one batch writes, and its users' ids in Tollgate."""

    user_pks: dict[str, int]
    new_users: set[str] = field(default_factory=set)
    customers: dict[str, Customer] = field(default_factory=dict)
    new_customers: set[str] = field(default_factory=set)
    organisations: int = 0
    records: list[LegacyRecord] = field(default_factory=list)


def _batch_import(
    *,
    users: list[LegacyUser],
    subscriptions: list[LegacySubscription],
    payments: list[LegacyPayment],
    result: ImportResult,
) -> None:
    with transaction.atomic(durable=True):
        done_users = _imported(Kind.USER, [user.legacy_id for user in users])
        done_subscriptions = _imported(Kind.SUBSCRIPTION, [s.legacy_id for s in subscriptions])
        done_payments = _imported(Kind.PAYMENT, [p.legacy_id for p in payments])
        new_users = [user for user in users if user.legacy_id not in done_users]
        new_subscriptions = [s for s in subscriptions if s.legacy_id not in done_subscriptions]
        new_payments = [p for p in payments if p.legacy_id not in done_payments]
        result.already_imported += len(done_users) + len(done_subscriptions) + len(done_payments)
        batch = _Batch(user_pks=dict(done_users))
        _users_create(batch, new_users)
        billed = {s.user_id for s in new_subscriptions} | {p.user_id for p in new_payments}
        _customers_ensure(
            batch, [user for user in users if user.stripe_customer_id or user.legacy_id in billed]
        )
        taken = _subscriptions_create(batch, new_subscriptions, result)
        paid = _payments_create(batch, new_payments)
        LegacyRecord.objects.bulk_create(batch.records)
        result.users += len(new_users)
        result.customers += len(batch.new_customers)
        result.subscriptions += taken
        result.payments += paid
        if new_users or taken or paid or batch.organisations:
            audit_record(
                action="legacy.batch_imported",
                details={
                    "users": len(new_users),
                    "customers": len(batch.new_customers),
                    "organisations": batch.organisations,
                    "subscriptions": taken,
                    "payments": paid,
                    "first_user": users[0].legacy_id,
                    "last_user": users[-1].legacy_id,
                },
            )


def _record(batch: _Batch, kind: LegacyRecord.Kind, legacy_id: str, pk: int, ref: str) -> None:
    batch.records.append(
        LegacyRecord(kind=kind, legacy_id=legacy_id, object_id=pk, gateway_reference=ref)
    )


def _users_create(batch: _Batch, users: list[LegacyUser]) -> None:
    """Accounts without a usable password, and their (primary) email addresses."""
    rows = []
    for user in users:
        row = User(email=user.email, name=user.name, date_joined=user.created_at)
        row.set_unusable_password()
        rows.append(row)
    User.objects.bulk_create(rows)
    EmailAddress.objects.bulk_create(
        EmailAddress(user=row, email=user.email, primary=True, verified=user.email_verified)
        for user, row in zip(users, rows, strict=True)
    )
    for user, row in zip(users, rows, strict=True):
        batch.user_pks[user.legacy_id] = row.pk
        batch.new_users.add(user.legacy_id)
        _record(batch, Kind.USER, user.legacy_id, row.pk, user.stripe_customer_id)


def _customers_ensure(batch: _Batch, users: list[LegacyUser]) -> None:
    """The billing customer of each of ``users`` (locked when it exists), created when missing,
    with its personal organisation; a customer imported before without one (by a release whose
    import made none) gets it now."""
    pks = {batch.user_pks[user.legacy_id]: user for user in users}
    # Accounts imported by an earlier run may be in use: locked before their customers, in the
    # order billing locks them (account -> customer), so their memberships hold still.
    earlier = sorted(pk for pk, user in pks.items() if user.legacy_id not in batch.new_users)
    if earlier:
        list(
            User.objects.select_for_update().filter(pk__in=earlier).order_by("pk").values_list("pk")
        )
    for customer in Customer.objects.select_for_update().filter(user_id__in=pks).order_by("pk"):
        if customer.user_id is not None:  # always: found by its opening account
            batch.customers[pks[customer.user_id].legacy_id] = customer
    missing = [user for user in users if user.legacy_id not in batch.customers]
    unorganised = [
        customer
        for customer in batch.customers.values()
        if customer.organisation_id is None and customer.user_id is not None
    ]
    organisations = personal_organisations_create_locked(
        owners=[
            PersonalOwner(
                user_id=batch.user_pks[user.legacy_id],
                name=user.name,
                created_at=user.created_at,
                new=user.legacy_id in batch.new_users,
            )
            for user in missing
        ]
        + [
            PersonalOwner(
                user_id=customer.user_id,
                name=customer.name,
                created_at=customer.created_at,
                new=False,
            )
            for customer in unorganised
            if customer.user_id is not None  # all of them (for the type checker)
        ]
    )
    batch.organisations = len(organisations)
    rows = [
        Customer(
            user_id=batch.user_pks[user.legacy_id],
            email=user.email,
            name=user.name,
            gateway=LEGACY_GATEWAY if user.stripe_customer_id else "",
            gateway_reference=user.stripe_customer_id,
            created_at=user.created_at,
            organisation=organisation,
        )
        for user, organisation in zip(missing, organisations[: len(missing)], strict=True)
    ]
    Customer.objects.bulk_create(rows)
    for user, row in zip(missing, rows, strict=True):
        batch.customers[user.legacy_id] = row
        batch.new_customers.add(user.legacy_id)
    for customer, organisation in zip(unorganised, organisations[len(missing) :], strict=True):
        customer.organisation = organisation
    Customer.objects.bulk_update(unorganised, ["organisation"])


def _subscriptions_create(
    batch: _Batch, subscriptions: list[LegacySubscription], result: ImportResult
) -> int:
    """The subscriptions; a live one is refused when its customer (imported before) has a live
    subscription in Tollgate already: Tollgate keeps one per customer."""
    live_now = set(
        Subscription.objects.filter(
            customer_id__in=[
                customer.pk
                for legacy_id, customer in batch.customers.items()
                if legacy_id not in batch.new_customers
            ]
        )
        .exclude(status__in=sorted(SUBSCRIPTION_ENDED))
        .values_list("customer_id", flat=True)
    )
    taken: list[LegacySubscription] = []
    for subscription in subscriptions:
        if subscription.live and batch.customers[subscription.user_id].pk in live_now:
            result.conflicts.append(
                Problem(
                    SUBSCRIPTIONS_FILE,
                    subscription.index,
                    subscription.legacy_id,
                    "its customer has a live subscription in Tollgate already; not imported",
                )
            )
            continue
        taken.append(subscription)
    rows = [
        Subscription(
            customer=batch.customers[s.user_id],
            price=s.price,
            status=s.status,
            billing_anchor=s.billing_anchor,
            current_period_start=s.current_period_start,
            current_period_end=s.current_period_end,
            trial_end=s.trial_end,
            cancel_at_period_end=s.cancel_at_period_end,
            canceled_at=s.canceled_at,
            ended_at=s.ended_at,
            created_at=s.created_at,
        )
        for s in taken
    ]
    Subscription.objects.bulk_create(rows)
    for subscription, row in zip(taken, rows, strict=True):
        _record(
            batch,
            Kind.SUBSCRIPTION,
            subscription.legacy_id,
            row.pk,
            subscription.stripe_subscription_id,
        )
    return len(rows)


def _payments_create(batch: _Batch, payments: list[LegacyPayment]) -> int:
    """Each payment as a paid invoice of one line (numbered in the order the customer paid), its
    succeeded payment at Stripe, and their ledger postings, dated when the money was taken."""
    payments = sorted(payments, key=lambda payment: (payment.created_at, payment.index))
    invoices: list[Invoice] = []
    for payment in payments:
        customer = batch.customers[payment.user_id]
        invoice = Invoice(
            customer=customer,
            billing_reason=Invoice.BillingReason.MANUAL,
            number=customer_invoice_number_take(customer),
            status=InvoiceStatus.OPEN,
            currency=payment.currency,
            total=payment.amount,
            created_at=payment.created_at,
            finalized_at=payment.created_at,
        )
        invoice_paid_apply(invoice=invoice, now=payment.created_at)
        invoices.append(invoice)
    if not invoices:
        return 0
    touched = {payment.user_id: batch.customers[payment.user_id] for payment in payments}
    Customer.objects.bulk_update(list(touched.values()), ["next_invoice_sequence"])
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        row
        for payment, invoice in zip(payments, invoices, strict=True)
        for row in invoice_line_rows(invoice=invoice, lines=[_line(payment)])
    )
    attempts = [
        _attempt(payment, invoice) for payment, invoice in zip(payments, invoices, strict=True)
    ]
    PaymentAttempt.objects.bulk_create(attempts)
    ledger.ledger_post_many(
        [
            ledger.invoice_finalized_posting(
                customer=invoice.customer, invoice=invoice, at=payment.created_at
            )
            for payment, invoice in zip(payments, invoices, strict=True)
        ]
        + [
            ledger.payment_captured_posting(
                locks=PaymentLocks(
                    customer=invoice.customer, subscription=None, invoice=invoice, payment=attempt
                ),
                at=payment.created_at,
            )
            for payment, invoice, attempt in zip(payments, invoices, attempts, strict=True)
        ]
    )
    for payment, attempt in zip(payments, attempts, strict=True):
        _record(batch, Kind.PAYMENT, payment.legacy_id, attempt.pk, payment.stripe_payment_id)
    return len(attempts)


def _line(payment: LegacyPayment) -> services.LineSpec:
    description = payment.description or f"Payment {payment.stripe_payment_id}"
    return services.LineSpec(
        kind=InvoiceLine.Kind.PLAN_CHARGE,
        description=f"{description} (previous portal)"[:200],
        amount=payment.amount,
    )


def _attempt(payment: LegacyPayment, invoice: Invoice) -> PaymentAttempt:
    attempt = payment_attempt_build(
        invoice=invoice, number=1, method=None, gateway_name=LEGACY_GATEWAY, off_session=False
    )
    attempt.status = PaymentStatus.SUCCEEDED
    attempt.gateway_reference = payment.stripe_payment_id
    attempt.created_at = payment.created_at
    attempt.completed_at = payment.created_at
    return attempt
