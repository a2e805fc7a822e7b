"""Child phases of ``bench.bench_wave``: the September wave (bulk), the row-by-row baseline, the profile.

Runs with Django set up against a throwaway PostgreSQL database loaded by ``bench._wave_load``.

The wave, per pupil: the old enrolment ends on 31 August (one ``UPDATE`` for all), a new enrolment
at the new school starts on 1 September of the next school year (``bulk_create``), and
:func:`exchange.handover.handover_plan_for_enrolment` plans its handovers, one call (= one
transaction, as in ``enrolment_register``) per enrolment. Next year's enrolment is effective on
1 September (T-CLB-5), so planning grants nothing; its objection deadline is
``max(notified + window, effective)`` = 1 September as well. The sweeper is then run as the beat
would run it on 1 September 00:00:01: :func:`exchange.handover.handover_sweep` (batch 500) first
run until nothing is due (the sweep phase, timed): each handover is claimed once and moves its
mandatory and, its window having closed, its objectable items in the same pass; a later run must
find nothing.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench._wave_load import EXTRA_INDEX_PREFIX, WAVE_INDEX_PREFIX, new_school_of

BATCH_SIZE = 500
PROGRESS_EVERY = 5_000
CHUNK = 1_000
PROJECTION_SAMPLE = 200
PROFILE_LINES = 15


def say(message: str) -> None:
    sys.stdout.write(f"  [wave] {message}\n")
    sys.stdout.flush()


@dataclass
class Checks:
    handovers: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    plan_rows: int = 0
    grants: int = 0
    distinct_grants: int = 0
    plan_rows_without_grant: int = 0
    wraps_for_grantees: int = 0
    dossiers_moved: int = 0
    dossiers: int = 0
    projection_sample_ok: bool = False
    audit_events: int = 0
    audit_method: str = ""
    audit_ok: bool = False
    audit_detail: str = ""
    audit_s: float = 0.0
    later_sweep_mandatory: int = -1
    later_sweep_executed: int = -1

    @property
    def ok(self) -> bool:
        return (
            self.handovers > 0
            and self.by_state == {"executed": self.handovers}
            and self.grants == self.plan_rows == self.distinct_grants
            and self.plan_rows_without_grant == 0
            and self.wraps_for_grantees == self.plan_rows
            and self.dossiers_moved == self.dossiers
            and self.projection_sample_ok
            and self.audit_ok
            and self.later_sweep_mandatory == 0
            and self.later_sweep_executed == 0
        )


@dataclass
class WaveResult:
    size: int
    load_s: float
    enrol_s: float
    plan_s: float
    sweep_s: float
    handovers: int
    plan_rows: int
    grants_created: int
    audit_events: int
    checks: Checks
    peak_rss_mib: float
    plan_chunks_ms: list[float] = field(default_factory=list)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.enrol_s + self.plan_s + self.sweep_s


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------


def next_school_year(today: date) -> tuple[str, date]:
    from exchange.domain import school_year_of, school_year_start

    first = int(school_year_of(today)[:4]) + 1
    year = f"{first}-{first + 1}"
    return year, school_year_start(year)


def september_first(today: date) -> datetime:
    from django.utils import timezone

    _year, start = next_school_year(today)
    return datetime.combine(start, datetime.min.time(), tzinfo=timezone.get_current_timezone())


# --------------------------------------------------------------------------------------------
# Query counting
# --------------------------------------------------------------------------------------------


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def counting_queries() -> Iterator[QueryCounter]:
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        yield counter


_KIND = re.compile(r'^\s*(WITH\b.*?\)\s*)?(\w+)\b.*?(?:\bFROM|\bINTO|\bUPDATE)\s+"?(\w+)', re.S | re.I)


def _statement_kind(sql: str) -> str:
    """A statement's verb and first table, e.g. ``INSERT permissions_grant``."""
    found = _KIND.match(sql)
    return f"{found.group(2).upper()} {found.group(3)}" if found else sql[:40]


