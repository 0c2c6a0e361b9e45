"""Billing reads: the current subscription, invoices, cards, receipts (the ledger check is in
``integrity.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet, Subquery

from tollgate.billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    PaymentAttempt,
    PaymentMethod,
    Refund,
    Subscription,
)
from tollgate.billing.states import (
    PAYMENT_LIVE,
    SUBSCRIPTION_ENDED,
    SUBSCRIPTION_PAYMENT_OVERDUE,
    InvoiceStatus,
    PaymentStatus,
    RefundStatus,
)
from tollgate.core.errors import NotFound
from tollgate.organisations.errors import CannotJoin
from tollgate.organisations.models import BILLING_ROLES, Membership, Role


def subscription_current(*, customer: Customer) -> Subscription | None:
    """The customer's subscription that has not ended (there is at most one), with its price, plan
    and any scheduled price loaded (one query)."""
    return (
        Subscription.objects.filter(customer=customer)
        .exclude(status__in=sorted(SUBSCRIPTION_ENDED))
        .select_related("price__plan", "scheduled_price__plan")
        .first()
    )


def invoices_for(*, customer: Customer) -> QuerySet[Invoice]:
    """The customer's finalized invoices, newest first."""
    return (
        Invoice.objects.filter(customer=customer)
        .exclude(status=InvoiceStatus.DRAFT)
        .order_by("-finalized_at", "-id")
    )


def payment_method_default(*, customer: Customer) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(customer=customer, is_default=True).first()


# --- Customer pages ---------------------------------------------------------------------------------
def customers_of_account(user_id: int, *, roles: frozenset[str] = frozenset(Role)) -> Q:
    """Customers whose organisation the account belongs to in one of ``roles``, or, for a customer
    that has no organisation yet (written before organisations existed), that the account opened.

    An account has at most one membership, so its organisation is a scalar subquery: the database
    then looks both alternatives up by index (a bitmap OR), never scanning the customers."""
    organisation = Membership.objects.filter(user_id=user_id, role__in=sorted(roles)).values(
        "organisation_id"
    )[:1]
    return Q(organisation_id=Subquery(organisation)) | Q(user_id=user_id, organisation__isnull=True)


def customer_for(*, user: Any) -> Customer | None:
    """The billing customer ``user`` manages (an owner or admin of its organisation), or None:
    before their first billing step (creates nothing), or as a plain member of an organisation."""
    if not getattr(user, "is_authenticated", False):
        return None
    return Customer.objects.filter(customers_of_account(user.pk, roles=BILLING_ROLES)).first()


def customer_of_member(*, user_id: int) -> Customer | None:
    """The customer whose plan the account uses, whatever its role in the organisation."""
    return Customer.objects.filter(customers_of_account(user_id)).first()


def account_payment_overdue(*, user_id: int) -> bool:
    """Whether the subscription of the customer the account manages is past due or unpaid: a
    renewal could not be charged and the card should be fixed (one query; the banner on every
    page asks it)."""
    return Subscription.objects.filter(
        customer__in=Customer.objects.filter(customers_of_account(user_id, roles=BILLING_ROLES)),
        status__in=sorted(SUBSCRIPTION_PAYMENT_OVERDUE),
    ).exists()


def invoices_open(*, customer: Customer) -> list[Invoice]:
    """The customer's invoices still to be paid, oldest first (what a new card pays at once)."""
    return list(
        Invoice.objects.filter(customer=customer, status=InvoiceStatus.OPEN).order_by(
            "finalized_at", "id"
        )
    )


def payment_latest(*, subscription: Subscription) -> PaymentAttempt | None:
    """The latest payment attempt for any of ``subscription``'s invoices (a checkout's outcome)."""
    return (
        PaymentAttempt.objects.filter(invoice__subscription=subscription)
        .select_related("invoice")
        .order_by("-created_at", "-id")
        .first()
    )


@dataclass(frozen=True)
class InvoiceReceipt:
    """An invoice as its receipt shows it: lines, payments and refunds, and what was settled."""

    invoice: Invoice
    plan_name: str
    lines: list[InvoiceLine]
    payments: list[PaymentAttempt]
    refunds: list[Refund]

    @property
    def captured(self) -> int:
        return sum(p.amount for p in self.payments if p.status == PaymentStatus.SUCCEEDED)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status == RefundStatus.SUCCEEDED)

    @property
    def amount_due(self) -> int:
        if self.invoice.status != InvoiceStatus.OPEN:
            return 0
        return self.invoice.total - self.invoice.amount_paid

    @property
    def awaiting_confirmation(self) -> PaymentAttempt | None:
        """The payment waiting for the customer to confirm it with their bank (3-D Secure)."""
        return next(
            (
                payment
                for payment in reversed(self.payments)
                if payment.status == PaymentStatus.REQUIRES_ACTION and payment.action_url
            ),
            None,
        )

    @property
    def payable_now(self) -> bool:
        """Whether the customer can pay it now: open (or written off: still owed), and no payment of
        it in progress or captured."""
        return self.invoice.status in (
            InvoiceStatus.OPEN,
            InvoiceStatus.UNCOLLECTIBLE,
        ) and not any(payment.status in PAYMENT_LIVE for payment in self.payments)


def invoice_receipt(*, customer: Customer, public_id: str) -> InvoiceReceipt:
    """The finalized invoice ``public_id`` of ``customer`` with everything its receipt shows (four
    queries). Another customer's invoice, or a draft, is :class:`NotFound`: its existence is not
    revealed."""
    invoice = (
        Invoice.objects.filter(customer=customer, public_id=public_id)
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("customer", "subscription__price__plan")
        .first()
    )
    if invoice is None:
        raise NotFound("There is no invoice at this address.")
    payments = list(
        PaymentAttempt.objects.filter(invoice=invoice)
        .select_related("payment_method")
        .order_by("created_at", "id")
    )
    refunds = list(
        Refund.objects.filter(payment__invoice=invoice)
        .exclude(status=RefundStatus.FAILED)
        .order_by("created_at", "id")
    )
    subscription = invoice.subscription
    return InvoiceReceipt(
        invoice=invoice,
        plan_name=subscription.price.plan.name if subscription else "",
        lines=list(InvoiceLine.objects.filter(invoice=invoice).order_by("id")),
        payments=payments,
        refunds=refunds,
    )


def invoices_paid_with(*, payment_method: PaymentMethod) -> list[Invoice]:
    """The invoices a card has paid (a new card pays what was open as soon as it is attached)."""
    return list(
        Invoice.objects.filter(
            payments__payment_method=payment_method, payments__status=PaymentStatus.SUCCEEDED
        )
        .distinct()
        .order_by("finalized_at", "id")
    )


def organisation_departure_check(organisation: Any) -> None:
    """Registered with ``organisations.registry``: the last member may not leave an organisation
    whose customer still has a subscription that has not ended (it would bill nobody's plan)."""
    if (
        Subscription.objects.filter(customer__organisation=organisation)
        .exclude(status__in=sorted(SUBSCRIPTION_ENDED))
        .exists()
    ):
        raise CannotJoin()
