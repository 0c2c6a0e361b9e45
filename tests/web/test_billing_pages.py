"""The customer's billing pages: pricing, checkout through the hosted card form and its results,
the dashboard, receipts and their PDF, card replacement, plan changes with a proration preview,
cancel with a reason and resume, and the past-due banner on every page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.billing.conftest import (
    CARD_DECLINES_AFTER_ATTACH,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    add_card,
    new_key,
)
from tests.conftest import STRONG_PASSWORD
from tests.web.conftest import card_saved_on_hosted_form, form_token
from tollgate.billing import services
from tollgate.billing.clock import billing_run
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.models import Invoice, InvoiceLine, PaymentAttempt, Refund, Subscription
from tollgate.billing.previews import ChangeTiming, change_preview
from tollgate.billing.selectors import account_payment_overdue, subscription_current
from tollgate.billing.states import SUBSCRIPTION_ENDED, InvoiceStatus, SubscriptionStatus
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.web.context_processors import payment_overdue_of

pytestmark = pytest.mark.django_db


def checkout_with_card(client: Client, price, number: str = CARD_OK):
    """Choose ``price``, save ``number`` on the hosted form and come back; returns the response
    of the return URL (a redirect to the result) and that URL."""
    url = reverse("billing:checkout", args=[price.public_id])
    token = form_token(client.get(url))
    response = client.post(url, {"form_token": token, "action": "card"})
    assert response.status_code == 303
    back = card_saved_on_hosted_form(client, response["Location"], number)
    return client.get(back), back


def test_the_route_names_colleagues_link_to_resolve_to_their_paths():
    assert reverse("billing:dashboard") == "/billing/"
    assert reverse("billing:checkout", args=["price_x"]) == "/billing/checkout/price_x/"
    assert reverse("billing:checkout_return") == "/billing/checkout/return/"
    assert reverse("billing:payment_method") == "/billing/payment-method/"
    assert reverse("billing:invoice", args=["inv_x"]) == "/billing/invoices/inv_x/"
    assert reverse("billing:invoice_pdf", args=["inv_x"]) == "/billing/invoices/inv_x/pdf/"
    assert reverse("billing:change_plan") == "/billing/change/"
    assert reverse("billing:cancel") == "/billing/cancel/"
    assert reverse("billing:resume") == "/billing/resume/"


def test_billing_pages_ask_to_sign_in(client, catalog, price):
    for url in (
        reverse("billing:dashboard"),
        reverse("billing:checkout", args=[price("pro").public_id]),
        reverse("billing:change_plan"),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


# --- Pricing ---------------------------------------------------------------------------------------
def test_pricing_toggles_interval_with_plain_links_and_shows_trials(
    client, catalog, django_assert_max_num_queries
):
    client.get("/pricing/")  # the first view caches the catalog's names for every later one
    with django_assert_max_num_queries(2):  # the plans and their prices; nothing for the banner
        response = client.get("/pricing/?interval=year")
    page = response.content.decode()
    assert 'href="?interval=month"' in page
    assert '<a href="?interval=year" aria-current="page">' in page
    assert "14-day free trial" in page
    assert "$90.00" in page  # Starter yearly
    assert "/accounts/signup/?next=/billing/checkout/price_" in page


def test_pricing_marks_the_current_plan_and_offers_a_switch_to_the_others(
    billing_client, account_customer, price
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    page = billing_client.get("/pricing/").content.decode()
    assert "Your current plan" in page
    assert 'aria-current="true">Current plan' in page
    assert f"/billing/change/?price={price('starter').public_id}" in page


def test_pricing_sends_a_signed_in_account_without_subscription_to_checkout(billing_client, price):
    page = billing_client.get("/pricing/").content.decode()
    assert reverse("billing:checkout", args=[price("pro").public_id]) in page


# --- Checkout --------------------------------------------------------------------------------------
def test_checkout_with_a_good_card_ends_active_with_a_receipt(billing_client, price, account):
    response, _ = checkout_with_card(billing_client, price("pro"))
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:checkout_return")
    result = billing_client.get(response["Location"])
    page = result.content.decode()
    assert 'data-outcome="active"' in page
    assert "You're subscribed to Pro" in page
    subscription = Subscription.objects.get(customer__user=account)
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert Invoice.objects.get(subscription=subscription).status == InvoiceStatus.PAID


def test_coming_back_from_the_card_form_twice_starts_one_subscription_and_one_charge(
    billing_client, price, account
):
    _, back = checkout_with_card(billing_client, price("pro"))
    again = billing_client.get(back)
    assert again.status_code == 302
    assert Subscription.objects.filter(customer__user=account).count() == 1
    assert PaymentAttempt.objects.filter(invoice__customer__user=account).count() == 1


def test_submitting_the_checkout_twice_starts_one_subscription(
    billing_client, price, account, account_customer
):
    add_card(account_customer)
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    first = billing_client.post(url, {"form_token": token, "action": "saved"})
    second = billing_client.post(url, {"form_token": token, "action": "saved"})
    assert first.status_code == second.status_code == 302
    assert Subscription.objects.filter(customer__user=account).count() == 1
    assert PaymentAttempt.objects.filter(invoice__customer__user=account).count() == 1


def test_a_trial_starts_without_a_card_and_says_when_it_ends(billing_client, price, account):
    url = reverse("billing:checkout", args=[price("starter").public_id])
    page = billing_client.get(url).content.decode()
    assert "Start the trial without a card" in page
    token = form_token(billing_client.get(url))
    response = billing_client.post(url, {"form_token": token, "action": "trial"}, follow=True)
    page = response.content.decode()
    assert 'data-outcome="trialing"' in page
    subscription = Subscription.objects.get(customer__user=account)
    assert f"{subscription.trial_end:%B %-d, %Y}" in page
    assert "Add a card before then" in page


def test_a_trial_with_a_card_says_what_is_charged_when_it_ends(billing_client, price, account):
    response, _ = checkout_with_card(billing_client, price("starter"))
    page = billing_client.get(response["Location"]).content.decode()
    assert 'data-outcome="trialing"' in page
    assert "Then we charge $9.00 to your Visa ending in 4242" in page


def test_a_declined_card_says_why_in_plain_words_and_offers_another_card(billing_client, price):
    response, _ = checkout_with_card(billing_client, price("pro"), CARD_INSUFFICIENT_FUNDS)
    page = billing_client.get(response["Location"]).content.decode()
    assert 'data-outcome="declined"' in page
    assert "The card does not have enough funds for this payment." in page
    assert f'href="{reverse("billing:payment_method")}">Try another card' in page


def test_a_card_asking_for_authentication_links_to_the_bank_step(billing_client, price, account):
    response, _ = checkout_with_card(billing_client, price("pro"), CARD_REQUIRES_AUTHENTICATION)
    page = billing_client.get(response["Location"]).content.decode()
    assert 'data-outcome="action_required"' in page
    payment = PaymentAttempt.objects.get(invoice__customer__user=account)
    assert payment.action_url
    assert f'href="{payment.action_url}"' in page


def test_a_card_not_saved_on_the_hosted_form_sends_the_customer_back_to_checkout(
    billing_client, price
):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    token = form_token(billing_client.get(url))
    billing_client.post(url, {"form_token": token, "action": "card"})
    response = billing_client.get(reverse("billing:checkout_return") + "?setup_session=nope")
    assert response["Location"] == url


def test_a_forged_form_token_is_refused_on_the_page(billing_client, price, account):
    url = reverse("billing:checkout", args=[price("starter").public_id])
    response = billing_client.post(url, {"form_token": "forged", "action": "trial"})
    assert response.status_code == 422
    assert "This form has expired" in response.content.decode()
    assert not Subscription.objects.filter(customer__user=account).exists()


# --- Dashboard, receipts ---------------------------------------------------------------------------
def test_the_dashboard_shows_plan_status_next_charge_card_and_invoices(
    billing_client, price, account_customer
):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("starter"), trial=False, idempotency_key=new_key()
    )
    page = billing_client.get(reverse("billing:dashboard")).content.decode()
    invoice = Invoice.objects.get(subscription=subscription)
    assert "Starter" in page
    assert "Active" in page
    assert f"$9.00 on {subscription.current_period_end:%B %-d, %Y}" in page
    assert "Visa ending in 4242" in page
    assert reverse("billing:invoice", args=[invoice.public_id]) in page
    assert reverse("billing:invoice_pdf", args=[invoice.public_id]) in page
    # Starter lacks API access: Pro unlocks it, one click away.
    assert "Pro includes api access" in page or "Upgrade to Pro" in page
    assert f"{reverse('billing:change_plan')}?price={price('pro').public_id}" in page


def test_the_dashboard_without_a_subscription_points_to_pricing(billing_client):
    page = billing_client.get(reverse("billing:dashboard")).content.decode()
    assert "You don't have a subscription." in page


def test_dashboard_queries_stay_bounded_with_two_hundred_invoices(
    billing_client, price, account_customer, django_assert_max_num_queries
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    for _ in range(200):
        draft = services.invoice_draft_create(
            customer=account_customer,
            currency="USD",
            lines=[
                services.LineSpec(
                    kind=InvoiceLine.Kind.PLAN_CHARGE, description="Extra", amount=100
                )
            ],
        )
        services.invoice_finalize(invoice=draft)
    # The first view also reads the reported usage and the catalog's metrics, then cached.
    with django_assert_max_num_queries(18):
        first = billing_client.get(reverse("billing:dashboard"))
    with django_assert_max_num_queries(16):
        last = billing_client.get(reverse("billing:dashboard") + "?page=11")
    assert first.status_code == last.status_code == 200
    assert "Page 11 of 11" in last.content.decode()


def test_the_receipt_shows_lines_payments_and_totals_to_its_owner_only(
    billing_client, price, account_customer, make_user
):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    invoice = Invoice.objects.get(subscription=subscription)
    page = billing_client.get(reverse("billing:invoice", args=[invoice.public_id]))
    text = page.content.decode()
    assert f"Invoice {invoice.number}" in text
    assert "$29.00" in text
    assert "Succeeded" in text
    assert "Visa ending in 4242" in text

    other = Client()
    make_user(email="other@example.org")
    other.post("/accounts/login/", {"login": "other@example.org", "password": STRONG_PASSWORD})
    services.customer_get_or_create(user=make_user(email="third@example.org"))
    assert other.get(reverse("billing:invoice", args=[invoice.public_id])).status_code == 404
    assert other.get(reverse("billing:invoice_pdf", args=[invoice.public_id])).status_code == 404
    assert billing_client.get(reverse("billing:invoice", args=["inv_nothing"])).status_code == 404


def test_the_receipt_downloads_as_a_pdf(billing_client, price, account_customer):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    invoice = Invoice.objects.get(subscription=subscription)
    response = billing_client.get(reverse("billing:invoice_pdf", args=[invoice.public_id]))
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="invoice-{invoice.number}.pdf"'
    assert response.content.startswith(b"%PDF-")


def test_the_receipt_shows_a_refund(billing_client, price, account_customer, staff):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    invoice = Invoice.objects.get(subscription=subscription)
    services.refund_issue(
        payment=invoice.payments.get(),
        amount=500,
        reason=Refund.Reason.REQUESTED_BY_CUSTOMER,
        note="Goodwill",
        actor=staff,
        idempotency_key=new_key(),
    )
    text = billing_client.get(reverse("billing:invoice", args=[invoice.public_id])).content
    assert b'id="invoice-refunded">$5.00' in text


# --- Card ------------------------------------------------------------------------------------------
def test_replacing_the_card_of_a_past_due_subscription_pays_the_open_invoice(
    billing_client, price, account_customer
):
    add_card(account_customer, CARD_DECLINES_AFTER_ATTACH)
    subscription = services.subscription_start(
        customer=account_customer, price=price("starter"), idempotency_key=new_key()
    )
    with clock.frozen(subscription.trial_end + dt.timedelta(minutes=1)):
        billing_run()
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    page = billing_client.get("/").content.decode()
    assert "your subscription is past due" in page
    assert f'href="{reverse("billing:payment_method")}">Update your card' in page

    response = billing_client.post(reverse("billing:payment_method"))
    assert response.status_code == 303
    back = card_saved_on_hosted_form(billing_client, response["Location"], CARD_OK)
    done = billing_client.get(back, follow=True)
    text = done.content.decode()
    assert "is paid" in text
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert "your subscription is past due" not in billing_client.get("/").content.decode()


def test_the_banner_costs_no_query_for_visitors_and_one_for_accounts(
    billing_client, django_assert_num_queries
):
    with django_assert_num_queries(0):
        Client().get("/")
    with CaptureQueriesContext(connection) as queries:
        billing_client.get("/")
    billing = [q["sql"] for q in queries.captured_queries if "billing_" in q["sql"]]
    assert len(billing) == 1, billing


# --- Plan changes ----------------------------------------------------------------------------------
def test_an_upgrade_preview_is_what_the_upgrade_then_charges(
    billing_client, price, account_customer
):
    add_card(account_customer)
    # Ten days into the period (and near today: the session must still be fresh then).
    at = clock.now().replace(microsecond=0)
    start = at - dt.timedelta(days=10)
    with clock.frozen(start):
        subscription = services.subscription_start(
            customer=account_customer,
            price=price("starter"),
            trial=False,
            idempotency_key=new_key(),
        )
    pro = price("pro")
    with clock.frozen(at):
        url = f"{reverse('billing:change_plan')}?price={pro.public_id}"
        page = billing_client.get(url)
        preview = change_preview(subscription=subscription, price=pro, at=at)
        assert preview.timing == ChangeTiming.NOW
        due = f"${preview.due_now / 100:,.2f}"  # formatting only, for the assertion
        assert f'id="preview-due">{due}' in page.content.decode()
        response = billing_client.post(
            reverse("billing:change_plan"), {"form_token": form_token(page), "price": pro.public_id}
        )
    assert response.status_code == 302
    upgrade = Invoice.objects.get(
        subscription=subscription, billing_reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE
    )
    assert upgrade.total == preview.due_now
    assert upgrade.status == InvoiceStatus.PAID


def test_a_downgrade_is_scheduled_at_period_end_and_can_be_dropped(
    billing_client, price, account_customer
):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    starter = price("starter")
    page = billing_client.get(f"{reverse('billing:change_plan')}?price={starter.public_id}")
    assert "Nothing is charged now" in page.content.decode()
    billing_client.post(
        reverse("billing:change_plan"), {"form_token": form_token(page), "price": starter.public_id}
    )
    subscription.refresh_from_db()
    assert subscription.scheduled_price == starter
    dashboard = billing_client.get(reverse("billing:dashboard")).content.decode()
    assert "Scheduled change" in dashboard
    billing_client.post(reverse("billing:change_plan"), {"action": "keep"})
    subscription.refresh_from_db()
    assert subscription.scheduled_price is None


def test_a_change_of_interval_waits_for_the_period_end(billing_client, price, account_customer):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("starter"), trial=False, idempotency_key=new_key()
    )
    yearly = price("starter", "year")
    page = billing_client.get(f"{reverse('billing:change_plan')}?price={yearly.public_id}")
    assert f"until {subscription.current_period_end:%B %-d, %Y}" in page.content.decode()


# --- Cancel and resume -----------------------------------------------------------------------------
def test_cancel_at_period_end_keeps_the_reason_and_resume_undoes_it(
    billing_client, price, account_customer
):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    page = billing_client.get(reverse("billing:cancel"))
    text = page.content.decode()
    assert "<legend>Why are you canceling?</legend>" in text
    missing = billing_client.post(reverse("billing:cancel"), {"form_token": form_token(page)})
    assert missing.status_code == 422
    assert "Choose the reason closest to yours." in missing.content.decode()
    response = billing_client.post(
        reverse("billing:cancel"),
        {"form_token": form_token(page), "reason": "too_expensive", "comment": "Budget cuts"},
        follow=True,
    )
    assert "You can resume it until then." in response.content.decode()
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end
    assert subscription.cancellation_reason == Subscription.CancellationReason.TOO_EXPENSIVE
    assert subscription.cancellation_comment == "Budget cuts"

    billing_client.post(reverse("billing:resume"))
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end
    assert subscription.cancellation_reason == ""


def test_resume_only_answers_a_post(billing_client):
    assert billing_client.get(reverse("billing:resume")).status_code == 405


# --- Smaller promises ------------------------------------------------------------------------------
def test_the_sandbox_names_the_setup_reference_of_its_return_url():
    gateway = SandboxGateway()
    query = {"setup_session": "seti_1", "redirect_status": "succeeded"}
    assert gateway.setup_return_reference(query=query) == "seti_1"
    assert gateway.setup_return_reference(query={}) == ""


def test_a_checkout_for_an_account_already_subscribed_leads_to_a_plan_change(
    billing_client, price, account_customer
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    starter = price("starter")
    response = billing_client.get(reverse("billing:checkout", args=[starter.public_id]))
    assert response["Location"] == f"{reverse('billing:change_plan')}?price={starter.public_id}"


def test_a_declined_checkout_returns_to_its_result_instead_of_a_second_checkout(
    billing_client, price
):
    checkout_with_card(billing_client, price("pro"), CARD_INSUFFICIENT_FUNDS)
    again = billing_client.get(reverse("billing:checkout", args=[price("starter").public_id]))
    assert again["Location"] == reverse("billing:checkout_return")


def test_a_free_plan_starts_without_a_card(billing_client, price, account):
    url = reverse("billing:checkout", args=[price("free").public_id])
    page = billing_client.get(url)
    assert "Start the free plan" in page.content.decode()
    billing_client.post(url, {"form_token": form_token(page), "action": "free"})
    subscription = Subscription.objects.get(customer__user=account)
    assert subscription.status == SubscriptionStatus.ACTIVE


def test_a_checkout_option_the_plan_does_not_offer_is_refused(billing_client, price, account):
    url = reverse("billing:checkout", args=[price("pro").public_id])
    page = billing_client.get(url)
    response = billing_client.post(url, {"form_token": form_token(page), "action": "trial"})
    assert response.status_code == 422
    assert not Subscription.objects.filter(customer__user=account).exists()


def test_an_upgrade_during_a_trial_previews_nothing_due_until_the_trial_ends(
    billing_client, price, account_customer
):
    subscription = services.subscription_start(
        customer=account_customer, price=price("starter"), idempotency_key=new_key()
    )
    preview = change_preview(subscription=subscription, price=price("pro"), at=clock.now())
    assert preview.timing == ChangeTiming.TRIAL
    assert preview.due_now == 0
    assert preview.effective_at == subscription.trial_end
    page = billing_client.get(f"{reverse('billing:change_plan')}?price={price('pro').public_id}")
    assert "Nothing is charged now: your trial continues on Pro" in page.content.decode()


def test_cancel_refuses_a_reason_not_on_the_survey(price, account_customer):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    with pytest.raises(ValidationFailed):
        services.subscription_cancel(
            subscription=subscription,
            at_period_end=True,
            idempotency_key=new_key(),
            reason="because",
        )


def test_the_dashboard_of_a_subscribed_account_costs_at_most_six_queries(
    billing_client, price, account_customer, django_assert_max_num_queries
):
    add_card(account_customer)
    services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    billing_client.get(reverse("billing:dashboard"))  # what is cached for every page is warm
    with django_assert_max_num_queries(6):
        page = billing_client.get(reverse("billing:dashboard"))
    assert page.status_code == 200
    assert "Pro" in page.content.decode()


@pytest.mark.parametrize("status", list(SubscriptionStatus))
def test_pages_that_loaded_the_subscription_answer_the_past_due_banner_as_its_query_does(
    billing_client, price, account, account_customer, status
):
    add_card(account_customer)
    subscription = services.subscription_start(
        customer=account_customer, price=price("pro"), trial=False, idempotency_key=new_key()
    )
    consistent = {
        "ended_at": clock.now() if status in SUBSCRIPTION_ENDED else None,
        "trial_end": subscription.current_period_end if status == "trialing" else None,
    }
    Subscription.objects.filter(pk=subscription.pk).update(status=status, **consistent)
    overdue = account_payment_overdue(user_id=account.pk)
    assert payment_overdue_of(subscription_current(customer=account_customer)) == overdue
    for path in ("/billing/", "/pricing/"):
        page = billing_client.get(path).content.decode()
        assert ("your subscription is past due" in page) == overdue, (path, status)