class Meter:
    """Where a timed phase's time goes: SQL (as the client waits for it), Python's GC, and WAL written.

    SQL time and statements come from ``connection.execute_wrapper`` (a few microseconds per
    statement); GC time from ``gc.callbacks``; WAL bytes from the WAL insert position and full-page
    images from ``pg_stat_wal`` (both cluster-wide: other databases' writes and autovacuum count
    too, so the runs wait for other benchmarks).
    """

    def __init__(self) -> None:
        self.sql_s = 0.0
        self.statements = 0
        # Per kind of statement (its verb and first table): [count, seconds], to see which ones grow with N.
        self.by_statement: dict[str, list[float]] = {}
        self.gc_s = 0.0
        self.gc_full = 0
        self.wal_bytes = 0
        self.wal_fpi = 0
        self._gc_started = 0.0
        self._wal: tuple[int, int] = (0, 0)
        self._wrapper: Any = None

    def _execute(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = time.perf_counter() - started
            self.sql_s += spent
            self.statements += 1
            entry = self.by_statement.setdefault(_statement_kind(sql), [0, 0.0])
            entry[0] += 1
            entry[1] += spent

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_s += time.perf_counter() - self._gc_started
            self.gc_full += info.get("generation") == 2

    @staticmethod
    def _wal_now() -> tuple[int, int]:
        from django.db import connection

        with connection.cursor() as cursor:
            # WAL bytes exactly from the insert position; full-page images from the cumulative
            # statistics, after making this backend flush its pending counters.
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0'), wal_fpi FROM pg_stat_wal")
            row = cursor.fetchone()
        return int(row[0]), int(row[1])

    def __enter__(self) -> Meter:
        from django.db import connection

        self._wal = self._wal_now()
        self._wrapper = connection.execute_wrapper(self._execute)
        self._wrapper.__enter__()
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._gc)
        self._wrapper.__exit__(None, None, None)
        wal_bytes, wal_fpi = self._wal_now()
        self.wal_bytes, self.wal_fpi = wal_bytes - self._wal[0], wal_fpi - self._wal[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sql_s": self.sql_s,
            "statements": self.statements,
            "by_statement": self.by_statement,
            "gc_s": self.gc_s,
            "gc_full": self.gc_full,
            "wal_bytes": self.wal_bytes,
            "wal_fpi": self.wal_fpi,
        }


# --------------------------------------------------------------------------------------------
# The wave
# --------------------------------------------------------------------------------------------


def enrol(*, index_prefix: str = WAVE_INDEX_PREFIX) -> tuple[list[Any], float]:
    """End the old enrolments (one UPDATE) and bulk-create next year's enrolments at the new schools.

    The pupil and school objects are loaded first (untimed) and set on the new enrolments, as
    ``enrolment_register`` has them at hand. Returns the enrolments and the seconds of the writes.
    """
    from django.db import transaction
    from django.utils import timezone

    from exchange.models import Enrolment, Level, Organisation, OrganisationKind, Pupil

    today = timezone.localdate()
    year, start = next_school_year(today)
    schools = {o.pk: o for o in Organisation.objects.filter(kind=OrganisationKind.SCHOOL)}
    by_number = {int(o.official_number) - 500000: o for o in schools.values()}
    number_of = {pk: int(o.official_number) - 500000 for pk, o in schools.items()}
    old = dict(
        Enrolment.objects.filter(end__isnull=True, pupil__national_number_index__startswith=index_prefix).values_list(
            "pupil_id", "school_id"
        )
    )
    pupils = list(Pupil.objects.filter(pk__in=list(old)).order_by("id"))
    started = time.perf_counter()
    with transaction.atomic():
        ended = Enrolment.objects.filter(pupil_id__in=list(old), end__isnull=True).update(end=start - timedelta(days=1))
        enrolments = Enrolment.objects.bulk_create(
            [
                Enrolment(
                    pupil=pupil,
                    school=by_number[new_school_of(number_of[old[pupil.pk]])],
                    level=Level.SECUNDAIR,
                    school_year=year,
                    start=start,
                )
                for pupil in pupils
            ],
            batch_size=2000,
        )
    seconds = time.perf_counter() - started
    if ended != len(pupils):
        raise RuntimeError(f"ended {ended} enrolments for {len(pupils)} pupils")
    return enrolments, seconds


