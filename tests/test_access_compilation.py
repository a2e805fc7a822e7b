"""The compiled access check at its edges (ACC-4, S-0, S-3, S-4, T-CLB-5, T-SCH-2, RET-1, ACC-5).

``permissions.access`` writes the policy table as hand-built SQL. These tests pin the edges that
SQL must keep: grant windows (future, expired, revoked), user-level grants, health items,
involvement, teaching, shields, the guardian projection, several memberships, shredding, use as
a subquery, and that ids are bound parameters. Each result is compared with the independent
in-Python reading of the policy table of the authorization-matrix test.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.exceptions import NotFound

from exchange import files, services
from exchange.models import Category, ItemKind, Membership, PupilItem, PupilItemGroupObjectPermission, Role
from permissions.access import (
    Action,
    _audit_decision,
    _code,
    _decide,
    _Sql,
    item_get_for_user,
    item_list_for_user,
)
from permissions.audit import audit_append, audit_verify, json_literal
from permissions.grants import GrantSpec, grants_create, grants_revoke, view_permission_id
from permissions.models import AuditEvent, AuditHead, AuditOutcome, Basis, Grant, Shield
from permissions.policy import READ, WRITE
from permissions.services import item_pass_to_teacher, item_shield
from tests.factories import UserFactory
from tests.test_authorization_matrix import PERSONAS, expected_readable

pytestmark = pytest.mark.django_db


def _item(world: Any, holder: str, category: str, kind: str = ItemKind.NOTE) -> PupilItem:
    report = kind in (ItemKind.VERSLAG, ItemKind.GEMOTIVEERD_VERSLAG)
    return files.item_create(
        pupil=world.lotte,
        holder=world.orgs[holder],
        category=category,
        kind=kind,
        title="t",
        body="b",
        report_type="type 9" if report else "",
        report_valid_from=timezone.localdate() if report else None,
    )


def _listed(user: Any, item: PupilItem) -> bool:
    return item_list_for_user(user=user, pupil_id=item.pupil_id).filter(pk=item.pk).exists()


def _gets(user: Any, item: PupilItem, action: str = READ) -> bool:
    try:
        item_get_for_user(user=user, item_id=item.pk, action=action)
    except NotFound:
        return False
    return True


def _agrees(user: Any, item: PupilItem, expected: bool) -> None:
    """List, list without a pupil, single read and the independent reading all say ``expected``."""
    assert expected_readable(user, item) is expected
    assert _listed(user, item) is expected
    assert item_list_for_user(user=user).filter(pk=item.pk).exists() is expected
    assert _gets(user, item) is expected


def test_s0_grant_window_future_expired_and_revoked(world) -> None:
    """S-0/T-CLB-5/S-4: only a grant active now counts, whatever the guardian projection says."""
    care_b = world.users["care_b"]
    verslag = _item(world, "X", Category.REPORT, ItemKind.VERSLAG)
    _agrees(care_b, verslag, expected=False)  # S-0: no relation with school B
    now = timezone.now()
    grant = {"item": verslag, "organisation": world.orgs["B"], "basis": Basis.ENROLMENT, "rule": "T-SCH-2"}
    grants_create(specs=[GrantSpec(**grant, valid_from=now + timedelta(days=30))])  # T-CLB-5: not yet
    _agrees(care_b, verslag, expected=False)
    Grant.objects.filter(item=verslag, organisation=world.orgs["B"]).update(
        valid_from=now - timedelta(days=30), valid_until=now - timedelta(days=1)
    )
    _agrees(care_b, verslag, expected=False)  # expired
    Grant.objects.filter(item=verslag, organisation=world.orgs["B"]).update(valid_until=now + timedelta(days=1))
    _agrees(care_b, verslag, expected=True)  # T-SCH-2: active
    grants_revoke(grants=Grant.objects.filter(item=verslag, organisation=world.orgs["B"]))
    _agrees(care_b, verslag, expected=False)  # S-4: revoked from that moment


def test_s3_user_level_grants_count_only_for_the_named_user_and_rule(world) -> None:
    """S-3: a teacher share names one teacher; an organisation-level rule ignores user-level grants."""
    career = _item(world, "A", Category.CAREER, ItemKind.DOCUMENT)
    teacher, other = world.users["teacher_lotte"], world.users["teacher_other"]
    _agrees(teacher, career, expected=False)
    item_pass_to_teacher(item=career, school=world.orgs["A"], teacher=teacher, passed_by=world.users["care_a"])
    _agrees(teacher, career, expected=True)
    _agrees(other, career, expected=False)  # the grant names teacher_lotte, not every teacher
    # A user-level holder grant at school B does not satisfy T-SCH-1, which needs an organisation grant.
    grants_create(
        specs=[
            GrantSpec(
                item=career,
                organisation=world.orgs["B"],
                basis=Basis.HOLDER,
                rule="T-SCH-1",
                user=world.users["care_b"],
            )
        ]
    )
    _agrees(world.users["care_b"], career, expected=False)


def test_s3_teacher_share_needs_current_teaching(world) -> None:
    """S-3: when the teaching assignment ends, the share no longer opens the item."""
    career = _item(world, "A", Category.CAREER, ItemKind.DOCUMENT)
    teacher = world.users["teacher_lotte"]
    item_pass_to_teacher(item=career, school=world.orgs["A"], teacher=teacher, passed_by=world.users["care_a"])
    _agrees(teacher, career, expected=True)
    teacher.teaching.update(ended_at=timezone.now())
    _agrees(teacher, career, expected=False)


def test_acc4_health_involvement_and_shield(world) -> None:
    """ACC-4: health data for medical staff only; the MDD for involved staff; a shield hides one item."""
    medical = _item(world, "X", Category.MEDICAL)
    guidance = _item(world, "X", Category.GUIDANCE)
    worker, other, doctor = world.users["worker_x"], world.users["worker_x_other"], world.users["doctor_x"]
    _agrees(worker, medical, expected=False)
    _agrees(doctor, medical, expected=True)
    _agrees(worker, guidance, expected=True)
    _agrees(other, guidance, expected=False)  # not involved
    _agrees(doctor, guidance, expected=False)  # medical staff, but not involved
    item_shield(item=guidance, user=worker, recorded_by=world.users["director_x"])
    _agrees(worker, guidance, expected=False)
    assert Shield.objects.filter(item=guidance).count() == 1


def test_guardian_projection_is_still_enforced_for_reads(world) -> None:
    """The ledger alone is not enough for a read: the guardian projection must agree (and vice versa)."""
    verslag = _item(world, "A", Category.REPORT, ItemKind.VERSLAG)
    care = world.users["care_a"]
    assert _listed(care, verslag)
    assert _gets(care, verslag)
    PupilItemGroupObjectPermission.objects.filter(content_object=verslag, permission_id=view_permission_id()).delete()
    assert not _listed(care, verslag)
    assert not item_list_for_user(user=care).filter(pk=verslag.pk).exists()
    assert not _gets(care, verslag)
    # The projection is by the user's own groups: another member's role group does not count.
    career = _item(world, "A", Category.CAREER, ItemKind.DOCUMENT)
    colleague = UserFactory(username="care_a_colleague")
    services.membership_grant(user=colleague, organisation=world.orgs["A"], role=Role.CARE_TEAM)
    assert _listed(care, career)
    assert _listed(colleague, career)
    care.groups.clear()
    assert not _listed(care, career)
    assert not _gets(care, career)
    # Writing is decided by the ledger and the policy alone, as before.
    assert item_list_for_user(user=care, pupil_id=verslag.pupil_id, action=WRITE).filter(pk=verslag.pk).exists()
    assert _gets(care, verslag, WRITE)


def test_several_memberships_union_and_the_rule_that_allowed(world) -> None:
    """A user in two organisations sees the union, and a read names the membership and rule that allowed it."""
    user = world.users["care_a"]
    services.membership_grant(user=user, organisation=world.orgs["X"], role=Role.CLB_MEDICAL)
    school = _item(world, "A", Category.DISCIPLINE)
    vaccination = _item(world, "X", Category.VACCINATION, ItemKind.RECORD)
    guidance = _item(world, "X", Category.GUIDANCE)
    _agrees(user, school, expected=True)
    _agrees(user, vaccination, expected=True)
    _agrees(user, guidance, expected=False)  # medical staff of X, but not involved
    access = item_get_for_user(user=user, item_id=vaccination.pk, action=READ)
    assert (access.organisation, access.membership.role, access.rule) == (world.orgs["X"], Role.CLB_MEDICAL, "ACC-4")
    access = item_get_for_user(user=user, item_id=school.pk, action=READ)
    assert (access.organisation, access.rule) == (world.orgs["A"], "T-SCH-1")
    event = AuditEvent.objects.filter(item_id=school.pk, actor=user).latest("sequence")
    assert (event.organisation_id, event.legal_basis, event.outcome) == (world.orgs["A"].pk, "T-SCH-1", "allowed")


def test_inactive_membership_opens_nothing_even_with_its_guardian_group_left(world) -> None:
    """S-0: only active memberships count; the denial of a user without one names no organisation."""
    care = world.users["care_a"]
    discipline = _item(world, "A", Category.DISCIPLINE)
    _agrees(care, discipline, expected=True)
    Membership.objects.filter(user=care).update(active=False)  # the role group (guardian) is left behind
    _agrees(care, discipline, expected=False)
    event = AuditEvent.objects.filter(item_id=discipline.pk, actor=care).latest("sequence")
    assert (event.outcome, event.organisation_id, event.role) == (AuditOutcome.DENIED, None, "")
    Membership.objects.filter(user=care).update(active=True)
    _agrees(care, discipline, expected=True)


def test_two_roles_in_one_organisation_the_first_membership_that_allows_is_audited(world) -> None:
    """Memberships are tried in their order (organisation, role); the first one that allows the read is named."""
    doctor = world.users["doctor_x"]
    services.membership_grant(user=doctor, organisation=world.orgs["X"], role=Role.CLB_WORKER)
    medical = _item(world, "X", Category.MEDICAL)
    attendance = _item(world, "X", Category.ATTENDANCE)
    guidance = _item(world, "X", Category.GUIDANCE)
    _agrees(doctor, medical, expected=True)
    _agrees(doctor, attendance, expected=True)
    _agrees(doctor, guidance, expected=False)  # neither role is involved with Lotte
    access = item_get_for_user(user=doctor, item_id=medical.pk, action=READ)
    assert (access.membership.role, access.rule) == (Role.CLB_MEDICAL, "ACC-4")
    # clb_medical comes first but does not allow attendance without involvement; clb_worker does.
    access = item_get_for_user(user=doctor, item_id=attendance.pk, action=READ)
    assert (access.membership.role, access.organisation, access.rule) == (Role.CLB_WORKER, world.orgs["X"], "A-2")
    assert access.organisation.name == world.orgs["X"].name
    event = AuditEvent.objects.filter(item_id=attendance.pk, actor=doctor).latest("sequence")
    assert (event.role, event.legal_basis) == (Role.CLB_WORKER, "A-2")
    # A denial names the first membership.
    assert not _gets(doctor, guidance)
    event = AuditEvent.objects.filter(item_id=guidance.pk, actor=doctor).latest("sequence")
    assert (event.outcome, event.role) == (AuditOutcome.DENIED, Role.CLB_MEDICAL)


def test_role_change_takes_effect_at_once(world) -> None:
    """The statement is compiled once per action; the role is read from the membership row on every call."""
    care = world.users["care_a"]
    discipline = _item(world, "A", Category.DISCIPLINE)
    _agrees(care, discipline, expected=True)
    # Changed in place, with the care team's guardian group left behind: the policy follows the row.
    Membership.objects.filter(user=care, role=Role.CARE_TEAM).update(role=Role.TEACHER)
    _agrees(care, discipline, expected=False)
    Membership.objects.filter(user=care, role=Role.TEACHER).update(role=Role.CARE_TEAM)
    _agrees(care, discipline, expected=True)
    # Through the services: revoke the care team role, give the teacher role.
    services.membership_revoke(membership=Membership.objects.get(user=care, role=Role.CARE_TEAM))
    services.membership_grant(user=care, organisation=world.orgs["A"], role=Role.TEACHER)
    _agrees(care, discipline, expected=False)


def test_ret1_shred_only_by_the_holders_director(world) -> None:
    """RET-1: crypto-shredding is for the holder's director; anyone else gets the same 404."""
    guidance = _item(world, "X", Category.GUIDANCE)
    access = item_get_for_user(user=world.users["director_x"], item_id=guidance.pk, action=Action.SHRED)
    assert (access.rule, access.organisation) == ("RET-1", world.orgs["X"])
    for persona in ("worker_x", "director_a", "director_y"):
        assert not _gets(world.users[persona], guidance, Action.SHRED), persona


