"""Absence register and begeleidingsdossier: DOMAIN.md scenario 7 and A-1..A-3, T-SCH-5."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from exchange import absences, services
from exchange.models import Absence, AttendanceCase, Enrolment, Level, StaffNotification
from tests.conftest import start_of_school_year

pytestmark = pytest.mark.django_db


def school_days(count: int, *, offset: int = 0):
    """Distinct past weekdays in this school year, newest first."""
    day = timezone.localdate() - timedelta(days=1 + offset)
    found = []
    while len(found) < count:
        if day.weekday() < 5 and day >= start_of_school_year():
            found.append(day)
        day -= timedelta(days=1)
    return found


def register(world, persona, day, half="am", code="B", pupil=None, school=None):
    payload = {"pupil": str((pupil or world.lotte).id), "day": day.isoformat(), "half": half, "code": code}
    if school is not None:
        payload["school"] = str(school.id)
    return world.client(persona).post("/api/v1/absences", payload, format="json")


def test_scenario_7_fifth_b_code_opens_a_begeleidingsdossier_both_can_read(world) -> None:
    days = school_days(5)
    for day in days[:4]:
        assert register(world, "admin_a", day).status_code == 201
    assert not AttendanceCase.objects.exists()
    fifth = register(world, "admin_a", days[4])
    assert fifth.status_code == 201
    case = AttendanceCase.objects.get(pupil=world.lotte)
    assert fifth.json()["case"] == str(case.id)
    assert case.clb == world.orgs["X"] and case.school == world.orgs["A"]
    # The CLB and the school's care team are notified.
    notified = set(
        StaffNotification.objects.filter(kind="attendance_case_opened").values_list("user__username", flat=True)
    )
    assert {"care_a", "director_x", "worker_x"} <= notified
    # Both can read the dossier; a teacher cannot.
    assert world.client("care_a").get(f"/api/v1/items/{case.item_id}").status_code == 200
    assert world.client("worker_x").get(f"/api/v1/items/{case.item_id}").status_code == 200
    assert world.client("teacher_lotte").get(f"/api/v1/items/{case.item_id}").status_code == 404
    assert world.client("teacher_other").get(f"/api/v1/items/{case.item_id}").status_code == 404
    # Steps of both are recorded in it and readable by the other.
    step = world.client("worker_x").post(f"/api/v1/attendance-cases/{case.id}/steps", {"text": "Gesprek met ouders"})
    assert step.status_code == 201
    assert world.client("care_a").get(f"/api/v1/items/{step.json()['item']}").status_code == 200
    cases = world.client("director_x").get("/api/v1/attendance-cases").json()
    assert [c["b_half_days"] for c in cases] == [5]
    # A later B code joins the same dossier.
    sixth = register(world, "admin_a", days[0], half="pm")
    assert sixth.json()["case"] == str(case.id)


def test_a2_count_crosses_schools(world) -> None:
    days = school_days(5)
    for day in days[2:]:
        assert register(world, "admin_a", day).status_code == 201  # three at school A
    enrolment = Enrolment.objects.get(pupil=world.lotte, school=world.orgs["A"])
    services.enrolment_end(enrolment=enrolment, end=days[2])
    services.enrolment_register(pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=days[1])
    assert register(world, "admin_b", days[1]).status_code == 201
    assert not AttendanceCase.objects.exists()
    assert register(world, "admin_b", days[0]).status_code == 201  # the fifth, at school B
    case = AttendanceCase.objects.get(pupil=world.lotte)
    assert case.school == world.orgs["B"] and case.clb == world.orgs["Y"]
    assert absences.count_half_days(pupil=world.lotte, school_year=case.school_year, code="B") == 5


def test_corrected_b_code_below_five_keeps_the_dossier_open_and_is_recorded(world) -> None:
    for day in school_days(5):
        register(world, "admin_a", day)
    case = AttendanceCase.objects.get()
    absence = Absence.objects.filter(pupil=world.lotte).first()
    corrected = world.client("admin_a").post(f"/api/v1/absences/{absence.id}/correct", {"code": "Z"})
    assert corrected.status_code == 200
    assert corrected.json()["corrections"][0]["old_code"] == "B"
    case.refresh_from_db()
    assert case.closed_at is None
    assert absences.count_half_days(pupil=world.lotte, school_year=case.school_year, code="B") == 4
    assert world.client("admin_a").post(f"/api/v1/absences/{absence.id}/correct", {"code": "Z"}).status_code == 400


def test_duplicate_half_days_and_bad_input_are_refused(world) -> None:
    day = school_days(1)[0]
    assert register(world, "admin_a", day).status_code == 201
    duplicate = register(world, "admin_a", day, code="Z")
    assert duplicate.status_code == 400
    assert "already registered" in duplicate.json()["error"]["message"]
    assert register(world, "admin_a", day, half="pm", code="X").status_code == 400
    assert register(world, "admin_a", timezone.localdate() + timedelta(days=2)).status_code == 400
    assert register(world, "teacher_lotte", day, half="pm").status_code == 403
    assert register(world, "admin_b", day, half="pm").status_code == 400  # Lotte is not at school B
    assert Absence.objects.count() == 1


@override_settings(LP_ABSENCE_B_THRESHOLD=5, LP_ABSENCE_Z_THRESHOLD=3)
def test_a3_thresholds_are_configurable_including_z(world) -> None:
    for day in school_days(3):
        register(world, "admin_a", day, code="Z")
    assert AttendanceCase.objects.count() == 1


def test_z_threshold_is_off_by_default(world) -> None:
    for day in school_days(6):
        register(world, "admin_a", day, code="Z")
    assert not AttendanceCase.objects.exists()


def test_overview_lists_pupils_at_the_threshold_first(world) -> None:
    for day in school_days(5):
        register(world, "admin_a", day)
    rows = world.client("care_a").get("/api/v1/absences/overview").json()
    assert rows[0]["first_name"] == "Lotte"
    assert rows[0]["at_threshold"] is True and rows[0]["b_half_days"] == 5
    assert world.client("teacher_lotte").get("/api/v1/absences/overview").status_code == 403


def test_t_sch_5_absences_follow_the_pupil_to_the_new_school(world, django_capture_on_commit_callbacks) -> None:
    days = school_days(2)
    register(world, "admin_a", days[1])
    assert world.client("care_b").get(f"/api/v1/pupils/{world.lotte.id}/absences").status_code == 404
    with django_capture_on_commit_callbacks(execute=False):
        services.enrolment_register(
            pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=days[0], ends_previous=True
        )
    rows = world.client("care_b").get(f"/api/v1/pupils/{world.lotte.id}/absences").json()
    assert [r["school"] for r in rows] == [str(world.orgs["A"].id)]


def test_bulk_import_of_absences_reports_bad_rows(world, tmp_path) -> None:
    import io

    from django.core.management import call_command

    from exchange.selectors import pupil_identity

    number = pupil_identity(pupil=world.lotte).national_number
    days = school_days(3)
    lines = [
        "instellingsnummer;rijksregisternummer;datum;dagdeel;code",
        f"030001;{number};{days[0].isoformat()};vm;B",
        f"030001;{number};{days[0].isoformat()};vm;B",  # duplicate half day
        f"030001;{number};{days[1].isoformat()};avond;B",  # bad half
        f"030001;{number};{days[2].isoformat()};nm;Q",  # bad code
        f"030001;{number};{days[2].isoformat()};nm;Z",
    ]
    path = tmp_path / "afwezigheden.csv"
    path.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    call_command("import_absences", str(path), "--user", "admin_a", "--no-progress", stdout=out)
    assert "imported 2 of 5 rows; 3 rows with errors" in out.getvalue()
    assert number not in out.getvalue()
    assert Absence.objects.filter(pupil=world.lotte).count() == 2