def plan(enrolments: list[Any], chunks: list[float] | None = None, *, batch: int = BATCH_SIZE) -> float:
    """Plan the wave's handovers, ``batch`` enrolments per transaction; returns the seconds.

    ``batch`` > 1 is what the product does for a batch of enrolments (the import, the wave):
    ``handover_plan_for_enrolments``; ``batch=1`` is ``handover_plan_for_enrolment``, one
    transaction per enrolment as ``enrolment_register`` does (the baseline). ``chunks`` receives
    the ms per change of every block of 1,000 enrolments (drift within the run).
    """
    from exchange.handover import handover_plan_for_enrolment, handover_plan_for_enrolments

    started = chunk_started = time.perf_counter()
    done = since_chunk = 0
    for first in range(0, len(enrolments), batch):
        part = enrolments[first : first + batch]
        if batch == 1:
            handover_plan_for_enrolment(enrolment=part[0])
        else:
            handover_plan_for_enrolments(enrolments=part)
        done += len(part)
        since_chunk += len(part)
        if since_chunk >= CHUNK:
            now = time.perf_counter()
            if chunks is not None:
                chunks.append((now - chunk_started) / since_chunk * 1000)
            chunk_started, since_chunk = now, 0
        if done % PROGRESS_EVERY < len(part):
            elapsed = time.perf_counter() - started
            say(f"planned {done:,}/{len(enrolments):,} ({elapsed:.0f} s, {elapsed / done * 1000:.1f} ms per change)")
    return time.perf_counter() - started


def sweep_phase(now: datetime, meters: dict[str, dict[str, Any]]) -> float:
    """The sweeper on 1 September until nothing is due; timed and metered."""
    from exchange.handover import handover_sweep
    from exchange.models import Handover, HandoverState

    due = Handover.objects.filter(state=HandoverState.PLANNED, effective_at__lte=now).count()
    with Meter() as meter:
        started = time.perf_counter()
        result = handover_sweep(batch_size=BATCH_SIZE, now=now)
        sweep_s = time.perf_counter() - started
    meters["sweep"] = meter.as_dict()
    say(f"sweep: {result.mandatory:,} handovers effective, {result.executed:,} executed in {sweep_s:.1f} s")
    if result.mandatory != due or result.executed != due:
        raise RuntimeError(f"unexpected sweep: due {due}, {result}")
    return sweep_s


