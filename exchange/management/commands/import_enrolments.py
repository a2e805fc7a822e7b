"""Bulk import of enrolments from an enrolment-database export (CSV or JSON).

Rows run in batches of ``--batch-size`` (one transaction per batch, a savepoint per row): a bad
row is reported and never aborts the others. A school change in the file plans its handovers by
the same rules as the API, set-based for the whole batch (``handover_plan_for_enrolments``) before
the batch commits; should a batch fail as a whole, its rows are retried one per transaction.
``--dry-run`` checks every row and rolls everything back. The error report names row numbers,
columns and reasons, never the row's values (they are pupil data). Format: docs/import.md.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandParser

from exchange import services
from exchange.domain import NationalNumberError, normalise_national_number
from exchange.handover import handover_plan_for_enrolments, handover_tables_analyze
from exchange.importing import read_rows, run_rows, write_report
from exchange.models import Enrolment, Organisation, OrganisationKind

COLUMNS = (
    "instellingsnummer",
    "rijksregisternummer",
    "voornaam",
    "familienaam",
    "geboortedatum",
    "adres",
    "niveau",
    "startdatum",
    "einddatum",
    "schooljaar",
)
REQUIRED = ("instellingsnummer", "rijksregisternummer", "niveau", "startdatum")


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError({field: "not a date in the form YYYY-MM-DD"}) from None


class Command(BaseCommand):
    help = "Import enrolments from a CSV or JSON export (see docs/import.md); bad rows never abort the others."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "json"], help="Default: from the file extension")
        parser.add_argument("--dry-run", action="store_true", help="Check every row, store nothing")
        parser.add_argument("--report", type=Path, help="Write the per-row error report (CSV) here")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500; 1 = one per row)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rows, first_row = read_rows(options["file"], options["format"], REQUIRED)
        schools = {o.official_number: o for o in Organisation.objects.filter(kind=OrganisationKind.SCHOOL)}
        result = run_rows(
            rows,
            lambda row: self._import(row, schools),
            first_row=first_row,
            dry_run=options["dry_run"],
            progress=not options["no_progress"],
            batch_size=options["batch_size"],
            finish_batch=lambda enrolments: handover_plan_for_enrolments(enrolments=enrolments),
        )
        if result.done and not options["dry_run"]:
            handover_tables_analyze()
        write_report(options["report"], result)
        self.stdout.write(result.summary(dry_run=options["dry_run"]))
        for row_number, name, message in result.errors[:50]:
            self.stdout.write(f"  row {row_number}: {name}: {message}")

    def _import(self, row: dict[str, str], schools: dict[str, Organisation]) -> Enrolment:
        for field in REQUIRED:
            if not row.get(field):
                raise ValidationError({field: "required"})
        school = schools.get(row["instellingsnummer"])
        if school is None:
            raise ValidationError({"instellingsnummer": "no school with this number on the platform"})
        try:
            number = normalise_national_number(row["rijksregisternummer"])
        except NationalNumberError as exc:
            raise ValidationError({"rijksregisternummer": str(exc)}) from None
        pupil = services.pupil_find_or_register(
            national_number=number,
            first_name=row.get("voornaam") or None,
            last_name=row.get("familienaam") or None,
            birth_date=_date(row.get("geboortedatum", ""), "geboortedatum"),
            address=row.get("adres", ""),
        )
        start = _date(row["startdatum"], "startdatum")
        assert start is not None  # noqa: S101 - required above
        return services.enrolment_register(
            pupil=pupil,
            school=school,
            level=row["niveau"],
            start=start,
            end=_date(row.get("einddatum", ""), "einddatum"),
            school_year=row.get("schooljaar") or None,
            ends_previous=True,
            plan_handovers=False,  # planned for the whole batch (finish_batch)
        )
