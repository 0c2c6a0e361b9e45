from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from tollgate.accounts.services import staff_password_reset, staff_user_bootstrap
from tollgate.core.errors import TollgateError
from tollgate.notifications.services import absolute_url

RESET_HINT = "`make staff-password` (or this command with --reset-password) sets a new one."


def boxed(lines: list[str]) -> str:
    """``lines`` in a frame that stands out in a scrolling terminal."""
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 4) + "+"
    return "\n".join([rule, *(f"|  {line.ljust(width)}  |" for line in lines), rule])


class Command(BaseCommand):
    help = (
        "Create the first staff user if it does not exist; its generated password is printed once."
        " With --reset-password, give it a new password (printed once, audited)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="admin@example.com")
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="set a new generated password for this staff user and print it (it signs out"
            " the user's sessions)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"]
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"{email!r} is not a valid email address.") from exc
        if options["reset_password"]:
            try:
                _user, password = staff_password_reset(email=email)
            except TollgateError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(self.style.SUCCESS(f"New password for staff user {email}"))
            self._show(email, password)
            return
        _user, new_password = staff_user_bootstrap(email=email)
        if new_password is None:
            self.stdout.write(
                f"Staff user {email} already exists (password unchanged). Lost the password? "
                + RESET_HINT
            )
            return
        self.stdout.write(self.style.SUCCESS(f"Created staff user {email}"))
        self._show(email, new_password)

    def _show(self, email: str, password: str) -> None:
        lines = [
            f"Staff sign-in: {absolute_url('account_login')}",
            f"  email:    {email}",
            f"  password: {password}",
            "Shown only this once: keep it in a password manager.",
            f"Lost it? {RESET_HINT}",
        ]
        self.stdout.write(boxed(lines))
