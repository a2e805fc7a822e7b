"""Child phase of ``bench.bench_access``: load the benchmark data set into a migrated PostgreSQL database.

Runs with Django set up against the throwaway database. Bulk data are written with set-based SQL
(``INSERT ... SELECT generate_series(...)``), never row by row through the ORM; only the two
measured users (and the CLB director who assigns the worker's involvements) are created through
the services, so their memberships, role groups and involvements are exactly what the product
would write. Pupil identities and item contents are fake bytes: listing never decrypts.

Shape (``scale`` = 1 for the full run, 0.1 for ``--quick``):

* organisations: 800 schools (half basis, half secundair), 150 CLBs, 50 NAFT providers;
* one open cooperation agreement per school (school ``s`` with CLB ``s mod 150``);
* 200,000 pupils, pupil ``p`` enrolled (current school year, open) at school ``p mod 800``;
* 5 items per pupil (1,000,000), see :data:`SLOTS`: two held by the school, three by the CLB serving
  the school (one of them a verslag in half of the pupils, one health data; every tenth pupil has a
  NAFT progress report instead of the health item);
* a ``holder`` grant (rule S-0) per item, and a T-SCH-2 ``enrolment`` grant for every verslag held
  by another organisation than the school the pupil is enrolled at (what ``enrolment_grants_sync``
  writes);
* the guardian projection: a group per organisation and role (``lp:<org id>:<role>``) and a
  ``PupilItemGroupObjectPermission`` row (``view_pupilitem``) for every (item, role group) that
  :func:`permissions.policy.roles_reading` allows for the grant's basis and the item's category,
  as :func:`permissions.grants.expected_projection` computes it (checked on a sample afterwards);
* staff: per school 2 care team members, 1 administration, 1 director; per CLB 10 workers,
  2 medical staff, 1 director; per NAFT provider 2 coaches; each in their role group; every pupil
  has one involved worker of its CLB;
* measured: ``bench.care`` (care team of school 0) and ``bench.clb_worker`` (worker of CLB 0,
  involved with 20 pupils of schools served by CLB 0), made with ``membership_grant`` and
  ``involvement_assign``.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ITEMS_PER_PUPIL = 5
MEASURED_PUPILS = 20
NO_SOURCE = "00000000-0000-0000-0000-000000000000"

# Per slot (0-4) the alternatives an item can be; pupil ``p`` takes alternative ``p mod len``.
# (category, kind, holder kind, health)
SLOTS: tuple[tuple[tuple[str, str, str, bool], ...], ...] = (
    (
        ("career", "document", "school", False),
        ("discipline", "note", "school", False),
        ("attendance", "record", "school", False),
        ("school_health", "record", "school", True),
        ("identification", "record", "school", False),
    ),
    (
        ("report", "verslag", "school", False),
        ("career", "document", "school", False),
    ),
    (
        ("guidance", "note", "clb", False),
        ("attendance", "record", "clb", False),
        ("identification", "record", "clb", False),
    ),
    (
        ("vaccination", "record", "clb", True),
        ("medical", "note", "clb", True),
        ("vaccination", "record", "clb", True),
        ("medical", "note", "clb", True),
        ("vaccination", "record", "clb", True),
        ("medical", "note", "clb", True),
        ("vaccination", "record", "clb", True),
        ("medical", "note", "clb", True),
        ("vaccination", "record", "clb", True),
        ("naft_progress", "document", "naft", False),
    ),
    (
        ("report", "gemotiveerd_verslag", "clb", False),
        ("guidance", "note", "clb", False),
    ),
)

# Bulk staff per organisation kind: (role, how many per organisation).
STAFF: dict[str, tuple[tuple[str, int], ...]] = {
    "school": (("care_team", 2), ("administration", 1), ("school_director", 1)),
    "clb": (("clb_worker", 10), ("clb_medical", 2), ("clb_director", 1)),
    "naft": (("naft_coach", 2),),
}
WORKERS_PER_CLB = 10


@dataclass(frozen=True)
class Shape:
    schools: int
    clbs: int
    nafts: int
    pupils: int

    @classmethod
    def scaled(cls, scale: float) -> Shape:
        return cls(
            schools=max(2, round(800 * scale)),
            clbs=max(1, round(150 * scale)),
            nafts=max(1, round(50 * scale)),
            pupils=max(100, round(200_000 * scale)),
        )

    @property
    def items(self) -> int:
        return self.pupils * ITEMS_PER_PUPIL


def _say(message: str) -> None:
    sys.stdout.write(f"  [load] {message}\n")
    sys.stdout.flush()


def _values(rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    """A ``VALUES`` list with placeholders for ``rows`` (all of the same length) and its parameters."""
    width = len(rows[0])
    row_sql = "(" + ", ".join(["%s"] * width) + ")"
    params = [value for row in rows for value in row]
    return ", ".join([row_sql] * len(rows)), params


def _projection_table() -> list[tuple[str, str, str, str]]:
    """(organisation kind, basis, category, role) for every role that ``roles_reading`` allows."""
    from exchange.models import Category, OrganisationKind
    from permissions.models import Basis
    from permissions.policy import roles_reading

    rows = []
    for kind in OrganisationKind.values:
        for basis in Basis.values:
            for category in Category.values:
                for role in sorted(roles_reading(reader_kind=kind, basis=basis, category=category)):
                    rows.append((kind, basis, category, role))
    return rows


class _Steps:
    """Runs SQL statements in order, logging each one's duration and row count."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        self.timings: dict[str, float] = {}

    def run(self, name: str, sql: str, params: Any = None) -> int:
        start = time.perf_counter()
        # Always with parameters, so that ``%%`` means ``%`` in every statement.
        self.cursor.execute(sql, {} if params is None else params)
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        rows = int(self.cursor.rowcount)
        _say(f"{name}: {rows:,} rows in {seconds:.1f} s")
        return rows