@pytest.mark.parametrize("persona", PERSONAS)
def test_list_get_and_subquery_agree_with_the_policy_table(world, persona: str) -> None:
    """Per persona: the per-pupil list, the list used as a subquery and single reads agree (ACC-4, S-3, T-SCH-2)."""
    items = [_item(world, holder, category) for holder, category in (("A", Category.CAREER), ("X", Category.GUIDANCE))]
    items.append(_item(world, "X", Category.REPORT, ItemKind.VERSLAG))
    user = world.users[persona]
    expected = {item.pk for item in items if expected_readable(user, item)}
    ids = [item.pk for item in items]
    listed = set(item_list_for_user(user=user, pupil_id=world.lotte.pk).filter(pk__in=ids).values_list("pk", flat=True))
    assert listed == expected
    # As a subquery Django relabels the outer table: the compiled condition must follow.
    nested = set(
        PupilItem.objects.filter(pk__in=item_list_for_user(user=user, pupil_id=world.lotte.pk))
        .filter(pk__in=ids)
        .values_list("pk", flat=True)
    )
    assert nested == expected
    via_grants = set(
        Grant.objects.filter(item__in=item_list_for_user(user=user), item_id__in=ids).values_list("item_id", flat=True)
    )
    assert via_grants == expected
    assert {item.pk for item in items if _gets(user, item)} == expected