def verify(*, later: datetime, full_audit: bool = True) -> Checks:
    """Afterwards, untimed: states, grants = plan (no duplicates), wraps, dossiers, projection, audit."""
    from django.db import connection
    from django.db.models import Count

    from exchange.handover import handover_sweep
    from exchange.models import ClbDossier, Handover, HandoverItem, PupilItem
    from permissions.audit import audit_verify
    from permissions.grants import actual_projection, expected_projection

    checks = Checks()
    again = handover_sweep(batch_size=BATCH_SIZE, now=later)
    checks.later_sweep_mandatory, checks.later_sweep_executed = again.mandatory, again.executed
    checks.handovers = Handover.objects.count()
    checks.by_state = dict(Handover.objects.values_list("state").annotate(n=Count("id")).order_by())
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM exchange_handoveritem")
        checks.plan_rows = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT count(*), count(DISTINCT (item_id, organisation_id, basis, source_id)) "
            "FROM permissions_grant WHERE source_type = 'handover'"
        )
        checks.grants, checks.distinct_grants = (int(v) for v in cursor.fetchone())
        cursor.execute(
            "SELECT count(*) FROM exchange_handoveritem hi JOIN exchange_handover h ON h.id = hi.handover_id "
            "WHERE NOT EXISTS (SELECT 1 FROM permissions_grant g WHERE g.item_id = hi.item_id "
            "AND g.organisation_id = h.to_organisation_id AND g.source_id = h.id AND g.revoked_at IS NULL "
            "AND g.basis = CASE WHEN hi.mandatory THEN 'mandatory_transfer' ELSE 'handover' END)"
        )
        checks.plan_rows_without_grant = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT count(*) FROM exchange_handoveritem hi JOIN exchange_handover h ON h.id = hi.handover_id "
            "JOIN exchange_itemversion v ON v.item_id = hi.item_id "
            "JOIN exchange_wrappedkey w ON w.item_version_id = v.id AND w.organisation_id = h.to_organisation_id"
        )
        checks.wraps_for_grantees = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT count(*) FROM exchange_clbdossier d JOIN exchange_handover h "
            "ON h.pupil_id = d.pupil_id AND h.kind = 'clb' AND d.clb_id = h.to_organisation_id"
        )
        checks.dossiers_moved = int(cursor.fetchone()[0])
    checks.dossiers = ClbDossier.objects.filter(pupil__handovers__kind="clb").count()
    sample = list(
        PupilItem.objects.filter(pk__in=HandoverItem.objects.values("item_id")).order_by("?")[:PROJECTION_SAMPLE]
    )
    checks.projection_sample_ok = expected_projection(items=sample) == actual_projection(items=sample)
    started = time.perf_counter()
    if full_audit:
        checked, broken = audit_verify()
        checks.audit_method = "audit_verify() (full hash chain)"
        checks.audit_events = checked
        checks.audit_ok = broken is None
        checks.audit_detail = "" if broken is None else f"broken at {broken.sequence}: {broken.reason}"
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), min(sequence), max(sequence) FROM permissions_auditevent")
            count, low, high = cursor.fetchone()
            cursor.execute("SELECT sequence FROM permissions_audithead WHERE id = 1")
            head = cursor.fetchone()
        checks.audit_method = "sequence contiguous (count = max - min + 1 = head)"
        checks.audit_events = int(count)
        checks.audit_ok = low == 1 and high == count and head is not None and head[0] == count
    checks.audit_s = time.perf_counter() - started
    say(
        f"verified in {checks.audit_s:.1f} s: states {checks.by_state}, plan {checks.plan_rows:,}, grants "
        f"{checks.grants:,} (distinct {checks.distinct_grants:,}), wraps {checks.wraps_for_grantees:,}, "
        f"audit {checks.audit_events:,} {'intact' if checks.audit_ok else 'BROKEN ' + checks.audit_detail}"
    )
    return checks


def _audit_count() -> int:
    from permissions.models import AuditEvent

    return AuditEvent.objects.count()


def run_wave(*, size: int, load_s: float, full_audit: bool = True) -> WaveResult:
    from django.utils import timezone

    from exchange.handover import handover_tables_analyze
    from exchange.models import Handover, HandoverItem
    from permissions.models import Grant

    enrolments, enrol_s = enrol()
    say(f"{len(enrolments):,} enrolments written in {enrol_s:.2f} s; planning one by one")
    chunks: list[float] = []
    meters: dict[str, dict[str, Any]] = {}
    with Meter() as meter:
        plan_s = plan(enrolments, chunks)
    meters["planning"] = meter.as_dict()
    say(f"planned in {plan_s:.1f} s ({plan_s / size * 1000:.2f} ms per change)")
    del enrolments
    handover_tables_analyze()  # untimed: autovacuum's work in the weeks before 1 September
    now = september_first(timezone.localdate()) + timedelta(seconds=1)
    grants_before = Grant.objects.count()
    sweep_s = sweep_phase(now, meters)
    grants_created = Grant.objects.count() - grants_before
    latest = max(Handover.objects.values_list("objection_deadline", flat=True))
    checks = verify(later=latest + timedelta(days=1), full_audit=full_audit)
    return WaveResult(
        size=size,
        load_s=load_s,
        enrol_s=enrol_s,
        plan_s=plan_s,
        sweep_s=sweep_s,
        handovers=Handover.objects.count(),
        plan_rows=HandoverItem.objects.count(),
        grants_created=grants_created,
        audit_events=_audit_count(),
        checks=checks,
        peak_rss_mib=_peak_rss_mib(),
        plan_chunks_ms=chunks,
        meters=meters,
    )