def _bulk_load(shape: Shape, *, enrolment_start: date, school_year: str, view_perm: int) -> dict[str, float]:
    from django.db import connection, transaction

    schools, clbs, nafts = shape.schools, shape.clbs, shape.nafts
    slot_rows = [
        (slot, alternative, len(alternatives), category, kind, holder, health)
        for slot, alternatives in enumerate(SLOTS)
        for alternative, (category, kind, holder, health) in enumerate(alternatives)
    ]
    staff_rows = [(kind, role, count) for kind, roles in STAFF.items() for role, count in roles]
    role_rows = [(kind, role) for kind, roles in _roles_by_kind().items() for role in sorted(roles)]
    projection_rows = _projection_table()

    with transaction.atomic(), connection.cursor() as cursor:
        steps = _Steps(cursor)
        steps.run("helper schema", "CREATE SCHEMA bench_gen")
        values, params = _values(slot_rows)
        steps.run(
            "helper: item slots",
            "CREATE TABLE bench_gen.slot (slot, alt, nalts, category, kind, holder, health) AS "  # noqa: S608
            f"SELECT * FROM (VALUES {values}) AS v",
            params,
        )
        values, params = _values(staff_rows)
        steps.run(
            "helper: staff per kind",
            f"CREATE TABLE bench_gen.staff_kind (kind, role, n) AS SELECT * FROM (VALUES {values}) AS v",  # noqa: S608
            params,
        )
        values, params = _values(role_rows)
        steps.run(
            "helper: roles per kind",
            f"CREATE TABLE bench_gen.role_kind (kind, role) AS SELECT * FROM (VALUES {values}) AS v",  # noqa: S608
            params,
        )
        values, params = _values(projection_rows)
        steps.run(
            "helper: projection table (roles_reading)",
            f"CREATE TABLE bench_gen.projection (kind, basis, category, role) AS SELECT * FROM (VALUES {values}) AS v",  # noqa: S608
            params,
        )
        steps.run(
            "helper: organisations",
            "CREATE TABLE bench_gen.org AS SELECT n, gen_random_uuid() AS id, "
            "CASE WHEN n < %(s)s THEN 'school' WHEN n < %(s)s + %(c)s THEN 'clb' ELSE 'naft' END AS kind "
            "FROM generate_series(0, %(s)s + %(c)s + %(n)s - 1) AS n",
            {"s": schools, "c": clbs, "n": nafts},
        )
        steps.run("helper: organisations index", "CREATE UNIQUE INDEX ON bench_gen.org (n)")
        steps.run(
            "helper: pupils",
            "CREATE TABLE bench_gen.pupil AS SELECT n, gen_random_uuid() AS id, n %% %(s)s AS school_n "
            "FROM generate_series(0, %(p)s - 1) AS n",
            {"s": schools, "p": shape.pupils},
        )
        steps.run(
            "organisations",
            "INSERT INTO exchange_organisation "
            "(id, kind, official_number, name, school_kind, objection_window_days, created_at) "
            "SELECT id, kind, lpad(n::text, 6, '0'), 'Bench ' || kind || ' ' || n, "
            "CASE WHEN kind <> 'school' THEN '' WHEN n %% 2 = 0 THEN 'basis' ELSE 'secundair' END, 10, now() "
            "FROM bench_gen.org",
        )
        steps.run(
            "cooperation agreements",
            'INSERT INTO exchange_cooperationagreement (id, start, "end", created_at, clb_id, school_id) '
            "SELECT gen_random_uuid(), DATE '2020-09-01', NULL, now(), c.id, s.id "
            "FROM bench_gen.org s JOIN bench_gen.org c ON c.n = %(s)s + s.n %% %(c)s WHERE s.kind = 'school'",
            {"s": schools, "c": clbs},
        )
        steps.run(
            "pupils",
            "INSERT INTO exchange_pupil (id, national_number_index, identity_ciphertext, identity_wrapped_dek, "
            "identity_kek_version, created_at, user_id) "
            "SELECT id, 'bench-' || lpad(n::text, 8, '0'), decode(md5('identity' || n), 'hex'), "
            "decode(md5('dek' || n), 'hex'), 1, now(), NULL FROM bench_gen.pupil",
        )
        steps.run(
            "enrolments",
            'INSERT INTO exchange_enrolment (id, level, school_year, start, "end", created_at, created_by_id, '
            "school_id, pupil_id) "
            "SELECT gen_random_uuid(), CASE WHEN s.n %% 2 = 0 THEN 'basis' ELSE 'secundair' END, %(year)s, "
            "%(start)s, NULL, now(), NULL, s.id, p.id "
            "FROM bench_gen.pupil p JOIN bench_gen.org s ON s.n = p.school_n",
            {"year": school_year, "start": enrolment_start},
        )
        steps.run(
            "items",
            "INSERT INTO exchange_pupilitem (id, category, kind, health, third_party_confidential, "
            "about_others_only, withheld_from_parents, harmful_now, for_judiciary, report_type, report_valid_from, "
            "report_valid_until, current_version, created_at, shredded_at, shred_reason, created_by_id, dossier_id, "
            "holder_id, pupil_id, shredded_by_id) "
            "SELECT gen_random_uuid(), sl.category, sl.kind, sl.health, false, false, false, false, false, "
            "CASE WHEN sl.category = 'report' THEN 'type 9' ELSE '' END, "
            "CASE WHEN sl.category = 'report' THEN %(start)s::date END, NULL, 1, "
            # Spread over three years, deterministic and distinct enough for a stable order.
            "now() - make_interval(secs => ((p.n * 5 + sl.slot)::bigint * 7919) %% 94608000), "
            "NULL, '', NULL, NULL, "
            "CASE sl.holder WHEN 'school' THEN s.id WHEN 'clb' THEN c.id ELSE f.id END, p.id, NULL "
            "FROM bench_gen.pupil p "
            "JOIN bench_gen.slot sl ON sl.alt = p.n %% sl.nalts "
            "JOIN bench_gen.org s ON s.n = p.school_n "
            "JOIN bench_gen.org c ON c.n = %(s)s + p.school_n %% %(c)s "
            "JOIN bench_gen.org f ON f.n = %(s)s + %(c)s + p.n %% %(f)s",
            {"start": enrolment_start, "s": schools, "c": clbs, "f": nafts},
        )
        # The planner needs statistics of the new rows for the joins below (autovacuum cannot see them yet).
        steps.run(
            "ANALYZE organisations, pupils, enrolments, items",
            "ANALYZE exchange_organisation, exchange_pupil, exchange_enrolment, exchange_pupilitem, "
            "bench_gen.org, bench_gen.pupil",
        )
        steps.run(
            "holder grants (S-0)",
            "INSERT INTO permissions_grant (id, basis, rule, source_type, source_id, valid_from, valid_until, "
            "revoked_at, created_at, created_by_id, item_id, organisation_id, revoked_by_id, user_id, "
            "item_pupil_id, item_category, item_health, item_created_at) "
            "SELECT gen_random_uuid(), 'holder', 'S-0', '', %(none)s, i.created_at, NULL, NULL, i.created_at, "
            "NULL, i.id, i.holder_id, NULL, NULL, i.pupil_id, i.category, i.health, i.created_at "
            "FROM exchange_pupilitem i",
            {"none": NO_SOURCE},
        )
        steps.run(
            "enrolment grants (T-SCH-2)",
            "INSERT INTO permissions_grant (id, basis, rule, source_type, source_id, valid_from, valid_until, "
            "revoked_at, created_at, created_by_id, item_id, organisation_id, revoked_by_id, user_id, "
            "item_pupil_id, item_category, item_health, item_created_at) "
            "SELECT gen_random_uuid(), 'enrolment', 'T-SCH-2', 'enrolment', e.id, "
            "(e.start::timestamp AT TIME ZONE 'Europe/Brussels'), "
            'CASE WHEN e."end" IS NOT NULL THEN ((e."end" + 1)::timestamp AT TIME ZONE \'Europe/Brussels\') END, '
            "NULL, now(), NULL, i.id, e.school_id, NULL, NULL, i.pupil_id, i.category, i.health, i.created_at "
            "FROM exchange_pupilitem i JOIN exchange_enrolment e ON e.pupil_id = i.pupil_id "
            "WHERE i.category = 'report' AND i.holder_id <> e.school_id AND i.shredded_at IS NULL",
        )
        steps.run(
            "role groups (lp:<org>:<role>)",
            "INSERT INTO auth_group (name) SELECT 'lp:' || o.id::text || ':' || r.role "
            "FROM bench_gen.org o JOIN bench_gen.role_kind r ON r.kind = o.kind",
        )
        steps.run("ANALYZE grants, groups", "ANALYZE permissions_grant, auth_group")
        steps.run(
            "guardian projection (PupilItemGroupObjectPermission)",
            "INSERT INTO exchange_pupilitemgroupobjectpermission (content_object_id, group_id, permission_id) "
            "SELECT DISTINCT g.item_id, ag.id, %(perm)s FROM permissions_grant g "
            "JOIN exchange_pupilitem i ON i.id = g.item_id "
            "JOIN exchange_organisation o ON o.id = g.organisation_id "
            "JOIN bench_gen.projection pr ON pr.kind = o.kind AND pr.basis = g.basis AND pr.category = i.category "
            "JOIN auth_group ag ON ag.name = 'lp:' || g.organisation_id::text || ':' || pr.role "
            "WHERE g.revoked_at IS NULL AND g.user_id IS NULL AND (g.valid_until IS NULL OR g.valid_until > now())",
            {"perm": view_perm},
        )
        steps.run(
            "helper: staff",
            "CREATE TABLE bench_gen.staff AS SELECT o.n AS org_n, o.id AS org_id, sk.role, k, "
            "'bench-staff-' || o.n || '-' || sk.role || '-' || k AS username "
            "FROM bench_gen.org o JOIN bench_gen.staff_kind sk ON sk.kind = o.kind "
            "CROSS JOIN LATERAL generate_series(0, sk.n - 1) AS k",
        )
        steps.run("ANALYZE staff", "ANALYZE bench_gen.staff")
        steps.run(
            "staff users",
            "INSERT INTO auth_user (password, last_login, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined) "
            "SELECT '!', NULL, false, username, '', '', '', false, true, now() FROM bench_gen.staff",
        )
        steps.run("ANALYZE users", "ANALYZE auth_user")
        steps.run(
            "staff memberships",
            "INSERT INTO exchange_membership (id, role, active, created_at, user_id, organisation_id) "
            "SELECT gen_random_uuid(), st.role, true, now(), u.id, st.org_id "
            "FROM bench_gen.staff st JOIN auth_user u ON u.username = st.username",
        )
        steps.run(
            "staff role groups (auth_user_groups)",
            "INSERT INTO auth_user_groups (user_id, group_id) SELECT u.id, ag.id FROM bench_gen.staff st "
            "JOIN auth_user u ON u.username = st.username "
            "JOIN auth_group ag ON ag.name = 'lp:' || st.org_id::text || ':' || st.role",
        )
        steps.run(
            "involvements (one worker per pupil)",
            "INSERT INTO permissions_involvement (id, assigned_at, ended_at, assigned_by_id, clb_id, pupil_id, "
            "user_id) "
            "SELECT gen_random_uuid(), now(), NULL, d.id, c.id, p.id, w.id FROM bench_gen.pupil p "
            "JOIN bench_gen.org c ON c.n = %(s)s + p.school_n %% %(c)s "
            "JOIN auth_user w ON w.username = 'bench-staff-' || c.n || '-clb_worker-' || (p.n %% %(w)s) "
            "JOIN auth_user d ON d.username = 'bench-staff-' || c.n || '-clb_director-0'",
            {"s": schools, "c": clbs, "w": WORKERS_PER_CLB},
        )
        steps.run("drop helper schema", "DROP SCHEMA bench_gen CASCADE")
        start = time.perf_counter()
    # Leaving the atomic block commits; the deferred foreign-key checks run here.
    steps.timings["commit (deferred foreign-key checks)"] = time.perf_counter() - start
    _say(f"commit (deferred foreign-key checks) in {steps.timings['commit (deferred foreign-key checks)']:.1f} s")
    return steps.timings


