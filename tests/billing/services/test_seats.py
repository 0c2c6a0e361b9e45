"""Per-seat prices: the subscription pays the price once per seat; more seats are prorated and
charged now, fewer take effect at the period end; seats never go below the organisation's members,
and nobody is invited or joins without a free seat."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tests.conftest import STRONG_PASSWORD
from tollgate.accounts.models import User
from tollgate.audit.models import AuditEvent
from tollgate.billing import reports, services
from tollgate.billing.clock import billing_run
from tollgate.billing.errors import NoFreeSeat, SeatsBelowMembers
from tollgate.billing.integrity import ledger_check
from tollgate.billing.models import Invoice
from tollgate.billing.previews import seats_preview
from tollgate.catalog.models import Price
from tollgate.catalog.services import catalog_load
from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.core.money import Money
from tollgate.organisations import services as org_services

pytestmark = pytest.mark.django_db
UTC = dt.UTC
START = dt.datetime(2025, 4, 1, tzinfo=UTC)  # April: 30 days
MIDWAY = START + dt.timedelta(days=15)

SEATS_CATALOG = {
    "products": [
        {
            "code": "app",
            "name": "App",
            "plans": [
                {
                    "code": "team",
                    "name": "Team",
                    "trial_days": 14,
                    "prices": [
                        {"amount": 1000, "currency": "USD", "interval": "month", "per_seat": True}
                    ],
                },
                {
                    "code": "team-plus",
                    "name": "Team Plus",
                    "prices": [
                        {"amount": 2000, "currency": "USD", "interval": "month", "per_seat": True}
                    ],
                },
                {
                    "code": "flat",
                    "name": "Flat",
                    "prices": [{"amount": 2900, "currency": "USD", "interval": "month"}],
                },
            ],
        }
    ]
}


@pytest.fixture
def plans(db):
    catalog_load(document=SEATS_CATALOG)

    def find(code: str) -> Price:
        return Price.objects.get(plan__code=code, active=True)

    return find


def start(customer, price, seats=None, trial=False):
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        return services.subscription_start(
            customer=customer, price=price, trial=trial, seats=seats, idempotency_key=new_key()
        )


def add_member(customer, email, django_capture_on_commit_callbacks):
    owner = customer.user
    sent = org_services.invitation_create(
        organisation=customer.organisation, email=email, role="member", actor=owner
    )
    user = User.objects.create_user(email=email, password=STRONG_PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        return org_services.invitation_accept(token=sent.token, user=user)


def test_a_per_seat_price_is_paid_once_per_seat(customer, plans):
    subscription = start(customer, plans("team"), seats=3)
    invoice = Invoice.objects.get(subscription=subscription)
    line = invoice.lines.get()
    assert (subscription.seats, invoice.total, invoice.status) == (3, 3000, "paid")
    assert (line.amount, line.seats) == (3000, 3)
    assert line.description.startswith("Team, 3 seats (")
    assert AuditEvent.objects.get(action="billing.subscription_started").details["seats"] == 3


def test_a_flat_price_ignores_seats(customer, plans):
    subscription = start(customer, plans("flat"), seats=5)
    assert (subscription.seats, Invoice.objects.get().total) == (1, 2900)


def test_more_seats_are_prorated_and_charged_now(customer, plans):
    subscription = start(customer, plans("team"), seats=3)
    with clock.frozen(MIDWAY):
        preview = seats_preview(subscription=subscription, seats=5, at=MIDWAY)
        changed = services.subscription_seats_change(
            subscription=subscription, seats=5, idempotency_key=new_key()
        )
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    line = invoice.lines.get()
    # Two more seats at 1000 for half of the period.
    assert (line.kind, line.amount, line.seats) == ("proration_debit", 1000, 5)
    assert "2 more seats (5 in all)" in line.description
    assert (invoice.total, invoice.status) == (preview.due_now, "paid") == (1000, "paid")
    assert (changed.seats, changed.scheduled_seats) == (5, None)
    assert ledger_check().ok
    event = AuditEvent.objects.get(action="billing.subscription_seats_changed")
    assert event.details | {"invoice": None} == {"from": 3, "to": 5, "when": "now", "invoice": None}
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 5000


def test_the_same_request_twice_adds_seats_once(customer, plans):
    subscription = start(customer, plans("team"), seats=1)
    key = new_key()
    with clock.frozen(MIDWAY):
        for _ in range(2):
            again = services.subscription_seats_change(
                subscription=subscription, seats=2, idempotency_key=key
            )
    assert again.seats == 2
    assert Invoice.objects.filter(billing_reason="subscription_update").count() == 1


def test_fewer_seats_wait_for_the_period_end(customer, plans):
    subscription = start(customer, plans("team"), seats=4)
    with clock.frozen(MIDWAY):
        preview = seats_preview(subscription=subscription, seats=2, at=MIDWAY)
        changed = services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )
    assert preview.effective_at == subscription.current_period_end
    assert (preview.due_now, preview.period_amount) == (0, 2000)
    assert (changed.seats, changed.scheduled_seats) == (4, 2)
    assert not Invoice.objects.filter(billing_reason="subscription_update").exists()
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    changed.refresh_from_db()
    assert (changed.seats, changed.scheduled_seats) == (2, None)
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 2000


def test_asking_for_the_seats_it_has_drops_a_scheduled_decrease(customer, plans):
    subscription = start(customer, plans("team"), seats=4)
    with clock.frozen(MIDWAY):
        services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )
        kept = services.subscription_seats_change(
            subscription=subscription, seats=4, idempotency_key=new_key()
        )
    assert (kept.seats, kept.scheduled_seats) == (4, None)
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 4000


def test_a_trial_changes_seats_at_once_for_free(customer, plans):
    subscription = start(customer, plans("team"), seats=3, trial=True)
    with clock.frozen(MIDWAY - dt.timedelta(days=10)):
        more = services.subscription_seats_change(
            subscription=subscription, seats=6, idempotency_key=new_key()
        )
        fewer = services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )
    assert (more.seats, fewer.seats, fewer.scheduled_seats) == (6, 2, None)
    assert not Invoice.objects.exists()


def test_a_flat_price_has_no_seats_to_change(customer, plans):
    subscription = start(customer, plans("flat"))
    with pytest.raises(ValidationFailed, match="not priced per seat"):
        services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )


@pytest.mark.parametrize("seats", [0, -1, 100_001, True, "3"])
def test_seats_must_be_a_whole_number_in_range(customer, plans, seats):
    subscription = start(customer, plans("team"))
    with pytest.raises(ValidationFailed, match="whole number of seats"):
        services.subscription_seats_change(
            subscription=subscription, seats=seats, idempotency_key=new_key()
        )


def test_a_discount_takes_its_share_off_the_added_seats(customer, plans, staff):
    coupon = services.coupon_create(
        name="Fifth", percent_off=Decimal("20"), duration="forever", actor=staff
    )
    services.promotion_code_create(coupon=coupon, code="FIFTH", actor=staff)
    add_card(customer, CARD_OK)
    with clock.frozen(START):
        subscription = services.subscription_start(
            customer=customer,
            price=plans("team"),
            trial=False,
            seats=2,
            idempotency_key=new_key(),
            promotion_code="FIFTH",
        )
    assert Invoice.objects.get().total == 1600
    with clock.frozen(MIDWAY):
        services.subscription_seats_change(
            subscription=subscription, seats=4, idempotency_key=new_key()
        )
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    lines = {line.kind: line.amount for line in invoice.lines.all()}
    # Half a period of two more seats (1000) less 20% of it.
    assert lines == {"proration_debit": 1000, "discount": -200}
    assert invoice.total == 800
    assert ledger_check().ok


def test_an_upgrade_prorates_both_prices_for_the_seats(customer, plans):
    subscription = start(customer, plans("team"), seats=3)
    with clock.frozen(MIDWAY):
        services.subscription_change_price(
            subscription=subscription, price=plans("team-plus"), idempotency_key=new_key()
        )
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    lines = {line.kind: (line.amount, line.seats) for line in invoice.lines.all()}
    assert lines == {"proration_credit": (-1500, 3), "proration_debit": (3000, 3)}
    subscription.refresh_from_db()
    assert (subscription.price, subscription.seats) == (plans("team-plus"), 3)


def test_moving_to_a_per_seat_price_pays_for_every_member(
    customer, plans, django_capture_on_commit_callbacks
):
    subscription = start(customer, plans("flat"))
    add_member(customer, "one@example.org", django_capture_on_commit_callbacks)
    add_member(customer, "two@example.org", django_capture_on_commit_callbacks)
    with clock.frozen(MIDWAY):
        moved = services.subscription_change_price(
            subscription=subscription, price=plans("team"), idempotency_key=new_key()
        )
    # 2900 flat up to 3 seats at 1000 (one per member): an upgrade, now, for the three members.
    assert (moved.price, moved.seats, moved.scheduled_seats) == (plans("team"), 3, None)
    invoice = Invoice.objects.get(billing_reason="subscription_update")
    lines = {line.kind: (line.amount, line.seats) for line in invoice.lines.all()}
    assert lines == {"proration_credit": (-1450, 1), "proration_debit": (1500, 3)}
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 3000


def test_a_scheduled_move_to_a_per_seat_price_keeps_a_seat_per_member(
    customer, plans, django_capture_on_commit_callbacks
):
    subscription = start(customer, plans("team-plus"), seats=4)
    add_member(customer, "one@example.org", django_capture_on_commit_callbacks)
    with clock.frozen(MIDWAY):
        services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )
        moved = services.subscription_change_price(
            subscription=subscription, price=plans("team"), idempotency_key=new_key()
        )
    # A downgrade at the period end, keeping the decrease to two seats asked for before.
    assert (moved.scheduled_price, moved.seats, moved.scheduled_seats) == (plans("team"), 4, 2)
    with clock.frozen(dt.datetime(2025, 5, 1, tzinfo=UTC)):
        billing_run()
    moved.refresh_from_db()
    assert (moved.price, moved.seats) == (plans("team"), 2)
    assert Invoice.objects.get(billing_reason="subscription_cycle").total == 2000


def test_seats_never_go_below_the_members(customer, plans, django_capture_on_commit_callbacks):
    subscription = start(customer, plans("team"), seats=3)
    add_member(customer, "one@example.org", django_capture_on_commit_callbacks)
    add_member(customer, "two@example.org", django_capture_on_commit_callbacks)
    with clock.frozen(MIDWAY), pytest.raises(SeatsBelowMembers) as refused:
        services.subscription_seats_change(
            subscription=subscription, seats=2, idempotency_key=new_key()
        )
    assert refused.value.details["members"] == 3


def test_a_checkout_never_pays_for_fewer_seats_than_members(
    customer, plans, django_capture_on_commit_callbacks
):
    add_member(customer, "one@example.org", django_capture_on_commit_callbacks)
    with pytest.raises(SeatsBelowMembers):
        start(customer, plans("team"), seats=1)
    assert start(customer, plans("team")).seats == 2  # by default, one per member


def test_nobody_is_invited_without_a_free_seat(customer, plans, django_capture_on_commit_callbacks):
    start(customer, plans("team"), seats=3)
    org_services.invitation_create(
        organisation=customer.organisation,
        email="a@example.org",
        role="member",
        actor=customer.user,
    )
    add_member(customer, "b@example.org", django_capture_on_commit_callbacks)
    # The owner, one member and one open invitation take the three seats.
    with pytest.raises(NoFreeSeat) as refused:
        org_services.invitation_create(
            organisation=customer.organisation,
            email="c@example.org",
            role="member",
            actor=customer.user,
        )
    assert refused.value.details["seats"] == 3


def test_an_invitation_cannot_be_accepted_once_the_seats_are_taken(
    customer, plans, django_capture_on_commit_callbacks
):
    subscription = start(customer, plans("team"), seats=2)
    sent = org_services.invitation_create(
        organisation=customer.organisation,
        email="late@example.org",
        role="member",
        actor=customer.user,
    )
    with clock.frozen(MIDWAY):
        services.subscription_seats_change(
            subscription=subscription, seats=1, idempotency_key=new_key()
        )
    late = User.objects.create_user(email="late@example.org", password=STRONG_PASSWORD)
    with pytest.raises(NoFreeSeat):
        org_services.invitation_accept(token=sent.token, user=late)


def test_mrr_counts_every_seat(customer, plans):
    start(customer, plans("team"), seats=3)
    assert reports.revenue_mrr_totals() == [Money(3000, "USD")]
    assert [line.mrr for line in reports.revenue_mrr()] == [Money(3000, "USD")]
