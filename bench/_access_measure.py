"""Child phase of ``bench.bench_access``: time the permission-filtered lists, the baselines and the peer.

Everything runs in this one process with Django set up against the loaded database (DEBUG off,
one persistent connection), after a warm-up. Variants are interleaved repetition by repetition
(each round in a seeded random order) so that drift affects them alike; each sample is the wall time of building
the queryset and evaluating the first page with ``list()`` (as in the API).

Two guardian peers: ``get_objects_for_user`` on the project's direct foreign-key tables, and the same
function on guardian's generic tables (``object_pk`` text + content type, loaded with the same rows),
which is what a project without direct tables runs. Two audit costs: the decision alone
(``item_get_for_user`` vs ``_decide``) and the whole read as the API serves it (``GET /api/v1/items/<id>``
through the view: decision, audit, decryption, serialization, JSON rendering) with and without the
audit, switched off for the benchmark only (``_audit_skipped``: the decision's statement without its audit
event, no head lock and no append). The whole read's comparison runs in blocks (``_audit_blocks``).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = 50
ORDER = ("-created_at", "id")


def _say(message: str) -> None:
    sys.stdout.write(f"  [measure] {message}\n")
    sys.stdout.flush()


def stats(samples: list[float]) -> dict[str, float]:
    """n, p50, p95, min, mean and max of samples in milliseconds."""
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": p95,
        "min": ordered[0],
        "mean": statistics.fmean(ordered),
        "max": ordered[-1],
    }


# The whole read with and without audit differ by a few tenths of a millisecond on a ~2 ms call, and their
# p95 is reported beside the judged p50: those two comparisons take this many times the repetitions of the
# others, so that their p95 is not decided by a handful of samples. Ten: each of the whole read's five blocks
# (``READ_BLOCKS``) has 400 rounds; with 200, one block's overhead at p95 moved by ten points and more from
# block to block within a run (docs/performance.md, 2026-12-04).
READ_REPS_FACTOR = 10

# The seed of the order variants run in within each round (``_interleaved``).
ORDER_SEED = 20261203


def _interleaved(
    variants: dict[str, Callable[[int], Any]],
    *,
    reps: int,
    warmup: int,
    budget_s: float,
    around: dict[str, Callable[[], AbstractContextManager[Any]]] | None = None,
) -> dict[str, list[float]]:
    """Run every variant ``warmup`` times, then ``reps`` times interleaved; ms per call.

    Each round runs every variant once, in an order drawn at random (seeded, so a run can be repeated). A fixed
    rotation let periodic work line up with one variant: Python's garbage collector runs every so many
    allocations, and with two variants alternating strictly its collections fell into one of them more often
    than the other. That moved the whole read's audited/unaudited difference by ±0.2 ms (about ±5 %) depending
    on the user (docs/performance.md, 2026-12-03 late).

    A variant whose measured calls have taken ``budget_s`` in total stops early (its ``n`` shows it).
    ``around``: a context a variant's calls run in, entered and left outside the timing.
    """
    names = list(variants)
    around = around or {}

    def call(name: str, i: int) -> float:
        with around[name]() if name in around else nullcontext():
            start = time.perf_counter_ns()
            variants[name](i)
            return (time.perf_counter_ns() - start) / 1e6

    for i in range(warmup):
        for name in names:
            call(name, i)
    samples: dict[str, list[float]] = {name: [] for name in names}
    spent = dict.fromkeys(names, 0.0)
    order = random.Random(ORDER_SEED)
    for i in range(reps):
        for name in order.sample(names, len(names)):
            if spent[name] >= budget_s * 1000:
                continue
            ms = call(name, i)
            samples[name].append(ms)
            spent[name] += ms
    return samples


def expected_visible(user: Any, pupil_id: uuid.UUID) -> set[uuid.UUID]:
    """The pupil's items the user may read: an independent in-Python reading of ``POLICY`` over the ledger.

    As ``tests/test_authorization_matrix.py`` does: no SQL compilation, every rule checked row by row
    (grant basis, user and validity window, health, involvement, teaching, shield), then the
    django-guardian projection must agree.
    """
    from django.utils import timezone

    from exchange.models import Membership, PupilItem, PupilItemGroupObjectPermission, PupilItemUserObjectPermission
    from permissions.grants import view_permission_id
    from permissions.models import Grant, Involvement, Shield, TeachingAssignment
    from permissions.policy import POLICY, READ

    now = timezone.now()
    items = list(PupilItem.objects.filter(pupil_id=pupil_id, shredded_at__isnull=True))
    memberships = list(Membership.objects.filter(user=user, active=True).select_related("organisation"))
    grants = list(Grant.objects.filter(item__in=items, revoked_at__isnull=True))
    involved = set(
        Involvement.objects.filter(pupil_id=pupil_id, user=user, ended_at__isnull=True).values_list("clb_id", flat=True)
    )
    teaching = set(
        TeachingAssignment.objects.filter(pupil_id=pupil_id, teacher=user, ended_at__isnull=True).values_list(
            "school_id", flat=True
        )
    )
    shielded = set(Shield.objects.filter(item__in=items, user=user).values_list("item_id", flat=True))
    perm = view_permission_id()
    projected = set(
        PupilItemGroupObjectPermission.objects.filter(
            content_object__in=items, permission_id=perm, group__in=user.groups.all()
        ).values_list("content_object_id", flat=True)
    ) | set(
        PupilItemUserObjectPermission.objects.filter(
            content_object__in=items, permission_id=perm, user=user
        ).values_list("content_object_id", flat=True)
    )

    def allowed(item: Any, membership: Any, rule: Any) -> bool:
        if rule.action != READ or rule.reader_kind != membership.organisation.kind:
            return False
        if membership.role not in rule.roles or item.category not in rule.categories:
            return False
        if rule.no_health and item.health:
            return False
        if not any(
            g.item_id == item.pk
            and g.organisation_id == membership.organisation_id
            and g.basis in rule.bases
            and g.valid_from <= now
            and (g.valid_until is None or g.valid_until > now)
            and (g.user_id == user.pk if rule.user_grant_only else g.user_id is None)
            for g in grants
        ):
            return False
        if rule.requires_involvement and membership.organisation_id not in involved:
            return False
        if rule.requires_teaching and membership.organisation_id not in teaching:
            return False
        return not (rule.honours_shield and item.pk in shielded)

    return {
        item.pk
        for item in items
        if item.pk in projected and any(allowed(item, m, rule) for m in memberships for rule in POLICY)
    }


def _explain(queryset: Any, *, jit: bool = True) -> list[str]:
    from django.db import connection, transaction

    # A queryset, or a raw (sql, params) statement (the feed's walk).
    sql, params = queryset if isinstance(queryset, tuple) else queryset.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        if not jit:
            cursor.execute("SET LOCAL jit = off")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [str(row[0]) for row in cursor.fetchall()]


def _execute(statement: tuple[str, Any]) -> list[Any]:
    """Run compiled SQL on Django's connection, without the ORM: the database round trip alone."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return list(cursor.fetchall())


