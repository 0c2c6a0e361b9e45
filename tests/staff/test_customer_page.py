"""Finding a customer by email or any public id, and a customer's whole billing history on one
page in a fixed number of queries."""

from __future__ import annotations

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.billing import services
from tollgate.billing.customer_summary import customer_summary
from tollgate.billing.models import Invoice, InvoiceLine, PaymentAttempt, Refund
from tollgate.billing.reports import customer_lookup

pytestmark = pytest.mark.django_db


@pytest.fixture
def paying(customer, price, staff):
    """A customer on Pro who paid, and was refunded 5.00 of it."""
    add_card(customer, CARD_OK)
    subscription = services.subscription_start(
        customer=customer, price=price("pro"), idempotency_key=new_key()
    )
    payment = PaymentAttempt.objects.get(invoice__customer=customer, status="succeeded")
    refund = services.refund_issue(
        payment=payment,
        amount=500,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )
    return customer, subscription, payment, refund


def test_a_customer_is_found_by_every_public_id_and_the_invoice_number(paying):
    customer, subscription, payment, refund = paying
    invoice = payment.invoice
    for query in (
        customer.public_id,
        customer.user.public_id,
        subscription.public_id,
        invoice.public_id,
        payment.public_id,
        refund.public_id,
        invoice.number,
        f"  {payment.public_id.lower()}  ",
    ):
        assert customer_lookup(query=query) == [customer], query


def test_a_customer_is_found_by_email_in_any_case_and_by_part_of_it(paying, make_customer):
    customer = paying[0]
    other = make_customer("payee@example.net")
    assert customer_lookup(query="PAYER@example.org") == [customer]
    assert set(customer_lookup(query="paye")) == {customer, other}
    assert customer_lookup(query="pa") == []
    assert customer_lookup(query="ayer@") == []  # the start of an email, not any part
    assert customer_lookup(query="nobody@example.org") == []
    assert customer_lookup(query="cus_NOSUCHCUSTOMER00000") == []


def test_a_search_with_one_match_opens_the_customer_page(staff_client, paying):
    customer = paying[0]
    response = staff_client.get("/staff/", {"q": customer.email})
    assert response.status_code == 302
    assert response["Location"] == f"/staff/customers/{customer.public_id}/"


def test_a_search_with_several_matches_lists_them(staff_client, make_customer):
    first, second = make_customer("ann@example.org"), make_customer("anna@example.org")
    response = staff_client.get("/staff/", {"q": "ann"})
    assert response.status_code == 200
    assert first.public_id in response.text
    assert second.public_id in response.text


def test_a_search_without_a_match_says_so(staff_client, db):
    response = staff_client.get("/staff/", {"q": "nobody@example.org"})
    assert "No customer matches" in response.text


def test_the_customer_page_shows_subscriptions_invoices_payments_refunds_and_the_trail(
    staff_client, paying
):
    customer, subscription, payment, refund = paying
    response = staff_client.get(f"/staff/customers/{customer.public_id}/")
    assert response.status_code == 200
    page = response.text
    for expected in (
        customer.email,
        subscription.public_id,
        payment.invoice.number,
        payment.public_id,
        refund.public_id,
        "Goodwill",
        "$29.00",
        "$5.00",
        "billing.subscription_started",
        "billing.refund_requested",
        "billing.refund_succeeded",
        f"/staff/payments/{payment.public_id}/refund/",
        f"/staff/subscriptions/{subscription.public_id}/cancel/",
        f"/staff/subscriptions/{subscription.public_id}/extend/",
    ):
        assert expected in page, expected


def paid_invoices(customer, count):
    """``count`` one-off invoices, each finalized and paid by card through the services."""
    for number in range(count):
        draft = services.invoice_draft_create(
            customer=customer,
            currency="USD",
            lines=[
                services.LineSpec(
                    kind=InvoiceLine.Kind.PLAN_CHARGE, description=f"Seat {number}", amount=100
                )
            ],
        )
        invoice = services.invoice_finalize(invoice=draft)
        services.invoice_pay(invoice=invoice, off_session=True, idempotency_key=new_key())


def reads_of_records(captured):
    return [
        q for q in captured.captured_queries if '"billing_' in q["sql"] or '"audit_' in q["sql"]
    ]


def test_the_customer_page_runs_the_same_queries_for_200_invoices_as_for_one(
    staff_client, paying, django_assert_max_num_queries, django_assert_num_queries
):
    customer = paying[0]
    url = f"/staff/customers/{customer.public_id}/"
    staff_client.get(url)  # the session and the user, loaded once like any page
    with django_assert_max_num_queries(32) as few:
        assert staff_client.get(url).status_code == 200
    paid_invoices(customer, 199)
    assert Invoice.objects.filter(customer=customer).count() == 200
    with django_assert_max_num_queries(32) as many:
        response = staff_client.get(url)
    # The billing and audit reads are the same; the session's own bookkeeping (a "last seen"
    # write once a minute) may come and go between the two requests.
    assert len(reads_of_records(many)) == len(reads_of_records(few)) >= 7
    # One page of each table: 25 of the 200 invoices and of their 200 payments.
    assert response.text.count("Page 1 of 8 (200 in all)") == 2
    print(f"customer page: {len(many.captured_queries)} queries for 200 invoices")
    with django_assert_num_queries(10):  # 9, and the live discount its MRR is net of
        summary = customer_summary(customer=customer)
    assert summary.open_invoices == 0
