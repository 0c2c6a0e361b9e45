import datetime as dt

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.errors import InvoiceImmutable, InvoiceTotalsMismatch, TransitionRefused
from tollgate.billing.models import Invoice, InvoiceLine, LedgerEntry
from tollgate.billing.periods import Period, period_after
from tollgate.billing.services import LineSpec
from tollgate.billing.steps.invoices import invoice_lines_add_locked
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed

pytestmark = pytest.mark.django_db
Kind = InvoiceLine.Kind
NOW = dt.datetime(2025, 5, 31, 9, tzinfo=dt.UTC)


@pytest.fixture
def subscription(customer, price):
    add_card(customer, CARD_OK)
    with clock.frozen(NOW):
        return services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )


def next_period(subscription):
    current = Period(start=subscription.current_period_start, end=subscription.current_period_end)
    return period_after(anchor=subscription.billing_anchor, months=1, period=current)


def test_each_period_is_invoiced_once_and_numbered_without_gaps(subscription, customer):
    period = next_period(subscription)
    assert period == Period(
        start=dt.datetime(2025, 6, 30, 9, tzinfo=dt.UTC),
        end=dt.datetime(2025, 7, 31, 9, tzinfo=dt.UTC),
    )
    first = services.invoice_create_for_period(subscription=subscription, period=period)
    again = services.invoice_create_for_period(subscription=subscription, period=period)
    assert again.pk == first.pk
    assert first.number == f"{customer.invoice_prefix}-0002"
    assert (first.status, first.total, first.period_start) == ("open", 2900, period.start)
    customer.refresh_from_db()
    assert customer.next_invoice_sequence == 3
    following = services.invoice_create_for_period(
        subscription=subscription, period=next_period_after(subscription, period)
    )
    assert following.number == f"{customer.invoice_prefix}-0003"


def next_period_after(subscription, period):
    return period_after(anchor=subscription.billing_anchor, months=1, period=period)


def test_finalizing_posts_receivable_and_revenue(subscription):
    invoice = services.invoice_create_for_period(
        subscription=subscription, period=next_period(subscription)
    )
    entries = {
        (e.account, e.amount) for e in LedgerEntry.objects.filter(transaction__invoice=invoice)
    }
    assert entries == {("receivable", 2900), ("revenue", -2900)}


def test_a_finalized_invoice_refuses_any_change_to_its_amounts_or_lines(subscription):
    invoice = Invoice.objects.get()
    invoice.total = 1
    with pytest.raises(InvoiceImmutable) as refused:
        invoice.save()
    assert refused.value.details["fields"] == ["total"]
    invoice = Invoice.objects.get()
    with pytest.raises(InvoiceImmutable):
        InvoiceLine(invoice=invoice, kind=Kind.DISCOUNT, description="late", amount=-100).save()
    with pytest.raises(InvoiceImmutable):
        invoice.lines.get().delete()
    with pytest.raises(InvoiceImmutable):
        invoice.delete()
    with pytest.raises(InvoiceImmutable):
        invoice_lines_add_locked(
            invoice=invoice, lines=[LineSpec(kind=Kind.DISCOUNT, description="x", amount=-1)]
        )
    # Settlement fields may still change.
    invoice.paid_at = NOW
    invoice.save()


def test_a_draft_totals_its_lines_and_can_still_change(customer):
    draft = services.invoice_draft_create(
        customer=customer,
        currency="usd",
        lines=[
            LineSpec(kind=Kind.PLAN_CHARGE, description="Setup", amount=5000),
            LineSpec(kind=Kind.DISCOUNT, description="Welcome", amount=-1000),
        ],
    )
    assert (draft.status, draft.number, draft.total, draft.currency) == ("draft", None, 4000, "USD")
    assert str(draft) == draft.public_id
    line = draft.lines.get(kind=Kind.DISCOUNT)
    line.description = "Welcome offer"
    line.save()
    assert str(line) == "discount -1000"
    finalized = services.invoice_finalize(invoice=draft)
    assert finalized.number == f"{customer.invoice_prefix}-0001"
    assert str(finalized) == finalized.number
    with pytest.raises(TransitionRefused):
        services.invoice_finalize(invoice=draft)


def test_a_refreshed_copy_knows_its_invoice_was_finalized_meanwhile(customer):
    draft = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[LineSpec(kind=Kind.PLAN_CHARGE, description="x", amount=10)],
    )
    services.invoice_finalize(invoice=Invoice.objects.get(pk=draft.pk))
    draft.refresh_from_db()
    draft.total = 5
    with pytest.raises(InvoiceImmutable):
        draft.save()


def test_a_draft_whose_total_drifted_from_its_lines_is_not_finalized(customer):
    draft = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[LineSpec(kind=Kind.PLAN_CHARGE, description="Setup", amount=5000)],
    )
    Invoice.objects.filter(pk=draft.pk).update(total=4999)  # a bug or a manual edit
    with pytest.raises(InvoiceTotalsMismatch) as refused:
        services.invoice_finalize(invoice=draft)
    assert refused.value.details == {"invoice": draft.public_id, "total": 4999, "lines": 5000}
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert draft.number is None
    customer.refresh_from_db()
    assert customer.next_invoice_sequence == 1  # the failed finalization used no number


def test_a_deleted_draft_leaves_no_gap(customer):
    draft = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[LineSpec(kind=Kind.PLAN_CHARGE, description="Setup", amount=5000)],
    )
    draft.lines.all().delete()
    draft.delete()
    kept = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[LineSpec(kind=Kind.PLAN_CHARGE, description="Setup", amount=100)],
    )
    assert services.invoice_finalize(invoice=kept).number.endswith("-0001")


@pytest.mark.parametrize(
    ("currency", "lines", "message"),
    [
        ("US", [LineSpec(kind=Kind.PLAN_CHARGE, description="a", amount=1)], "ISO 4217"),
        (
            "USD",
            [LineSpec(kind=Kind.PLAN_CHARGE, description="a", amount=-1)],
            "plan charge line cannot be -1",
        ),
        (
            "USD",
            [LineSpec(kind=Kind.DISCOUNT, description="a", amount=5)],
            "discount line cannot be 5",
        ),
        (
            "USD",
            [LineSpec(kind=Kind.PRORATION_CREDIT, description="a", amount=-5)],
            "cannot total less than zero",
        ),
        ("USD", [], "needs lines"),
    ],
)
def test_draft_lines_are_validated(customer, currency, lines, message):
    with pytest.raises(ValidationFailed, match=message):
        services.invoice_draft_create(customer=customer, currency=currency, lines=lines)


def test_a_price_in_another_currency_is_refused_on_a_line(customer, price):
    line = LineSpec(kind=Kind.PLAN_CHARGE, description="Pro", amount=2900, price=price("pro"))
    with pytest.raises(ValidationFailed, match="currency"):
        services.invoice_draft_create(customer=customer, currency="EUR", lines=[line])


def test_installation_wide_numbering_is_one_sequence_across_customers(
    settings, customer, make_customer
):
    settings.BILLING_INVOICE_NUMBERING = "account"
    settings.BILLING_INVOICE_NUMBER_PREFIX = "TG"
    other = make_customer("other@example.org")
    numbers = []
    for owner in (customer, other, customer):
        draft = services.invoice_draft_create(
            customer=owner,
            currency="USD",
            lines=[LineSpec(kind=Kind.PLAN_CHARGE, description="x", amount=10)],
        )
        numbers.append(services.invoice_finalize(invoice=draft).number)
    assert numbers == ["TG-000001", "TG-000002", "TG-000003"]