def _commit_cost(reps: int, gap_ms: float = 4.0) -> dict[str, dict[str, float]]:
    """What one durable commit costs on this server, in the read's context: ``SELECT 1`` against a one-row
    ``INSERT`` that commits (its WAL flush), each after ``gap_ms`` of Python work as a read leaves the
    connection idle between statements. A diagnostic of the audit's cost, not a target."""
    from django.db import connection

    def busy() -> None:
        until = time.perf_counter() + gap_ms / 1000
        while time.perf_counter() < until:
            pass

    insert = "INSERT INTO bench_commit_cost (v) VALUES (1)"
    samples: dict[str, list[float]] = {"select": [], "insert_commit": [], "insert_commit_no_flush_wait": []}
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit_cost (id bigserial PRIMARY KEY, v integer)")
        for _ in range(reps):
            for name, sql, synchronous in (
                ("select", "SELECT 1", "on"),
                ("insert_commit", insert, "on"),
                ("insert_commit_no_flush_wait", insert, "off"),
            ):
                cursor.execute(f"SET synchronous_commit = {synchronous}")
                busy()
                started = time.perf_counter()
                cursor.execute(sql)
                samples[name].append((time.perf_counter() - started) * 1000)
        cursor.execute("RESET synchronous_commit")
        cursor.execute("DROP TABLE bench_commit_cost")
    return {name: stats(values) for name, values in samples.items()}


