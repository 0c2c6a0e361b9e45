from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tollgate.catalog.services import catalog_load_file
from tollgate.core.errors import ValidationFailed

DEMO = Path(__file__).resolve().parents[2] / "demo_plans.toml"


class Command(BaseCommand):
    help = "Load products, plans and prices from a TOML file (idempotent). 'demo' loads the demo catalog."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="path to a plans.toml file, or 'demo'")

    def handle(self, *args: Any, **options: Any) -> None:
        path = DEMO if options["path"] == "demo" else Path(options["path"])
        try:
            result = catalog_load_file(path=path)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        if not result.changed:
            self.stdout.write("Catalog already up to date.")
            return
        for line in result.created:
            self.stdout.write(f"created {line}")
        for line in result.updated:
            self.stdout.write(f"updated {line}")
        for line in result.retired:
            self.stdout.write(f"retired {line}")
