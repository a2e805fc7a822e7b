"""Consent, capacity, shares, objections and concern: S-1..S-5, CAP-1..CAP-3, T-CLB-2, T-SCH-3, V-1,
and DOMAIN.md scenario 5."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone

from consent import services
from consent.models import Consent
from exchange import files
from exchange import services as core
from exchange.models import Category, ItemKind, Level, PupilItem
from permissions.models import AuditEvent
from tests.conftest import start_of_school_year
from tests.factories import national_number, years_ago

pytestmark = pytest.mark.django_db


def consent_payload(world, **overrides):
    payload = {
        "given_by": "pupil",
        "recorded_via": "oral",
        "purpose": "support_at_school",
        "recipient": str(world.orgs["A"].id),
        "scope_kind": "summary",
    }
    payload.update(overrides)
    return payload


def record_consent(world, persona="worker_x", **overrides):
    response = world.client(persona).post(
        f"/api/v1/pupils/{world.lotte.id}/consents/create", consent_payload(world, **overrides), format="json"
    )
    return response


def test_scenario_5_share_with_consent_then_withdrawal(world) -> None:
    consent = record_consent(world)
    assert consent.status_code == 201, consent.content
    assert consent.json()["capacity_basis"] == "presumed_capable"
    share = world.client("worker_x").post(
        f"/api/v1/pupils/{world.lotte.id}/shares/create",
        {
            "consent": consent.json()["id"],
            "school": str(world.orgs["A"].id),
            "summary_title": "Afspraken voor de klas",
            "summary_body": "Extra tijd bij toetsen; vooraan zitten.",
        },
        format="json",
    )
    assert share.status_code == 201, share.content
    item_id = share.json()["items"][0]
    # The care coordinator reads it; a teacher it was not given to gets 404.
    read = world.client("care_a").get(f"/api/v1/items/{item_id}")
    assert read.status_code == 200
    assert read.json()["body"] == "Extra tijd bij toetsen; vooraan zitten."
    assert world.client("teacher_other").get(f"/api/v1/items/{item_id}").status_code == 404
    # S-2: the share is recorded as "data communicated to the school".
    listed = world.client("worker_x").get(f"/api/v1/pupils/{world.lotte.id}/shares").json()
    assert [s["id"] for s in listed] == [share.json()["id"]]
    # Lotte withdraws online (S-4): the next read by the school is refused.
    withdrawn = world.client("lotte").post(
        f"/api/v1/consents/{consent.json()['id']}/withdraw", {"via": "online"}, format="json"
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json()["withdrawn_at"]
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 404
    events = AuditEvent.objects.filter(item_id=item_id, actor=world.users["care_a"]).order_by("sequence")
    assert [(e.action, e.outcome) for e in events] == [("read", "allowed"), ("denied", "denied")]
    # The history stays.
    assert Consent.objects.get(pk=consent.json()["id"]).withdrawn_by == world.users["lotte"]


def test_cap3_a_parent_cannot_consent_for_a_capable_pupil(world) -> None:
    parent = world.lotte.parents.get()
    response = record_consent(world, given_by="parent", given_by_parent=str(parent.id))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "The pupil is capable (presumed_capable)" in message
    assert "Lotte" not in message  # error texts carry no pupil data
    assert "CAP-3" in message


def test_cap1_cap2_clb_override_for_a_thirteen_year_old(world) -> None:
    birth = years_ago(13, days=5)
    noor = core.pupil_register(
        national_number=national_number(birth), first_name="Noor", last_name="V", birth_date=birth
    )
    core.enrolment_register(pupil=noor, school=world.orgs["A"], level=Level.SECUNDAIR, start=start_of_school_year())
    parent = core.parent_add(pupil=noor, first_name="Mia", last_name="V")
    assert world.client("worker_x").get(f"/api/v1/pupils/{noor.id}/capacity").json()["basis"] == "presumed_capable"
    bad = world.client("worker_x").post(
        f"/api/v1/pupils/{noor.id}/capacity-decisions", {"capable": False, "motivation": " "}, format="json"
    )
    assert bad.status_code == 400
    decided = world.client("worker_x").post(
        f"/api/v1/pupils/{noor.id}/capacity-decisions",
        {"capable": False, "motivation": "Kan de gevolgen van delen nu niet overzien (gesprek 12/11)."},
        format="json",
    )
    assert decided.status_code == 201, decided.content
    motivation = PupilItem.objects.get(pk=decided.json()["motivation_item"])
    assert motivation.category == Category.GUIDANCE  # CAP-2: kept in the dossier, encrypted
    capacity = world.client("worker_x").get(f"/api/v1/pupils/{noor.id}/capacity").json()
    assert capacity == {"capable": False, "basis": "override_not_capable", "age": 13}
    url = f"/api/v1/pupils/{noor.id}/consents/create"
    by_pupil = world.client("worker_x").post(url, consent_payload(world), format="json")
    assert by_pupil.status_code == 400
    assert "parents decide" in by_pupil.json()["error"]["message"]
    by_parent = world.client("worker_x").post(
        url, consent_payload(world, given_by="parent", given_by_parent=str(parent.id)), format="json"
    )
    assert by_parent.status_code == 201
    assert by_parent.json()["capacity_basis"] == "override_not_capable"
    assert world.client("teacher_lotte").post(
        f"/api/v1/pupils/{noor.id}/capacity-decisions", {"capable": True, "motivation": "x"}, format="json"
    ).status_code in (403, 404)


def _share(world, consent_id, **payload):
    body = {"consent": consent_id, "school": str(world.orgs["A"].id), **payload}
    return world.client("worker_x").post(f"/api/v1/pupils/{world.lotte.id}/shares/create", body, format="json")


def test_s0_share_to_a_school_where_the_pupil_is_not_enrolled_is_refused(world) -> None:
    consent = record_consent(world, recipient=str(world.orgs["B"].id)).json()
    response = _share(world, consent["id"], school=str(world.orgs["B"].id), summary_body="x")
    assert response.status_code == 400
    assert "not enrolled" in response.json()["error"]["message"]


def test_s1_consent_that_expired_yesterday_is_refused(world) -> None:
    today = timezone.localdate()
    consent = record_consent(
        world, valid_from=(today - timedelta(days=30)).isoformat(), valid_until=(today - timedelta(days=1)).isoformat()
    ).json()
    response = _share(world, consent["id"], summary_body="x")
    assert response.status_code == 400
    assert f"expired on {(today - timedelta(days=1)).isoformat()}" in response.json()["error"]["message"]


def test_s3_selected_items_within_the_consent_never_the_whole_dossier(world) -> None:
    def guidance(title):
        return files.item_create(
            pupil=world.lotte,
            holder=world.orgs["X"],
            category=Category.GUIDANCE,
            kind=ItemKind.NOTE,
            title=title,
            body=title,
            author=world.users["worker_x"],
        )

    first, second = guidance("een"), guidance("twee")
    medical = files.item_create(
        pupil=world.lotte, holder=world.orgs["X"], category=Category.MEDICAL, kind=ItemKind.NOTE, title="m", body="m"
    )
    only_first = record_consent(world, scope_kind="items", items=[str(first.id)]).json()
    assert _share(world, only_first["id"], items=[str(second.id)]).status_code == 400  # not covered
    ok = _share(world, only_first["id"], items=[str(first.id)])
    assert ok.status_code == 201
    assert world.client("care_a").get(f"/api/v1/items/{first.id}").status_code == 200
    assert world.client("care_a").get(f"/api/v1/items/{second.id}").status_code == 404
    everything = record_consent(world, scope_kind="categories", categories=["guidance"]).json()
    whole = _share(world, everything["id"], items=[str(first.id), str(second.id)])
    assert whole.status_code == 400
    assert "S-3" in whole.json()["error"]["message"]
    health = record_consent(world, scope_kind="categories", categories=["medical"])
    assert health.status_code == 400  # health data never go to a school
    assert (
        world.client("worker_x")
        .post(
            f"/api/v1/pupils/{world.lotte.id}/consents/create",
            consent_payload(world, scope_kind="items", items=[str(medical.id)]),
            format="json",
        )
        .status_code
        == 400
    )


def test_s3_more_item_ids_than_a_file_holds_are_refused_before_any_lookup(world) -> None:
    """S-3 selects items one by one; 1,001 ids is no selection (and would exceed a bound statement): 400."""
    many = [str(uuid.uuid4()) for _ in range(1001)]
    response = world.client("worker_x").post(
        f"/api/v1/pupils/{world.lotte.id}/consents/create",
        consent_payload(world, scope_kind="items", items=many),
        format="json",
    )
    assert response.status_code == 400
    assert "1000" in json.dumps(response.json())
    assert not Consent.objects.exists()


def test_s1_only_involved_clb_staff_share(world) -> None:
    consent = record_consent(world).json()
    response = world.client("worker_x_other").post(
        f"/api/v1/pupils/{world.lotte.id}/shares/create",
        {"consent": consent["id"], "school": str(world.orgs["A"].id), "summary_body": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert "involved" in response.json()["error"]["message"]


def test_t_clb_2_objection_after_the_window_is_refused_with_the_date(world) -> None:
    closes = timezone.now() - timedelta(hours=1)
    with pytest.raises(ValidationError) as info:
        services.objection_record(
            pupil=world.lotte,
            transfer_kind="clb",
            handover_id="00000000-0000-0000-0000-000000000001",
            organisation=world.orgs["X"],
            window_closes_at=closes,
            objected_by="pupil",
            parent=None,
            received_at=timezone.now(),
            received_via="writing",
            received_by=world.users["worker_x"],
        )
    assert timezone.localtime(closes).strftime("%d/%m/%Y") in str(info.value)
    ok = services.objection_record(
        pupil=world.lotte,
        transfer_kind="clb",
        handover_id="00000000-0000-0000-0000-000000000001",
        organisation=world.orgs["X"],
        window_closes_at=timezone.now() + timedelta(days=3),
        objected_by="pupil",
        parent=None,
        received_at=timezone.now(),
        received_via="writing",
        received_by=world.users["worker_x"],
    )
    assert ok.capacity_basis == "presumed_capable"


def test_cap3_objection_who_decides_differs_for_clb_and_school_transfers(world) -> None:
    parent = world.lotte.parents.get()
    common = {
        "pupil": world.lotte,
        "window_closes_at": timezone.now() + timedelta(days=3),
        "received_at": timezone.now(),
        "received_via": "writing",
    }
    with pytest.raises(ValidationError, match="CAP-3"):  # CLB matter: Lotte (14) decides
        services.objection_record(
            transfer_kind="clb",
            handover_id="00000000-0000-0000-0000-000000000002",
            organisation=world.orgs["X"],
            objected_by="parent",
            parent=parent,
            received_by=world.users["worker_x"],
            **common,
        )
    with pytest.raises(ValidationError, match="until the pupil is 18"):  # school matter: parents until 18
        services.objection_record(
            transfer_kind="school",
            handover_id="00000000-0000-0000-0000-000000000003",
            organisation=world.orgs["A"],
            objected_by="pupil",
            parent=None,
            received_by=world.users["admin_a"],
            **common,
        )
    objection = services.objection_record(
        transfer_kind="school",
        handover_id="00000000-0000-0000-0000-000000000003",
        organisation=world.orgs["A"],
        objected_by="parent",
        parent=parent,
        received_by=world.users["admin_a"],
        **common,
    )
    assert objection.objected_by_parent == parent


def test_v1_concern_disclosure_is_audited_and_reviewed_by_the_director(world) -> None:
    url = f"/api/v1/pupils/{world.lotte.id}/concerns"
    payload = {
        "ground": "safety",
        "recipient": "vk",
        "justification": "Zichtbare verwondingen en verontrustende uitspraken tijdens het gesprek.",
    }
    assert world.client("care_a").post(url, payload, format="json").status_code == 403  # a school cannot
    assert world.client("worker_x").post(url, {**payload, "justification": "kort"}, format="json").status_code == 400
    created = world.client("worker_x").post(url, payload, format="json")
    assert created.status_code == 201, created.content
    concern = created.json()
    events = AuditEvent.objects.filter(pupil_id=world.lotte.id, legal_basis="V-1", action="share")
    assert events.count() == 1
    assert events.get().purpose == "concern (safety) to vk"
    queue = world.client("director_x").get("/api/v1/concerns").json()
    assert [c["id"] for c in queue] == [concern["id"]]
    assert (
        world.client("worker_x")
        .post(f"/api/v1/concerns/{concern['id']}/review", {"outcome": "justified"}, format="json")
        .status_code
        == 404
    )
    reviewed = world.client("director_x").post(
        f"/api/v1/concerns/{concern['id']}/review", {"outcome": "justified"}, format="json"
    )
    assert reviewed.json()["review_outcome"] == "justified"
    # The justification is kept for the judiciary: never in the pupil's overview (ACC-3).
    overview = world.client("lotte").get(f"/api/v1/pupils/{world.lotte.id}/file-overview").json()["results"]
    assert concern["justification_item"] not in {row["id"] for row in overview}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_s4_concurrent_withdrawal_and_read_on_postgres(world) -> None:
    """S-4 under concurrency: a read racing the withdrawal never returns content once it has committed."""
    consent = record_consent(world).json()
    response = _share(world, consent["id"], summary_body="Samen afgesproken.")
    assert response.status_code == 201, response.content
    item_id = response.json()["items"][0]
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 200
    holding, release = threading.Event(), threading.Event()
    committed_at: list[float] = []
    reads: list[tuple[float, int]] = []
    errors: list[BaseException] = []

    def withdraw() -> None:
        try:
            with transaction.atomic():
                services.consent_withdraw(
                    consent=Consent.objects.get(pk=consent["id"]), withdrawn_by=world.users["lotte"], via="online"
                )
                holding.set()
                release.wait(10)
            committed_at.append(time.monotonic())
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            holding.set()
        finally:
            connections.close_all()

    def read() -> None:
        try:
            status = world.client("care_a").get(f"/api/v1/items/{item_id}").status_code
            reads.append((time.monotonic(), status))
        finally:
            connections.close_all()

    writer = threading.Thread(target=withdraw)
    writer.start()
    assert holding.wait(10)
    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    time.sleep(0.3)
    release.set()
    writer.join(15)
    for reader in readers:
        reader.join(15)
    assert not errors, errors
    assert len(committed_at) == 1
    assert len(reads) == 3
    for finished, status in reads:
        # A read may finish before the commit (and still see the grant), never after it with content.
        assert finished < committed_at[0] or status == 404
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 404
    assert connection.vendor == "postgresql"