@contextmanager
def _no_flush_wait() -> Iterator[None]:
    """Benchmark only, a diagnostic: the connection's commits inside the block do not wait for their WAL
    flush (``synchronous_commit = off``). What an audited read costs apart from that wait; never a setting
    of the service, whose reads' events must be durable before anything of the read is returned."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


@contextmanager
def _audit_skipped() -> Iterator[None]:
    """Benchmark only: ``permissions.access`` appends no audit event inside the block.

    On PostgreSQL ``item_get_for_user`` decides and audits in one statement (``_decide_audited``); inside the
    block it runs the decision's statement without the audit's CTEs (``_decide``) instead. The read of one
    item (``item_reading``, the API's read) sends only the decision, the key fetch and the pipeline's ``Sync``
    in one round trip (``_read_audited``): no head's lock, no event worked out in the decision and no append,
    which are there for the audit, so their cost is the audit's. The two-step path's append (``audit_append``,
    SQLite and shredding) does nothing.
    """
    from permissions import access

    append, decide_audited, read_audited = access.audit_append, access._decide_audited, access._read_audited

    def decide_only(*, user: Any, item_id: Any, action: str, purpose: str) -> Any:
        return access._decide(user=user, item_id=item_id, action=action)

    access.audit_append = lambda **_: None  # type: ignore[assignment]
    access._decide_audited = decide_only  # type: ignore[assignment]
    access._read_audited = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        access.audit_append, access._decide_audited = append, decide_audited  # type: ignore[assignment]
        access._read_audited = read_audited  # type: ignore[assignment]


@contextmanager
def _guardian_generic() -> Iterator[None]:
    """Inside the block guardian's ``get_objects_for_user`` uses its generic tables for every model.

    guardian picks the direct foreign-key tables when a model has them (``get_*_obj_perms_model``);
    swapping those two look-ups is the only change, the query is the one guardian builds for generic rows.
    """
    from guardian import shortcuts
    from guardian.models import GroupObjectPermission, UserObjectPermission

    user_model, group_model = shortcuts.get_user_obj_perms_model, shortcuts.get_group_obj_perms_model
    shortcuts.get_user_obj_perms_model = lambda *_: UserObjectPermission  # type: ignore[assignment]
    shortcuts.get_group_obj_perms_model = lambda *_: GroupObjectPermission  # type: ignore[assignment]
    try:
        yield
    finally:
        shortcuts.get_user_obj_perms_model, shortcuts.get_group_obj_perms_model = user_model, group_model


def _read_items(*, user: Any, organisation_id: str, pupils: list[uuid.UUID], category: str, kind: str) -> list[Any]:
    """One real (encrypted) item per measured pupil, held by the user's organisation, made through the services.

    The bulk-loaded items have no versions or key wraps; a full read needs something to decrypt.
    """
    from exchange import files
    from exchange.models import Organisation, Pupil

    holder = Organisation.objects.get(pk=organisation_id)
    body = "Verslag van het zorgoverleg. " * 40  # ~1 KB, a typical note
    return [
        files.item_create(pupil=pupil, holder=holder, category=category, kind=kind, title="Zorgoverleg", body=body).pk
        for pupil in Pupil.objects.filter(pk__in=pupils).order_by("pk")
    ]


Variants = dict[str, Callable[[int], Any]]


def _variants(
    *,
    user: Any,
    pupils: list[uuid.UUID],
    items: list[uuid.UUID],
    compiled: list[tuple[str, Any]],
    page: Callable[[Any], list[Any]],
    peer: Callable[[Any], Any],
    peer_generic: Callable[[Any], Any],
    decide_without_audit: Callable[[Any, uuid.UUID], str],
) -> tuple[Variants, Variants, Variants]:
    """The timed calls (argument: the repetition number): per-pupil page, all items, audit on the decision."""
    from exchange.models import PupilItem
    from permissions.access import item_feed_for_user, item_get_for_user, item_list_for_user
    from permissions.policy import READ

    def pupil_of(i: int) -> uuid.UUID:
        return pupils[i % len(pupils)]

    def item_of(i: int) -> uuid.UUID:
        return items[i % len(items)]

    def filtered(i: int) -> Any:
        return page(item_list_for_user(user=user, pupil_id=pupil_of(i)))

    def unfiltered(i: int) -> Any:
        return page(PupilItem.objects.filter(pupil_id=pupil_of(i)))

    def via_peer(i: int) -> Any:
        return page(peer(user).filter(pupil_id=pupil_of(i)))

    def via_peer_generic(i: int) -> Any:
        return page(peer_generic(user).filter(pupil_id=pupil_of(i)))

    def filtered_orm(i: int) -> Any:
        # Diagnostic: build the queryset and compile it, no execution.
        return item_list_for_user(user=user, pupil_id=pupil_of(i)).order_by(*ORDER)[:PAGE].query.sql_with_params()

    def filtered_sql(i: int) -> Any:
        # Diagnostic: the compiled statement alone, on a plain cursor.
        return _execute(compiled[i % len(compiled)])

    def filtered_all(i: int) -> Any:
        # What GET /api/v1/items runs: the ordered walk over the grants (the same rows as item_list_for_user's page).
        return item_feed_for_user(user=user, limit=PAGE).items

    def unfiltered_all(i: int) -> Any:
        return page(PupilItem.objects.all())

    def peer_all(i: int) -> Any:
        return page(peer(user))

    def peer_generic_all(i: int) -> Any:
        return page(peer_generic(user))

    def audited(i: int) -> Any:
        return item_get_for_user(user=user, item_id=item_of(i), action=READ)

    def no_audit(i: int) -> Any:
        return decide_without_audit(user, item_of(i))

    return (
        {
            "filtered": filtered,
            "unfiltered": unfiltered,
            "peer": via_peer,
            "peer_generic": via_peer_generic,
            "filtered_orm": filtered_orm,
            "filtered_sql": filtered_sql,
        },
        {"filtered": filtered_all, "unfiltered": unfiltered_all, "peer": peer_all, "peer_generic": peer_generic_all},
        {"audited": audited, "no_audit": no_audit},
    )


# The judged comparison, the whole read with and without audit, runs in this many blocks, spread over the
# audit part of the phase: each user's blocks alternate with the other users' and with the decision's and the
# request's timings. A state of the machine that slows everything for half a minute (seen: a run in which the
# CLB worker's decision and whole read, with audit and without, took twice their usual time while the lists
# timed just before them had their usual speed) then falls into one or two blocks, not into the whole
# comparison (docs/performance.md, 2026-12-04).
# The rounds of blocks start at least ``READ_BLOCK_GAP_S`` apart (the machine idles if the timings between
# them were shorter), so the five span a minute or more.
READ_BLOCKS = 5
READ_BLOCK_GAP_S = 15.0


@dataclass(frozen=True)
class _AuditTimings:
    """One user's timed calls for the audit on a read: the decision alone, the whole read, the request."""

    audit_variants: Variants
    read_variants: Variants
    request_variants: Variants


def _summary(samples: dict[str, list[float]]) -> str:
    return ", ".join(
        f"{name} p50 {stats(s)['p50']:.2f} / p95 {stats(s)['p95']:.2f} ms (n={len(s)})" for name, s in samples.items()
    )


def _audit_blocks(
    timed: dict[str, _AuditTimings], users: dict[str, dict[str, Any]], *, reps: int, warmup: int, budget_s: float
) -> None:
    """Time the audit on a read for every user into ``users[key]``: the whole read in ``READ_BLOCKS`` blocks
    (``read_blocks``: each block's statistics; ``read``: all blocks' samples pooled), rounds of blocks at least
    ``READ_BLOCK_GAP_S`` apart, between them the decision with and without audit and the HTTP request. Every
    audited call must have appended exactly one event."""
    from permissions.models import AuditEvent

    keys = list(timed)
    between = [("decision", key) for key in keys] + [("request", key) for key in keys]
    after_block: dict[int, list[tuple[str, str]]] = {b: [] for b in range(READ_BLOCKS)}
    for j, slot in enumerate(between):
        after_block[j * (READ_BLOCKS - 1) // len(between)].append(slot)
    block_reps = max(1, reps * READ_REPS_FACTOR // READ_BLOCKS)
    blocks: dict[str, list[dict[str, list[float]]]] = {key: [] for key in keys}
    read_appended = dict.fromkeys(keys, 0)
    round_started = time.perf_counter()
    for b in range(READ_BLOCKS):
        idle = READ_BLOCK_GAP_S - (time.perf_counter() - round_started) if b else 0.0
        if idle > 0:
            _say(f"idle {idle:.0f} s before the whole read's block {b + 1}")
            time.sleep(idle)
        round_started = time.perf_counter()
        for key in keys:
            block_warmup = warmup if b == 0 else min(warmup, 3)
            _say(
                f"{key}: GET /api/v1/items/<id> with and without audit (and without the flush's wait), block {b + 1}"
                f" of {READ_BLOCKS}, {block_reps} repetitions"
            )
            before = AuditEvent.objects.count()
            samples = _interleaved(
                timed[key].read_variants,
                reps=block_reps,
                warmup=block_warmup,
                budget_s=budget_s / READ_BLOCKS,
                around={"audited_no_flush_wait": _no_flush_wait},
            )
            appended = AuditEvent.objects.count() - before
            expected = len(samples["audited"]) + len(samples["audited_no_flush_wait"]) + 2 * block_warmup
            if appended != expected:
                raise SystemExit(f"{key}: {appended} audit events for {expected} audited reads (block {b + 1})")
            read_appended[key] += appended
            blocks[key].append(samples)
        for what, key in after_block[b]:
            if what == "decision":
                _say(f"{key}: item_get_for_user with and without audit, {reps} repetitions")
                before = AuditEvent.objects.count()
                samples = _interleaved(timed[key].audit_variants, reps=reps, warmup=warmup, budget_s=budget_s)
                users[key]["audit"] = {name: stats(s) for name, s in samples.items()}
                users[key]["audit_events_appended"] = AuditEvent.objects.count() - before
            else:
                _say(
                    f"{key}: the same GET through the middleware stack with token authentication,"
                    f" {reps * READ_REPS_FACTOR} repetitions"
                )
                samples = _interleaved(
                    timed[key].request_variants, reps=reps * READ_REPS_FACTOR, warmup=warmup, budget_s=budget_s
                )
                users[key]["request"] = {name: stats(s) for name, s in samples.items()}
            _say(f"{key} {'audit' if what == 'decision' else what}: {_summary(samples)}")
    for key in keys:
        pooled = {name: [ms for block in blocks[key] for ms in block[name]] for name in blocks[key][0]}
        users[key]["read"] = {name: stats(s) for name, s in pooled.items()}
        users[key]["read_blocks"] = [{name: stats(s) for name, s in block.items()} for block in blocks[key]]
        users[key]["read_events_appended"] = read_appended[key]
        _say(f"{key} read (all blocks): {_summary(pooled)}")


def run(*, load: Path, reps: int, warmup: int, budget_s: float, result: Path) -> None:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db.models import QuerySet
    from django.test import Client
    from guardian.shortcuts import get_objects_for_user
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIRequestFactory, force_authenticate

    from exchange.item_apis import ItemDetailApi
    from exchange.models import Category, ItemKind, PupilItem
    from permissions.access import _decide, feed_walks, item_feed_for_user, item_get_for_user, item_list_for_user
    from permissions.policy import READ

    loaded = json.loads(load.read_text(encoding="utf-8"))

    def page(queryset: QuerySet[PupilItem]) -> list[PupilItem]:
        return list(queryset.order_by(*ORDER)[:PAGE])

    def peer(user: Any) -> QuerySet[PupilItem]:
        return get_objects_for_user(user, "exchange.view_pupilitem", klass=PupilItem, accept_global_perms=False)

    def peer_generic(user: Any) -> QuerySet[PupilItem]:
        with _guardian_generic():
            return get_objects_for_user(user, "exchange.view_pupilitem", klass=PupilItem, accept_global_perms=False)

    detail_view = ItemDetailApi.as_view()
    factory = APIRequestFactory()

    def api_read(user: Any, item_id: uuid.UUID) -> bytes:
        """``GET /api/v1/items/<id>`` through the view: decision, audit, decryption, serialization, JSON."""
        request = factory.get(f"/api/v1/items/{item_id}")
        force_authenticate(request, user=user)
        response = detail_view(request, item_id=item_id)
        response.render()
        if response.status_code != 200:
            raise SystemExit(f"GET /api/v1/items/{item_id}: {response.status_code}")
        return bytes(response.content)

    def api_read_no_audit(user: Any, item_id: uuid.UUID) -> bytes:
        with _audit_skipped():
            return api_read(user, item_id)

    def http_read(client: Any, item_id: uuid.UUID) -> bytes:
        """The same GET as a client sends it: URL routing, every middleware and the token lookup (no network)."""
        response = client.get(f"/api/v1/items/{item_id}")
        if response.status_code != 200:
            raise SystemExit(f"GET /api/v1/items/{item_id} over the middleware stack: {response.status_code}")
        return bytes(response.content)

    def http_read_no_audit(client: Any, item_id: uuid.UUID) -> bytes:
        with _audit_skipped():
            return http_read(client, item_id)

    def decide_without_audit(user: Any, item_id: uuid.UUID) -> str:
        """What ``item_get_for_user(action="read")`` queries (``_decide``), without the audit append."""
        decision = _decide(user=user, item_id=item_id, action=READ)
        if decision is None or decision.branch is None:
            raise LookupError(item_id)
        return decision.branch.rule.rule

    out: dict[str, Any] = {"users": {}, "explain": {}}
    timed: dict[str, _AuditTimings] = {}
    for key, info in loaded["users"].items():
        user = User.objects.get(pk=info["user_id"])
        pupils = [uuid.UUID(p) for p in info["pupils"]]
        _say(f"{key}: {user.username}, {len(pupils)} pupils")

        # --- Correctness of what is timed (outside the timing) ----------------------------------
        checks: dict[str, Any] = {"pupils_checked": 0, "mismatches": 0, "peer_differs": 0, "peer_generic_differs": 0}
        visible_items: list[uuid.UUID] = []
        rows_filtered, rows_unfiltered, rows_peer, rows_generic = [], [], [], []
        for pupil in pupils:
            got = [i.pk for i in page(item_list_for_user(user=user, pupil_id=pupil))]
            want = expected_visible(user, pupil)
            via_peer = [i.pk for i in page(peer(user).filter(pupil_id=pupil))]
            via_generic = [i.pk for i in page(peer_generic(user).filter(pupil_id=pupil))]
            checks["pupils_checked"] += 1
            checks["mismatches"] += set(got) != want
            checks["peer_differs"] += set(via_peer) != set(got)
            checks["peer_generic_differs"] += set(via_generic) != set(got)
            visible_items.extend(got)
            rows_filtered.append(len(got))
            rows_unfiltered.append(len(page(PupilItem.objects.filter(pupil_id=pupil))))
            rows_peer.append(len(via_peer))
            rows_generic.append(len(via_generic))
        if not visible_items:
            raise SystemExit(f"{key}: item_list_for_user returns nothing for the measured pupils: {checks}")
        if checks["mismatches"]:
            _say(f"{key}: WARNING item_list_for_user differs from the policy table for some pupils: {checks}")
        feed_page = [i.pk for i in item_feed_for_user(user=user, limit=PAGE).items]
        checks["feed_same_page"] = feed_page == [i.pk for i in page(item_list_for_user(user=user))]
        checks["feed_generic_peer_same_page"] = feed_page == [i.pk for i in page(peer_generic(user))]
        if not checks["feed_same_page"]:
            raise SystemExit(f"{key}: item_feed_for_user's first page differs from item_list_for_user's")
        rows_all = {
            "filtered": len(feed_page),
            "unfiltered": len(page(PupilItem.objects.all())),
            "peer": len(page(peer(user))),
            "peer_generic": len(page(peer_generic(user))),
            "filtered_total": item_list_for_user(user=user).count(),
            "peer_total": peer(user).count(),
            "peer_generic_total": peer_generic(user).count(),
        }
        rules = {}
        for item_id in visible_items:
            audited = item_get_for_user(user=user, item_id=item_id, action=READ)
            rules[str(item_id)] = audited.rule
            if decide_without_audit(user, item_id) != audited.rule:
                raise SystemExit(f"{key}: decision without audit differs for {item_id}")
        checks["audit_items"] = len(visible_items)
        checks["rules"] = sorted(set(rules.values()))
        _say(
            f"{key}: checks ok; rows per page filtered {rows_filtered}, unfiltered {rows_unfiltered}; "
            f"all items: {rows_all}"
        )

        # --- Lists -------------------------------------------------------------------------------
        compiled = [
            item_list_for_user(user=user, pupil_id=pupil).order_by(*ORDER)[:PAGE].query.sql_with_params()
            for pupil in pupils
        ]
        per_pupil, all_items, audit_variants = _variants(
            user=user,
            pupils=pupils,
            items=visible_items,
            compiled=compiled,
            page=page,
            peer=peer,
            peer_generic=peer_generic,
            decide_without_audit=decide_without_audit,
        )
        _say(f"{key}: per-pupil page, {reps} repetitions after {warmup} warm-up")
        pupil_samples = _interleaved(per_pupil, reps=reps, warmup=warmup, budget_s=budget_s)
        _say(f"{key}: all visible items, {reps} repetitions after {warmup} warm-up (budget {budget_s:.0f} s each)")
        all_samples = _interleaved(all_items, reps=reps, warmup=min(warmup, 3), budget_s=budget_s)

        # --- The whole read's items and the request's client; their timings run after every user's lists ------
        read_items = _read_items(
            user=user,
            organisation_id=info["organisation_id"],
            pupils=pupils,
            category=Category.CAREER if key == "care" else Category.GUIDANCE,
            kind=ItemKind.DOCUMENT if key == "care" else ItemKind.NOTE,
        )
        for item_id in read_items:
            if api_read(user, item_id) != api_read_no_audit(user, item_id):
                raise SystemExit(f"{key}: the read with and without audit differ for {item_id}")
        token, _created = Token.objects.get_or_create(user=user)
        client = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
        if http_read(client, read_items[0]) != api_read(user, read_items[0]):
            raise SystemExit(f"{key}: the request and the view return different bodies")
        timed[key] = _AuditTimings(
            audit_variants=audit_variants,
            read_variants={
                "audited": lambda i, u=user, ids=read_items: api_read(u, ids[i % len(ids)]),
                "no_audit": lambda i, u=user, ids=read_items: api_read_no_audit(u, ids[i % len(ids)]),
                # A diagnostic, not judged: the audited read whose commit does not wait for its WAL flush.
                "audited_no_flush_wait": lambda i, u=user, ids=read_items: api_read(u, ids[i % len(ids)]),
            },
            request_variants={
                "audited": lambda i, c=client, ids=read_items: http_read(c, ids[i % len(ids)]),
                "no_audit": lambda i, c=client, ids=read_items: http_read_no_audit(c, ids[i % len(ids)]),
            },
        )
        out["users"][key] = {
            "username": user.username,
            "pupils": len(pupils),
            "checks": checks,
            "rows_per_page": {
                "filtered": statistics.fmean(rows_filtered),
                "unfiltered": statistics.fmean(rows_unfiltered),
                "peer": statistics.fmean(rows_peer),
                "peer_generic": statistics.fmean(rows_generic),
            },
            "rows_all": rows_all,
            "per_pupil": {name: stats(s) for name, s in pupil_samples.items()},
            "all_items": {name: stats(s) for name, s in all_samples.items()},
            "read_bytes": len(api_read_no_audit(user, read_items[0])),
        }
        for scope, samples in (("per pupil", pupil_samples), ("all", all_samples)):
            _say(f"{key} {scope}: {_summary(samples)}")

        # --- Plans (once, after this user's list timings) ---------------------------------------
        first = pupils[0]
        plans = {
            "filtered_pupil": item_list_for_user(user=user, pupil_id=first).order_by(*ORDER)[:PAGE],
            "unfiltered_pupil": PupilItem.objects.filter(pupil_id=first).order_by(*ORDER)[:PAGE],
            "peer_pupil": peer(user).filter(pupil_id=first).order_by(*ORDER)[:PAGE],
            "peer_generic_pupil": peer_generic(user).filter(pupil_id=first).order_by(*ORDER)[:PAGE],
            "filtered_all": feed_walks(user=user, limit=PAGE)[0],
            "unfiltered_all": PupilItem.objects.all().order_by(*ORDER)[:PAGE],
            "peer_all": peer(user).order_by(*ORDER)[:PAGE],
            "peer_generic_all": peer_generic(user).order_by(*ORDER)[:PAGE],
        }
        out["explain"][key] = {}
        explained = [(name, queryset, True) for name, queryset in plans.items()]
        explained.append(("filtered_all_jit_off", plans["filtered_all"], False))
        for name, queryset, jit in explained:
            lines = _explain(queryset, jit=jit)
            sql = queryset[0] if isinstance(queryset, tuple) else str(queryset.query)
            out["explain"][key][name] = {"sql": sql, "plan": lines}
            _say(f"{key} EXPLAIN {name}: " + "; ".join(line.strip() for line in lines if "Time:" in line))
    _audit_blocks(timed, out["users"], reps=reps, warmup=warmup, budget_s=budget_s)
    out["commit_cost"] = _commit_cost(reps)
    _say(
        "commit cost: "
        + ", ".join(f"{name} p50 {v['p50']:.2f} / p95 {v['p95']:.2f} ms" for name, v in out["commit_cost"].items())
    )
    result.write_text(json.dumps(out), encoding="utf-8")
