from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from tollgate.accounts.services import staff_user_bootstrap


class Command(BaseCommand):
    help = (
        "Create the first staff user if it does not exist; its generated password is printed once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="admin@example.com")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["email"]
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"{email!r} is not a valid email address.") from exc
        _user, password = staff_user_bootstrap(email=email)
        if password is None:
            self.stdout.write(f"Staff user {email} already exists (password unchanged).")
            return
        self.stdout.write(self.style.SUCCESS(f"Created staff user {email}"))
        self.stdout.write(f"  password: {password}")
        self.stdout.write("  (shown only this once: store it in a password manager)")
