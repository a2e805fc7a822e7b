"""The grants ledger, its guardian projection and key wraps, and the audit hash chain (ACC-5, S-4, T-SCH-2)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.urls import get_resolver
from django.utils import timezone

from exchange import files, services
from exchange.models import Category, ItemKind, Level, PupilItemGroupObjectPermission, WrappedKey
from permissions.api import ProtectedApi
from permissions.audit import audit_verify
from permissions.grants import grants_revoke, projection_sync, role_group, view_permission_id
from permissions.models import AuditEvent, Basis, Grant
from tests.conftest import start_of_school_year

pytestmark = pytest.mark.django_db


def clb_verslag(world):
    return files.item_create(
        pupil=world.lotte,
        holder=world.orgs["X"],
        category=Category.REPORT,
        kind=ItemKind.VERSLAG,
        title="Verslag type 9",
        body="inhoud",
        report_type="type 9",
        report_valid_from=timezone.localdate(),
    )


def assert_no_drift() -> None:
    out = io.StringIO()
    call_command("reconcile_permissions", stdout=out)
    assert "0 missing, 0 extra" in out.getvalue()


def test_guardian_projection_agrees_with_the_ledger_after_every_service(world) -> None:
    item = clb_verslag(world)
    assert_no_drift()
    career = files.item_create(
        pupil=world.lotte, holder=world.orgs["A"], category=Category.CAREER, kind=ItemKind.NOTE, title="t", body="b"
    )
    from permissions.services import item_pass_to_teacher, item_withdraw_from_teacher

    item_pass_to_teacher(
        item=career, school=world.orgs["A"], teacher=world.users["teacher_lotte"], passed_by=world.users["care_a"]
    )
    assert_no_drift()
    item_withdraw_from_teacher(item=career, teacher=world.users["teacher_lotte"], withdrawn_by=world.users["care_a"])
    assert_no_drift()
    files.item_shred(item=item, by=world.users["director_x"], reason="entered_in_error")
    assert_no_drift()


def test_reconcile_reports_and_repairs_drift(world) -> None:
    item = clb_verslag(world)
    PupilItemGroupObjectPermission.objects.filter(content_object=item).delete()
    with pytest.raises(CommandError, match="drift"):
        call_command("reconcile_permissions", stdout=io.StringIO())
    out = io.StringIO()
    call_command("reconcile_permissions", "--repair", stdout=out)
    assert "repaired" in out.getvalue()
    assert_no_drift()


def test_t_sch_2_enrolled_school_reads_the_clb_verslag_and_a_new_school_too(world) -> None:
    item = clb_verslag(world)
    assert world.client("care_a").get(f"/api/v1/items/{item.id}").status_code == 200
    assert world.client("care_b").get(f"/api/v1/items/{item.id}").status_code == 404
    # Lotte moves to school B: B's care team gets the verslag from the enrolment's start.
    enrolment = world.lotte.enrolments.get()
    services.enrolment_end(enrolment=enrolment, end=timezone.localdate() - timedelta(days=1))
    services.enrolment_register(
        pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=timezone.localdate()
    )
    assert world.client("care_b").get(f"/api/v1/items/{item.id}").status_code == 200
    assert world.client("care_a").get(f"/api/v1/items/{item.id}").status_code == 404  # enrolment ended yesterday


def test_t_clb_5_future_enrolment_grants_nothing_before_it_starts(world) -> None:
    item = clb_verslag(world)
    enrolment = world.lotte.enrolments.get()
    next_year = start_of_school_year() + timedelta(days=366)
    services.enrolment_end(enrolment=enrolment, end=next_year - timedelta(days=1))
    services.enrolment_register(pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=next_year)
    grant = Grant.objects.get(item=item, organisation=world.orgs["B"])
    assert grant.valid_from > timezone.now()
    assert world.client("care_b").get(f"/api/v1/items/{item.id}").status_code == 404
    Grant.objects.filter(pk=grant.pk).update(valid_from=timezone.now() - timedelta(seconds=1))  # the clock moves on
    assert world.client("care_b").get(f"/api/v1/items/{item.id}").status_code == 200


def test_revoked_grant_cannot_decrypt_even_if_the_guardian_permission_is_left_behind(world) -> None:
    item = clb_verslag(world)
    grants_revoke(grants=Grant.objects.filter(item=item, organisation=world.orgs["A"]))
    assert not WrappedKey.objects.filter(item_version__item=item, organisation=world.orgs["A"]).exists()
    # Drift: someone leaves the guardian permission in place ...
    PupilItemGroupObjectPermission.objects.create(
        content_object=item,
        group=role_group(organisation_id=world.orgs["A"].id, role="care_team"),
        permission_id=view_permission_id(),
    )
    assert world.client("care_a").get(f"/api/v1/items/{item.id}").status_code == 404
    # ... and even re-inserts a ledger row behind the services' back: there is no key to decrypt.
    Grant.objects.create(
        item=item, organisation=world.orgs["A"], basis=Basis.ENROLMENT, rule="T-SCH-2", valid_from=timezone.now()
    )
    projection_sync(items=[item])
    assert world.client("care_a").get(f"/api/v1/items/{item.id}").status_code == 404


def test_protected_api_refuses_subclasses_that_override_lookups() -> None:
    with pytest.raises(TypeError, match="get_queryset"):
        type("Sneaky", (ProtectedApi,), {"get_queryset": lambda self: None})
    with pytest.raises(TypeError, match="get_object"):
        type("Sneaky", (ProtectedApi,), {"get_object": lambda self: None})


def test_every_item_endpoint_is_a_protected_api() -> None:
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    item_routes = [(route, cb) for route, cb in walk(get_resolver().url_patterns) if "items" in route]
    assert len(item_routes) >= 8
    for route, callback in item_routes:
        assert issubclass(callback.view_class, ProtectedApi), route


def test_every_read_and_denial_is_in_the_chain_and_verifies(world) -> None:
    item = clb_verslag(world)
    world.client("worker_x").get(f"/api/v1/items/{item.id}", HTTP_X_PURPOSE="preparing MDO")
    world.client("worker_x_other").get(f"/api/v1/items/{item.id}")
    read = AuditEvent.objects.get(item_id=item.id, actor=world.users["worker_x"], action="read")
    assert (read.purpose, read.legal_basis, read.role, read.outcome) == (
        "preparing MDO",
        "ACC-4",
        "clb_worker",
        "allowed",
    )
    assert AuditEvent.objects.filter(item_id=item.id, actor=world.users["worker_x_other"], action="denied").exists()
    checked, broken = audit_verify()
    assert broken is None
    assert checked == AuditEvent.objects.count()
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert "intact" in out.getvalue()


# A client's stated purpose is free text: quotes, a backslash, a percent sign, JSON's own characters and
# letters outside ASCII (Latin-1, as an HTTP header carries them).
AWKWARD_PURPOSE = "MDO 'zorg' \"dossier\" 50% \\ {a:[1]} Zoë, élève – 𝄞"


def test_acc5_an_event_stores_exactly_the_purpose_it_hashed(world) -> None:
    """ACC-5: the event of a read through the API (on PostgreSQL the pipelined read's append) and of a
    direct ``audit_append`` store the stated purpose unchanged, and the chain verifies: what is stored is
    what was hashed. On PostgreSQL the append takes its columns from the hashed document itself."""
    from permissions.audit import audit_append
    from permissions.models import AuditAction, AuditOutcome

    item = clb_verslag(world)
    header = AWKWARD_PURPOSE.encode("latin-1", "ignore").decode("latin-1")
    assert world.client("worker_x").get(f"/api/v1/items/{item.id}", HTTP_X_PURPOSE=header).status_code == 200
    read = AuditEvent.objects.get(item_id=item.id, action="read")
    assert (read.purpose, read.legal_basis, read.organisation_id, read.pupil_id, read.actor_id) == (
        header,
        "ACC-4",
        world.orgs["X"].id,
        world.lotte.id,
        world.users["worker_x"].id,
    )
    direct = audit_append(
        action=AuditAction.READ, outcome=AuditOutcome.ALLOWED, purpose=AWKWARD_PURPOSE, item_id=item.id
    )
    stored = AuditEvent.objects.get(pk=direct.pk)
    assert (stored.purpose, stored.at, stored.actor_id, stored.organisation_id) == (
        AWKWARD_PURPOSE,
        direct.at,
        None,
        None,
    )
    assert (stored.hash, stored.prev_hash) == (direct.hash, direct.prev_hash)
    assert audit_verify()[1] is None


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")  # superuser bypass of the triggers
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")


def test_audit_verify_finds_a_modified_row(world) -> None:
    clb_verslag(world)
    target = AuditEvent.objects.order_by("sequence")[2]
    _tamper("UPDATE permissions_auditevent SET purpose = %s WHERE id = %s", ["nothing to see", target.id])
    _checked, broken = audit_verify()
    assert broken is not None
    assert broken.sequence == target.sequence
    assert "modified" in broken.reason
    with pytest.raises(CommandError, match=f"#{target.sequence}"):
        call_command("audit_verify", stdout=io.StringIO())


def test_audit_verify_finds_a_deleted_row(world) -> None:
    clb_verslag(world)
    target = AuditEvent.objects.order_by("sequence")[1]
    _tamper("DELETE FROM permissions_auditevent WHERE id = %s", [target.id])
    _checked, broken = audit_verify()
    assert broken is not None
    assert broken.sequence == target.sequence


def test_audit_verify_finds_deleted_last_rows(world) -> None:
    clb_verslag(world)
    last = AuditEvent.objects.order_by("-sequence").first()
    _tamper("DELETE FROM permissions_auditevent WHERE id = %s", [last.id])
    _checked, broken = audit_verify()
    assert broken is not None


@pytest.mark.postgres
def test_postgres_triggers_make_the_audit_table_append_only(world) -> None:
    clb_verslag(world)
    event = AuditEvent.objects.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(purpose="changed")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


def test_acc5_acc1_access_log_for_the_pupil_and_the_parents_of_a_young_pupil(world) -> None:
    item = clb_verslag(world)
    secret = files.item_create(
        pupil=world.lotte,
        holder=world.orgs["X"],
        category=Category.GUIDANCE,
        kind=ItemKind.NOTE,
        title="t",
        body="b",
        flags={"third_party_confidential": True},
    )
    world.client("worker_x").get(f"/api/v1/items/{item.id}")
    world.client("worker_x").get(f"/api/v1/items/{secret.id}")
    # Lists are in the history too, by organisation and role: the pupil's list and the feed across pupils.
    world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}/items")
    world.client("care_a").get("/api/v1/items")
    log = world.client("lotte").get(f"/api/v1/pupils/{world.lotte.id}/access-log?page_size=200")
    assert log.status_code == 200
    rows = log.json()["results"]
    assert any(r["action"] == "read" and r["organisation"] == "CLB X" and r["role"] == "clb_worker" for r in rows)
    listed = [r for r in rows if r["purpose"] in ("list", "feed")]
    assert sorted((r["purpose"], r["organisation"], r["role"]) for r in listed) == [
        ("feed", "School A", "care_team"),
        ("list", "School A", "care_team"),
    ]
    assert all("actor" not in r for r in rows)  # staff appear by organisation and role only
    secret_events = AuditEvent.objects.filter(item_id=secret.id).count()
    all_events = AuditEvent.objects.filter(pupil_id=world.lotte.id).count()
    assert log.json()["count"] == all_events - secret_events  # ACC-3: third-party confidential left out
    # ACC-1: Lotte is 14, her parent needs her consent; Sam is 9, his parent inspects.
    assert world.client("parent_lotte").get(f"/api/v1/pupils/{world.lotte.id}/access-log").status_code == 403
    assert world.client("parent_sam").get(f"/api/v1/pupils/{world.sam.id}/access-log").status_code == 200
    assert world.client("parent_sam").get(f"/api/v1/pupils/{world.lotte.id}/access-log").status_code == 404
    assert world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}/access-log").status_code == 404


def test_acc5_dpo_exports_a_pupils_events(world) -> None:
    import json

    item = clb_verslag(world)
    world.client("worker_x").get(f"/api/v1/items/{item.id}")
    assert world.client("worker_x").get(f"/api/v1/audit/export?pupil={world.lotte.id}").status_code == 403
    services.membership_grant(user=world.users["stranger"], organisation=world.orgs["X"], role="dpo")
    response = world.client("stranger").get(f"/api/v1/audit/export?pupil={world.lotte.id}")
    assert response.status_code == 200
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert any(line["action"] == "read" and line["item"] == str(item.id) for line in lines)
    assert all(line["pupil"] == str(world.lotte.id) for line in lines)
    assert world.client("stranger").get("/api/v1/audit/export?pupil=nope").status_code == 400


def test_acc3_file_overview_never_lists_hidden_items_to_the_pupil_or_parents(world) -> None:
    def make(title: str, **flags: bool):
        return files.item_create(
            pupil=world.sam,
            holder=world.orgs["X"],
            category=Category.GUIDANCE,
            kind=ItemKind.NOTE,
            title=title,
            body="b",
            flags=flags,
        )

    make("gewoon")
    make("derde", third_party_confidential=True)
    make("anderen", about_others_only=True)
    make("gerecht", for_judiciary=True)
    make("niet aan ouders", withheld_from_parents=True)
    make("schadelijk", harmful_now=True)
    response = world.client("parent_sam").get(f"/api/v1/pupils/{world.sam.id}/file-overview")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert sorted(r["title"] for r in rows) == ["", "gewoon"]
    assert [r["through_trusted_person"] for r in rows if r["title"] == ""] == [True]
    # Lotte (14) sees her own overview, her parent does not without her consent (ACC-1).
    files.item_create(
        pupil=world.lotte,
        holder=world.orgs["X"],
        category=Category.GUIDANCE,
        kind=ItemKind.NOTE,
        title="voor Lotte",
        body="b",
        flags={"withheld_from_parents": True},
    )
    own = world.client("lotte").get(f"/api/v1/pupils/{world.lotte.id}/file-overview").json()["results"]
    assert [r["title"] for r in own] == ["voor Lotte"]
    assert world.client("parent_lotte").get(f"/api/v1/pupils/{world.lotte.id}/file-overview").status_code == 403
    assert world.client("worker_x").get(f"/api/v1/pupils/{world.lotte.id}/file-overview").status_code == 404


def test_bulk_writes_never_truncate_an_audit_event_nor_double_a_grant(world) -> None:
    """ACC-5 and the ledger's idempotency under the bulk writer (``permissions.bulk.insert_rows``):
    a repeated grant is a no-op, and an audit event longer than its column is refused whole rather
    than stored shortened (a shortened row would no longer match its hash)."""
    from permissions.audit import EventSpec, audit_append_many
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import AuditAction, AuditOutcome

    verslag = clb_verslag(world)
    spec = GrantSpec(item=verslag, organisation=world.orgs["A"], basis=Basis.CONSENT, rule="ACC-2")
    grants_create(specs=[spec, spec])
    grants_create(specs=[spec])
    assert Grant.objects.filter(item=verslag, organisation=world.orgs["A"], basis=Basis.CONSENT).count() == 1
    assert WrappedKey.objects.filter(item_version__item=verslag, organisation=world.orgs["A"]).count() == 1
    assert_no_drift()
    events_before = AuditEvent.objects.count()
    too_long = EventSpec(action=AuditAction.READ, outcome=AuditOutcome.ALLOWED, purpose="p" * 101)
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError), transaction.atomic():
            audit_append_many(events=[too_long])
        assert AuditEvent.objects.count() == events_before
    else:  # SQLite does not enforce lengths: the event is kept whole
        audit_append_many(events=[too_long])
        assert AuditEvent.objects.latest("sequence").purpose == "p" * 101
    assert audit_verify()[1] is None
