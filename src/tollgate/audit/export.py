"""Compliance export of the audit trail: the events of a time window as JSON Lines or CSV, with a
signed manifest (``manage.py audit_export``, and the staff console's download).

Every row carries its place in its hash chain (stream, sequence number, hash), so rows can be matched
with a later ``audit_verify`` of the database. The manifest names the file, its SHA-256, the window
and the number of events. It is signed with HMAC-SHA256 over its canonical JSON
(sorted keys, no spaces, without the ``signature`` member), with a key derived from SECRET_KEY
(Django's ``salted_hmac`` with the salt ``tollgate.audit.export``): whoever holds the deployment's
secret key can check it (:func:`manifest_verify`), no one else can forge one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.utils.crypto import salted_hmac

from tollgate.audit import chain
from tollgate.audit.models import AuditEvent
from tollgate.core import clock

FORMATS = ("jsonl", "csv")
COLUMNS = (
    "public_id",
    "created_at",
    "action",
    "actor",
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
_SALT = "tollgate.audit.export"
_BATCH = 2000


@dataclass(frozen=True, slots=True)
class ExportResult:
    events: int
    sha256: str
    manifest: dict[str, Any]


def _rows(since: dt.datetime, until: dt.datetime) -> Iterator[dict[str, Any]]:
    events = AuditEvent.objects.filter(created_at__gte=since, created_at__lt=until).order_by(
        "created_at", "id"
    )
    for event in events.iterator(chunk_size=_BATCH):
        yield {
            "public_id": event.public_id,
            "created_at": event.created_at.astimezone(dt.UTC).isoformat(),
            "action": event.action,
            "actor": event.actor_repr,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "ip": event.ip or "",
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "details": event.details,
            "stream": event.stream,
            "seq": event.seq,
            "chain_hash": event.chain_hash,
        }


def _signature(manifest: dict[str, Any]) -> str:
    unsigned = {name: value for name, value in manifest.items() if name != "signature"}
    return salted_hmac(_SALT, chain.canonical_json(unsigned), algorithm="sha256").hexdigest()


def audit_export(
    *,
    since: dt.datetime,
    until: dt.datetime,
    fmt: str,
    out: IO[bytes],
    filename: str,
    on_progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the events created in ``[since, until)`` to ``out`` (oldest first) and return the
    signed manifest describing it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    digest = hashlib.sha256()

    def emit(text: str) -> None:
        chunk = text.encode("utf-8")
        digest.update(chunk)
        out.write(chunk)

    line = io.StringIO()
    writer = csv.writer(line)

    def csv_line(values: Sequence[Any]) -> str:
        line.seek(0)
        line.truncate()
        writer.writerow(values)
        return line.getvalue()

    if fmt == "csv":
        emit(csv_line(COLUMNS))
    count = 0
    for row in _rows(since, until):
        if fmt == "csv":
            emit(
                csv_line(
                    [chain.canonical_json(row[c]) if c == "details" else row[c] for c in COLUMNS]
                )
            )
        else:
            emit(chain.canonical_json(row) + "\n")
        count += 1
        if on_progress is not None:
            on_progress(count)
    manifest: dict[str, Any] = {
        "file": filename,
        "format": fmt,
        "since": since.astimezone(dt.UTC).isoformat(),
        "until": until.astimezone(dt.UTC).isoformat(),
        "events": count,
        "sha256": digest.hexdigest(),
        "exported_at": clock.now().astimezone(dt.UTC).isoformat(),
        "signature_algorithm": "HMAC-SHA256 (salted_hmac, salt tollgate.audit.export, SECRET_KEY)",
    }
    manifest["signature"] = _signature(manifest)
    return ExportResult(events=count, sha256=manifest["sha256"], manifest=manifest)


def manifest_verify(*, manifest: dict[str, Any], content: bytes) -> list[str]:
    """What is wrong with an export and its manifest (nothing: an empty list)."""
    problems = []
    if not hmac.compare_digest(str(manifest.get("signature", "")), _signature(manifest)):
        problems.append("the manifest's signature does not match (changed, or another key)")
    if hashlib.sha256(content).hexdigest() != manifest.get("sha256"):
        problems.append("the file's SHA-256 is not the one in the manifest")
    return problems
