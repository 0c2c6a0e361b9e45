"""The audit trail's hash chains: appended without contention, proven by audit_verify, and guarded
by database triggers on PostgreSQL."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pgtrigger
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from tollgate.audit import chain
from tollgate.audit.models import ANONYMISED_ACTOR, AuditEvent, AuditStream
from tollgate.audit.services import audit_actor_anonymise, audit_record
from tollgate.audit.verification import audit_chain_verify

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="database triggers and row locks: PostgreSQL only"
)


@contextmanager
def triggers_off() -> Iterator[None]:
    """Let a test tamper as someone with the database owner's rights could (PostgreSQL skips the
    append-only triggers; SQLite has none)."""
    if connection.vendor != "postgresql":
        yield
        return
    with pgtrigger.ignore(
        "audit.AuditEvent:audit_event_no_update", "audit.AuditEvent:audit_event_no_delete"
    ):
        yield


def _verify() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit_verify", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_events_of_one_stream_chain_in_order_and_verify(user):
    first = audit_record(action="test.one", actor=user, target=user)
    second = audit_record(action="test.two", actor=user, target=user)
    assert second.stream == first.stream == chain.stream_for(first)
    assert second.seq == first.seq + 1
    assert second.chain_hash == chain.link(first.chain_hash, chain.content_digest(second))
    head = AuditStream.objects.get(number=first.stream)
    assert (head.seq, head.head_hash) == (second.seq, second.chain_hash)
    report = audit_chain_verify()
    assert report.ok, report.findings
    assert report.checked == AuditEvent.objects.count()


def test_details_verify_as_the_database_gives_them_back(user):
    details = {"big": 1e16, "half": 0.5, "whole": 2.0, "pair": (1, 2), "text": "Ωμέγα 🚀"}
    audit_record(action="test.numbers", actor=user, target=user, details=details)
    assert audit_chain_verify().ok


def test_a_batch_of_events_chains_into_one_stream(user, make_user):
    other = make_user(email="other@example.com")
    with transaction.atomic():
        events = AuditEvent.objects.bulk_create(
            [
                AuditEvent(action="test.batch", target_type="accounts.user", target_id=u.public_id)
                for u in (user, other, user)
            ]
        )
    assert len({event.stream for event in events}) == 1
    assert [event.seq for event in events] == list(range(events[0].seq, events[0].seq + 3))
    assert audit_chain_verify().ok


def test_every_event_of_one_transaction_joins_its_first_events_stream(make_user):
    users = [make_user(email=f"u{n}@example.com") for n in range(6)]
    assert (
        len(
            {
                chain.stream_for(AuditEvent(target_type="accounts.user", target_id=u.public_id))
                for u in users
            }
        )
        > 1
    )
    with transaction.atomic():
        events = [audit_record(action="test.many", target=u) for u in users]
    assert len({event.stream for event in events}) == 1
    assert audit_chain_verify().ok


def test_audit_verify_names_an_event_changed_by_raw_sql(user):
    audit_record(action="test.before", actor=user, target=user)
    victim = audit_record(action="test.refund", actor=user, target=user, details={"amount": 500})
    audit_record(action="test.after", actor=user, target=user)
    out, _ = _verify()
    assert "problems=0" in out
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET details = %s WHERE public_id = %s",
            ['{"amount": 5}', victim.public_id],
        )
    with pytest.raises(CommandError) as failure:
        _verify()
    assert victim.public_id in str(failure.value)


def test_audit_verify_reports_removed_events_in_the_middle_and_at_the_end(user):
    events = [audit_record(action=f"test.{n}", target=user) for n in range(4)]
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM audit_auditevent WHERE public_id IN (%s, %s)",
            [events[1].public_id, events[3].public_id],
        )
    report = audit_chain_verify()
    kinds = {(finding.kind, finding.event) for finding in report.findings}
    assert ("gap", events[2].public_id) in kinds
    assert ("head", "") in kinds


def test_anonymising_an_actor_keeps_the_chain_valid(user, make_user):
    staff = make_user(email="staff@example.com")
    event = audit_record(action="test.login", actor=user, target=user)
    assert audit_actor_anonymise(user=user, actor=staff) == 1
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor_id, event.actor_repr) == (None, ANONYMISED_ACTOR)
    assert audit_chain_verify().ok


@postgresql_only
def test_postgresql_refuses_changing_or_removing_an_audit_event(user, make_user):
    event = audit_record(action="test.x", actor=user, target=user)
    other = make_user(email="other@example.com")
    statements = [
        ("UPDATE audit_auditevent SET action = %s WHERE id = %s", ["test.y", event.pk]),
        ("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s", [other.pk, event.pk]),
        ("UPDATE audit_auditevent SET actor_repr = %s WHERE id = %s", ["someone", event.pk]),
        ("DELETE FROM audit_auditevent WHERE id = %s", [event.pk]),
    ]
    for sql, params in statements:
        with (
            pytest.raises(DatabaseError, match="pgtrigger"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, params)
    # A removed account's events lose their link to it (ON DELETE SET NULL): allowed.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_id = NULL WHERE id = %s", [event.pk])


def _two_targets_in_different_streams(make_user: Any) -> tuple[Any, Any]:
    users = [make_user(email=f"s{n}@example.com") for n in range(8)]
    first = users[0]
    stream = chain.stream_for(AuditEvent(target_type="accounts.user", target_id=first.public_id))
    for other in users[1:]:
        key = AuditEvent(target_type="accounts.user", target_id=other.public_id)
        if chain.stream_for(key) != stream:
            return first, other
    raise AssertionError("eight users in one stream of 64")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_of_another_stream_does_not_wait_for_a_held_stream(make_user):
    first, second = _two_targets_in_different_streams(make_user)
    holding, release, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_stream_of_first() -> None:
        try:
            with transaction.atomic():
                audit_record(action="test.held", target=first)
                holding.set()
                release.wait(timeout=120)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def write_second() -> None:
        try:
            with transaction.atomic():
                audit_record(action="test.free", target=second)
            done.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_stream_of_first)
    holder.start()
    try:
        assert holding.wait(timeout=120)
        writer = threading.Thread(target=write_second)
        writer.start()
        # The other stream's write completes while the first stream is still held.
        assert done.wait(timeout=120), "a write to another stream waited for the held one"
        assert holder.is_alive()
        writer.join(timeout=120)
    finally:
        release.set()
        holder.join(timeout=120)
    assert not errors
    assert audit_chain_verify().ok


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_writer_of_the_same_stream_waits_for_the_held_one(make_user):
    first = make_user(email="same@example.com")
    holding, release = threading.Event(), threading.Event()
    waited: list[bool] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                audit_record(action="test.held", target=first)
                holding.set()
                release.wait(timeout=120)
        finally:
            connections.close_all()

    def write() -> None:
        try:
            with transaction.atomic():
                audit_record(action="test.queued", target=first)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=120)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not waited:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                if cursor.fetchone()[0]:
                    waited.append(True)
            time.sleep(0.05)
    finally:
        release.set()
        holder.join(timeout=120)
        writer.join(timeout=120)
    assert waited
    assert audit_chain_verify().ok


def test_marks_from_an_earlier_run_expose_a_chain_rewritten_with_its_head(user, tmp_path):
    victim = audit_record(action="test.marked", actor=user, target=user, details={"n": 1})
    marks = tmp_path / "marks.txt"
    marks.write_text(_verify()[0])
    assert f"head stream={victim.stream} seq={victim.seq} hash={victim.chain_hash}" in (
        marks.read_text()
    )
    # Whoever owns the database rewrites the event and recomputes its hash and the head.
    previous = (
        AuditEvent.objects.filter(stream=victim.stream, seq=victim.seq - 1)
        .values_list("chain_hash", flat=True)
        .first()
        or chain.GENESIS
    )
    victim.details = {"n": 2}
    forged = chain.link(previous, chain.content_digest(victim))
    with triggers_off(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET details = %s, chain_hash = %s WHERE id = %s",
            ['{"n": 2}', forged, victim.pk],
        )
        cursor.execute(
            "UPDATE audit_auditstream SET head_hash = %s WHERE number = %s",
            [forged, victim.stream],
        )
    assert "problems=0" in _verify()[0]
    with pytest.raises(CommandError) as failure:
        call_command(
            "audit_verify", "--marks", str(marks), stdout=io.StringIO(), stderr=io.StringIO()
        )
    assert victim.public_id in str(failure.value)
