"""Benchmark the need-to-know filter on PostgreSQL: first page of visible items vs unfiltered vs django-guardian.

Run from the project root (PostgreSQL is required; trust or password in the URL)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.bench_access           # full
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.bench_access --quick   # 10 %

Results are written to the ``access`` block of docs/performance.md. A database
``bench_access_<random>`` is created on the server of ``DATABASE_URL``, migrated with
``manage.py migrate`` and dropped at the end (also on failure or SIGTERM); the database named in
the URL is only used to create and drop it.

Data (``bench/_access_load.py``): 1,000 organisations (800 schools, 150 CLBs, 50 NAFT), 200,000
pupils, 1,000,000 items with their holder grants, T-SCH-2 enrolment grants and the django-guardian
projection rows, bulk-loaded with set-based SQL, then ``VACUUM (ANALYZE)``; ``--quick`` uses 10 %.
The measured users are made through the services: a care coordinator (care team of one school)
and a CLB worker involved with 20 pupils of their CLB.

What is measured (``bench/_access_measure.py``, one child process, after a warm-up, variants
interleaved), N = 200 repetitions (50 with ``--quick``) of the first page
(``order_by("-created_at", "id")[:50]``, evaluated with ``list()``):

* **filtered**: ``permissions.access.item_list_for_user(user=u, pupil_id=p)`` (what the API's list
  endpoint does), rotating over 20 pupils the user may see; and all visible items:
  ``item_feed_for_user(user=u, limit=50)`` (what ``GET /api/v1/items`` runs: the ordered walk over
  the organisation's grants; its page is checked to be ``item_list_for_user(user=u)``'s first page);
* **unfiltered** (baseline): ``PupilItem.objects.filter(pupil_id=p)`` / all items;
* **generic peer** (the issue's peer): django-guardian's ``get_objects_for_user(u, "exchange.view_pupilitem",
  klass=PupilItem, accept_global_perms=False)`` on guardian's *generic* tables (``object_pk`` text +
  content type), loaded with the same rows as the direct tables, with the same pupil filter and ordering;
* **direct peer**: the same call on the project's direct foreign-key tables (what guardian picks for
  ``PupilItem``), for comparison.

Targets (the issue's, on the first page of all visible items): filtered p95 <= 25 ms, <= 1.5x unfiltered,
>= 20x faster than the generic peer (ratios of p95). The per-pupil page is held to the first two; its
generic-peer factor is reported (on one pupil's handful of rows guardian's query itself takes a few ms).
Audit cost (target <= 15 % over no audit), judged on the whole read as the API serves it:
``GET /api/v1/items/<id>`` through the view (one libpq pipeline: head lock, decision with its event, key
fetch, then the append and commit overlapping decryption and serialization) with and without the audit
(switched off inside the benchmark only), timed in
``READ_BLOCKS`` blocks spread over the audit part of the run and judged at p50 on the median block's overhead
(``AUDIT_JUDGED_AT``: the issue names no percentile for this target); the p95 is reported and flagged when
above the target, and every block and the pooled figures are reported beside it; the decision alone
(``item_get_for_user`` against ``_decide``) is reported as well, and so is the same GET as a whole HTTP
request (``django.test.Client``, every middleware, token authentication; reported, not judged).
``EXPLAIN (ANALYZE, BUFFERS)`` of each query is printed, and its summary written to the report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from bench._access_measure import READ_BLOCK_GAP_S, READ_BLOCKS, READ_REPS_FACTOR
from bench._report import machine_description, write_section

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")

TARGET_P95_MS = 25.0
TARGET_MAX_VS_UNFILTERED = 1.5
TARGET_MIN_PEER_FACTOR = 20.0
TARGET_MAX_AUDIT_OVERHEAD = 0.15
# The audit target ("the cost of audit on a read (target <= 15 % over no audit)") names no percentile, where the
# list target names p95; it is judged on the typical read, p50, of the median block. The p95 is reported beside
# it and flagged when above the target: on a 2-vCPU machine it sat between +6 % and +18 % from run to run for
# the same build, with the cost steady in milliseconds (docs/performance.md, 2026-12-04).
AUDIT_JUDGED_AT = "p50"
USER_LABELS = {"care": "care coordinator (school care team)", "worker": "CLB worker (involved with 20 pupils)"}


@dataclass(frozen=True)
class Plan:
    scale: float
    reps: int
    warmup: int
    budget_s: float  # per variant and user: a slower variant stops early (its n shows it)


FULL = Plan(scale=1.0, reps=200, warmup=20, budget_s=60.0)
QUICK = Plan(scale=0.1, reps=50, warmup=10, budget_s=30.0)


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Database and child processes
# --------------------------------------------------------------------------------------------


def _admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path or "/postgres", parts.query, ""))


@contextlib.contextmanager
def _postgres_database(url: str) -> Iterator[str]:
    """Create ``bench_access_<random>`` on the server of ``url``; yield its URL; drop it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"bench_access_{secrets.token_hex(6)}"
    admin = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    _say(f"created database {name}")
    try:
        parts = urlsplit(url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        _say(f"dropped database {name}")


def _server_settings(url: str) -> dict[str, str]:
    import psycopg

    names = ("server_version", "shared_buffers", "work_mem", "jit", "synchronous_commit", "random_page_cost")
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in names}  # type: ignore[index]


