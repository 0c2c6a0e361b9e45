"""Proving the audit trail: every stream's events recomputed, in order, against their stored hashes
and the stream's head (``manage.py audit_verify``).

What each finding means:

- ``hash``: the event's stored hash is not the hash of its fields and its predecessor's hash: the
  event was changed (or, when the event before it was rewritten with a recomputed hash, that one).
- ``gap``: sequence numbers are missing before this event: events were removed.
- ``head``: the stream's head does not match its last event: events were removed from the end, or
  the head was changed.
- ``mark``: an event at a head position recorded by an earlier run (``--marks``) has another hash
  now: the chain was rewritten from there on, heads and all.

Reads in batches (bounded memory); events appended while it runs are past the head it read and
are left for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tollgate.audit import chain
from tollgate.audit.models import AuditEvent, AuditStream

BATCH = 2000
_HASHED = (
    "public_id",
    "created_at",
    "action",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "stream",
    "seq",
    "chain_hash",
)


@dataclass(frozen=True, slots=True)
class ChainFinding:
    kind: str  # "hash", "gap" or "head"
    stream: int
    seq: int
    event: str  # the event's public id ("" for a head finding)
    message: str


@dataclass(frozen=True, slots=True)
class HeadMark:
    """A stream's position at some moment, to be kept outside the database and checked later."""

    stream: int
    seq: int
    hash: str

    def line(self) -> str:
        return f"head stream={self.stream} seq={self.seq} hash={self.hash}"

    @classmethod
    def parse(cls, line: str) -> HeadMark | None:
        parts = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
        if not line.startswith("head ") or set(parts) != {"stream", "seq", "hash"}:
            return None
        return cls(int(parts["stream"]), int(parts["seq"]), parts["hash"])


@dataclass(slots=True)
class ChainReport:
    checked: int = 0
    streams: int = 0
    findings: list[ChainFinding] = field(default_factory=list)
    heads: list[HeadMark] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _events(stream: int, upto: int) -> Iterator[AuditEvent]:
    after = 0
    while True:
        batch = list(
            AuditEvent.objects.filter(stream=stream, seq__gt=after, seq__lte=upto)
            .order_by("seq")
            .only(*_HASHED)[:BATCH]
        )
        yield from batch
        if len(batch) < BATCH:
            return
        after = batch[-1].seq


def _stream_verify(head: AuditStream, report: ChainReport, advance: Callable[[], None]) -> None:
    previous, expected = chain.GENESIS, 1
    for event in _events(head.number, head.seq):
        if event.seq != expected:
            report.findings.append(
                ChainFinding(
                    "gap",
                    head.number,
                    event.seq,
                    event.public_id,
                    f"events {expected}..{event.seq - 1} of stream {head.number} are missing "
                    f"before {event.public_id}",
                )
            )
        if chain.link(previous, chain.content_digest(event)) != event.chain_hash:
            report.findings.append(
                ChainFinding(
                    "hash",
                    head.number,
                    event.seq,
                    event.public_id,
                    f"{event.public_id} (stream {head.number}, #{event.seq}) does not match its "
                    "hash: it was changed, or the event before it was",
                )
            )
        previous, expected = event.chain_hash, event.seq + 1
        report.checked += 1
        advance()
    if expected - 1 != head.seq or previous != head.head_hash:
        report.findings.append(
            ChainFinding(
                "head",
                head.number,
                head.seq,
                "",
                f"stream {head.number}: its head is at #{head.seq} but its last event is "
                f"#{expected - 1} or has another hash: events were removed at the end",
            )
        )


def audit_chain_verify(*, on_progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Recompute every stream's chain; ``on_progress(done, total)`` after each event."""
    report = ChainReport()
    heads = list(AuditStream.objects.order_by("number"))
    total = AuditEvent.objects.count()

    def advance() -> None:
        if on_progress is not None:
            on_progress(report.checked, total)

    known = {head.number for head in heads}
    headless = AuditEvent.objects.exclude(stream__in=known).order_by().values_list("stream")
    for (number,) in headless.distinct():
        report.findings.append(
            ChainFinding("head", number, 0, "", f"stream {number} has events but no head")
        )
        known.add(number)
    for head in heads:
        report.streams += 1
        _stream_verify(head, report, advance)
        report.heads.append(HeadMark(head.number, head.seq, head.head_hash))
    return report


def audit_marks_check(*, marks: list[HeadMark]) -> list[ChainFinding]:
    """Whether the events at earlier recorded head positions still carry the recorded hashes: a
    chain rewritten from some point on, heads included, passes ``audit_chain_verify`` but not
    this, as long as the marks were kept where the database's owner cannot change them."""
    findings = []
    for mark in marks:
        if mark.seq == 0:
            continue
        event = AuditEvent.objects.filter(stream=mark.stream, seq=mark.seq).only(
            "public_id", "chain_hash"
        )
        found = event.first()
        if found is None or found.chain_hash != mark.hash:
            findings.append(
                ChainFinding(
                    "mark",
                    mark.stream,
                    mark.seq,
                    found.public_id if found else "",
                    f"stream {mark.stream} #{mark.seq} no longer has the recorded hash: the "
                    "chain was rewritten (or the event removed) since the mark was taken",
                )
            )
    return findings
