from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections import Counter
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from tests.billing.conftest import add_card
from tests.legacy.conftest import INVALID, VALID
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import ledger, selectors
from tollgate.billing.clock import billing_run
from tollgate.billing.entitlements import entitlements_for
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import (
    Customer,
    Invoice,
    InvoiceLine,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    PaymentAttempt,
    Subscription,
)
from tollgate.billing.services import customer_get_or_create
from tollgate.catalog.models import Price
from tollgate.core import clock
from tollgate.core.models import OutboxMessage
from tollgate.legacy.conflicts import dataset_check_database
from tollgate.legacy.importer import legacy_import
from tollgate.legacy.models import LegacyRecord
from tollgate.legacy.validation import dataset_load
from tollgate.organisations.models import Membership, Organisation, Role
from tollgate.organisations.services import invitation_accept, invitation_create

pytestmark = pytest.mark.django_db

# What the valid sample set becomes: 6 accounts; 6 customers (5 with a Stripe id, and Dan, who
# paid once without one), each with its personal organisation owned by its account; 5
# subscriptions; 10 paid invoices (the declined attempt is left out).
EXPECTED = {
    "users": 6,
    "emails": 6,
    "customers": 6,
    "organisations": 6,
    "owners": 6,
    "subscriptions": 5,
    "invoices": 10,
    "lines": 10,
    "payments": 10,
    "ledger_transactions": 20,
    "records": 21,
    "paid": {"USD": 42200, "EUR": 500},
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("import_legacy", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    return {
        "users": User.objects.count(),
        "emails": EmailAddress.objects.count(),
        "customers": Customer.objects.count(),
        "organisations": Organisation.objects.count(),
        "owners": Membership.objects.filter(role=Role.OWNER).count(),
        "subscriptions": Subscription.objects.count(),
        "invoices": Invoice.objects.count(),
        "lines": InvoiceLine.objects.count(),
        "payments": PaymentAttempt.objects.count(),
        "ledger_transactions": LedgerTransaction.objects.count(),
        "records": LegacyRecord.objects.count(),
        "paid": dict(
            PaymentAttempt.objects.values_list("currency")
            .annotate(total=Sum("amount"))
            .values_list("currency", "total")
        ),
    }


def test_import_refuses_to_start_when_the_data_has_problems(catalog):
    with pytest.raises(CommandError, match="25 problems found; nothing imported"):
        run(str(INVALID))
    assert User.objects.count() == 0


def test_skip_invalid_imports_only_the_records_without_problems(catalog):
    run(str(INVALID), "--skip-invalid")
    assert list(LegacyRecord.objects.order_by("kind").values_list("kind", "legacy_id")) == [
        ("payment", "309"),
        ("subscription", "208"),
        ("user", "1"),
    ]
    assert ledger_check().ok


def test_a_dry_run_reports_what_it_would_do_and_writes_nothing(catalog):
    out = run(str(VALID), "--dry-run")
    assert "would import users=6 subscriptions=5 payments=10; already_imported=0" in out
    assert snapshot()["records"] == 0
    assert User.objects.count() == 0


def test_the_import_books_past_payments_as_paid_invoices_and_the_ledger_balances(catalog):
    out = run(str(VALID))
    assert "users=6 customers=6 subscriptions=5 payments=10 already_imported=0" in out
    assert snapshot() == EXPECTED
    assert ledger_check().ok
    call_command("ledger_check", stdout=io.StringIO())  # exits non-zero on any problem

    ann = User.objects.get(email="ann@example.com")
    assert not ann.has_usable_password()
    assert ann.date_joined.isoformat() == "2024-03-10T09:15:00+00:00"  # naive: read as UTC
    assert EmailAddress.objects.get(user=ann).verified
    bob = User.objects.get(email__iexact="bob.stone@example.com")
    assert not EmailAddress.objects.get(user=bob).verified
    customer = Customer.objects.get(user=ann)
    assert (customer.gateway, customer.gateway_reference) == ("stripe", "cus_PkA1nnLee")
    assert customer.next_invoice_sequence == 5

    subscription = Subscription.objects.get(customer=customer)
    assert subscription.status == "active"
    assert subscription.price.plan.code == "pro"
    assert subscription.price.interval == "month"
    assert subscription.current_period_start.isoformat() == "2026-01-10T09:15:00+00:00"
    assert subscription.current_period_end.isoformat() == "2026-02-10T09:15:00+00:00"
    assert subscription.billing_anchor.isoformat() == "2025-10-10T09:15:00+00:00"
    statuses = Counter(Subscription.objects.values_list("status", flat=True))
    assert statuses == {"active": 3, "trialing": 1, "canceled": 1}

    # Numbered in the order the customer paid, paid when the old portal took the money.
    invoices = list(Invoice.objects.filter(customer=customer).order_by("number"))
    assert [invoice.number for invoice in invoices] == [
        f"{customer.invoice_prefix}-{n:04d}" for n in range(1, 5)
    ]
    assert [invoice.paid_at.strftime("%Y-%m") for invoice in invoices] == [
        "2025-10",
        "2025-11",
        "2025-12",
        "2026-01",
    ]
    first = invoices[0]
    assert (first.status, first.total, first.amount_paid, first.currency) == (
        "paid",
        2900,
        2900,
        "USD",
    )
    assert first.lines.get().description == "Pro (monthly) (previous portal)"
    payment = first.payments.get()
    assert (payment.status, payment.gateway, payment.gateway_reference) == (
        "succeeded",
        "stripe",
        "pi_3AnnOct",
    )
    assert payment.completed_at == first.paid_at
    postings = LedgerTransaction.objects.filter(invoice=first)
    assert {posting.occurred_at for posting in postings} == {first.paid_at}
    revenue = dict(
        LedgerEntry.objects.filter(account=LedgerAccount.REVENUE)
        .values_list("currency")
        .annotate(total=Sum("amount"))
        .values_list("currency", "total")
    )
    assert revenue == {"USD": -42200, "EUR": -500}
    dan = Customer.objects.get(user__email="dan@example.org")
    assert (dan.gateway, dan.gateway_reference) == ("", "")
    assert AuditEvent.objects.filter(action="legacy.batch_imported").count() == 1


def test_imported_customers_get_their_personal_organisation_owned_by_their_account(catalog):
    with CaptureQueriesContext(connection) as captured:
        run(str(VALID), "--batch-size", "4")
    for customer in Customer.objects.select_related("organisation", "user"):
        organisation = customer.organisation
        assert organisation is not None, customer.email
        assert (organisation.personal, organisation.name) == (True, customer.name)
        assert organisation.created_at == customer.created_at == customer.user.date_joined
        membership = Membership.objects.get(user=customer.user)
        assert (membership.organisation_id, membership.role) == (organisation.pk, Role.OWNER)
        assert selectors.customer_for(user=customer.user) == customer
    ann = User.objects.get(email="ann@example.com")
    assert (
        customer_get_or_create(user=ann).organisation_id
        == Membership.objects.get(user=ann).organisation_id
    )
    assert Organisation.objects.count() == 6  # the first billing step made none
    batches = AuditEvent.objects.filter(action="legacy.batch_imported").order_by("pk")
    assert [event.details["organisations"] for event in batches] == [4, 2]
    # Set-wise, like the rest of the import: one INSERT of each per batch of four users.
    for table in ("organisations_organisation", "organisations_membership"):
        inserts = [q for q in captured if q["sql"].startswith(f'INSERT INTO "{table}"')]
        assert len(inserts) == 2, table


def test_a_customer_imported_without_an_organisation_gets_it_at_the_next_run(catalog):
    run(str(VALID))
    ann = Customer.objects.get(user__email="ann@example.com")
    before = ann.organisation
    # What a release without organisations in the import left behind.
    Customer.objects.filter(pk=ann.pk).update(organisation=None)
    Membership.objects.filter(user=ann.user).delete()
    Organisation.objects.filter(pk=before.pk).delete()
    out = run(str(VALID))
    assert "users=0 customers=0 subscriptions=0 payments=0 already_imported=21" in out
    ann.refresh_from_db()
    assert ann.organisation is not None
    assert Membership.objects.get(user=ann.user).organisation_id == ann.organisation_id
    # What was cached about Ann's account (no organisation) is dropped after commit.
    assert OutboxMessage.objects.filter(
        kind="organisations.membership_changed", payload={"user": ann.user.public_id}
    ).exists()
    assert snapshot() == EXPECTED


def test_an_imported_account_that_joined_a_team_keeps_it_when_its_customer_arrives_later(
    catalog, tmp_path, django_capture_on_commit_callbacks
):
    data = tmp_path / "data"
    shutil.copytree(VALID, data)
    payments = json.loads((VALID / "payments.json").read_text())
    (data / "payments.json").write_text(json.dumps([p for p in payments if p["user_id"] != 4]))
    run(str(data))
    dan = User.objects.get(email="dan@example.org")
    assert not Customer.objects.filter(user=dan).exists()
    ann = User.objects.get(email="ann@example.com")
    team = Customer.objects.get(user=ann).organisation
    sent = invitation_create(organisation=team, email=dan.email, role="member", actor=ann)
    with django_capture_on_commit_callbacks(execute=True):
        invitation_accept(token=sent.token, user=dan)
    out = run(str(VALID))
    assert "customers=1" in out
    dans = Customer.objects.get(user=dan)
    assert dans.organisation is not None  # the history has its organisation, without members
    assert not Membership.objects.filter(organisation=dans.organisation).exists()
    assert Membership.objects.get(user=dan).organisation_id == team.pk
    assert entitlements_for(user=dan).plan_code == "pro"  # still the team's plan


def test_running_the_import_twice_changes_nothing(catalog):
    run(str(VALID))
    before = snapshot()
    out = run(str(VALID))
    assert "users=0 customers=0 subscriptions=0 payments=0 already_imported=21" in out
    assert snapshot() == before
    assert AuditEvent.objects.filter(action="legacy.batch_imported").count() == 1


def test_a_crash_in_a_batch_loses_only_that_batch_and_a_second_run_completes_it(
    catalog, monkeypatch
):
    real = ledger.ledger_post_many
    calls = {"n": 0}

    def crash_in_the_second_batch(postings):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the machine went away")
        return real(postings)

    monkeypatch.setattr(ledger, "ledger_post_many", crash_in_the_second_batch)
    with pytest.raises(RuntimeError):
        run(str(VALID), "--batch-size", "2")
    # The first batch (Ann and Bob) committed; the second rolled back whole.
    assert sorted(LegacyRecord.objects.filter(kind="user").values_list("legacy_id", flat=True)) == [
        "1",
        "2",
    ]
    assert User.objects.count() == 2
    assert ledger_check().ok

    monkeypatch.setattr(ledger, "ledger_post_many", real)
    out = run(str(VALID), "--batch-size", "2")
    assert "users=4" in out
    assert "already_imported=8" in out
    assert snapshot() == EXPECTED
    assert ledger_check().ok


def test_a_live_subscription_started_in_tollgate_meanwhile_is_reported_not_imported(
    catalog, tmp_path
):
    data = tmp_path / "data"
    shutil.copytree(VALID, data)
    (data / "subscriptions.json").write_text("[]")
    run(str(data))
    ann = Customer.objects.get(user__email="ann@example.com")
    legacy = dataset_load(VALID).subscriptions[0]
    Subscription.objects.create(
        customer=ann,
        price=Price.objects.get(plan__code="pro", interval="month", active=True),
        status="active",
        billing_anchor=legacy.billing_anchor,
        current_period_start=legacy.current_period_start,
        current_period_end=legacy.current_period_end,
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 records were not imported"):
        call_command("import_legacy", str(VALID), stdout=io.StringIO(), stderr=err)
    assert (
        "subscriptions.json:0 (101): its customer has a live subscription in Tollgate already; "
        "not imported" in err.getvalue()
    )
    assert Subscription.objects.count() == 5  # the other four, and the one started here


def test_the_import_alone_sends_no_email(catalog, django_capture_on_commit_callbacks):
    queued = OutboxMessage.objects.count()  # the catalog's own (cache invalidation)
    with django_capture_on_commit_callbacks(execute=True):
        run(str(VALID))
    assert OutboxMessage.objects.count() == queued
    assert mail.outbox == []


def test_invitations_are_sent_once_and_only_when_asked(catalog, django_capture_on_commit_callbacks):
    run(str(VALID))
    fay = User.objects.get(email="fay@example.com")
    fay.set_password("chosen-before-the-invitations-42")
    fay.save()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("legacy_invite", "--limit", "3", stdout=io.StringIO(), stderr=io.StringIO())
        out = io.StringIO()
        call_command("legacy_invite", stdout=out, stderr=io.StringIO())
        again = io.StringIO()
        call_command("legacy_invite", stdout=again, stderr=io.StringIO())
    assert "Invited 2 accounts" in out.getvalue()  # the rest of the five without a password
    assert "Invited 0 accounts" in again.getvalue()
    invited = sorted(address for message in mail.outbox for address in message.to)
    assert invited == sorted(
        [
            "ann@example.com",
            "Bob.Stone@example.com",
            "chloe@example.net",
            "dan@example.org",
            "eve@example.com",
        ]
    )
    assert all("/accounts/password/reset/key/" in message.body for message in mail.outbox)
    assert AuditEvent.objects.filter(action="account.login_invited").count() == 5


def test_the_command_refuses_a_directory_that_does_not_exist(catalog, tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        run(str(tmp_path / "nowhere"))


def test_conflicts_found_in_the_database_are_reported_by_the_command(catalog, make_user):
    make_user(email="eve@example.com")
    dataset = dataset_load(VALID)
    dataset_check_database(dataset)
    assert len(dataset.problems) == 1
    result = legacy_import(dataset=dataset)
    assert (result.users, result.subscriptions, result.payments) == (5, 4, 9)
    assert ledger_check().ok


def test_an_imported_subscription_renews_in_tollgate_from_where_its_period_ended(
    catalog, django_capture_on_commit_callbacks
):
    run(str(VALID))
    ann = Customer.objects.get(user__email="ann@example.com")
    add_card(ann)  # the cards stay at Stripe: the customer adds one in Tollgate
    renewal_due = dt.datetime(2026, 2, 10, 10, tzinfo=dt.UTC)
    with clock.frozen(renewal_due), django_capture_on_commit_callbacks(execute=True):
        billing_run(until=renewal_due)
    subscription = Subscription.objects.get(customer=ann)
    assert subscription.status == "active"
    assert subscription.current_period_start.isoformat() == "2026-02-10T09:15:00+00:00"
    assert subscription.current_period_end.isoformat() == "2026-03-10T09:15:00+00:00"
    renewal = Invoice.objects.get(subscription=subscription)
    assert (renewal.status, renewal.total, renewal.number) == (
        "paid",
        2900,
        f"{ann.invoice_prefix}-0005",  # after the four imported ones
    )
    assert ledger_check().ok


def test_payments_added_in_the_old_portal_since_are_imported_by_the_next_run(catalog, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(VALID, data)
    payments = json.loads((VALID / "payments.json").read_text())
    (data / "payments.json").write_text(json.dumps(payments[:3]))  # Ann's first three
    run(str(data))
    out = run(str(VALID))
    assert "users=0 customers=1 subscriptions=0 payments=7 already_imported=14" in out
    assert snapshot() == EXPECTED
    ann = Customer.objects.get(user__email="ann@example.com")
    january = Invoice.objects.get(payments__gateway_reference="pi_3AnnJan")
    assert january.number == f"{ann.invoice_prefix}-0004"
    assert ledger_check().ok


def test_another_plan_map_can_be_named_on_the_command_line(catalog, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(VALID, data)
    (data / "plan_map.json").write_text("{}")
    with pytest.raises(CommandError, match="5 problems found"):
        run(str(data), "--dry-run")
    out = run(str(data), "--dry-run", "--plan-map", str(VALID / "plan_map.json"))
    assert "problems=0" in out


def test_the_import_refuses_installation_wide_invoice_numbers(catalog, settings):
    settings.BILLING_INVOICE_NUMBERING = "account"
    with pytest.raises(CommandError, match="numbers invoices per customer"):
        run(str(VALID))
    assert User.objects.count() == 0