def _checkpoint(url: str) -> str:
    """Write out the bulk load's dirty pages before measuring (``CHECKPOINT``, which also hurries a spread
    checkpoint the load's WAL started): otherwise the checkpointer writes gigabytes during the timings and
    every WAL flush, the audited read's commit among them, waits behind it. What happened, for the report."""
    import psycopg

    started = time.perf_counter()
    try:
        with psycopg.connect(_admin_url(url), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return "no `CHECKPOINT` before measuring (the role may not run it: timings may overlap the load's write-out)"
    return f"`CHECKPOINT` before measuring ({time.perf_counter() - started:.0f} s)"


def _django_env(var_dir: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("LP_KEKS", "LP_KEKS_FILE", "CELERY_BROKER_URL", "LP_OBJECT_STORAGE_BUCKET"):
        env.pop(name, None)
    var_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="false",  # as in production; with DEBUG Django also records every query
        LP_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    """Run a child in the project root; its output goes to ours. Raise on failure."""
    done = subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=False)  # noqa: S603 - our interpreter
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {done.returncode}")


def _run_phase(phase: str, env: dict[str, str], workdir: Path, **options: Any) -> dict[str, Any]:
    result = workdir / f"{phase}-{uuid.uuid4().hex}.json"
    args = [PYTHON, "-m", "bench.bench_access", "--phase", phase, "--result", str(result)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    _run(args, env, f"phase {phase}")
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    return data


def _load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "n/a"


def _raise_exit(signum: int, _frame: types.FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # so that the finally blocks drop the database


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _pp(s: dict[str, float], reps: int = 0) -> str:
    short = f" (n={s['n']:.0f})" if reps and s["n"] < reps else ""
    return f"{s['p50']:.2f} / {s['p95']:.2f}{short}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


@dataclass(frozen=True)
class Verdict:
    p95_ok: bool
    vs_unfiltered_ok: bool
    vs_peer_ok: bool

    @property
    def ok(self) -> bool:
        return self.p95_ok and self.vs_unfiltered_ok and self.vs_peer_ok


def verdict(timings: dict[str, dict[str, float]]) -> Verdict:
    """The targets; the peer factor is against guardian's generic ``get_objects_for_user`` (the issue's peer)."""
    filtered, unfiltered, peer = timings["filtered"], timings["unfiltered"], timings["peer_generic"]
    return Verdict(
        p95_ok=filtered["p95"] <= TARGET_P95_MS,
        vs_unfiltered_ok=filtered["p95"] <= TARGET_MAX_VS_UNFILTERED * unfiltered["p95"],
        vs_peer_ok=peer["p95"] >= TARGET_MIN_PEER_FACTOR * filtered["p95"],
    )


def audit_overhead(audit: dict[str, dict[str, float]], key: str, variant: str = "audited") -> float:
    return audit[variant][key] / audit["no_audit"][key] - 1.0


def read_overhead(user: dict[str, Any], key: str, variant: str = "audited") -> float:
    """The whole read's audit overhead at ``key`` (p50 or p95) as judged: the median over the read's blocks
    (``_access_measure.READ_BLOCKS``) of each block's overhead; a result without blocks, the pooled one."""
    blocks = user.get("read_blocks")
    if not blocks:
        return audit_overhead(user["read"], key, variant)
    return statistics.median(audit_overhead(block, key, variant) for block in blocks)


def audit_ok(user: dict[str, Any]) -> bool:
    """The audit target, judged at ``AUDIT_JUDGED_AT`` on the whole read's median block."""
    return read_overhead(user, AUDIT_JUDGED_AT) <= TARGET_MAX_AUDIT_OVERHEAD


def audit_tail_over(user: dict[str, Any]) -> bool:
    """Reported, not judged: the whole read's overhead at p95 (median block) is above the target."""
    return read_overhead(user, "p95") > TARGET_MAX_AUDIT_OVERHEAD


def _audit_verdict(user: dict[str, Any]) -> str:
    tail = f" (p95 {read_overhead(user, 'p95'):+.0%}: above the target)" if audit_tail_over(user) else ""
    return _met(audit_ok(user)) + tail


def targets_met(user: dict[str, Any]) -> bool:
    """The issue's targets: the first page of all visible items (p95, against unfiltered and against the
    generic peer) and the audit on a read; the per-pupil page is held to the first two (its generic peer,
    on one pupil's few rows, is reported)."""
    per_pupil = verdict(user["per_pupil"])
    return verdict(user["all_items"]).ok and per_pupil.p95_ok and per_pupil.vs_unfiltered_ok and audit_ok(user)


def _list_table(
    measured: dict[str, Any], scope: str, rows_key: str, reps: int, *, judge_peer: bool = True
) -> list[str]:
    peer_header = (
        f">= {TARGET_MIN_PEER_FACTOR:g}x faster than the generic peer"
        if judge_peer
        else "generic peer factor (reported: the issue's target is on all visible items)"
    )
    lines = [
        "| user | rows on page (filtered / unfiltered / generic peer / direct peer) | filtered p50 / p95 ms "
        "| unfiltered p50 / p95 ms | generic peer p50 / p95 ms | direct peer p50 / p95 ms "
        "| filtered ÷ unfiltered (p50, p95) | generic peer ÷ filtered (p50, p95) | direct peer ÷ filtered (p50, p95) "
        f"| p95 <= {TARGET_P95_MS:g} ms | <= {TARGET_MAX_VS_UNFILTERED:g}x unfiltered "
        f"| {peer_header} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for key, user in measured["users"].items():
        t = user[scope]
        f, u, g, p = t["filtered"], t["unfiltered"], t["peer_generic"], t["peer"]
        v = verdict(t)
        if rows_key == "rows_per_page":
            r = user["rows_per_page"]
            rows = f"{r['filtered']:.1f} / {r['unfiltered']:.1f} / {r['peer_generic']:.1f} / {r['peer']:.1f}"
        else:
            r = user["rows_all"]
            rows = (
                f"{r['filtered']} / {r['unfiltered']} / {r['peer_generic']} / {r['peer']} "
                f"(of {r['filtered_total']:,} visible; peers {r['peer_generic_total']:,} / {r['peer_total']:,})"
            )
        lines.append(
            f"| {USER_LABELS.get(key, key)} | {rows} | {_pp(f, reps)} | {_pp(u, reps)} | {_pp(g, reps)} "
            f"| {_pp(p, reps)} | {_ratio(f['p50'], u['p50'])}, {_ratio(f['p95'], u['p95'])} "
            f"| {_ratio(g['p50'], f['p50'])}, {_ratio(g['p95'], f['p95'])} "
            f"| {_ratio(p['p50'], f['p50'])}, {_ratio(p['p95'], f['p95'])} "
            f"| {_met(v.p95_ok)} | {_met(v.vs_unfiltered_ok)} "
            f"| {_met(v.vs_peer_ok) if judge_peer else _ratio(g['p95'], f['p95'])} |"
        )
    return lines


def _plan_times(plan: list[str]) -> tuple[float, float]:
    """Planning and execution time (ms) of an ``EXPLAIN ANALYZE`` output."""
    found = {}
    for line in plan:
        name, _, value = line.strip().partition(": ")
        if name in {"Planning Time", "Execution Time"}:
            found[name] = float(value.split()[0])
    return found.get("Planning Time", float("nan")), found.get("Execution Time", float("nan"))


def _breakdown_rows(measured: dict[str, Any]) -> list[str]:
    rows = []
    for key, user in measured["users"].items():
        t = user["per_pupil"]
        planning, execution = _plan_times(measured["explain"][key]["filtered_pupil"]["plan"])
        rows.append(
            f"| {USER_LABELS.get(key, key)} | {_pp(t['filtered'])} | {_pp(t['filtered_orm'])} "
            f"| {_pp(t['filtered_sql'])} | {planning:.2f} / {execution:.2f} |"
        )
    return rows


def _plan_summary(plan: list[str]) -> str:
    top = plan[0].strip() if plan else ""
    buffers = next((line.strip() for line in plan[1:4] if line.strip().startswith("Buffers:")), "")
    times = "; ".join(line.strip() for line in plan if line.strip().startswith(("Planning Time", "Execution Time")))
    jit = "; JIT" if any(line.strip() == "JIT:" for line in plan) else ""
    return f"`{times}{jit}` — top node `{top}`" + (f", `{buffers}`" if buffers else "")


def render(
    load: dict[str, Any], measured: dict[str, Any], plan: Plan, *, quick: bool, server: dict[str, str], loadavg: str
) -> str:
    counts = load["counts"]
    shape = load["shape"]
    check = load["projection_check"]
    lines = [
        f"**Data** (PostgreSQL {server['server_version']}; bulk-loaded in {load['load_seconds']:.0f} s, then "
        f"`VACUUM (ANALYZE)`, then {load.get('checkpoint', 'no checkpoint')}): "
        f"{counts['organisations']:,} organisations ({shape['schools']} schools, "
        f"{shape['clbs']} CLBs, {shape['nafts']} NAFT), {counts['pupils']:,} pupils (one open enrolment each), "
        f"{counts['items']:,} items (5 per pupil: 2 held by the school, 3 by the school's CLB or a NAFT provider), "
        f"{counts['grants']:,} grants (holder + T-SCH-2 enrolment), {counts['guardian_group_rows']:,} guardian "
        f"group-permission rows in {counts['groups']:,} role groups, {counts['users']:,} users, "
        f"{counts['involvements']:,} involvements. Guardian rows checked against `expected_projection` on "
        f"{check['sampled_items']} sampled items: {check['missing_rows']} missing, {check['extra_rows']} extra.",
        "",
        "**Verdict** (the issue's targets: the first page of all visible items at p95 <= "
        f"{TARGET_P95_MS:g} ms, <= {TARGET_MAX_VS_UNFILTERED:g}x unfiltered and >= {TARGET_MIN_PEER_FACTOR:g}x "
        f"faster than guardian's generic query; audit <= {TARGET_MAX_AUDIT_OVERHEAD:.0%} on a read at "
        f"{AUDIT_JUDGED_AT}; the "
        "per-pupil page held to the first two): "
        + "; ".join(
            f"{USER_LABELS.get(key, key).split(' (')[0]} {_met(targets_met(user))}"
            + (" (the audit's p95 above the target: reported, below)" if audit_tail_over(user) else "")
            for key, user in measured["users"].items()
        )
        + ".",
        "",
        f"**First page of one pupil's items** (what `GET /api/v1/pupils/<id>/items` runs; {plan.reps} repetitions "
        "per variant, rotating over 20 pupils the user may see; ms):",
        "",
        *_list_table(measured, "per_pupil", "rows_per_page", plan.reps, judge_peer=False),
        "",
        "Where the filtered per-pupil call spends its time (diagnostic variants, interleaved with the above; ms): "
        "**ORM** = `item_list_for_user(...)` with ordering and slice, compiled to SQL "
        "(`query.sql_with_params()`), not executed; **SQL** = the compiled statement run on the same connection "
        "with a plain cursor (round trip: parsing, planning, execution, rows); from `EXPLAIN ANALYZE` of one pupil "
        "the server's planning and execution time.",
        "",
        "| user | filtered p50 / p95 | ORM p50 / p95 | SQL p50 / p95 | EXPLAIN planning / execution |",
        "|---|---:|---:|---:|---:|",
        *_breakdown_rows(measured),
        "",
        "**First page of all visible items** (what `GET /api/v1/items` runs: `item_feed_for_user(user=u, "
        "limit=50)`, which walks the organisation's grants newest item first and stops at the page; checked "
        "before timing to return the same page as `item_list_for_user(user=u)` ordered and sliced; no pupil "
        "filter; ms):",
        "",
        *_list_table(measured, "all_items", "rows_all", plan.reps),
        "",
        "**Audit on a read** (target <= "
        f"{TARGET_MAX_AUDIT_OVERHEAD:.0%} over no audit, judged on the whole read: that is what the user waits "
        "for). **Whole read** = `GET /api/v1/items/<id>` through `ItemDetailApi` (`APIRequestFactory` + "
        "`force_authenticate`, response rendered to JSON): `files.item_read`, i.e. one transaction in one "
        "libpq pipeline (`permissions.access.item_reading`, `permissions.pipeline`): the lock of the audit "
        "chain's head, the decision (which also works out the read's event), the version's ciphertexts with the "
        "reader's organisations' wraps of its key, answered in one round trip; right behind them the "
        "hash-chained event's append and the pipeline's `Sync`, which commits the implicit transaction (one WAL "
        "flush), sent without waiting, overlapping decryption of a ~1 KB note and serialization, and waited "
        "for after them; without audit = the same call sending only the decision, "
        "the key fetch and the `Sync` in one round trip (`permissions.access._read_audited`: no head's lock "
        "and no append), switched inside the benchmark only (no production setting). "
        "One real item per measured pupil, made through `files.item_create`. **Decision only** = "
        '`item_get_for_user(action="read")` against `permissions.access._decide` (the one statement that reads '
        "the item and which membership and rule allow it), rotating over the bulk-loaded visible items (ms). "
        f"The whole read is timed in {READ_BLOCKS} blocks of {plan.reps * READ_REPS_FACTOR // READ_BLOCKS:,} "
        "interleaved rounds, spread over the audit part of the run (each user's blocks alternate with the other "
        "user's and with the decision's and the request's timings; rounds of blocks start at least "
        f"{READ_BLOCK_GAP_S:g} s apart); its figures pool every block, and the "
        f"target is judged at **{AUDIT_JUDGED_AT} on the median block**: of the blocks' overheads at "
        f"{AUDIT_JUDGED_AT}, the median, so that a state of the machine lasting a few tens of seconds moves one "
        "or two blocks, not the verdict. The issue names no percentile for this target (it does for the list's "
        "latency); the p95 of the median block is reported beside it and flagged when above the target. Every "
        "block is listed below the table.",
        "",
        "| user | whole read with audit p50 / p95 | whole read without audit p50 / p95 | overhead p50, p95 (pooled) "
        "| overhead p50, p95 (median block, judged) "
        "| decision with audit p50 / p95 | decision without audit p50 / p95 | overhead p50, p95 "
        "| HTTP request with audit p50 / p95 | without audit p50 / p95 | overhead p50, p95 "
        f"| target <= {TARGET_MAX_AUDIT_OVERHEAD:.0%} on the whole read (judged at {AUDIT_JUDGED_AT}; p95 "
        "reported) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, user in measured["users"].items():
        read, audit, request = user["read"], user["audit"], user["request"]
        lines.append(
            f"| {USER_LABELS.get(key, key)} | {_pp(read['audited'])} | {_pp(read['no_audit'])} "
            f"| {audit_overhead(read, 'p50'):+.0%}, {audit_overhead(read, 'p95'):+.0%} "
            f"| {read_overhead(user, 'p50'):+.0%}, {read_overhead(user, 'p95'):+.0%} "
            f"| {_pp(audit['audited'])} | {_pp(audit['no_audit'])} "
            f"| {audit_overhead(audit, 'p50'):+.0%}, {audit_overhead(audit, 'p95'):+.0%} "
            f"| {_pp(request['audited'])} | {_pp(request['no_audit'])} "
            f"| {audit_overhead(request, 'p50'):+.0%}, {audit_overhead(request, 'p95'):+.0%} "
            f"| {_audit_verdict(user)} |"
        )
    blocked = [(key, user["read_blocks"]) for key, user in measured["users"].items() if user.get("read_blocks")]
    if blocked:
        lines += [
            "",
            "**The whole read, block by block** (with audit p50 / p95 ms against without; overhead p50, p95; "
            "in the order they ran): "
            + "; ".join(
                f"{USER_LABELS.get(key, key).split(' (')[0]}: "
                + ", ".join(
                    f"{block['audited']['p50']:.2f} / {block['audited']['p95']:.2f} against "
                    f"{block['no_audit']['p50']:.2f} / {block['no_audit']['p95']:.2f} "
                    f"({audit_overhead(block, 'p50'):+.0%}, {audit_overhead(block, 'p95'):+.0%})"
                    for block in blocks
                )
                for key, blocks in blocked
            )
            + ".",
        ]
    commit = measured.get("commit_cost")
    if commit:
        select, insert = commit["select"], commit["insert_commit"]
        lines += [
            "",
            "**What the audit costs, diagnosed**: on this server one durable commit (a one-row `INSERT` in "
            "autocommit, its WAL flush) takes "
            f"{insert['p50']:.2f} / {insert['p95']:.2f} ms (p50 / p95) where `SELECT 1` takes "
            f"{select['p50']:.2f} / {select['p95']:.2f} ms, each after 4 ms of Python work as in a read "
            f"({plan.reps} of each): {insert['p50'] - select['p50']:.2f} ms at p50 is the commit alone. The "
            "whole read sends the event's insert and that commit before decrypting and waits for them after (the "
            "decision alone, `item_get_for_user`, still waits inside its one statement); the commit stays "
            "synchronous (`synchronous_commit = on`), so no read's record can be lost in a crash, and nothing "
            "of a read is returned before it.",
        ]
        unflushed = commit.get("insert_commit_no_flush_wait")
        if unflushed:
            lines[-1] += (
                " The same `INSERT` whose commit does not wait for the WAL flush (`synchronous_commit = off`) "
                f"takes {unflushed['p50']:.2f} / {unflushed['p95']:.2f} ms: the flush's wait is "
                f"{insert['p50'] - unflushed['p50']:.2f} / {insert['p95'] - unflushed['p95']:.2f} ms."
            )
    diagnosed = [(key, user) for key, user in measured["users"].items() if "audited_no_flush_wait" in user["read"]]
    if diagnosed:
        lines += [
            "",
            "**The whole read with audit, its commit not waiting for the WAL flush** (a diagnostic, interleaved "
            "with the two variants above, `synchronous_commit = off` set and reset outside the timed call; "
            "never how the service runs): what the audit costs apart from the disk's flush; pooled p50 / p95 ms, "
            "then the overhead over no audit at p50, p95 of the median block. "
            + "; ".join(
                f"{USER_LABELS.get(key, key)}: {_pp(user['read']['audited_no_flush_wait'])} ms, "
                f"{read_overhead(user, 'p50', 'audited_no_flush_wait'):+.0%}, "
                f"{read_overhead(user, 'p95', 'audited_no_flush_wait'):+.0%} over no audit "
                f"(as built: {read_overhead(user, 'p50'):+.0%}, {read_overhead(user, 'p95'):+.0%})"
                for key, user in diagnosed
            )
            + ".",
        ]
    lines += [
        "",
        "**HTTP request** = the same GET through `django.test.Client` with `Authorization: Token ...`: URL "
        "routing, every middleware and DRF's token lookup, no network; what a client waits for short of the "
        "socket. Reported for the operator; the verdict stays on the whole read through the view, the stricter "
        "of the two.",
    ]
    lines += ["", "**EXPLAIN (ANALYZE, BUFFERS)**, once after the timings:", ""]
    for key, plans in measured["explain"].items():
        for name, label in (
            ("filtered_pupil", "filtered, one pupil"),
            ("peer_generic_pupil", "guardian generic peer, one pupil"),
            ("peer_pupil", "guardian direct peer, one pupil"),
            ("filtered_all", "filtered, all visible (the feed's walk)"),
            ("filtered_all_jit_off", "filtered, all visible (the feed's walk), `SET LOCAL jit = off`"),
            ("unfiltered_all", "unfiltered, all items"),
        ):
            lines.append(f"- {USER_LABELS.get(key, key)}, {label}: {_plan_summary(plans[name]['plan'])}")
    if any(
        min(t["n"] for t in user[scope].values()) < plan.reps
        for user in measured["users"].values()
        for scope in ("per_pupil", "all_items")
    ):
        lines += ["", f"(n=...) marks a variant stopped after {plan.budget_s:.0f} s of measured calls."]
    lines += [
        "",
        f"Run: `DATABASE_URL=postgres://... python -m bench.bench_access{' --quick' if quick else ''}` "
        f"({'10 % of the full size, ' if quick else ''}{plan.reps} repetitions after {plan.warmup} warm-up, "
        f"the whole read and the HTTP request with and without audit {plan.reps * READ_REPS_FACTOR:,} "
        "(`READ_REPS_FACTOR`: a difference of a few tenths of a millisecond needs more samples for a stable p95), "
        "variants interleaved, each round in a seeded random order: `_access_measure.ORDER_SEED`). "
        "Each sample is the wall time of building the queryset and "
        '`list()` of `order_by("-created_at", "id")[:50]` in one Django process (`DJANGO_DEBUG=false`, one '
        "persistent connection, loopback, the project's settings: the per-pupil list and the decision with its "
        "audit event are bound on the server and prepared after five runs, everything else, the unfiltered queries and "
        "the peers included, is bound on the client as Django does; docs/operations.md); `item_list_for_user` is "
        "one statement (the memberships are joined inside it; the policy table's codes are literals in its text, "
        "per call only the user, the clock, the pupil and guardian's permission id are bound). Peers = "
        '`guardian.shortcuts.get_objects_for_user(u, "exchange.view_pupilitem", klass=PupilItem, '
        "accept_global_perms=False)`: **generic** on guardian's `GroupObjectPermission`/`UserObjectPermission` "
        "(`object_pk` text + content type; guardian's own query, with only its choice of table model switched; "
        f"{load['counts']['generic_group_rows']:,} group rows copied from the direct table, then analysed), the "
        "issue's peer and the one the target is judged on; **direct** on the project's direct-FK "
        "`PupilItemGroupObjectPermission` table, which guardian picks for `PupilItem` by default. "
        "Ratios and targets on p95. Checked before timing: for every measured pupil the filtered page is compared "
        "with an independent in-Python reading of `POLICY` over the ledger and the guardian rows (as the "
        "authorization-matrix test does): "
        + "; ".join(
            f"{USER_LABELS.get(key, key).split(' (')[0]}: {user['checks']['pupils_checked']} pupils, "
            f"{user['checks']['mismatches']} differing, rules seen {', '.join(user['checks']['rules'])}"
            for key, user in measured["users"].items()
        )
        + "; the generic peer returned the same page for "
        + ", ".join(
            f"{user['checks']['pupils_checked'] - user['checks']['peer_generic_differs']} of "
            f"{user['checks']['pupils_checked']} pupils"
            for user in measured["users"].values()
        )
        + "; the feed's first page equals `item_list_for_user`'s: "
        + ", ".join("yes" if user["checks"].get("feed_same_page") else "no" for user in measured["users"].values())
        + ", and the generic peer's: "
        + ", ".join(
            "yes" if user["checks"].get("feed_generic_peer_same_page") else "no" for user in measured["users"].values()
        )
        + "; the audited and unaudited decisions name the same rule, and the whole read returns the same body "
        "with and without audit. Server: "
        + ", ".join(f"{k} {v}" for k, v in server.items() if k != "server_version")
        + f". Load average (1, 5, 15 min) before loading and after measuring: {loadavg}.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary and write the docs/performance.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 %% of the data and 50 repetitions")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--phase", choices=["load", "measure"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--budget-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase == "load":
        from bench import _access_load

        _access_load.run(scale=args.scale, result=args.result)
        return 0
    if args.phase == "measure":
        from bench import _access_measure

        _access_measure.run(
            load=args.load, reps=args.reps, warmup=args.warmup, budget_s=args.budget_s, result=args.result
        )
        return 0

    database_url = os.environ.get("DATABASE_URL", "")
    if urlsplit(database_url).scheme not in POSTGRES_SCHEMES:
        sys.stderr.write(
            "bench_access needs PostgreSQL: set DATABASE_URL to a server where it may create and drop a "
            "database, e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres\n"
        )
        return 2

    plan = QUICK if args.quick else FULL
    _say(f"Machine: {machine_description()}")
    server = _server_settings(database_url)
    _say(f"Server: {server}")
    started = time.perf_counter()
    loadavg_before = _load_average()
    signal.signal(signal.SIGTERM, _raise_exit)
    workdir = Path(tempfile.mkdtemp(prefix="bench-access-"))
    try:
        with _postgres_database(database_url) as url:
            env = _django_env(workdir / "var", url)
            _say("migrate")
            _run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env, "migrate")
            _say(f"loading data (scale {plan.scale:g})")
            load = _run_phase("load", env, workdir, scale=plan.scale)
            (workdir / "load.json").write_text(json.dumps(load), encoding="utf-8")
            _say("checkpoint")
            load["checkpoint"] = _checkpoint(database_url)
            _say(load["checkpoint"])
            _say(f"measuring ({plan.reps} repetitions, {plan.warmup} warm-up)")
            measured = _run_phase(
                "measure",
                env,
                workdir,
                load=workdir / "load.json",
                reps=plan.reps,
                warmup=plan.warmup,
                budget_s=plan.budget_s,
            )
        loadavg = f"{loadavg_before} / {_load_average()}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for key, plans in measured["explain"].items():
        for name, explained in plans.items():
            _say(f"\n--- EXPLAIN (ANALYZE, BUFFERS) {key} {name}\n{explained['sql']}\n" + "\n".join(explained["plan"]))
    body = render(load, measured, plan, quick=args.quick, server=server, loadavg=loadavg)
    _say("\n" + body)
    if not args.no_write:
        write_section(name="access", title="Need to know: permission-filtered lists on PostgreSQL", body_markdown=body)
        _say("Wrote the 'access' section of docs/performance.md")
    _say(f"Total {time.perf_counter() - started:.0f} s")
    ok = all(targets_met(user) for user in measured["users"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
