"""NAFT trajectories: DOMAIN.md scenario 6 and N-1..N-4."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exchange import naft, services
from exchange.models import OrganisationKind, StaffNotification, Trajectory
from permissions.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def apply(world, persona="worker_x", **overrides):
    today = timezone.localdate()
    payload = {
        "provider": str(world.orgs["N"].id),
        "goals": ["Elke dag aanwezig", "Afspraken nakomen"],
        "referral": "Lotte haakt af sinds de herfstvakantie; motivatie laag.",
        "start": today.isoformat(),
        "planned_end": (today + timedelta(days=90)).isoformat(),
        "school_agreed_on": today.isoformat(),
        "pupil_agreed_on": today.isoformat(),
        "parents_agreed_on": today.isoformat(),
    }
    payload.update(overrides)
    return world.client(persona).post(f"/api/v1/pupils/{world.lotte.id}/trajectories", payload, format="json")


def running(world) -> dict:
    trajectory = apply(world).json()
    accepted = world.client("coach_n").post(
        f"/api/v1/trajectories/{trajectory['id']}/decision", {"accept": True}, format="json"
    )
    assert accepted.status_code == 200, accepted.content
    return accepted.json()


def report(world, trajectory_id, persona="coach_n", **overrides):
    today = timezone.localdate()
    payload = {
        "period_start": (today - timedelta(days=7)).isoformat(),
        "period_end": today.isoformat(),
        "days_present": 4,
        "days_planned": 5,
        "goals": [{"goal": 1, "progress": "on_track"}, {"goal": 2, "progress": "behind", "note": "te laat"}],
        "actions": "Huisbezoek",
        "narrative": "Goede week.",
    }
    payload.update(overrides)
    return world.client(persona).post(f"/api/v1/trajectories/{trajectory_id}/reports", payload, format="json")


def test_scenario_6_naft_reports_to_the_clb_and_the_clb_relays_to_the_school(world) -> None:
    trajectory = running(world)
    assert trajectory["state"] == "running" and trajectory["coach"] == "coach_n"
    # The provider reads what the CLB sent for the trajectory (N-1).
    assert world.client("coach_n").get(f"/api/v1/items/{trajectory['referral_item']}").status_code == 200
    created = report(world, trajectory["id"])
    assert created.status_code == 201, created.content
    item_id = created.json()["item"]
    # N-2: the CLB staff involved read it; the school, a teacher, an uninvolved worker do not.
    assert world.client("worker_x").get(f"/api/v1/items/{item_id}").status_code == 200
    for persona in ("care_a", "teacher_lotte", "worker_x_other", "director_a"):
        assert world.client(persona).get(f"/api/v1/items/{item_id}").status_code == 404
        assert AuditEvent.objects.filter(item_id=item_id, actor=world.users[persona], outcome="denied").exists()
    # The CLB is notified when a report arrives.
    assert StaffNotification.objects.filter(user=world.users["worker_x"], kind="naft_report").count() == 1
    assert world.client("worker_x").get("/api/v1/notifications").json()[0]["kind"] == "naft_report"
    # N-3: the CLB relays a summary to the school with Lotte's consent (S-1).
    consent = (
        world.client("worker_x")
        .post(
            f"/api/v1/pupils/{world.lotte.id}/consents/create",
            {
                "given_by": "pupil",
                "recorded_via": "oral",
                "purpose": "naft_relay",
                "recipient": str(world.orgs["A"].id),
                "scope_kind": "summary",
            },
            format="json",
        )
        .json()
    )
    share = world.client("worker_x").post(
        f"/api/v1/pupils/{world.lotte.id}/shares/create",
        {
            "consent": consent["id"],
            "school": str(world.orgs["A"].id),
            "summary_title": "NAFT-traject",
            "summary_body": "Aanwezig 4 van 5 dagen, doelen op schema.",
        },
        format="json",
    )
    assert share.status_code == 201
    relayed = world.client("care_a").get(f"/api/v1/items/{share.json()['items'][0]}")
    assert relayed.json()["body"] == "Aanwezig 4 van 5 dagen, doelen op schema."
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 404  # still not the report itself


def test_n1_application_without_the_schools_agreement_is_refused(world) -> None:
    response = apply(world, school_agreed_on=None)
    assert response.status_code == 400
    assert "school_agreed_on" in response.json()["error"]["fields"]
    assert Trajectory.objects.count() == 0
    assert apply(world, persona="worker_x_other").status_code == 400  # not involved
    assert apply(world, persona="care_a").status_code == 403  # a school does not apply


def test_n4_trajectory_cannot_run_past_the_school_year_the_pupil_turns_25(world) -> None:
    limit = naft.last_day_for(world.lotte)
    assert limit.month == 8 and limit.day == 31
    response = apply(world, planned_end=(limit + timedelta(days=1)).isoformat())
    assert response.status_code == 400
    assert limit.isoformat() in response.json()["error"]["message"]


def test_report_on_an_ended_trajectory_is_refused(world) -> None:
    trajectory = running(world)
    ended = world.client("worker_x").post(
        f"/api/v1/trajectories/{trajectory['id']}/end",
        {"round_table_on": timezone.localdate().isoformat(), "summary": "Terug naar school, opvolging door CLB."},
        format="json",
    )
    assert ended.status_code == 200
    assert ended.json()["state"] == "ended"
    late = report(world, trajectory["id"])
    assert late.status_code == 400
    assert "ended" in late.json()["error"]["message"]


def test_a_coach_of_provider_n_cannot_read_another_providers_trajectory(world) -> None:
    other = services.organisation_create(kind=OrganisationKind.NAFT, official_number="900002", name="NAFT M")
    coach_m = UserFactory(username="coach_m")
    services.membership_grant(user=coach_m, organisation=other, role="naft_coach")
    trajectory = apply(world, provider=str(other.id)).json()
    client = world.client("coach_n")
    assert client.get(f"/api/v1/trajectories/{trajectory['id']}").status_code == 404
    assert client.get(f"/api/v1/items/{trajectory['referral_item']}").status_code == 404
    assert client.post(f"/api/v1/trajectories/{trajectory['id']}/decision", {"accept": True}).status_code == 404
    assert trajectory["id"] not in {t["id"] for t in client.get("/api/v1/trajectories").json()}


def test_decline_and_bad_reports(world) -> None:
    trajectory = apply(world).json()
    declined = world.client("coach_n").post(
        f"/api/v1/trajectories/{trajectory['id']}/decision", {"accept": False, "reason": "no_capacity"}, format="json"
    )
    assert declined.json()["state"] == "declined"
    assert StaffNotification.objects.filter(user=world.users["worker_x"], kind="naft_declined").exists()
    running_one = running(world)
    assert report(world, running_one["id"], days_present=6).status_code == 400
    assert report(world, running_one["id"], goals=[{"goal": 3, "progress": "on_track"}]).status_code == 400
    assert report(world, running_one["id"], persona="worker_x").status_code == 400  # only the coach reports


def test_the_clb_hears_when_a_report_is_overdue(world) -> None:
    trajectory = running(world)
    assert naft.trajectories_overdue_notify() == 0
    later = timezone.now() + timedelta(days=15)
    assert naft.trajectories_overdue_notify(now=later) == 1
    assert naft.trajectories_overdue_notify(now=later) == 0  # once per missed period
    assert StaffNotification.objects.filter(kind="naft_report_overdue", object_id=trajectory["id"]).count() == 1