# --------------------------------------------------------------------------------------------
# Baseline: the same execution, one save() per row
# --------------------------------------------------------------------------------------------


def execute_row_by_row(now: datetime) -> int:
    """What the sweep's ``_advance`` writes, row by row: one save() per grant, wrap, guardian row.

    Per handover (one transaction, claimed with a row lock like ``handover_advance``): for each
    planned item, ``Grant(...).save()``; the holder's wrap is read and unwrapped, the DEK wrapped
    for the new organisation and ``WrappedKey(...).save()``; one ``PupilItemGroupObjectPermission
    (...).save()`` per role group ``roles_reading`` gives; one ``audit_append`` per grant. Then the
    dossier follows (T-CLB-6), the handover's state and its two events are saved.
    """
    from django.db import transaction
    from django.utils import timezone

    from exchange.crypto.keyring import keyring_from_settings
    from exchange.files import version_wrap_aad
    from exchange.models import (
        ClbDossier,
        Handover,
        HandoverEvent,
        HandoverItem,
        HandoverKind,
        HandoverState,
        ItemVersion,
        PupilItemGroupObjectPermission,
        WrappedKey,
    )
    from permissions.audit import audit_append
    from permissions.grants import role_group, view_permission_id
    from permissions.models import AuditAction, AuditOutcome, Basis, Grant
    from permissions.policy import roles_reading

    keyring = keyring_from_settings()
    perm = view_permission_id()
    ids = list(
        Handover.objects.filter(state=HandoverState.PLANNED, effective_at__lte=now)
        .order_by("effective_at", "id")
        .values_list("id", flat=True)
    )
    for handover_id in ids:
        with transaction.atomic():
            handover = (
                Handover.objects.select_for_update(of=("self",)).select_related("to_organisation").get(pk=handover_id)
            )
            target = handover.to_organisation
            for row in HandoverItem.objects.filter(handover=handover).select_related("item").order_by("id"):
                item = row.item
                basis = Basis.MANDATORY_TRANSFER if row.mandatory else Basis.HANDOVER
                Grant(
                    item=item,
                    organisation=target,
                    basis=basis,
                    rule=row.rule,
                    source_type="handover",
                    source_id=handover.pk,
                    valid_from=timezone.now(),
                ).save()
                version = ItemVersion.objects.get(item=item, version=item.current_version)
                source = WrappedKey.objects.get(item_version=version, organisation_id=item.holder_id)
                dek = keyring.unwrap(
                    org_id=str(source.organisation_id),
                    kek_version=source.kek_version,
                    wrapped=bytes(source.wrapped_dek),
                    aad=version_wrap_aad(item_id=item.pk, version=version.version, organisation_id=item.holder_id),
                )
                kek_version, wrapped = keyring.wrap(
                    org_id=str(target.pk),
                    dek=dek,
                    aad=version_wrap_aad(item_id=item.pk, version=version.version, organisation_id=target.pk),
                )
                WrappedKey(
                    item_version=version, organisation=target, kek_version=kek_version, wrapped_dek=wrapped
                ).save()
                for role in sorted(roles_reading(reader_kind=target.kind, basis=basis, category=item.category)):
                    group = role_group(organisation_id=target.pk, role=role)
                    PupilItemGroupObjectPermission(content_object=item, group=group, permission_id=perm).save()
                audit_append(
                    action=AuditAction.GRANT,
                    outcome=AuditOutcome.ALLOWED,
                    organisation_id=target.pk,
                    pupil_id=item.pupil_id,
                    item_id=item.pk,
                    purpose="handover",
                    legal_basis=row.rule,
                )
            if handover.kind == HandoverKind.CLB:
                dossier = ClbDossier.objects.get(pupil_id=handover.pupil_id)
                dossier.clb = target
                dossier.save()
            handover.state = HandoverState.EXECUTED
            handover.mandatory_granted_at = now
            handover.executed_at = now
            handover.save()
            HandoverEvent(handover=handover, at=now, state=HandoverState.WAITING, note="mandatory items granted").save()
            HandoverEvent(handover=handover, at=now, state=HandoverState.EXECUTED, note="").save()
    return len(ids)


