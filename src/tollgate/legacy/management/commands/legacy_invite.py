"""``manage.py legacy_invite [--limit N]``: at go-live, email the imported accounts a link to
choose a password."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from tollgate.legacy.services import legacy_invitations_send


class Command(BaseCommand):
    help = (
        "Queue the set-password email (allauth's reset link) for every imported account without a "
        "password that was not invited yet; each account is invited once. Run it at go-live."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit", type=int, help="Invite at most this many accounts (to send in waves)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with tqdm(desc="inviting", unit=" accounts", file=self.stderr, disable=None) as bar:
            invited = legacy_invitations_send(limit=options["limit"], on_batch=bar.update)
        self.stdout.write(f"Invited {invited} accounts; the worker sends the emails.")
