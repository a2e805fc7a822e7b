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


@pytest.mark.parametrize("batch_size", ["1", "500"])
def test_import_reports_bad_rows_and_imports_the_others(
    world, tmp_path, django_capture_on_commit_callbacks, batch_size
) -> None:
    """T-CLB-1 / T-SCH-1 from an import: one row per transaction or a batch with a savepoint per
    row, the outcome is the same and a bad row never aborts the others."""
    report = tmp_path / "errors.csv"
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=False):
        path = str(write(tmp_path, rows(world)))
        call_command(
            "import_enrolments", path, "--report", str(report), "--no-progress", "--batch-size", batch_size, stdout=out
        )
    assert "imported 2 of 6 rows; 4 rows with errors" in out.getvalue()
    text = report.read_text()
    assert "row,field,message" in text
    for expected in ("4,rijksregisternummer", "5,instellingsnummer", "6,first_name", "7,startdatum"):
        assert expected in text
    # The report never repeats the row's values.
    assert "12345678901" not in text and "Noor" not in text
    assert Handover.objects.filter(pupil=world.lotte).count() == 2
    assert Enrolment.objects.filter(school=world.orgs["B"]).count() == 2
    # The frozen plan of the school handover (T-SCH-2 reports, nothing of T-SCH-4) is the same either way.
    school = Handover.objects.get(pupil=world.lotte, kind="school")
    assert school.plan.count() == 0  # Lotte's file at school A is empty in this world
    assert school.state == "waiting"  # effective today: the mandatory part moved in the batch's transaction


def test_a_batch_that_fails_as_a_whole_is_retried_row_by_row(world) -> None:
    """The import's guarantee (a bad row costs only itself) holds when the batch's set-based finish
    fails: nothing of the failed batch stays, and every good row is imported one by one."""
    from django.db import IntegrityError

    from exchange import services
    from exchange.importing import run_rows
    from exchange.models import Organisation, OrganisationKind

    def handler(row: dict[str, str]) -> str:
        if row["name"] == "bad":
            raise ValueError("bad row")
        services.organisation_create(kind=OrganisationKind.NAFT, official_number=row["number"], name=row["name"])
        return row["number"]

    def finish(numbers: list[str]) -> None:
        if len(numbers) > 1:  # a real constraint violation, as a set-based step could hit
            Organisation.objects.create(kind=OrganisationKind.NAFT, official_number="900001", name="clash")
            raise AssertionError("unreachable: the insert above violates the unique official number")

    data = [{"number": "910001", "name": "P"}, {"number": "910002", "name": "bad"}, {"number": "910003", "name": "Q"}]
    try:
        result = run_rows(data, handler, first_row=2, dry_run=False, progress=False, batch_size=10, finish_batch=finish)
    except IntegrityError:  # pragma: no cover - the failure must not escape
        pytest.fail("a failing batch aborted the import")
    assert result.done == 2
    assert result.errors == [(3, "row", "malformed row (ValueError)")]
    assert set(Organisation.objects.filter(official_number__startswith="9100").values_list("name", flat=True)) == {
        "P",
        "Q",
    }
    assert not Organisation.objects.filter(name="clash").exists()


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