@dataclass
class BaselineResult:
    size: int
    load_s: float
    enrol_s: float
    plan_s: float
    execute_s: float
    handovers: int
    plan_rows: int
    grants_created: int
    checks: Checks
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.enrol_s + self.plan_s + self.execute_s


def run_baseline(*, size: int, load_s: float) -> BaselineResult:
    from django.utils import timezone

    from exchange.handover import handover_tables_analyze
    from exchange.models import Handover, HandoverItem
    from permissions.models import Grant

    enrolments, enrol_s = enrol()
    plan_s = plan(enrolments, batch=1)
    say(f"baseline: planned {size:,} in {plan_s:.1f} s; executing row by row")
    del enrolments
    handover_tables_analyze()  # untimed: autovacuum's work in the weeks before 1 September
    now = september_first(timezone.localdate()) + timedelta(seconds=1)
    grants_before = Grant.objects.count()
    with Meter() as meter:
        started = time.perf_counter()
        moved = execute_row_by_row(now)
        execute_s = time.perf_counter() - started
    say(f"baseline: {moved:,} handovers row by row in {execute_s:.1f} s ({execute_s / size * 1000:.2f} ms per change)")
    grants_created = Grant.objects.count() - grants_before
    latest = max(Handover.objects.values_list("objection_deadline", flat=True))
    checks = verify(later=latest + timedelta(days=1))
    return BaselineResult(
        size=size,
        load_s=load_s,
        enrol_s=enrol_s,
        plan_s=plan_s,
        execute_s=execute_s,
        handovers=Handover.objects.count(),
        plan_rows=HandoverItem.objects.count(),
        grants_created=grants_created,
        checks=checks,
        meters={"execution": meter.as_dict()},
    )


# --------------------------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------------------------

_PATH_RE = re.compile(r"(/[^\s:()]*/)?(site-packages/|lib/python3\.\d+/)")


def _top(profiler: cProfile.Profile, lines: int = PROFILE_LINES, *, product_only: bool = False) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    root = str(Path(__file__).resolve().parent.parent) + "/"
    if product_only:
        # The product's own functions (and Celery's delay, which the on-commit enqueueing calls).
        pattern = re.escape(root) + r"(exchange|permissions|consent)/|celery/app/task\.py:\d+\(delay\)"
        stats.sort_stats("cumulative").print_stats(pattern, lines)
    else:
        stats.sort_stats("cumulative").print_stats(lines)
    text = out.getvalue()
    text = text.replace(root, "")
    text = _PATH_RE.sub("", text)
    # Keep the summary line and the table; drop pstats' blank lines and "Ordered by" chatter.
    kept = [
        line.rstrip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("Ordered by", "List reduced"))
    ]
    return "\n".join(kept)


@dataclass
class ProfileResult:
    size: int
    tables: dict[str, str]
    seconds: dict[str, float]
    queries: dict[str, int]
    service_sample: int
    service_s: float
    plan_only_s: float