def test_ids_are_bound_parameters_not_sql_text(world) -> None:
    """The condition is compiled once per action: users, pupils and organisations are never in its text."""
    user = world.users["worker_x"]
    sql, params = item_list_for_user(user=user, pupil_id=world.lotte.pk).query.sql_with_params()
    organisation = world.orgs["X"].pk
    for value in (organisation.hex, str(organisation), world.lotte.pk.hex, str(world.lotte.pk)):
        assert value not in sql
    assert user.pk in params
    other_sql, _ = item_list_for_user(user=world.users["care_a"], pupil_id=world.lotte.pk).query.sql_with_params()
    assert other_sql == sql


def test_only_policy_codes_are_written_into_the_text() -> None:
    """The policy table's codes are SQL literals (parsed once per prepared statement); anything that is not a
    plain code is refused when the statement is compiled, so no quote can reach the text."""
    for vendor in ("postgresql", "sqlite"):
        q = _Sql(vendor)
        assert "'school|care_team'" in q.among("k", {"school|care_team"})
        for bad in ("x'; DROP TABLE permissions_grant; --", "Care", "a b", "a%s", "{x}"):
            with pytest.raises(ValueError, match="not a policy code"):
                q.among("k", {bad})
    # The audit event a decision writes in SQL (ACC-5): its codes and keys are literals under the same guard.
    assert json_literal("T-SCH-2") == """'"T-SCH-2"'"""
    assert json_literal("role", before=",", after=":") == """',"role":'"""
    for bad in ("x'; --", 'a"b', "a\\b", "a%s", "é"):
        with pytest.raises(ValueError, match="not an audit code"):
            json_literal(bad)
        with pytest.raises(ValueError, match="not a code"):
            _code(bad)


