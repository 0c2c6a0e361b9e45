from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tollgate.core import clock
from tollgate.core.errors import ValidationFailed
from tollgate.integrations.keys import SCOPES, api_key_create


def _plain(text: str) -> str:
    return text


class Command(BaseCommand):
    help = (
        "Create an operator API key for a provisioning script: the key alone is printed on "
        "standard output, once (KEY=$(python -m tollgate api_key_create ...)); a note goes to "
        "standard error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="what uses the key")
        parser.add_argument(
            "--scopes", required=True, help=f"comma-separated, from: {', '.join(SCOPES)}"
        )
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help="the key stops working after this"
        )
        parser.add_argument(
            "--rate-limit",
            action="append",
            default=[],
            metavar="CLASS=RATE",
            help="a rate for one operation class, e.g. check=6000/minute (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise CommandError(
                f"Unknown scope(s): {', '.join(unknown)}. Choose from: {', '.join(SCOPES)}."
            )
        try:
            issued = api_key_create(
                name=options["name"],
                scopes=scopes,
                expires_at=_expiry(options["expires_in_days"]),
                rate_limits=_rates(options["rate_limit"]),
            )
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        key = issued.key
        self.stdout.write(issued.secret)
        expires = (
            f"until {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "until revoked"
        )
        self.stderr.write(
            f"Created operator key {key.public_id} ({key.name}; scopes {', '.join(key.scopes)}), "
            f"working {expires}. The key above is shown only this once: store it in a secret "
            "manager.",
            style_func=_plain,
        )


def _expiry(days: int | None) -> dt.datetime | None:
    if days is None:
        return None
    if days < 1:
        raise CommandError("--expires-in-days must be 1 or more.")
    return clock.now() + dt.timedelta(days=days)


def _rates(pairs: list[str]) -> dict[str, str]:
    rates: dict[str, str] = {}
    for pair in pairs:
        name, sep, rate = pair.partition("=")
        if not sep or not name.strip() or not rate.strip():
            raise CommandError(
                f"Write --rate-limit as CLASS=RATE, such as check=6000/minute (got {pair!r})."
            )
        rates[name.strip()] = rate.strip()
    return rates
