"""Child phase of ``bench.bench_wave``: load the state before a September wave into a migrated database.

Runs with Django set up against a throwaway PostgreSQL database. Nothing goes through the services
one by one: organisations, agreements and role groups with ``bulk_create``; pupils, enrolments,
dossiers, items, versions and wrapped keys streamed with ``COPY``; holder grants, T-SCH-2
enrolment grants and the django-guardian projection with set-based ``INSERT ... SELECT``.

Shape for N pupils:

* 400 secundair schools and 100 CLBs; school ``s`` works with CLB ``s // 4`` (open agreement);
* pupil ``p`` (about 14 years old, so capable: CAP-1) is enrolled since the start of the current
  school year (open) at school ``p mod 400``; the wave moves them to school ``(p + 7) mod 400``,
  which is served by another CLB;
* 8 items per pupil, see :data:`ITEM_SLOTS`: report, career, attendance and discipline held by
  the school; identification, report, guidance and medical held by the CLB, in the pupil's
  ``ClbDossier``. Every item has one ``ItemVersion`` (fake ciphertext: a handover never decrypts
  content) and one ``WrappedKey`` for its holder that is a real wrap of a random DEK under the
  development keyring, because granting unwraps it and wraps it again for the grantee;
* pupil identities are real sealed identities (``exchange.identity.identity_seal``): planning
  decrypts the birth date to decide who is notified (CAP-3); the blind index is a fake unique
  string;
* a ``holder`` grant (S-0) per item, a T-SCH-2 ``enrolment`` grant of the CLB's report to the
  school of enrolment (what ``enrolment_grants_sync`` writes), and the guardian projection of all
  of them (what ``permissions.grants.expected_projection`` computes; checked on a sample), so the
  wave's ``projection_sync`` only has to add the new grantees' rows.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

SCHOOLS = 400
CLBS = 100
SCHOOLS_PER_CLB = SCHOOLS // CLBS
NEW_SCHOOL_OFFSET = 7  # (s + 7) // 4 is always another CLB than s // 4 (also across the wrap-around)
CHUNK_PUPILS = 10_000
NO_SOURCE = "00000000-0000-0000-0000-000000000000"
FAKE_TITLE = b"\x01" + b"wave-benchmark-fake-ciphertext".ljust(47, b".")  # never decrypted by a handover
WAVE_INDEX_PREFIX = "bench-wave-"
EXTRA_INDEX_PREFIX = "bench-extra-"

# (holder kind, category, kind, health)
ITEM_SLOTS: tuple[tuple[str, str, str, bool], ...] = (
    ("school", "report", "verslag", False),
    ("school", "career", "document", False),
    ("school", "attendance", "record", False),
    ("school", "discipline", "note", False),
    ("clb", "identification", "record", False),
    ("clb", "report", "gemotiveerd_verslag", False),
    ("clb", "guidance", "note", False),
    ("clb", "medical", "note", True),
)
ITEMS_PER_PUPIL = len(ITEM_SLOTS)


def say(message: str) -> None:
    sys.stdout.write(f"  [load] {message}\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Loaded:
    pupils: int
    extra_pupils: int
    items: int
    wraps: int
    grants: int
    guardian_rows: int
    seconds: float
    steps: dict[str, float]


def school_of(pupil_number: int) -> int:
    return pupil_number % SCHOOLS


def new_school_of(school_number: int) -> int:
    return (school_number + NEW_SCHOOL_OFFSET) % SCHOOLS


def clb_of(school_number: int) -> int:
    return school_number // SCHOOLS_PER_CLB


def _table(model: Any) -> str:
    return str(model._meta.db_table)


def _copy(table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Stream ``rows`` into ``table`` with ``COPY ... FROM STDIN`` on Django's psycopg connection."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    quoted = ", ".join(f'"{column}"' for column in columns)
    count = 0
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


class _Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def run(self, name: str, sql: str, params: dict[str, Any] | None = None) -> int:
        from django.db import connection

        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql, params or {})
            rows = int(cursor.rowcount)
        seconds = time.perf_counter() - start
        self.steps[name] = self.steps.get(name, 0.0) + seconds
        say(f"{name}: {rows:,} rows in {seconds:.1f} s")
        return rows

    def add(self, name: str, seconds: float) -> None:
        self.steps[name] = self.steps.get(name, 0.0) + seconds


def _projection_values() -> list[tuple[str, str, str, str]]:
    """(organisation kind, basis, category, role) for every role ``roles_reading`` allows."""
    from exchange.models import Category, OrganisationKind
    from permissions.models import Basis
    from permissions.policy import roles_reading

    return [
        (kind, basis, category, role)
        for kind in OrganisationKind.values
        for basis in Basis.values
        for category in Category.values
        for role in sorted(roles_reading(reader_kind=kind, basis=basis, category=category))
    ]


def current_school_year_start(today: date) -> date:
    from exchange.domain import school_year_of, school_year_start

    return school_year_start(school_year_of(today))


def load(*, pupils: int, extra_pupils: int = 0, seed: int = 20260901) -> Loaded:
    """Load ``pupils`` wave pupils (+ ``extra_pupils`` left out of the wave) and their files."""
    from django.contrib.auth.models import Group
    from django.db import DatabaseError, connection
    from django.utils import timezone

    from exchange.crypto.keyring import keyring_from_settings
    from exchange.domain import national_number_for, school_year_of
    from exchange.files import version_wrap_aad
    from exchange.identity import PupilIdentity, identity_seal
    from exchange.models import (
        ClbDossier,
        CooperationAgreement,
        Enrolment,
        ItemVersion,
        Level,
        Organisation,
        OrganisationKind,
        Pupil,
        PupilItem,
        PupilItemGroupObjectPermission,
        SchoolKind,
        WrappedKey,
    )
    from permissions.grants import view_permission_id

    started = time.perf_counter()
    timer = _Timer()
    rng = random.Random(seed)  # layout only, no secrets
    now = timezone.now()
    today = timezone.localdate()
    year_start = current_school_year_start(today)
    school_year = school_year_of(today)
    tz = timezone.get_current_timezone()

    # Organisations, agreements and role groups: a few hundred rows, bulk_create.
    step = time.perf_counter()
    schools = [
        Organisation(
            id=uuid.uuid4(),
            kind=OrganisationKind.SCHOOL,
            official_number=f"{500000 + s}",
            name=f"Wave school {s}",
            school_kind=SchoolKind.SECUNDAIR,
        )
        for s in range(SCHOOLS)
    ]
    clbs = [
        Organisation(id=uuid.uuid4(), kind=OrganisationKind.CLB, official_number=f"{600000 + c}", name=f"Wave CLB {c}")
        for c in range(CLBS)
    ]
    Organisation.objects.bulk_create(schools + clbs)
    CooperationAgreement.objects.bulk_create(
        [
            CooperationAgreement(id=uuid.uuid4(), school=schools[s], clb=clbs[clb_of(s)], start=date(2020, 9, 1))
            for s in range(SCHOOLS)
        ]
    )
    from exchange.models import ROLES_BY_ORGANISATION_KIND
    from permissions.grants import role_group_name

    Group.objects.bulk_create(
        [
            Group(name=role_group_name(org.id, role))
            for org in schools + clbs
            for role in sorted(ROLES_BY_ORGANISATION_KIND[org.kind])
        ]
    )
    timer.add("organisations, agreements, role groups", time.perf_counter() - step)

    keyring = keyring_from_settings()
    pupil_columns = [
        Pupil._meta.get_field(name).column
        for name in (
            "id",
            "national_number_index",
            "identity_ciphertext",
            "identity_wrapped_dek",
            "identity_kek_version",
            "created_at",
        )
    ]
    enrolment_columns = [
        Enrolment._meta.get_field(name).column
        for name in ("id", "pupil", "school", "level", "school_year", "start", "created_at")
    ]
    dossier_columns = [ClbDossier._meta.get_field(name).column for name in ("id", "pupil", "clb", "opened_at")]
    item_fields = (
        "id",
        "pupil",
        "holder",
        "dossier",
        "category",
        "kind",
        "health",
        "third_party_confidential",
        "about_others_only",
        "withheld_from_parents",
        "harmful_now",
        "for_judiciary",
        "report_type",
        "report_valid_from",
        "current_version",
        "created_at",
        "shred_reason",
    )
    item_columns = [PupilItem._meta.get_field(name).column for name in item_fields]
    version_columns = [
        ItemVersion._meta.get_field(name).column
        for name in (
            "id",
            "item",
            "version",
            "title_ciphertext",
            "file_blob",
            "file_content_type",
            "authored_on",
            "created_at",
        )
    ]
    wrap_columns = [
        WrappedKey._meta.get_field(name).column
        for name in ("item_version", "organisation", "kek_version", "wrapped_dek", "created_at")
    ]

    total = pupils + extra_pupils
    crypto_s = 0.0
    copy_s = 0.0
    items_written = 0
    wraps_written = 0
    for first in range(0, total, CHUNK_PUPILS):
        numbers = range(first, min(total, first + CHUNK_PUPILS))
        pupil_rows: list[tuple[Any, ...]] = []
        enrolment_rows: list[tuple[Any, ...]] = []
        dossier_rows: list[tuple[Any, ...]] = []
        item_rows: list[tuple[Any, ...]] = []
        version_rows: list[tuple[Any, ...]] = []
        wrap_rows: list[tuple[Any, ...]] = []
        step = time.perf_counter()
        for number in numbers:
            pupil_id = uuid.uuid4()
            # About 14 years old (capable, CAP-1), birthdays spread over the year.
            birth = today - timedelta(days=14 * 365 + 40 + rng.randrange(300))
            identity = PupilIdentity(
                national_number=national_number_for(birth, number % 997 + 1),
                first_name="Wave",
                last_name=f"Pupil {number}",
                birth_date=birth,
                address="",
            )
            sealed = identity_seal(pupil_id=pupil_id, identity=identity)
            prefix = WAVE_INDEX_PREFIX if number < pupils else EXTRA_INDEX_PREFIX
            pupil_rows.append(
                (pupil_id, f"{prefix}{number:010d}", sealed.ciphertext, sealed.wrapped_dek, sealed.kek_version, now)
            )
            school_number = school_of(number)
            school = schools[school_number]
            clb = clbs[clb_of(school_number)]
            enrolment_rows.append((uuid.uuid4(), pupil_id, school.id, Level.SECUNDAIR, school_year, year_start, now))
            dossier_id = uuid.uuid4()
            dossier_rows.append((dossier_id, pupil_id, clb.id, now))
            for holder_kind, category, kind, health in ITEM_SLOTS:
                item_id = uuid.uuid4()
                holder = school if holder_kind == "school" else clb
                report = category == "report"
                item_rows.append(
                    (
                        item_id,
                        pupil_id,
                        holder.id,
                        dossier_id if holder_kind == "clb" else None,
                        category,
                        kind,
                        health,
                        False,
                        False,
                        False,
                        False,
                        False,
                        "type 9" if report else "",
                        year_start if report else None,
                        1,
                        now,
                        "",
                    )
                )
                version_id = uuid.uuid4()
                version_rows.append((version_id, item_id, 1, FAKE_TITLE, "", "", today, now))
                kek_version, wrapped = keyring.wrap(
                    org_id=str(holder.id),
                    dek=os.urandom(32),
                    aad=version_wrap_aad(item_id=item_id, version=1, organisation_id=holder.id),
                )
                wrap_rows.append((version_id, holder.id, kek_version, wrapped, now))
        crypto_s += time.perf_counter() - step
        step = time.perf_counter()
        _copy(_table(Pupil), pupil_columns, pupil_rows)
        _copy(_table(Enrolment), enrolment_columns, enrolment_rows)
        _copy(_table(ClbDossier), dossier_columns, dossier_rows)
        items_written += _copy(_table(PupilItem), item_columns, item_rows)
        _copy(_table(ItemVersion), version_columns, version_rows)
        wraps_written += _copy(_table(WrappedKey), wrap_columns, wrap_rows)
        copy_s += time.perf_counter() - step
        say(f"pupils {numbers.stop:,}/{total:,} (sealing + wrapping {crypto_s:.1f} s, COPY {copy_s:.1f} s)")
    timer.add("identities sealed, DEKs wrapped (Python)", crypto_s)
    timer.add("COPY pupils, enrolments, dossiers, items, versions, wraps", copy_s)

    timer.run(
        "ANALYZE loaded tables",
        f"ANALYZE {_table(Organisation)}, {_table(Pupil)}, {_table(Enrolment)}, {_table(PupilItem)}, "
        f"{_table(ItemVersion)}, {_table(WrappedKey)}, {_table(ClbDossier)}",
    )
    grants = timer.run(
        "holder grants (S-0)",
        "INSERT INTO permissions_grant (id, basis, rule, source_type, source_id, valid_from, valid_until, "
        "revoked_at, created_at, created_by_id, item_id, organisation_id, revoked_by_id, user_id, "
        "item_pupil_id, item_category, item_health, item_created_at) "
        "SELECT gen_random_uuid(), 'holder', 'S-0', '', %(none)s, %(now)s, NULL, NULL, %(now)s, "
        "NULL, i.id, i.holder_id, NULL, NULL, i.pupil_id, i.category, i.health, i.created_at "
        "FROM exchange_pupilitem i",
        {"none": NO_SOURCE, "now": now},
    )
    grants += timer.run(
        "enrolment grants (T-SCH-2)",
        "INSERT INTO permissions_grant (id, basis, rule, source_type, source_id, valid_from, valid_until, "
        "revoked_at, created_at, created_by_id, item_id, organisation_id, revoked_by_id, user_id, "
        "item_pupil_id, item_category, item_health, item_created_at) "
        "SELECT gen_random_uuid(), 'enrolment', 'T-SCH-2', 'enrolment', e.id, %(from)s, NULL, NULL, %(now)s, "
        "NULL, i.id, e.school_id, NULL, NULL, i.pupil_id, i.category, i.health, i.created_at "
        "FROM exchange_pupilitem i JOIN exchange_enrolment e ON e.pupil_id = i.pupil_id "
        "WHERE i.category = 'report' AND i.holder_id <> e.school_id",
        {"from": datetime.combine(year_start, datetime.min.time(), tzinfo=tz), "now": now},
    )
    projection = _projection_values()
    placeholders = ", ".join(["(%s, %s, %s, %s)"] * len(projection))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE wave_projection (kind text, basis text, category text, role text)", [])
        cursor.execute(
            f"INSERT INTO wave_projection VALUES {placeholders}",  # noqa: S608 - placeholders only
            [value for row in projection for value in row],
        )
    timer.run("ANALYZE grants, groups", "ANALYZE permissions_grant, auth_group, wave_projection")
    guardian_rows = timer.run(
        "guardian projection (PupilItemGroupObjectPermission)",
        f"INSERT INTO {_table(PupilItemGroupObjectPermission)} (content_object_id, group_id, permission_id) "  # noqa: S608
        "SELECT DISTINCT g.item_id, ag.id, %(perm)s FROM permissions_grant g "
        "JOIN exchange_pupilitem i ON i.id = g.item_id "
        "JOIN exchange_organisation o ON o.id = g.organisation_id "
        "JOIN wave_projection p ON p.kind = o.kind AND p.basis = g.basis AND p.category = i.category "
        "JOIN auth_group ag ON ag.name = 'lp:' || o.id::text || ':' || p.role "
        "WHERE g.revoked_at IS NULL AND g.user_id IS NULL",
        {"perm": view_permission_id()},
    )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE wave_projection", [])
    step = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)", [])
    timer.add("VACUUM (ANALYZE)", time.perf_counter() - step)
    say(f"VACUUM (ANALYZE) in {time.perf_counter() - step:.1f} s")
    # The set-up writes gigabytes of WAL (COPY, INSERT ... SELECT, VACUUM); without this, the checkpoint
    # they call for falls inside the timed wave of the larger sizes only, and every size would not start
    # from the same server state.
    step = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT", [])
    except DatabaseError as exc:  # needs superuser or pg_checkpoint; the report names the server state
        say(f"CHECKPOINT not allowed ({exc}); the wave starts without one")
    else:
        timer.add("CHECKPOINT", time.perf_counter() - step)
        say(f"CHECKPOINT in {time.perf_counter() - step:.1f} s")
    _check_projection_sample()
    return Loaded(
        pupils=pupils,
        extra_pupils=extra_pupils,
        items=items_written,
        wraps=wraps_written,
        grants=grants,
        guardian_rows=guardian_rows,
        seconds=time.perf_counter() - started,
        steps=timer.steps,
    )


def _check_projection_sample(size: int = 200) -> None:
    """The loaded guardian rows are exactly what the product computes (``expected_projection``)."""
    from exchange.models import PupilItem
    from permissions.grants import actual_projection, expected_projection

    sample = list(PupilItem.objects.order_by("?")[:size])
    expected = expected_projection(items=sample)
    actual = actual_projection(items=sample)
    if expected != actual:
        raise RuntimeError(
            f"loaded guardian projection differs from expected_projection on a sample of {size} items: "
            f"missing {len(expected[0] - actual[0])}, extra {len(actual[0] - expected[0])}"
        )
    say(f"guardian projection equals expected_projection on {size} sampled items")