@pytest.mark.postgres
def test_need_to_know_statements_are_prepared_once_per_connection(world) -> None:
    """On PostgreSQL the list, the decision and the audit append keep one text per action, so psycopg
    prepares each after five calls and the server stops planning them (docs/operations.md)."""
    user = world.users["care_a"]
    item = _item(world, "A", Category.CAREER)
    assert _listed(user, item)
    for _ in range(7):
        list(item_list_for_user(user=user, pupil_id=world.lotte.pk))
        item_get_for_user(user=user, item_id=item.pk, action=READ)
        audit_append(action="read", outcome=AuditOutcome.ALLOWED, actor=user, purpose="prepared")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('"permissions_grant" lp_g' in text and "lp_gp" in text and "LIMIT" not in text for text in prepared)
    # the decision with its audit event
    assert any(text.startswith("WITH lp_d") and '"permissions_auditevent"' in text for text in prepared)
    assert any(text.startswith("WITH head AS") for text in prepared)  # the audit append on its own


def test_acc5_append_keeps_the_chain_with_awkward_text(world) -> None:
    """ACC-5: the hash covers every field, also quotes, backslashes and non-ASCII text."""
    for purpose in ('zorgoverleg "MDO" \\ é ü 😀', "", "'; --"):
        audit_append(action="read", outcome=AuditOutcome.ALLOWED, actor=world.users["care_a"], purpose=purpose)
    checked, broken = audit_verify()
    assert broken is None
    assert checked == AuditEvent.objects.count()
    assert AuditEvent.objects.latest("sequence").purpose == "'; --"


