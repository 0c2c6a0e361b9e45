"""The staff lists of inbound gateway events (with a retry for failed ones) and of
reconciliation runs with their counts, mismatches and heals."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.billing.conftest import CARD_OK, add_card, new_key
from tollgate.audit.models import AuditEvent
from tollgate.billing import services
from tollgate.billing.gateways.sandbox.adapter import SandboxGateway
from tollgate.billing.gateways.sandbox.models import SandboxCharge
from tollgate.billing.inbound import inbox
from tollgate.billing.models import InboundEvent, InvoiceLine, ReconciliationRun
from tollgate.billing.reconciliation import reconciliation_run
from tollgate.core import clock
from tollgate.core.errors import Conflict, PermissionDenied

pytestmark = pytest.mark.django_db


@pytest.fixture
def open_invoice(customer):
    add_card(customer, CARD_OK)
    draft = services.invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[
            services.LineSpec(kind=InvoiceLine.Kind.PLAN_CHARGE, description="Setup", amount=700)
        ],
    )
    return services.invoice_finalize(invoice=draft)


@pytest.fixture
def failed_event(open_invoice, django_capture_on_commit_callbacks):
    """A charge event that arrived before Tollgate recorded the payment it names: it failed."""
    payload, header = SandboxGateway().event_build(
        event_type="charge.succeeded",
        data={"idempotency_key": f"{open_invoice.public_id}-attempt-1"},
    )
    with django_capture_on_commit_callbacks(execute=True):
        receipt = inbox.event_receive(gateway="sandbox", payload=payload, signature=header)
    event = receipt.event
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    return event


def retry_url(event) -> str:
    return f"/staff/events/{event.gateway}/{event.event_id}/retry/"


def test_failed_events_are_listed_with_their_error(staff_client, failed_event):
    response = staff_client.get("/staff/events/", {"status": "failed"})
    assert response.status_code == 200
    assert failed_event.event_id in response.text
    assert "EventNotReady: no payment with the charge" in response.text
    assert retry_url(failed_event) in response.text


def test_a_failed_event_retried_by_staff_is_processed_once_its_cause_is_gone(
    staff_client, staff, failed_event, open_invoice, django_capture_on_commit_callbacks
):
    services.invoice_pay(invoice=open_invoice, off_session=False, idempotency_key=new_key())
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(retry_url(failed_event))
    assert response.status_code == 302
    failed_event.refresh_from_db()
    assert (failed_event.status, failed_event.attempts, failed_event.last_error) == (
        InboundEvent.Status.PROCESSED,
        2,
        "",
    )
    audit = AuditEvent.objects.get(action="billing.inbound_event_retried")
    assert (audit.actor, audit.details["event_id"]) == (staff, failed_event.event_id)
    page = staff_client.get(response["Location"]).text
    assert f"Event {failed_event.event_id} is queued to be processed again" in page


def test_a_retry_that_fails_again_keeps_the_new_error(
    staff_client, failed_event, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(retry_url(failed_event))
    failed_event.refresh_from_db()
    assert (failed_event.status, failed_event.attempts) == (InboundEvent.Status.FAILED, 2)
    assert failed_event.last_error.startswith("EventNotReady")


def test_only_failed_events_can_be_retried(staff_client, staff, failed_event):
    InboundEvent.objects.filter(pk=failed_event.pk).update(
        status=InboundEvent.Status.PROCESSED, processed_at=clock.now()
    )
    with pytest.raises(Conflict):
        inbox.event_retry(event=failed_event, actor=staff)
    response = staff_client.post(retry_url(failed_event), follow=True)
    assert "Only a failed event can be retried; this one is processed." in response.text
    assert not AuditEvent.objects.filter(action="billing.inbound_event_retried").exists()


def test_only_staff_retry_events(failed_event, customer):
    with pytest.raises(PermissionDenied):
        inbox.event_retry(event=failed_event, actor=customer.user)


def test_an_unknown_event_is_not_found(staff_client, db):
    assert staff_client.post("/staff/events/sandbox/sbevt_nothing/retry/").status_code == 404


# --- Reconciliation ----------------------------------------------------------------------------------------
@pytest.fixture
def runs(customer, price, staff):
    """A clean run, then one after the gateway recorded another amount for the charge."""
    add_card(customer, CARD_OK)
    with clock.frozen(clock.now() - clock_offset()):
        services.subscription_start(
            customer=customer, price=price("pro"), idempotency_key=new_key()
        )
    since = clock.now() - clock_offset() * 2
    clean = reconciliation_run(since=since, actor=staff)
    SandboxCharge.objects.update(amount=3100)
    mismatched = reconciliation_run(since=since)
    return clean, mismatched


def clock_offset():
    return dt.timedelta(hours=1)


def test_the_runs_are_listed_newest_first_with_their_counts(staff_client, runs):
    clean, mismatched = runs
    page = staff_client.get("/staff/reconciliation/").text
    assert page.index(mismatched.public_id) < page.index(clean.public_id)
    assert "staff@example.org" in page
    assert "daily run" in page


def test_a_run_page_shows_its_mismatches(staff_client, runs):
    mismatched = runs[1]
    assert mismatched.mismatched_count >= 1
    page = staff_client.get(f"/staff/reconciliation/{mismatched.public_id}/").text
    assert "amount" in page
    assert "$29.00" in page
    assert "$31.00" in page


def completed_run(**findings) -> ReconciliationRun:
    """A finished run of the last window with ``findings`` (heals, unresolved and their counts)."""
    return ReconciliationRun.objects.create(
        gateway="sandbox",
        window_start=clock.now() - clock_offset(),
        window_end=clock.now(),
        status=ReconciliationRun.Status.COMPLETED,
        finished_at=clock.now(),
        **findings,
    )


def test_a_run_page_shows_its_heals(staff_client, staff, db):
    run = completed_run(
        healed_count=1,
        heals=[{"object": "payment", "id": "pay_HEALED", "from": "unknown", "to": "succeeded"}],
    )
    page = staff_client.get(f"/staff/reconciliation/{run.public_id}/").text
    assert "pay_HEALED" in page
    assert "from: unknown" in page


def test_a_run_pages_and_sorts_its_findings_on_the_server(staff_client, db):
    run = completed_run(
        healed_count=30,
        heals=[
            {"object": "payment", "id": f"pay_HEALED{n:02d}", "from": "unknown", "to": "succeeded"}
            for n in range(30)
        ],
        unresolved_count=1,
        unresolved=[{"object": "payment", "id": "pay_OPEN", "status": "unknown", "reason": "x"}],
    )
    url = f"/staff/reconciliation/{run.public_id}/"
    first = staff_client.get(url).text
    assert len(re.findall(r"pay_HEALED\d\d", first)) == 25
    assert "Heals (30)" in first
    assert "pay_OPEN" in first
    assert 'href="?heals-page=2#heals"' in first
    second = staff_client.get(url, {"heals-page": "2"}).text
    assert re.findall(r"pay_HEALED\d\d", second) == [f"pay_HEALED{n:02d}" for n in range(25, 30)]
    newest_id_first = staff_client.get(url, {"heals-sort": "record", "heals-dir": "desc"}).text
    assert re.findall(r"pay_HEALED\d\d", newest_id_first)[0] == "pay_HEALED29"
