"""Bulk import of enrolments from an enrolment-database export (CSV or JSON), row by row.

Each row runs in its own transaction: a bad row is reported and never aborts the others. A school
change in the file plans its handovers exactly as the API does. ``--dry-run`` checks every row and
rolls each back. The error report names row numbers, columns and reasons, never the row's values
(they are pupil data). Format: docs/import.md.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from exchange import services
from exchange.domain import NationalNumberError, normalise_national_number
from exchange.models import Organisation, OrganisationKind

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


@dataclass
class RowError:
    row: int
    field: str
    message: str


class _Rollback(Exception):
    """Raised inside a row's transaction in a dry run, to undo it."""


def _date(value: str, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError({field: "not a date in the form YYYY-MM-DD"}) from None


class Command(BaseCommand):
    help = "Import enrolments from a CSV or JSON export (see docs/import.md); one transaction per row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "json"], help="Default: from the file extension")
        parser.add_argument("--dry-run", action="store_true", help="Check every row, store nothing")
        parser.add_argument("--report", type=Path, help="Write the per-row error report (CSV) here")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} does not exist")
        kind = options["format"] or path.suffix.lstrip(".").lower()
        rows = self._read(path, kind)
        schools = {o.official_number: o for o in Organisation.objects.filter(kind=OrganisationKind.SCHOOL)}
        errors: list[RowError] = []
        imported = 0
        for number, row in enumerate(
            tqdm(rows, unit="row", disable=options["no_progress"]), start=2 if kind == "csv" else 1
        ):
            try:
                with transaction.atomic():
                    self._import(row, schools)
                    if options["dry_run"]:
                        raise _Rollback
                imported += 1
            except _Rollback:
                imported += 1
            except ValidationError as exc:
                details = exc.message_dict if hasattr(exc, "error_dict") else {"row": exc.messages}
                errors.extend(RowError(number, field, "; ".join(msgs)) for field, msgs in details.items())
            except (KeyError, ValueError, TypeError) as exc:
                errors.append(RowError(number, "row", f"malformed row ({type(exc).__name__})"))
        if options["report"]:
            with options["report"].open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["row", "field", "message"])
                writer.writerows([(e.row, e.field, e.message) for e in errors])
        verb = "would import" if options["dry_run"] else "imported"
        failed = len({e.row for e in errors})
        self.stdout.write(f"{verb} {imported} of {len(rows)} rows; {failed} rows with errors")
        for error in errors[:50]:
            self.stdout.write(f"  row {error.row}: {error.field}: {error.message}")

    def _read(self, path: Path, kind: str) -> list[dict[str, str]]:
        text = path.read_text(encoding="utf-8-sig")
        if kind == "json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CommandError(f"not valid JSON: line {exc.lineno}, column {exc.colno}") from None
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise CommandError("the JSON file must hold a list of objects")
            return [{k: "" if v is None else str(v).strip() for k, v in r.items()} for r in data]
        if kind == "csv":
            dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;")
            reader = csv.DictReader(text.splitlines(), dialect=dialect)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise CommandError(f"missing columns: {', '.join(missing)}")
            return [{k: (v or "").strip() for k, v in r.items() if k} for r in reader]
        raise CommandError("use --format csv or --format json")

    def _import(self, row: dict[str, str], schools: dict[str, Organisation]) -> None:
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
        services.enrolment_register(
            pupil=pupil,
            school=school,
            level=row["niveau"],
            start=start,
            end=_date(row.get("einddatum", ""), "einddatum"),
            school_year=row.get("schooljaar") or None,
            ends_previous=True,
        )
