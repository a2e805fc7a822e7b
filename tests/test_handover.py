"""Automatic handover on a change of school: DOMAIN.md scenarios 1-4 and T-CLB-1..6, T-SCH-1..5.

The clock is moved by passing ``now`` to the sweeper, never waited for.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from exchange import files, handover, services
from exchange.models import (
    Category,
    ClbDossier,
    Enrolment,
    Handover,
    HandoverKind,
    HandoverState,
    ItemKind,
    Level,
    Notice,
    OrganisationKind,
    SchoolKind,
)
from permissions.models import Basis, Grant
from permissions.services import involvement_assign
from tests import files as samples
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def make(world, holder: str, category: str, kind: str = ItemKind.NOTE, pupil=None, **extra):
    report = kind in (ItemKind.VERSLAG, ItemKind.GEMOTIVEERD_VERSLAG)
    return files.item_create(
        pupil=pupil or world.lotte,
        holder=world.orgs[holder],
        category=category,
        kind=kind,
        title=f"{holder}-{category}",
        body=f"{holder}-{category} body",
        report_type="type 9" if report else "",
        report_valid_from=timezone.localdate() if report else None,
        **extra,
    )


@pytest.fixture
def lotte_file(world) -> dict:
    items = {
        "x_identification": make(world, "X", Category.IDENTIFICATION, ItemKind.RECORD),
        "x_vaccination": make(world, "X", Category.VACCINATION, ItemKind.RECORD),
        "x_medical": make(world, "X", Category.MEDICAL),
        "x_attendance": make(world, "X", Category.ATTENDANCE, ItemKind.RECORD),
        "x_verslag": make(world, "X", Category.REPORT, ItemKind.GEMOTIVEERD_VERSLAG),
        "x_guidance": make(world, "X", Category.GUIDANCE),
        "a_verslag": make(world, "A", Category.REPORT, ItemKind.VERSLAG),
        "a_career": make(world, "A", Category.CAREER, ItemKind.DOCUMENT),
        "a_attendance": make(world, "A", Category.ATTENDANCE, ItemKind.RECORD),
        "a_discipline": make(world, "A", Category.DISCIPLINE),
        "a_school_health": make(world, "A", Category.SCHOOL_HEALTH),
    }
    return items


def move_lotte_to_b(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = world.client("admin_b").post(
            "/api/v1/enrolments/create",
            {
                "school": str(world.orgs["B"].id),
                "national_number": __import__("exchange.selectors", fromlist=["x"])
                .pupil_identity(pupil=world.lotte)
                .national_number,
                "level": "secundair",
                "start": timezone.localdate().isoformat(),
            },
            format="json",
        )
    assert response.status_code == 201, response.content
    assert len(callbacks) == 1  # the notices are enqueued after commit (ids only)
    return {h.kind: h for h in Handover.objects.filter(pupil=world.lotte)}


def involve_worker_y(world) -> None:
    involvement_assign(
        pupil=world.lotte, clb=world.orgs["Y"], user=world.users["worker_y"], assigned_by=world.users["director_y"]
    )


def reads(world, persona: str, item) -> int:
    return world.client(persona).get(f"/api/v1/items/{item.id}").status_code


def test_scenario_1_lotte_moves_mid_year_without_objection(world, lotte_file, django_capture_on_commit_callbacks):
    handovers = move_lotte_to_b(world, django_capture_on_commit_callbacks)
    assert set(handovers) == {HandoverKind.SCHOOL, HandoverKind.CLB}  # T-CLB-1, T-SCH-1
    clb, school = handovers[HandoverKind.CLB], handovers[HandoverKind.SCHOOL]
    # The old enrolment at A ended the day before.
    assert Enrolment.objects.get(pupil=world.lotte, school=world.orgs["A"]).end == timezone.localdate() - timedelta(1)
    # The plan is frozen: mandatory vs objectable, nothing of discipline or school health (T-SCH-4).
    plan = {row.item_id: (row.mandatory, row.rule) for row in school.plan.all()}
    assert plan == {
        lotte_file["a_verslag"].id: (True, "T-SCH-2"),
        lotte_file["a_attendance"].id: (True, "T-SCH-5"),
        lotte_file["a_career"].id: (False, "T-SCH-3"),
    }
    clb_plan = {row.item_id: row.mandatory for row in clb.plan.all()}
    assert clb_plan[lotte_file["x_guidance"].id] is False
    assert all(
        clb_plan[lotte_file[k].id]
        for k in ("x_identification", "x_vaccination", "x_medical", "x_attendance", "x_verslag")
    )
    assert clb.state == school.state == HandoverState.WAITING  # mandatory part granted at once (T-CLB-4)
    # T-CLB-6: the same dossier continues at CLB Y.
    assert ClbDossier.objects.get(pupil=world.lotte).clb == world.orgs["Y"]
    # T-CLB-2: Lotte (14, capable) is notified of the CLB transfer; her parents of the school transfer (CAP-3).
    assert Notice.objects.get(handover=clb).addressee == world.users["lotte"]
    assert Notice.objects.get(handover=school).addressee == world.users["parent_lotte"]
    notice = world.client("lotte").get("/api/v1/notices").json()[0]
    assert notice["to"] == "CLB Y" and notice["can_object"] is True
    assert notice["moves_unless_you_object"] == ["guidance (1)"]
    assert world.client("parent_lotte").get("/api/v1/notices").json()[0]["moves_unless_you_object"] == ["career (1)"]
    world.users["lotte"].email = "lotte@example.org"
    world.users["lotte"].save()
    assert handover.handover_notify(handover_id=clb.id) == 1
    assert "CLB Y" in mail.outbox[0].subject
    assert "guidance (1)" in mail.outbox[0].body
    assert handover.handover_notify(handover_id=clb.id) == 0  # safe to run twice

    involvement_assign(
        pupil=world.lotte, clb=world.orgs["Y"], user=world.users["worker_y"], assigned_by=world.users["director_y"]
    )
    # Before the window closes: mandatory items only.
    assert reads(world, "worker_y", lotte_file["x_verslag"]) == 200
    assert reads(world, "worker_y", lotte_file["x_guidance"]) == 404  # objectable parts wait (T-CLB-2)
    assert reads(world, "worker_y", lotte_file["x_medical"]) == 404  # ACC-4
    assert reads(world, "doctor_y", lotte_file["x_medical"]) == 200
    assert reads(world, "care_b", lotte_file["a_verslag"]) == 200
    assert reads(world, "care_b", lotte_file["x_verslag"]) == 200  # T-SCH-2 through the enrolment
    assert reads(world, "care_b", lotte_file["a_career"]) == 404
    # Ten days pass without objection.
    later = max(clb.objection_deadline, school.objection_deadline) + timedelta(seconds=1)
    result = handover.handover_sweep(now=later)
    assert result.executed == 2
    assert handover.handover_sweep(now=later).executed == 0  # safe to run twice
    clb.refresh_from_db()
    assert clb.state == HandoverState.EXECUTED
    assert reads(world, "worker_y", lotte_file["x_guidance"]) == 200
    assert reads(world, "care_b", lotte_file["a_career"]) == 200
    assert reads(world, "care_b", lotte_file["a_discipline"]) == 404  # T-SCH-4
    assert reads(world, "care_b", lotte_file["a_school_health"]) == 404
    # Nobody at school B sees the MDD.
    for key in ("x_guidance", "x_medical", "x_vaccination", "x_identification"):
        assert reads(world, "care_b", lotte_file[key]) == 404
    # CLB X keeps its copy until RET-1.
    assert reads(world, "worker_x", lotte_file["x_guidance"]) == 200
    history = [e["state"] for e in world.client("worker_y").get(f"/api/v1/handovers/{clb.id}").json()["history"]]
    assert history == ["planned", "waiting", "executed"]


def test_scenario_2_lotte_objects_on_day_4(world, lotte_file, django_capture_on_commit_callbacks):
    handovers = move_lotte_to_b(world, django_capture_on_commit_callbacks)
    clb = handovers[HandoverKind.CLB]
    parent = world.lotte.parents.get()
    # Her parent cannot object for her in a CLB matter (CAP-3) ...
    refused = world.client("parent_lotte").post(
        f"/api/v1/handovers/{clb.id}/objections",
        {"objected_by": "parent", "objecting_parent": str(parent.id), "received_via": "online"},
    )
    assert refused.status_code == 400
    # ... Lotte objects herself, with a scanned letter.
    objection = world.client("lotte").post(
        f"/api/v1/handovers/{clb.id}/objections",
        {"objected_by": "pupil", "received_via": "online", "letter": SimpleUploadedFile("brief.pdf", samples.PDF)},
        format="multipart",
    )
    assert objection.status_code == 201, objection.content
    assert objection.json()["capacity_basis"] == "presumed_capable"
    later = clb.objection_deadline + timedelta(seconds=1)
    handover.handover_sweep(now=later)
    clb.refresh_from_db()
    assert clb.state == HandoverState.EXECUTED_WITH_OBJECTION
    involvement_assign(
        pupil=world.lotte, clb=world.orgs["Y"], user=world.users["worker_y"], assigned_by=world.users["director_y"]
    )
    assert reads(world, "worker_y", lotte_file["x_guidance"]) == 404  # T-CLB-3: stays at CLB X
    assert reads(world, "worker_y", lotte_file["x_verslag"]) == 200  # T-CLB-4
    letter = Grant.objects.get(
        organisation=world.orgs["Y"], source_id=clb.id, rule="T-CLB-4", item__category="guidance"
    )
    assert letter.basis == Basis.MANDATORY_TRANSFER  # a copy of the objection goes with them
    assert reads(world, "worker_y", letter.item) == 200
    assert reads(world, "worker_x", lotte_file["x_guidance"]) == 200  # RET-3: kept at the old CLB


def test_objection_one_second_before_the_deadline_is_honoured_and_after_it_refused(
    world, lotte_file, django_capture_on_commit_callbacks
):
    handovers = move_lotte_to_b(world, django_capture_on_commit_callbacks)
    school = handovers[HandoverKind.SCHOOL]
    parent = world.lotte.parents.get()
    Handover.objects.filter(pk=school.pk).update(objection_deadline=timezone.now() + timedelta(seconds=1))
    ok = world.client("parent_lotte").post(
        f"/api/v1/handovers/{school.id}/objections",
        {"objected_by": "parent", "objecting_parent": str(parent.id), "received_via": "online"},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    handover.handover_sweep(now=timezone.now() + timedelta(seconds=2))
    school.refresh_from_db()
    assert school.state == HandoverState.EXECUTED_WITH_OBJECTION
    assert reads(world, "care_b", lotte_file["a_career"]) == 404  # T-SCH-3
    # The CLB handover's window closed a second ago: an objection now is refused with the date.
    clb = handovers[HandoverKind.CLB]
    Handover.objects.filter(pk=clb.pk).update(objection_deadline=timezone.now() - timedelta(seconds=1))
    late = world.client("lotte").post(
        f"/api/v1/handovers/{clb.id}/objections", {"objected_by": "pupil", "received_via": "online"}, format="json"
    )
    assert late.status_code == 400
    assert "closed on" in late.json()["error"]["message"]


def test_scenario_3_next_year_enrolment_moves_nothing_before_1_september(world, django_capture_on_commit_callbacks):
    school_d = services.organisation_create(
        kind=OrganisationKind.SCHOOL, official_number="030004", name="Basisschool D", school_kind=SchoolKind.BASIS
    )
    services.agreement_create(school=school_d, clb=world.orgs["Y"], start=date(2020, 9, 1))
    verslag = make(world, "X", Category.REPORT, ItemKind.VERSLAG, pupil=world.sam)
    guidance = make(world, "X", Category.GUIDANCE, pupil=world.sam)
    admin_d = UserFactory(username="admin_d")
    services.membership_grant(user=admin_d, organisation=school_d, role="administration")
    next_september = date(timezone.localdate().year + (1 if timezone.localdate().month >= 9 else 0), 9, 1)
    with django_capture_on_commit_callbacks(execute=False):
        enrolment = services.enrolment_register(
            pupil=world.sam, school=school_d, level=Level.BASIS, start=next_september, ends_previous=True
        )
    clb = Handover.objects.get(enrolment=enrolment, kind=HandoverKind.CLB)
    assert clb.state == HandoverState.PLANNED
    assert timezone.localtime(clb.effective_at).date() == next_september
    assert not Grant.objects.filter(organisation=world.orgs["Y"], item__in=[verslag, guidance]).exists()
    # T-CLB-2 / CAP-3: Sam is 9, his parent is told.
    assert Notice.objects.get(handover=clb).addressee == world.users["parent_sam"]
    assert handover.handover_sweep(now=timezone.now()).mandatory == 0  # May: nothing moves
    september = timezone.make_aware(timezone.datetime.combine(next_september, timezone.datetime.min.time()))
    # The window (10 days from May's notice) has long closed by 1 September: both parts move then.
    assert clb.objection_deadline == clb.effective_at
    just_before = handover.handover_sweep(now=september - timedelta(seconds=1))
    assert (just_before.mandatory, just_before.executed) == (0, 0)
    result = handover.handover_sweep(now=september + timedelta(seconds=1))
    assert (result.mandatory, result.executed) == (2, 2)  # the school and the CLB handover
    # One pass moved both parts; the history still shows each step (planned, waiting, executed).
    clb.refresh_from_db()
    assert clb.state == HandoverState.EXECUTED
    assert clb.mandatory_granted_at == clb.executed_at == september + timedelta(seconds=1)
    assert [e.state for e in clb.history.order_by("at", "id")] == ["planned", "waiting", "executed"]
    assert handover.handover_sweep(now=september + timedelta(days=1)).executed == 0  # safe to run twice
    assert Grant.objects.filter(organisation=world.orgs["Y"], item=verslag, basis=Basis.MANDATORY_TRANSFER).exists()
    assert Grant.objects.filter(organisation=world.orgs["Y"], item=guidance, basis=Basis.HANDOVER).exists()
    # The school's T-SCH-2 grant for the verslag starts on 1 September too.
    school_grant = Grant.objects.get(organisation=school_d, item=verslag)
    assert timezone.localtime(school_grant.valid_from).date() == next_september


def test_scenario_4_new_school_requests_the_transferred_reports(world, lotte_file, django_capture_on_commit_callbacks):
    move_lotte_to_b(world, django_capture_on_commit_callbacks)
    response = world.client("care_b").post(f"/api/v1/pupils/{world.lotte.id}/transferred-reports")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()}
    assert ids == {str(lotte_file["a_verslag"].id), str(lotte_file["x_verslag"].id)}
    assert {row["report_type"] for row in response.json()} == {"type 9"}
    # A school where the pupil is not enrolled gets nothing.
    assert world.client("care_a").post(f"/api/v1/pupils/{world.lotte.id}/transferred-reports").status_code == 404
    assert world.client("teacher_lotte").post(f"/api/v1/pupils/{world.lotte.id}/transferred-reports").status_code == 404
    incoming = world.client("care_b").get("/api/v1/handovers?direction=incoming").json()["results"]
    assert [h["kind"] for h in incoming] == ["school"]
    assert incoming[0]["mandatory_items"] == 2 and incoming[0]["objectable_items"] == 1
    assert world.client("care_a").get("/api/v1/handovers?direction=outgoing").json()["count"] == 1


def test_bad_objection_input_is_a_clear_400(world, lotte_file, django_capture_on_commit_callbacks):
    handovers = move_lotte_to_b(world, django_capture_on_commit_callbacks)
    url = f"/api/v1/handovers/{handovers[HandoverKind.CLB].id}/objections"
    assert world.client("lotte").post(url, {"objected_by": "cat", "received_via": "online"}).status_code == 400
    assert world.client("stranger").post(url, {"objected_by": "pupil", "received_via": "online"}).status_code == 404
    exe = SimpleUploadedFile("brief.pdf", samples.EXE)
    bad_letter = world.client("lotte").post(
        url, {"objected_by": "pupil", "received_via": "online", "letter": exe}, format="multipart"
    )
    assert bad_letter.status_code == 400
    assert "file" in bad_letter.json()["error"]["fields"]


def test_notices_go_out_in_batches_once_and_a_lost_message_is_resent(
    world, lotte_file, django_capture_on_commit_callbacks
):
    """T-CLB-2: every planned handover's notice is e-mailed once, by a task that takes ids only;
    an outbox row left unprocessed (a lost message) is picked up again by the sweeper."""
    from exchange import tasks
    from exchange.models import Outbox

    world.users["lotte"].email = "lotte@example.org"
    world.users["lotte"].save()
    world.users["parent_lotte"].email = "an@example.org"
    world.users["parent_lotte"].save()
    handovers = move_lotte_to_b(world, django_capture_on_commit_callbacks)
    ids = [str(h.pk) for h in handovers.values()]
    pending = Outbox.objects.filter(topic="handover.notify", processed_at__isnull=True)
    assert set(pending.values_list("object_id", flat=True)) == {h.pk for h in handovers.values()}
    # Lost message: after five minutes the sweeper re-publishes the pending rows.
    later = timezone.now() + timedelta(minutes=6)
    assert handover.outbox_resend(older_than=timedelta(minutes=5), now=later) == 2
    assert tasks.handover_notify_many(ids) == 2  # Lotte (CLB matter) and her parent (school data)
    assert sorted(m.to[0] for m in mail.outbox) == ["an@example.org", "lotte@example.org"]
    assert tasks.handover_notify_many(ids) == 0  # safe to run twice
    assert not pending.exists()
    assert handover.outbox_resend(older_than=timedelta(minutes=5), now=later) == 0