def _dump(profiler: cProfile.Profile, phase: str) -> None:
    """With ``LP_BENCH_PROFILE_DIR`` set, keep the raw profile (``<dir>/<phase>.prof``, for pstats/snakeviz)."""
    import os

    directory = os.environ.get("LP_BENCH_PROFILE_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(Path(directory) / f"{phase}.prof"))


def run_profile(*, size: int, extra: int) -> ProfileResult:
    """cProfile each phase (planning, sweep) and count its SQL queries.

    Afterwards (not profiled): ``enrolment_register`` for ``extra`` pupils left out of the wave,
    the product's full per-enrolment service, against ``handover_plan_for_enrolment`` alone.
    """
    from django.utils import timezone

    from exchange.handover import handover_sweep, handover_tables_analyze

    enrolments, _enrol_s = enrol()
    tables: dict[str, str] = {}
    seconds: dict[str, float] = {}
    queries: dict[str, int] = {}

    profiler = cProfile.Profile()
    with counting_queries() as counter:
        started = time.perf_counter()
        profiler.enable()
        plan(enrolments)
        profiler.disable()
        seconds["planning"] = time.perf_counter() - started
    tables["planning"], queries["planning"] = _top(profiler), counter.count
    tables["planning:product"] = _top(profiler, product_only=True)
    _dump(profiler, "planning")
    del enrolments

    handover_tables_analyze()  # untimed: autovacuum's work in the weeks before 1 September
    now = september_first(timezone.localdate()) + timedelta(seconds=1)
    phase = "sweep"
    profiler = cProfile.Profile()
    with counting_queries() as counter:
        started = time.perf_counter()
        profiler.enable()
        handover_sweep(batch_size=BATCH_SIZE, now=now)
        profiler.disable()
        seconds[phase] = time.perf_counter() - started
    tables[phase], queries[phase] = _top(profiler), counter.count
    tables[f"{phase}:product"] = _top(profiler, product_only=True)
    _dump(profiler, phase)
    say(f"profiled {phase}: {seconds[phase]:.1f} s, {counter.count:,} queries")

    service_s, plan_only_s = _service_sample(extra)
    return ProfileResult(
        size=size,
        tables=tables,
        seconds=seconds,
        queries=queries,
        service_sample=extra,
        service_s=service_s,
        plan_only_s=plan_only_s,
    )


def _service_sample(extra: int) -> tuple[float, float]:
    """Seconds per change: ``enrolment_register(ends_previous=True)`` vs ``handover_plan_for_enrolment``."""
    if extra <= 0:
        return 0.0, 0.0
    from django.utils import timezone

    from exchange.models import Enrolment, Level, Organisation, OrganisationKind, Pupil
    from exchange.services import enrolment_register

    today = timezone.localdate()
    year, start = next_school_year(today)
    schools = {o.pk: o for o in Organisation.objects.filter(kind=OrganisationKind.SCHOOL)}
    by_number = {int(o.official_number) - 500000: o for o in schools.values()}
    old = dict(
        Enrolment.objects.filter(
            end__isnull=True, pupil__national_number_index__startswith=EXTRA_INDEX_PREFIX
        ).values_list("pupil_id", "school_id")
    )
    pupils = list(Pupil.objects.filter(pk__in=list(old)).order_by("id"))
    half = len(pupils) // 2
    started = time.perf_counter()
    for pupil in pupils[:half]:
        enrolment_register(
            pupil=pupil,
            school=by_number[new_school_of(int(schools[old[pupil.pk]].official_number) - 500000)],
            level=Level.SECUNDAIR,
            start=start,
            school_year=year,
            ends_previous=True,
        )
    service_s = (time.perf_counter() - started) / max(1, half)
    # The same for the other half with the wave's method (bulk enrolment rows, then planning).
    rest = [p.pk for p in pupils[half:]]
    Enrolment.objects.filter(pupil_id__in=rest, end__isnull=True).update(end=start - timedelta(days=1))
    enrolments = Enrolment.objects.bulk_create(
        [
            Enrolment(
                pupil=pupil,
                school=by_number[new_school_of(int(schools[old[pupil.pk]].official_number) - 500000)],
                level=Level.SECUNDAIR,
                school_year=year,
                start=start,
            )
            for pupil in pupils[half:]
        ]
    )
    plan_only_s = plan(enrolments, batch=1) / max(1, len(enrolments))
    say(
        f"enrolment_register: {service_s * 1000:.2f} ms per change; "
        f"handover_plan_for_enrolment alone: {plan_only_s * 1000:.2f} ms ({half} + {len(enrolments)} pupils)"
    )
    return service_s, plan_only_s


def to_json(result: Any) -> dict[str, Any]:
    data = asdict(result)
    for name in ("total_s",):
        if hasattr(result, name):
            data[name] = getattr(result, name)
    if hasattr(result, "checks"):
        data["checks"]["ok"] = result.checks.ok
    return data