def test_acc5_append_in_a_rolled_back_transaction_leaves_the_chain_intact(world) -> None:
    before = AuditHead.objects.get(id=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose="rolled back")
        raise RuntimeError
    head = AuditHead.objects.get(id=1)
    assert (head.sequence, head.hash) == (before.sequence, before.hash)
    assert not AuditEvent.objects.filter(purpose="rolled back").exists()
    audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose="after")
    assert audit_verify()[1] is None


def test_acc5_first_event_creates_the_head(db) -> None:
    assert not AuditHead.objects.exists()
    event = audit_append(action="read", outcome=AuditOutcome.DENIED, purpose="first")
    assert (event.sequence, event.prev_hash) == (1, "0" * 64)
    assert AuditEvent.objects.get().hash == event.hash == AuditHead.objects.get(id=1).hash
    assert audit_verify() == (1, None)


def _run_threads(work: Any, count: int) -> list[BaseException]:
    """Run ``work(n)`` in ``count`` threads, each on its own connection; the errors they raised."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_acc5_concurrent_appends_form_one_chain() -> None:
    """ACC-5 on PostgreSQL: appends from several connections queue on the head; the chain has no gap or fork."""
    audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose="start")

    def work(n: int) -> None:
        for i in range(15):
            if i % 2:
                with transaction.atomic():  # inside a caller's transaction, too
                    audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose=f"w{n}-{i}")
            else:
                audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose=f"w{n}-{i}")

    assert _run_threads(work, 4) == []
    assert connection.vendor == "postgresql"
    assert audit_verify() == (61, None)


# --- PostgreSQL: the decision and its audit event in one statement ----------------------------------------

_EVENT_FIELDS = (
    "action",
    "outcome",
    "actor_id",
    "organisation_id",
    "role",
    "pupil_id",
    "item_id",
    "purpose",
    "legal_basis",
)
AWKWARD_PURPOSE = 'MDO "voorbereiding" \\ é ü 😀 \'; --'


def _event_fields(event: AuditEvent) -> tuple[Any, ...]:
    return tuple(getattr(event, name) for name in _EVENT_FIELDS)


def _last_event() -> AuditEvent:
    return AuditEvent.objects.latest("sequence")


@pytest.mark.postgres
def test_acc5_one_statement_decides_and_audits_as_the_two_step_path_does(world) -> None:
    """ACC-5, scenario 9: on PostgreSQL a read or write is decided and audited in one statement. For every
    persona, action and kind of item (allowed under different rules, denied with and without a membership),
    its event equals the one the two-step path (``_decide`` then ``_audit_decision``) appends, and the chain
    verifies: the canonical document written in SQL is the one ``audit_verify`` recomputes in Python."""
    services.membership_grant(user=world.users["doctor_x"], organisation=world.orgs["X"], role=Role.CLB_WORKER)
    items = [
        _item(world, "X", Category.REPORT, ItemKind.VERSLAG),
        _item(world, "X", Category.MEDICAL),
        _item(world, "X", Category.ATTENDANCE),
        _item(world, "A", Category.CAREER),
        _item(world, "A", Category.DISCIPLINE),
    ]
    seen: dict[tuple[str, str], set[str]] = {}
    for name, user in world.users.items():
        for item in items:
            for action in (READ, WRITE):
                with CaptureQueriesContext(connection) as queries:
                    allowed = _gets(user, item, action)
                assert len(queries) == 1, [q["sql"][:80] for q in queries]
                one_statement = _last_event()
                # the two-step path, as on SQLite: the same decision, appended from Python
                decision = _decide(user=user, item_id=item.pk, action=action)
                _audit_decision(decision, user=user, action=action, purpose=action)
                two_steps = _last_event()
                assert one_statement.sequence + 1 == two_steps.sequence
                assert _event_fields(one_statement) == _event_fields(two_steps), (name, item.category, action)
                assert allowed == (one_statement.outcome == AuditOutcome.ALLOWED)
                seen.setdefault((action, one_statement.outcome), set()).add(one_statement.legal_basis)
        if name in ("worker_x", "care_a"):  # quotes, a backslash and non-ASCII in the canonical document
            item_get_for_user(user=user, item_id=items[0].pk, action=READ, purpose=AWKWARD_PURPOSE)
    # what the loop went through: reads and writes allowed under several rules, and denials
    assert {"ACC-4", "A-2", "T-SCH-2"} <= seen[(READ, AuditOutcome.ALLOWED)]
    assert seen[(WRITE, AuditOutcome.ALLOWED)] - {""}
    assert seen[(READ, AuditOutcome.DENIED)] == {""}
    assert AuditEvent.objects.filter(purpose=AWKWARD_PURPOSE, outcome=AuditOutcome.ALLOWED).count() == 2
    assert AuditEvent.objects.filter(outcome=AuditOutcome.DENIED, organisation_id=None, role="").exists()
    checked, broken = audit_verify()
    assert broken is None
    assert checked == AuditEvent.objects.count()


@pytest.mark.postgres
def test_acc5_one_statement_read_of_a_missing_or_shredded_item_appends_nothing(world) -> None:
    item = _item(world, "X", Category.REPORT, ItemKind.VERSLAG)
    before = _last_event().sequence
    assert not _gets(world.users["worker_x"], PupilItem(pk=uuid.uuid4()))
    PupilItem.objects.filter(pk=item.pk).update(shredded_at=timezone.now())
    assert not _gets(world.users["worker_x"], item)
    assert _last_event().sequence == before


@pytest.mark.postgres
def test_acc5_one_statement_read_starts_the_chain_when_it_has_no_head(world) -> None:
    """The very first event of a platform can be a read: the head is created and the chain starts at 1."""
    item = _item(world, "X", Category.REPORT, ItemKind.VERSLAG)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # superuser bypass of the append-only triggers
        cursor.execute("DELETE FROM permissions_auditevent")
        cursor.execute("DELETE FROM permissions_audithead")
        cursor.execute("SET session_replication_role = DEFAULT")
    access = item_get_for_user(user=world.users["worker_x"], item_id=item.pk, action=READ)
    assert access.rule == "ACC-4"
    event = AuditEvent.objects.get()
    assert (event.sequence, event.prev_hash, event.legal_basis) == (1, "0" * 64, "ACC-4")
    assert audit_verify() == (1, None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_acc5_concurrent_reads_and_appends_form_one_chain(world) -> None:
    """ACC-5 on PostgreSQL: reads audited inside their decision and appends from other code queue on the same
    head, from several connections at once; the chain has no gap or fork and every read is in it."""
    item = _item(world, "X", Category.REPORT, ItemKind.VERSLAG)
    users = [world.users["worker_x"], world.users["care_a"], world.users["worker_x_other"]]
    start = _last_event().sequence

    def work(n: int) -> None:
        for i in range(12):
            if i % 3 == 2:
                audit_append(action="read", outcome=AuditOutcome.ALLOWED, purpose=f"w{n}-{i}")
            else:
                _gets(users[(n + i) % len(users)], item)

    assert _run_threads(work, 4) == []
    checked, broken = audit_verify()
    assert broken is None
    assert checked == start + 48
    reads = AuditEvent.objects.filter(item_id=item.pk, sequence__gt=start)
    assert reads.count() == 32
    assert reads.filter(outcome=AuditOutcome.DENIED, actor=world.users["worker_x_other"]).exists()
