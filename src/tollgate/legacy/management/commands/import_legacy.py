"""``manage.py import_legacy DIR [--dry-run] [--skip-invalid]``: import the old portal's users,
subscriptions and payments (the layout is in docs/migration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from tollgate.core.errors import ValidationFailed
from tollgate.legacy.conflicts import dataset_check_database
from tollgate.legacy.importer import DEFAULT_BATCH_SIZE, legacy_import, legacy_import_preview
from tollgate.legacy.validation import Dataset, dataset_load


class Command(BaseCommand):
    help = (
        "Check every record of a legacy data set (users.json, subscriptions.json, payments.json "
        "and plan_map.json in DIR), report every problem, then import what was not imported "
        "before, one transaction per batch of users. Sends no email: see legacy_invite."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="The directory holding the JSON files.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check and report only; write nothing."
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the records without problems (and whose user has none) anyway.",
        )
        parser.add_argument(
            "--plan-map", type=Path, help="The plan map to use instead of DIR/plan_map.json."
        )
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Users per transaction."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path = options["directory"]
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory.")
        dataset = dataset_load(directory, plan_map=options["plan_map"])
        dataset_check_database(dataset)
        self._report(dataset)
        problems = len(dataset.problems)
        if options["dry_run"]:
            preview = legacy_import_preview(dataset=dataset)
            self.stdout.write(
                f"Dry run: would import users={preview.users} "
                f"subscriptions={preview.subscriptions} payments={preview.payments}; "
                f"already_imported={preview.already_imported}."
            )
            if problems:
                raise CommandError(f"{problems} problems found (dry run: nothing written).")
            return
        if problems and not options["skip_invalid"]:
            raise CommandError(
                f"{problems} problems found; nothing imported. Fix them in the data, or run again "
                "with --skip-invalid to import the other records."
            )
        users = sum(1 for user in dataset.users if user.ok)
        try:
            with tqdm(
                total=users, desc="importing", unit=" users", file=self.stderr, disable=None
            ) as bar:
                result = legacy_import(
                    dataset=dataset, batch_size=options["batch_size"], on_batch=bar.update
                )
        except ValidationFailed as exc:
            raise CommandError(exc.message) from exc
        for conflict in result.conflicts:
            self.stderr.write(str(conflict))
        self.stdout.write(f"Imported {result}.")
        if result.conflicts:
            raise CommandError(f"{len(result.conflicts)} records were not imported (listed above).")

    def _report(self, dataset: Dataset) -> None:
        for problem in dataset.problems:
            self.stderr.write(str(problem))
        self.stdout.write(
            f"Checked: {len(dataset.users)} users, {len(dataset.subscriptions)} subscriptions and "
            f"{len(dataset.payments)} payments without problems of their own; "
            f"{dataset.payments_not_taken} payments that moved no money left out; "
            f"problems={len(dataset.problems)}."
        )
