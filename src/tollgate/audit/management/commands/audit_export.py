"""``manage.py audit_export --since --until --format jsonl|csv``: the audit events of a window with a
signed manifest; ``--verify MANIFEST`` checks an export (docs/security.md)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.audit.export import FORMATS, audit_export, manifest_verify


def _moment(option: str, value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"{option} {value!r} is not a date or time like 2026-01-31 or 2026-01-31T12:00"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _advance(bar: tqdm[Any], done: int) -> None:
    bar.update(done - bar.n)


class Command(BaseCommand):
    help = (
        "Write the audit events created from --since (included) to --until (excluded), oldest "
        "first, as JSON Lines or CSV, and next to it FILE.manifest.json: the file's SHA-256, the "
        "window, the number of events and an HMAC-SHA256 signature with a key derived from "
        "SECRET_KEY. --verify MANIFEST checks an export against its manifest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="Start (YYYY-MM-DD or ISO time; UTC unless given).")
        parser.add_argument("--until", help="End, excluded (default: now).")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")
        parser.add_argument("--output", help="File to write (default: audit-SINCE-UNTIL.FORMAT).")
        parser.add_argument("--verify", metavar="MANIFEST", help="Check an export instead.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verify"]:
            self._verify(Path(options["verify"]))
            return
        if not options["since"]:
            raise CommandError("--since is required (or --verify MANIFEST).")
        since = _moment("--since", options["since"])
        until = (
            _moment("--until", options["until"]) if options["until"] else dt.datetime.now(dt.UTC)
        )
        if since >= until:
            raise CommandError("--since must be before --until.")
        fmt = options["format"]
        path = Path(options["output"] or f"audit-{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.{fmt}")
        with (
            tqdm(desc="exporting", unit=" events", file=self.stderr, disable=None) as bar,
            path.open("wb") as out,
        ):
            result = audit_export(
                since=since,
                until=until,
                fmt=fmt,
                out=out,
                filename=path.name,
                on_progress=lambda done: _advance(bar, done),
            )
        manifest_path = path.with_name(path.name + ".manifest.json")
        manifest_path.write_text(json.dumps(result.manifest, indent=2, sort_keys=True) + "\n")
        self.stdout.write(
            f"events={result.events} file={path} sha256={result.sha256} manifest={manifest_path}"
        )

    def _verify(self, manifest_path: Path) -> None:
        try:
            manifest = json.loads(manifest_path.read_text())
            content = manifest_path.with_name(manifest["file"]).read_bytes()
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"Cannot read the export of {manifest_path}: {exc}") from exc
        problems = manifest_verify(manifest=manifest, content=content)
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{manifest_path} does not verify.")
        self.stdout.write(f"ok: {manifest['file']} ({manifest['events']} events) verifies")
