"""Bulk import of enrolments: per-row errors never abort other rows; dry run; school changes plan handovers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from exchange.domain import national_number_for
from exchange.management.commands.import_enrolments import COLUMNS
from exchange.models import Enrolment, Handover, Pupil
from exchange.selectors import pupil_identity
from tests.factories import years_ago

pytestmark = pytest.mark.django_db

HEADER = ";".join(COLUMNS)


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "export.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def rows(world) -> list[str]:
    today = timezone.localdate().isoformat()
    birth = years_ago(12, days=3)
    new = national_number_for(birth, 321)
    lotte = pupil_identity(pupil=world.lotte).national_number
    return [
        f"030002;{lotte};;;;;secundair;{today};;",  # Lotte changes to school B: a handover
        f"030002;{new};Noor;Claes;{birth.isoformat()};;secundair;{today};;",  # a new pupil
        f"030002;12345678901;X;Y;2012-01-01;;secundair;{today};;",  # invalid national number
        f"999999;{new};;;;;secundair;{today};;",  # unknown school
        f"030002;{national_number_for(birth, 322)};;;;;secundair;{today};;",  # new pupil without names
        f"030002;{national_number_for(birth, 323)};A;B;{birth.isoformat()};;secundair;31-12-2026;;",  # bad date
    ]


def test_import_reports_bad_rows_and_imports_the_others(world, tmp_path, django_capture_on_commit_callbacks) -> None:
    report = tmp_path / "errors.csv"
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        path = str(write(tmp_path, rows(world)))
        call_command("import_enrolments", path, "--report", str(report), "--no-progress", stdout=out)
    assert "imported 2 of 6 rows; 4 rows with errors" in out.getvalue()
    text = report.read_text()
    assert "row,field,message" in text
    for expected in ("4,rijksregisternummer", "5,instellingsnummer", "6,first_name", "7,startdatum"):
        assert expected in text
    # The report never repeats the row's values.
    assert "12345678901" not in text and "Noor" not in text
    assert Handover.objects.filter(pupil=world.lotte).count() == 2
    assert Enrolment.objects.filter(school=world.orgs["B"]).count() == 2


def test_dry_run_stores_nothing(world, tmp_path, django_capture_on_commit_callbacks) -> None:
    before = (Pupil.objects.count(), Enrolment.objects.count(), Handover.objects.count())
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("import_enrolments", str(write(tmp_path, rows(world))), "--dry-run", "--no-progress", stdout=out)
    assert "would import 2 of 6 rows; 4 rows with errors" in out.getvalue()
    assert (Pupil.objects.count(), Enrolment.objects.count(), Handover.objects.count()) == before


def test_json_import_and_malformed_files(world, tmp_path, django_capture_on_commit_callbacks) -> None:
    birth = years_ago(10)
    path = tmp_path / "export.json"
    path.write_text(
        json.dumps(
            [
                {
                    "instellingsnummer": "030003",
                    "rijksregisternummer": national_number_for(birth, 400),
                    "voornaam": "Mo",
                    "familienaam": "D",
                    "geboortedatum": birth.isoformat(),
                    "niveau": "basis",
                    "startdatum": timezone.localdate().isoformat(),
                }
            ]
        )
    )
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        call_command("import_enrolments", str(path), "--no-progress", stdout=out)
    assert "imported 1 of 1 rows; 0 rows with errors" in out.getvalue()
    path.write_text("{not json")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("import_enrolments", str(path), "--no-progress", stdout=io.StringIO())
    bad = tmp_path / "bad.csv"
    bad.write_text("naam;adres\nx;y\n")
    with pytest.raises(CommandError, match="missing columns"):
        call_command("import_enrolments", str(bad), "--no-progress", stdout=io.StringIO())
