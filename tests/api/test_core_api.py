"""The core API: authentication, scoping by relation (S-0), clear 400s for bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from exchange.domain import national_number_for, school_year_of
from exchange.models import Enrolment, Pupil
from exchange.selectors import pupil_identity
from tests.conftest import start_of_school_year
from tests.factories import years_ago

pytestmark = pytest.mark.django_db


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}
    return body["error"]


def test_anonymous_gets_401_with_the_error_shape(world) -> None:
    response = APIClient().get("/api/v1/pupils")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_token_authentication_works(world) -> None:
    token = Token.objects.create(user=world.users["care_a"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["memberships"][0]["role"] == "care_team"
    client.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert client.get("/api/v1/me").status_code == 401


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize(
    ("persona", "sees_lotte"),
    [
        ("care_a", True),  # enrolled at school A
        ("teacher_other", True),  # identification only; file items are decided by need to know
        ("worker_x", True),  # S-0: CLB X serves school A
        ("care_b", False),  # no relation yet
        ("worker_y", False),  # S-0: CLB Y does not serve school A
        ("coach_n", False),  # no trajectory
        ("stranger", False),
        ("parent_lotte", True),
        ("parent_sam", False),
        ("lotte", True),
    ],
)
def test_s0_pupil_list_follows_the_relations(world, persona: str, sees_lotte: bool) -> None:
    visible = ids(world.client(persona).get("/api/v1/pupils"))
    assert (str(world.lotte.id) in visible) is sees_lotte
    detail = world.client(persona).get(f"/api/v1/pupils/{world.lotte.id}")
    assert detail.status_code == (200 if sees_lotte else 404)
    if not sees_lotte:
        # Not allowed and not existing look the same.
        missing = world.client(persona).get("/api/v1/pupils/00000000-0000-0000-0000-000000000000")
        assert detail.json() == missing.json()


def test_pupil_detail_shows_cap1_capacity(world) -> None:
    body = world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}").json()
    assert body["presumed_capable"] is True
    assert body["age"] == 14
    sam = world.client("parent_sam").get(f"/api/v1/pupils/{world.sam.id}").json()
    assert sam["presumed_capable"] is False
    assert sam["parents"][0]["first_name"] == "Sofie"


def enrol_payload(world, **overrides) -> dict:
    birth = years_ago(13, days=10)
    payload = {
        "school": str(world.orgs["B"].id),
        "national_number": national_number_for(birth, 555),
        "first_name": "Noor",
        "last_name": "Claes",
        "birth_date": birth.isoformat(),
        "level": "secundair",
        "start": start_of_school_year().isoformat(),
    }
    payload.update(overrides)
    return payload


def test_administration_enrols_a_new_pupil(world) -> None:
    response = world.client("admin_b").post("/api/v1/enrolments/create", enrol_payload(world), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["school_year"] == school_year_of(start_of_school_year())
    assert str(Pupil.objects.get(pk=body["pupil"]).pk) in ids(world.client("care_b").get("/api/v1/pupils"))


def test_enrolment_of_a_known_pupil_by_national_number(world) -> None:
    first = world.client("admin_b").post("/api/v1/enrolments/create", enrol_payload(world), format="json")
    pupil_id = first.json()["pupil"]
    Enrolment.objects.filter(pk=first.json()["id"]).update(end=start_of_school_year() + timedelta(days=20))
    again = enrol_payload(
        world, school=str(world.orgs["Z"].id), start=(start_of_school_year() + timedelta(days=21)).isoformat()
    )
    for key in ("first_name", "last_name", "birth_date"):
        again.pop(key)
    admin_z = world.users["stranger"]
    from exchange import services
    from exchange.models import Role

    services.membership_grant(user=admin_z, organisation=world.orgs["Z"], role=Role.ADMINISTRATION)
    response = world.client("stranger").post("/api/v1/enrolments/create", again, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["pupil"] == pupil_id


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"national_number": "12345678901"}, "national_number"),
        ({"national_number": ""}, "national_number"),
        ({"level": "hoger"}, "level"),
        ({"start": "31-12-2026"}, "start"),
        ({"school": "not-a-uuid"}, "school"),
        ({"school": "00000000-0000-0000-0000-000000000000"}, "school"),
        ({"level": "basis"}, "level"),
        ({"school_year": "2026/2027"}, "school_year"),
        ({"end": "2000-01-01"}, "end"),
    ],
)
def test_bad_enrolment_input_gets_a_clear_400(world, overrides: dict, field: str) -> None:
    before = Enrolment.objects.count(), Pupil.objects.count()
    response = world.client("admin_b").post(
        "/api/v1/enrolments/create", enrol_payload(world, **overrides), format="json"
    )
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert field in error["fields"], error
    assert error["message"]
    assert (Enrolment.objects.count(), Pupil.objects.count()) == before


def test_new_pupil_without_names_gets_400_naming_the_fields(world) -> None:
    payload = enrol_payload(world)
    del payload["first_name"], payload["birth_date"]
    response = world.client("admin_b").post("/api/v1/enrolments/create", payload, format="json")
    assert response.status_code == 400
    assert {"first_name", "birth_date"} <= set(error_of(response)["fields"])


def test_overlapping_enrolment_gets_400_and_nothing_is_stored(world) -> None:
    payload = enrol_payload(world, national_number=pupil_identity(pupil=world.lotte).national_number)
    for key in ("first_name", "last_name", "birth_date"):
        payload.pop(key)
    response = world.client("admin_b").post("/api/v1/enrolments/create", payload, format="json")
    assert response.status_code == 400
    assert "already enrolled" in error_of(response)["message"]
    assert Enrolment.objects.filter(pupil=world.lotte).count() == 1


def test_wrong_birth_date_for_known_pupil_gets_400(world) -> None:
    payload = enrol_payload(
        world, national_number=pupil_identity(pupil=world.lotte).national_number, birth_date="2001-01-01"
    )
    response = world.client("admin_b").post("/api/v1/enrolments/create", payload, format="json")
    assert response.status_code == 400
    assert "birth_date" in error_of(response)["fields"]


@pytest.mark.parametrize("persona", ["teacher_lotte", "care_b", "worker_y", "admin_a"])
def test_only_the_schools_administration_enrols(world, persona: str) -> None:
    response = world.client(persona).post("/api/v1/enrolments/create", enrol_payload(world), format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_malformed_json_gets_400(world) -> None:
    response = world.client("admin_b").post("/api/v1/enrolments/create", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_enrolment_end_by_the_school(world) -> None:
    enrolment = Enrolment.objects.get(pupil=world.lotte)
    url = f"/api/v1/enrolments/{enrolment.id}/end"
    assert world.client("admin_b").post(url, {"end": "2030-01-01"}, format="json").status_code == 404
    assert world.client("teacher_lotte").post(url, {"end": "2030-01-01"}, format="json").status_code == 403
    bad = world.client("admin_a").post(url, {"end": "1999-01-01"}, format="json")
    assert bad.status_code == 400
    assert "end" in error_of(bad)["fields"]
    ok = world.client("admin_a").post(url, {"end": (enrolment.start + timedelta(days=100)).isoformat()}, format="json")
    assert ok.status_code == 200


def test_enrolment_list_shows_the_school_career_of_visible_pupils_only(world) -> None:
    rows = world.client("care_a").get("/api/v1/enrolments").json()["results"]
    assert {row["pupil"] for row in rows} == {str(world.lotte.id)}
    assert world.client("care_b").get("/api/v1/enrolments").json()["results"] == []


def test_parents_are_added_by_the_schools_administration(world) -> None:
    url = f"/api/v1/pupils/{world.lotte.id}/parents"
    payload = {"first_name": "Jan", "last_name": "Peeters", "email": "jan@example.org"}
    assert world.client("teacher_lotte").post(url, payload, format="json").status_code == 403
    assert world.client("admin_b").post(url, payload, format="json").status_code == 404
    bad = world.client("admin_a").post(url, {**payload, "email": "not-an-email"}, format="json")
    assert bad.status_code == 400
    assert "email" in error_of(bad)["fields"]
    assert world.client("admin_a").post(url, payload, format="json").status_code == 201


def test_s0_agreements_are_registered_by_operators_with_overlap_refused(world) -> None:
    payload = {"school": str(world.orgs["A"].id), "clb": str(world.orgs["Y"].id), "start": "2027-01-01"}
    assert world.client("director_a").post("/api/v1/agreements/create", payload, format="json").status_code == 403
    response = world.client("operator").post("/api/v1/agreements/create", payload, format="json")
    assert response.status_code == 400
    assert "one CLB at a time" in error_of(response)["message"]
    listed = world.client("care_a").get(f"/api/v1/agreements?organisation={world.orgs['A'].id}").json()["results"]
    assert [row["clb"] for row in listed] == [str(world.orgs["X"].id)]


def test_organisations_are_listed_and_filtered(world) -> None:
    rows = world.client("care_a").get("/api/v1/organisations?kind=clb").json()["results"]
    assert {row["name"] for row in rows} == {"CLB X", "CLB Y"}
    bad = world.client("care_a").get("/api/v1/organisations?kind=university")
    assert bad.status_code == 400
    assert world.client("care_a").get("/api/v1/organisations/00000000-0000-0000-0000-000000000000").status_code == 404


def test_unknown_url_parameter_type_gives_404_not_500(world) -> None:
    assert world.client("care_a").get("/api/v1/pupils/not-a-uuid").status_code == 404
