"""Bulk import of half-day absences (CSV or JSON), one transaction per row (A-1).

Columns: instellingsnummer, rijksregisternummer, datum (YYYY-MM-DD), dagdeel (vm|nm), code (B|Z|R|P).
Registered in the name of ``--user`` (the school's administration). The report names rows,
columns and reasons, never values. Thresholds apply as for the API (A-2).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange import absences
from exchange.domain import NationalNumberError, normalise_national_number
from exchange.identity import national_number_index
from exchange.importing import read_rows, run_rows, write_report
from exchange.models import AbsenceCode, Organisation, OrganisationKind, Pupil

COLUMNS = ("instellingsnummer", "rijksregisternummer", "datum", "dagdeel", "code")
HALVES = {"vm": "am", "nm": "pm", "am": "am", "pm": "pm"}


class Command(BaseCommand):
    help = "Import half-day absences from CSV or JSON; one transaction per row; --dry-run checks only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--user", required=True, help="Username of the school administration member")
        parser.add_argument("--format", choices=["csv", "json"])
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--report", type=Path)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError("no active user with that username")
        rows, first_row = read_rows(options["file"], options["format"], COLUMNS)
        schools = {o.official_number: o for o in Organisation.objects.filter(kind=OrganisationKind.SCHOOL)}
        result = run_rows(
            rows,
            lambda row: self._row(row, schools, user),
            first_row=first_row,
            dry_run=options["dry_run"],
            progress=not options["no_progress"],
        )
        write_report(options["report"], result)
        self.stdout.write(result.summary(dry_run=options["dry_run"]))
        for row_number, name, message in result.errors[:50]:
            self.stdout.write(f"  row {row_number}: {name}: {message}")

    def _row(self, row: dict[str, str], schools: dict[str, Organisation], user: Any) -> None:
        for field in COLUMNS:
            if not row.get(field):
                raise ValidationError({field: "required"})
        school = schools.get(row["instellingsnummer"])
        if school is None:
            raise ValidationError({"instellingsnummer": "no school with this number on the platform"})
        try:
            number = normalise_national_number(row["rijksregisternummer"])
        except NationalNumberError as exc:
            raise ValidationError({"rijksregisternummer": str(exc)}) from None
        pupil = Pupil.objects.filter(national_number_index=national_number_index(number)).first()
        if pupil is None:
            raise ValidationError({"rijksregisternummer": "no pupil with this number on the platform"})
        try:
            day = date.fromisoformat(row["datum"])
        except ValueError:
            raise ValidationError({"datum": "not a date in the form YYYY-MM-DD"}) from None
        half = HALVES.get(row["dagdeel"].lower())
        if half is None:
            raise ValidationError({"dagdeel": "vm or nm"})
        code = row["code"].upper()
        if code not in AbsenceCode.values:
            raise ValidationError({"code": "one of B, Z, R, P"})
        absences.absence_record(pupil=pupil, school=school, day=day, half=half, code=code, recorded_by=user)