def _roles_by_kind() -> dict[str, frozenset[str]]:
    from exchange.models import ROLES_BY_ORGANISATION_KIND

    return {str(kind): frozenset(str(role) for role in roles) for kind, roles in ROLES_BY_ORGANISATION_KIND.items()}


def _measured_users() -> dict[str, Any]:
    """Create the measured users through the services; return their ids and pupils."""
    from django.contrib.auth.models import User

    from exchange.models import CooperationAgreement, Enrolment, Organisation, OrganisationKind, Pupil, Role
    from exchange.services import membership_grant
    from permissions.services import involvement_assign

    school = Organisation.objects.get(kind=OrganisationKind.SCHOOL, official_number="000000")
    clb = CooperationAgreement.objects.select_related("clb").get(school=school, end__isnull=True).clb

    care = User.objects.create_user(username="bench.care", password=None)
    membership_grant(user=care, organisation=school, role=Role.CARE_TEAM)
    director = User.objects.create_user(username="bench.clb_director", password=None)
    membership_grant(user=director, organisation=clb, role=Role.CLB_DIRECTOR)
    worker = User.objects.create_user(username="bench.clb_worker", password=None)
    membership_grant(user=worker, organisation=clb, role=Role.CLB_WORKER)

    # The worker is involved with 20 pupils spread over the schools the CLB serves.
    served = list(CooperationAgreement.objects.filter(clb=clb, end__isnull=True).order_by("school__official_number"))
    involved: list[uuid.UUID] = []
    per_school = max(1, -(-MEASURED_PUPILS // len(served)))
    for agreement in served:
        pupils = Enrolment.objects.filter(school_id=agreement.school_id).order_by("pupil_id")
        involved.extend(pupils.values_list("pupil_id", flat=True)[:per_school])
        if len(involved) >= MEASURED_PUPILS:
            break
    involved = involved[:MEASURED_PUPILS]
    for pupil in Pupil.objects.filter(pk__in=involved):
        involvement_assign(pupil=pupil, clb=clb, user=worker, assigned_by=director)

    care_pupils = list(
        Enrolment.objects.filter(school=school)
        .order_by("pupil_id")
        .values_list("pupil_id", flat=True)[:MEASURED_PUPILS]
    )
    return {
        "care": {"user_id": care.pk, "organisation_id": str(school.pk), "pupils": [str(p) for p in care_pupils]},
        "worker": {"user_id": worker.pk, "organisation_id": str(clb.pk), "pupils": [str(p) for p in involved]},
    }


def _generic_peer_rows() -> dict[str, float]:
    """Copy the guardian projection into django-guardian's *generic* tables (``object_pk`` text + content type).

    The project uses guardian's direct foreign-key tables; the issue's peer is guardian's generic
    ``get_objects_for_user``, which a project without direct tables would run on these. Same rows, set-based.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction

    from exchange.models import PupilItem

    content_type = ContentType.objects.get_for_model(PupilItem).pk
    timings = {}
    with transaction.atomic(), connection.cursor() as cursor:
        steps = _Steps(cursor)
        steps.run(
            "generic peer: guardian group rows",
            "INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id) "
            "SELECT content_object_id::text, %(ct)s, group_id, permission_id "
            "FROM exchange_pupilitemgroupobjectpermission",
            {"ct": content_type},
        )
        steps.run(
            "generic peer: guardian user rows",
            "INSERT INTO guardian_userobjectpermission (object_pk, content_type_id, user_id, permission_id) "
            "SELECT content_object_id::text, %(ct)s, user_id, permission_id "
            "FROM exchange_pupilitemuserobjectpermission",
            {"ct": content_type},
        )
        timings.update(steps.timings)
    return timings


def _counts() -> dict[str, int]:
    from django.db import connection

    tables = {
        "organisations": "exchange_organisation",
        "agreements": "exchange_cooperationagreement",
        "pupils": "exchange_pupil",
        "enrolments": "exchange_enrolment",
        "items": "exchange_pupilitem",
        "grants": "permissions_grant",
        "guardian_group_rows": "exchange_pupilitemgroupobjectpermission",
        "guardian_user_rows": "exchange_pupilitemuserobjectpermission",
        "generic_group_rows": "guardian_groupobjectpermission",
        "generic_user_rows": "guardian_userobjectpermission",
        "groups": "auth_group",
        "users": "auth_user",
        "user_groups": "auth_user_groups",
        "memberships": "exchange_membership",
        "involvements": "permissions_involvement",
    }
    counts = {}
    with connection.cursor() as cursor:
        for name, table in tables.items():
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
            counts[name] = int(cursor.fetchone()[0])
    return counts


def _check_projection(sample_size: int) -> dict[str, int]:
    """Compare the bulk-written guardian rows with ``expected_projection`` on a random sample of items."""
    from exchange.models import PupilItem
    from permissions.grants import actual_projection, expected_projection

    items = list(
        PupilItem.objects.raw("SELECT * FROM exchange_pupilitem TABLESAMPLE SYSTEM (1) LIMIT %s", [sample_size])
    )
    want_groups, want_users = expected_projection(items=items)
    have_groups, have_users = actual_projection(items=items)
    return {
        "sampled_items": len(items),
        "expected_rows": len(want_groups) + len(want_users),
        "missing_rows": len(want_groups - have_groups) + len(want_users - have_users),
        "extra_rows": len(have_groups - want_groups) + len(have_users - want_users),
    }


def run(*, scale: float, result: Path) -> None:
    """Load the data set, create the measured users, VACUUM ANALYZE; write a JSON summary to ``result``."""
    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from exchange.domain import school_year_of, school_year_start
    from permissions.grants import view_permission_id

    if connection.vendor != "postgresql":
        raise SystemExit("bench_access needs PostgreSQL (DATABASE_URL=postgres://...)")
    shape = Shape.scaled(scale)
    year = school_year_of(timezone.localdate())
    started = time.perf_counter()
    timings = _bulk_load(
        shape, enrolment_start=school_year_start(year), school_year=year, view_perm=view_permission_id()
    )
    start = time.perf_counter()
    users = _measured_users()
    timings["measured users (services)"] = time.perf_counter() - start
    _say(f"measured users through the services in {timings['measured users (services)']:.1f} s")
    timings.update(_generic_peer_rows())
    start = time.perf_counter()
    with connection.cursor() as cursor:
        # Outside a transaction (autocommit): also sets the visibility map, as autovacuum would.
        cursor.execute("VACUUM (ANALYZE)")
    timings["VACUUM (ANALYZE)"] = time.perf_counter() - start
    _say(f"VACUUM (ANALYZE) in {timings['VACUUM (ANALYZE)']:.1f} s")
    counts = _counts()
    projection = _check_projection(500)
    _say(f"counts: {counts}")
    _say(f"projection check on a sample: {projection}")
    if projection["missing_rows"] or projection["extra_rows"] or not projection["sampled_items"]:
        raise SystemExit(f"the bulk guardian projection differs from expected_projection: {projection}")
    data = {
        "shape": shape.__dict__,
        "counts": counts,
        "projection_check": projection,
        "timings": timings,
        "load_seconds": time.perf_counter() - started,
        "users": users,
    }
    result.write_text(json.dumps(data), encoding="utf-8")
