"""The staff console for daily work: lookup by anything staff are given, a customer's summary
above the fold, an audit trail filtered and paged on the server, and every table sorted and paged
on the server by whitelisted keys."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.http import QueryDict
from django.urls import reverse

from tests.billing.conftest import CARD_DECLINES_AFTER_ATTACH, CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.customer_summary import customer_summary
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.inbound import inbox
from tollgate.billing.models import (
    Customer,
    Dispute,
    InboundEvent,
    LedgerTransaction,
    PaymentAttempt,
    Refund,
)
from tollgate.billing.reports import customer_lookup
from tollgate.billing.services.disputes import DisputeReport, dispute_acknowledge, dispute_record
from tollgate.core import clock
from tollgate.core.money import Money
from tollgate.integrations.customers import customer_create_or_find
from tollgate.web.staff_tables import table_page

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)


def page_of(customer: Customer, **params: str):
    return reverse("staff:customer", args=[customer.public_id]), params


def refund(payment: PaymentAttempt, staff, amount: int) -> Refund:
    return services.refund_issue(
        payment=payment,
        amount=amount,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )


def dispute_open(payment: PaymentAttempt, reference: str, amount: int | None = None) -> Dispute:
    """The gateway reports a dispute of ``payment`` that needs a response."""
    return dispute_record(
        report=DisputeReport(
            gateway=payment.gateway,
            reference=reference,
            payment_reference=payment.gateway_reference,
            amount=payment.amount if amount is None else amount,
            currency=payment.currency,
            reason="fraudulent",
            status="needs_response",
        )
    )


@pytest.fixture
def paying(customer, price):
    add_card(customer, CARD_OK)
    services.subscription_start(customer=customer, price=price("pro"), idempotency_key=new_key())
    return customer, PaymentAttempt.objects.get(invoice__customer=customer)


# --- Lookup ----------------------------------------------------------------------------------------------
def test_a_customer_is_found_by_name_card_gateway_id_and_external_id(paying):
    customer, payment = paying
    other = customer_create_or_find(
        email="grace@example.net", name="Grace Hopper", external_id="crm-4711"
    ).customer
    Customer.objects.filter(pk=customer.pk).update(gateway_reference="gw_cust_9001")
    last4 = payment.payment_method.last4
    assert customer_lookup(query="hopper") == [other]
    assert customer_lookup(query="crm-4711") == [other]
    assert customer_lookup(query="gw_cust_9001") == [customer]
    assert customer_lookup(query=last4) == [customer]
    assert customer_lookup(query="GRACE@") == [other]
    assert customer_lookup(query="424") == []  # a card is found by exactly four digits


def test_lookup_results_sort_and_page_on_the_server_keeping_the_search(
    staff_client, make_customer, django_assert_max_num_queries
):
    for number in range(30):
        make_customer(f"team{number:02d}@example.org")
    staff_client.get("/staff/")
    with django_assert_max_num_queries(10):
        response = staff_client.get("/staff/", {"q": "team", "sort": "email", "dir": "asc"})
    page = response.text
    emails = re.findall(r"team\d\d@example.org", page)
    assert emails[:2] == ["team00@example.org", "team01@example.org"]
    assert len(emails) == 25
    assert "Page 1 of 2 (30 in all)" in page
    assert 'href="?q=team&amp;sort=email&amp;dir=asc&amp;page=2"' in page
    second = staff_client.get("/staff/", {"q": "team", "sort": "email", "dir": "asc", "page": 2})
    assert re.findall(r"team\d\d@example.org", second.text) == [
        f"team{number}@example.org" for number in range(25, 30)
    ]


def test_an_unknown_sort_key_falls_back_to_the_default(make_customer):
    for email in ("b@example.org", "a@example.org"):
        make_customer(email)
    table = table_page(
        Customer.objects.all(),
        params=QueryDict("sort=user__password&dir=sideways"),
        sorts={"created": "created_at", "email": "email"},
        default="created",
    )
    assert (table.sort, table.direction) == ("created", "desc")
    assert [found.email for found in table.rows] == ["a@example.org", "b@example.org"]


def test_table_links_keep_the_other_parameters_and_sorting_returns_to_page_one(db):
    params = QueryDict("q=ann&action=x&invoices-page=3&invoices-sort=total&invoices-dir=asc")
    table = table_page(
        Customer.objects.all(),
        params=params,
        sorts={"total": "created_at", "number": "email"},
        default="total",
        prefix="invoices",
    )
    assert table.sort_url("total") == "?q=ann&action=x&invoices-sort=total&invoices-dir=desc"
    assert table.sort_url("number").endswith("invoices-sort=number&invoices-dir=asc")
    assert table.url(page=2) == (
        "?q=ann&action=x&invoices-page=2&invoices-sort=total&invoices-dir=asc"
    )


# --- The summary -----------------------------------------------------------------------------------------
def test_the_summary_shows_plan_mrr_lifetime_value_and_last_payment(staff_client, paying, staff):
    customer, payment = paying
    for amount in (100, 200, 300):
        refund(payment, staff, amount)
    summary = customer_summary(customer=customer)
    assert summary.subscription.price.plan.name == "Pro"
    assert summary.mrr == [Money(2900, "USD")]
    assert summary.lifetime_value == [Money(2300, "USD")]
    assert summary.balance == []
    assert summary.open_invoices == 0
    assert summary.last_payment == payment
    assert [flag.code for flag in summary.flags] == ["refunds"]

    page = staff_client.get(reverse("staff:customer", args=[customer.public_id])).text
    head = page[page.index("data-summary") : page.index('id="subscriptions-title"')]
    for expected in ("Pro", "active", "$29.00", "$23.00", "nothing owed", "3 refunds"):
        assert expected in head, expected


def test_a_past_due_customer_is_flagged_with_the_balance_owed(customer, price):
    add_card(customer, CARD_DECLINES_AFTER_ATTACH)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer, price=price("starter"), idempotency_key=new_key()
        )
    with clock.frozen(subscription.trial_end):
        billing_run()
    summary = customer_summary(customer=customer, now=subscription.trial_end + dt.timedelta(days=1))
    assert summary.subscription.status == "past_due"
    assert summary.balance == [Money(900, "USD")]
    assert summary.open_invoices == 1
    assert summary.mrr == [Money(900, "USD")]
    assert summary.lifetime_value == []
    assert summary.last_payment.status == "failed"
    assert {flag.code for flag in summary.flags} == {"past_due", "payment_failed"}
    # Thirty days on, the failure is no longer recent.
    later = customer_summary(customer=customer, now=subscription.trial_end + dt.timedelta(days=31))
    assert "payment_failed" not in {flag.code for flag in later.flags}


def test_an_open_dispute_and_a_card_about_to_expire_are_flagged(paying):
    customer, payment = paying
    dispute_open(payment, "dp_1")
    # The sandbox's cards expire at the end of 12/2099.
    flags = customer_summary(customer=customer, now=dt.datetime(2099, 12, 15, tzinfo=dt.UTC)).flags
    assert [flag.code for flag in flags] == ["dispute_open", "card_expiring"]
    early = customer_summary(customer=customer, now=dt.datetime(2099, 11, 30, tzinfo=dt.UTC))
    assert [flag.code for flag in early.flags] == ["dispute_open"]


def test_a_customer_is_found_by_the_public_id_of_a_card_a_dispute_or_a_ledger_entry(paying):
    customer, payment = paying
    dispute = dispute_open(payment, "dp_lookup")
    entry = LedgerTransaction.objects.filter(customer=customer).first()
    assert entry is not None
    for public_id in (payment.payment_method.public_id, dispute.public_id, entry.public_id):
        assert customer_lookup(query=public_id) == [customer], public_id
        assert customer_lookup(query=public_id.lower()) == [customer], public_id
    assert customer_lookup(query="dsp_NOSUCHDISPUTE0000000") == []


# --- The audit trail -------------------------------------------------------------------------------------
def test_the_audit_trail_filters_by_action_actor_and_dates(staff_client, paying, staff):
    customer, payment = paying
    with clock.frozen(dt.datetime(2030, 3, 1, 9, tzinfo=dt.UTC)):
        refund(payment, staff, 100)
    url = reverse("staff:customer", args=[customer.public_id])

    def trail(**params: str) -> str:
        page = staff_client.get(url, params).text
        return page[page.index("</form>", page.index('id="audit-title"')) :]

    by_action = trail(action="billing.refund_requested")
    assert "billing.refund_requested" in by_action
    assert "billing.subscription_started" not in by_action
    by_staff = trail(actor="STAFF@")
    assert "billing.refund_requested" in by_staff
    assert "billing.subscription_started" not in by_staff
    assert "billing.refund_requested" not in trail(actor="system")
    march = trail(since="2030-03-01", until="2030-03-01")
    assert "billing.refund_requested" in march
    assert "billing.subscription_started" not in march
    assert "Nothing recorded that matches" in trail(since="2031-01-01")
    # Details are on demand, one line per event.
    assert "<details><summary>" in by_action


def test_the_audit_trail_pages_on_the_server(staff_client, paying):
    customer, payment = paying
    for number in range(60):
        AuditEvent.objects.create(
            action="billing.note_added",
            target_type="billing.paymentattempt",
            target_id=payment.public_id,
            details={"note": f"note {number}"},
        )
    url = reverse("staff:customer", args=[customer.public_id])
    first = staff_client.get(url, {"action": "billing.note_added"}).text
    assert first.count('<td class="nowrap">billing.note_added</td>') == 50
    assert "note: note 59" in first
    second = staff_client.get(url, {"action": "billing.note_added", "page": 2}).text
    assert second.count('<td class="nowrap">billing.note_added</td>') == 10
    assert "note: note 0</li>" in second
    oldest_first = staff_client.get(url, {"action": "billing.note_added", "dir": "asc"}).text
    assert oldest_first.index("note: note 0<") < oldest_first.index("note: note 1<")


# --- The other staff tables ------------------------------------------------------------------------------
def test_inbound_events_page_and_sort_on_the_server_keeping_the_status(
    staff_client, django_assert_max_num_queries
):
    for number in range(30):
        payload, header = SandboxGateway().event_build(
            event_type=f"charge.type_{number:02d}", data={"idempotency_key": f"inv_X-{number}"}
        )
        inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    status = InboundEvent.objects.values_list("status", flat=True).first()
    staff_client.get("/staff/events/")
    with django_assert_max_num_queries(12):
        page = staff_client.get(
            "/staff/events/", {"status": status, "sort": "type", "dir": "asc"}
        ).text
    types = re.findall(r"charge\.type_\d\d", page)
    assert types[:2] == ["charge.type_00", "charge.type_01"]
    assert len(types) == 25
    assert f'href="?status={status}&amp;sort=type&amp;dir=asc&amp;page=2"' in page


def test_disputes_keep_attention_first_by_default_and_sort_by_amount_on_request(
    paying, staff_client, staff
):
    payment = paying[1]

    seen, fresh = dispute_open(payment, "dp_big", 2900), dispute_open(payment, "dp_small", 100)
    dispute_acknowledge(dispute=seen, actor=staff)
    default = staff_client.get(reverse("staff:disputes")).text
    assert default.index(fresh.public_id) < default.index(seen.public_id)
    by_amount = staff_client.get(reverse("staff:disputes"), {"sort": "amount", "dir": "desc"}).text
    assert by_amount.index(seen.public_id) < by_amount.index(fresh.public_id)
    assert 'aria-sort="descending"' in by_amount
