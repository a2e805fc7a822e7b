"""Benchmark a September wave of school changes on PostgreSQL: handovers planned and executed in bulk.

Run from the project root (PostgreSQL is required; trust or password in the URL)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.bench_wave            # 10k, 50k, 100k
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.bench_wave --quick    # 2k, 5k, 10k
    DATABASE_URL=... python -m bench.bench_wave --sizes 10000,50000

Results are written to the ``wave`` block of docs/performance.md. A database ``bench_wave_<random>``
is created on the server of ``DATABASE_URL`` and migrated (``manage.py migrate``); every measured
run gets its own copy of it (``CREATE DATABASE ... TEMPLATE``), so each size starts from a fresh
schema and an empty audit chain. All of them are dropped at the end, also on failure or SIGTERM;
the database named in the URL is only used to create and drop them.

Per size N (``bench/_wave_load.py``, untimed): 400 schools, 100 CLBs, N pupils each enrolled at
an old school with 8 items (4 held by the school, 4 by its CLB) with real wrapped DEKs, holder
and T-SCH-2 grants and their django-guardian rows, all bulk-loaded.

Timed (``bench/_wave_measure.py``), in one child process per size:

* **enrol**: the old enrolments end on 31 August (one ``UPDATE``), next school year's enrolments
  at the new schools are written with ``bulk_create``;
* **planning**: ``exchange.handover.handover_plan_for_enrolments`` per batch of 500 enrolments, one
  transaction each (as ``import_enrolments`` does with an enrolment-database export). The
  enrolments start on 1 September of the next school year, so planning grants nothing (T-CLB-5)
  and the objection deadline is that 1 September too;
* **sweep**: ``exchange.handover.handover_sweep(batch_size=500, now=1 September 00:00:01)`` until
  nothing is due: each handover is claimed once and, its objection window having closed by then,
  moves its mandatory and its objectable items in the same pass (what the beat runs that night).
  Between planning and the sweep (untimed) ``handover_tables_analyze()`` refreshes the planner
  statistics, as autovacuum does in the weeks between the summer's enrolments and 1 September.

Checked afterwards (untimed): every handover executed; handover grants = plan rows =
``COUNT(DISTINCT (item, organisation, basis, source))``; every plan row has its grant and a wrap
for the grantee; the CLB dossiers followed (T-CLB-6); the guardian projection equals
``expected_projection`` on 200 sampled items; ``permissions.audit.audit_verify()`` is intact; a
later sweep finds nothing.

Each timed phase is also metered (``_wave_measure.Meter``): SQL statements and the time spent
waiting for them, Python's GC time, WAL bytes and full-page images, so the report shows where a
change's milliseconds go; and planning is timed per 1,000 changes to show drift within a run.

Baseline, same run, at the smallest size (at most 2,000 changes; 1,000 with ``--quick``): the
same enrolment, planning one enrolment per transaction (``handover_plan_for_enrolment``, as the API
registers a single change), then the execution one ``save()`` per row
(``_wave_measure.execute_row_by_row``).
Profile: another copy at the baseline size, each phase under cProfile with its SQL query count,
and a sample of the product's full per-enrolment service ``enrolment_register`` for comparison.

Other benchmarks on the same machine skew the timings: before each part the run waits (polling
every 20 s, at most 20 minutes) until no ``bench_access``/``bench_store``/``bench_crypto`` runs
(``--no-wait`` skips this), and the report says if one ran meanwhile. ``--save-results FILE``
keeps the raw figures; ``--from-results FILE`` renders (and writes) the report again from them.

Targets: 100k changes planned and executed in <= 600 s on this 2-core machine; per-change cost
at the largest size <= 1.2x the cost at the smallest; bulk >= 10x faster than the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from bench._report import machine_description, write_section

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")

FULL_SIZES = (10_000, 50_000, 100_000)
QUICK_SIZES = (2_000, 5_000, 10_000)
FULL_SIDE_SIZE = 2_000  # baseline and profile
QUICK_SIDE_SIZE = 1_000
SERVICE_SAMPLE = 200  # pupils for the enrolment_register comparison (half each way)
TARGET_SIZE = 100_000
TARGET_TOTAL_S = 600.0
TARGET_MAX_SCALING = 1.2
TARGET_MIN_SPEEDUP = 10.0
PHASES = ("enrol", "planning", "sweep")
OTHER_BENCHMARKS_RE = re.compile(r"bench[./]bench_(access|store|crypto)\b")


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"bench_wave: {message}\n")
    raise SystemExit(2)


# --------------------------------------------------------------------------------------------
# Databases and child processes
# --------------------------------------------------------------------------------------------


def _admin_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme in POSTGRES_SCHEMES else parts.scheme
    return urlunsplit(
        (scheme, parts.netloc, parts.path if parts.path not in {"", "/"} else "/postgres", parts.query, "")
    )


def _database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


class Databases:
    """Creates and drops ``bench_wave_<random>`` (migrated) and its per-run copies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = _admin_url(url)
        self.base = f"bench_wave_{secrets.token_hex(6)}"
        self.created: list[str] = []

    def _execute(self, statement: Any) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(statement)

    def create(self, name: str, template: str | None = None) -> str:
        from psycopg import errors, sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        for attempt in range(10):
            try:
                self._execute(statement)
                break
            except errors.ObjectInUse:  # e.g. autovacuum still connected to the template
                if attempt == 9:
                    raise
                time.sleep(1)
        self.created.append(name)
        return _database_url(self.url, name)

    def drop(self, name: str) -> None:
        from psycopg import sql

        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in reversed(list(self.created)):
            try:
                self.drop(name)
            except Exception as exc:  # keep dropping the others
                _say(f"could not drop database {name}: {exc}")

    @contextlib.contextmanager
    def copy(self, label: str) -> Iterator[str]:
        name = f"{self.base}_{label}"
        url = self.create(name, template=self.base)
        try:
            yield url
        finally:
            self.drop(name)


def _django_env(var_dir: Path, database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("LP_KEKS", "LP_KEKS_FILE", "LP_OBJECT_STORAGE_BUCKET", "DJANGO_EMAIL_BACKEND"):
        env.pop(name, None)
    var_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        DJANGO_DEBUG="false",  # with DEBUG on, Django keeps every SQL statement
        CELERY_BROKER_URL="memory://",  # the on-commit enqueueing goes nowhere
        DJANGO_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        LP_VAR_DIR=str(var_dir),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def _other_benchmarks() -> list[str]:
    """Command lines of other benchmarks running on this machine (they would skew our timings)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if OTHER_BENCHMARKS_RE.search(cmdline):
            found.append(cmdline)
    return found


def wait_for_others(*, poll_s: float = 20.0, max_s: float = 1200.0) -> float:
    """Wait (polling) until no other benchmark runs, at most ``max_s``; returns the seconds waited."""
    started = time.monotonic()
    while _other_benchmarks() and time.monotonic() - started < max_s:
        _say(f"waiting for other benchmarks to finish: {_other_benchmarks()[0][:100]}")
        time.sleep(poll_s)
    return time.monotonic() - started


class Watcher:
    """Samples, every few seconds while a child runs, the load average and other benchmarks running."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples = 0
        self.busy_samples = 0
        self.seen: set[str] = set()
        self.max_load = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            others = _other_benchmarks()
            self.samples += 1
            if others:
                self.busy_samples += 1
                self.seen.update(" ".join(cmd.split()[:4])[:80] for cmd in others)
            with contextlib.suppress(OSError):
                self.max_load = max(self.max_load, os.getloadavg()[0])
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        return {
            "other_benchmarks_s": self.busy_samples * self.interval_s,
            "other_benchmarks": sorted(self.seen),
            "max_load_1min": self.max_load,
        }


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    """Run a child in the project root; its output goes to ours. Raise on failure."""
    done = subprocess.run(args, cwd=PROJECT_ROOT, env=env, check=False)  # noqa: S603 - our own interpreter
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed with exit code {done.returncode} (see its output above)")


def _run_phase(phase: str, env: dict[str, str], workdir: Path, *, wait: bool, **options: Any) -> dict[str, Any]:
    """Run ``python -m bench.bench_wave --phase PHASE`` (after other benchmarks, if ``wait``); its JSON result."""
    result = workdir / f"{phase}-{uuid.uuid4().hex}.json"
    args = [PYTHON, "-m", "bench.bench_wave", "--phase", phase, "--result", str(result)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    waited = wait_for_others() if wait else 0.0
    with Watcher() as watcher:
        _run(args, env, f"phase {phase} {options}")
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    data["environment"] = watcher.summary() | {"waited_s": waited}
    return data


# --------------------------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from bench import _wave_load, _wave_measure

    extra = SERVICE_SAMPLE if args.phase == "profile" else 0
    _say(f"  [{args.phase}] loading {args.size:,} pupils (+{extra} for the service sample)")
    loaded = _wave_load.load(pupils=args.size, extra_pupils=extra)
    _say(
        f"  [{args.phase}] loaded in {loaded.seconds:.1f} s: {loaded.items:,} items, {loaded.wraps:,} wraps, "
        f"{loaded.grants:,} grants, {loaded.guardian_rows:,} guardian rows"
    )
    data: dict[str, Any]
    if args.phase == "size":
        result = _wave_measure.run_wave(size=args.size, load_s=loaded.seconds, full_audit=args.audit == "full")
        data = _wave_measure.to_json(result)
    elif args.phase == "baseline":
        data = _wave_measure.to_json(_wave_measure.run_baseline(size=args.size, load_s=loaded.seconds))
    else:
        data = _wave_measure.to_json(_wave_measure.run_profile(size=args.size, extra=extra))
    data["load_steps"] = loaded.steps
    data["server"] = _server_settings()
    Path(args.result).write_text(json.dumps(data, default=str), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------------------------
# Results and report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeRow:
    size: int
    data: dict[str, Any]

    @property
    def seconds(self) -> dict[str, float]:
        d = self.data
        return {
            "enrol": d["enrol_s"],
            "planning": d["plan_s"],
            "sweep": d["sweep_s"],
        }

    @property
    def total_s(self) -> float:
        return float(self.data["total_s"])

    @property
    def per_change_ms(self) -> float:
        return self.total_s / self.size * 1000

    @property
    def execution_ms(self) -> float:
        s = self.seconds
        return s["sweep"] / self.size * 1000


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _checks_text(checks: dict[str, Any]) -> str:
    states = ", ".join(f"{state} {count:,}" for state, count in sorted(checks["by_state"].items()))
    parts = [
        f"handovers: {states}",
        f"grants {checks['grants']:,} = plan {checks['plan_rows']:,} = distinct {checks['distinct_grants']:,}"
        if checks["grants"] == checks["plan_rows"] == checks["distinct_grants"]
        else f"grants {checks['grants']:,} / plan {checks['plan_rows']:,} / distinct "
        f"{checks['distinct_grants']:,} DIFFER",
        f"plan rows without grant {checks['plan_rows_without_grant']}",
        f"grantee wraps {checks['wraps_for_grantees']:,}",
        f"dossiers moved {checks['dossiers_moved']:,}/{checks['dossiers']:,}",
        f"guardian sample {'equal' if checks['projection_sample_ok'] else 'DIFFERENT'}",
        f"audit {checks['audit_events']:,} events "
        + ("intact" if checks["audit_ok"] else f"BROKEN {checks['audit_detail']}")
        + f" ({checks['audit_method']}, {checks['audit_s']:.0f} s)",
        f"later sweep {checks['later_sweep_mandatory']}/{checks['later_sweep_executed']}",
    ]
    return "; ".join(parts)


def _meter_row(label: str, size: int, phase: str, seconds: float, meter: dict[str, Any]) -> str:
    per = 1000 / size  # seconds per run -> ms per change
    other = seconds - meter["sql_s"] - meter["gc_s"]
    return (
        f"| {label} | {size:,} | {phase} | {seconds * per:.2f} | {meter['statements'] / size:.1f} "
        f"| {meter['sql_s'] * per:.2f} | {meter['gc_s'] * per:.2f} ({meter['gc_full']}) | {other * per:.2f} "
        f"| {meter['wal_bytes'] / size / 1024:.1f} | {meter['wal_fpi'] / size:.1f} |"
    )


def _render_meters(rows: list[SizeRow], baseline: dict[str, Any] | None) -> list[str]:
    metered = [row for row in rows if row.data.get("meters")]
    if not metered:
        return []
    lines = [
        "",
        "**Where the time goes**, per change: SQL = time the client waits for its statements (server work plus "
        "round trip, commits included), GC = Python's cyclic garbage collector (number of full collections), "
        "Python = the rest (ORM, crypto, Celery publishing, the benchmark's few microseconds of metering); WAL "
        "bytes from the WAL insert position, full-page images from `pg_stat_wal` (both cluster-wide).",
        "",
        "| run | N | phase | ms | SQL statements | SQL ms | GC ms (full) | Python ms | WAL KiB | full-page images |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in metered:
        for phase in ("planning", "sweep"):
            meter = row.data["meters"].get(phase)
            if meter:
                lines.append(_meter_row("bulk", row.size, phase, row.seconds[phase], meter))
    if baseline is not None and baseline.get("meters", {}).get("execution"):
        lines.append(
            _meter_row(
                "row by row", baseline["size"], "execution", baseline["execute_s"], baseline["meters"]["execution"]
            )
        )
    largest = metered[-1]
    phases = [p for p in ("planning", "sweep") if p in largest.data["meters"]]
    timed = sum(largest.seconds[p] for p in phases)
    sql = sum(largest.data["meters"][p]["sql_s"] for p in phases)
    collected = sum(largest.data["meters"][p]["gc_s"] for p in phases)
    if timed > 0:
        lines += [
            "",
            f"At N = {largest.size:,}: "
            + ", ".join(f"{p} {largest.seconds[p] / timed:.0%}" for p in phases)
            + f" of the planned-and-executed time; of that time {sql / timed:.0%} is waiting for SQL, "
            f"{collected / timed:.0%} garbage collection and {(timed - sql - collected) / timed:.0%} other Python "
            "in the process itself.",
        ]
    return lines


def _drift_text(data: dict[str, Any]) -> str:
    chunks = data.get("plan_chunks_ms") or []
    if len(chunks) < 2:
        return "planning drift n/a"
    low, high = min(chunks), max(chunks)
    return (
        f"planning per 1,000 changes: first {chunks[0]:.1f}, last {chunks[-1]:.1f}, "
        f"min {low:.1f}, max {high:.1f} ms per change"
    )


SERVER_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "wal_compression",
    "synchronous_commit",
    "fsync",
)


def _server_settings() -> dict[str, str]:
    """The PostgreSQL settings that shape a write-heavy run, as the child's connection sees them."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", [list(SERVER_SETTINGS)]
        )
        return dict(cursor.fetchall())


def _server_text(rows: list[SizeRow]) -> str:
    server = next((row.data.get("server") for row in rows if row.data.get("server")), None)
    if not server:
        return "settings not recorded"
    return ", ".join(f"`{name}={server[name]}`" for name in SERVER_SETTINGS if name in server) + (
        " (docs/operations.md: a wave wants room between checkpoints)"
    )


def _environment_text(data: dict[str, Any]) -> str:
    env = data.get("environment") or {}
    if not env:
        return "machine load not recorded"
    others = env.get("other_benchmarks_s", 0.0)
    text = f"max 1-min load average {env.get('max_load_1min', 0.0):.1f}"
    if others:
        return (
            text + f"; **other benchmarks ran for about {others:.0f} s of it** ({', '.join(env['other_benchmarks'])})"
        )
    return text + "; no other benchmark ran meanwhile"


def _projection(rows: list[SizeRow], size: int) -> float:
    """Total seconds at ``size``: linear through the two largest sizes (or proportional to one)."""
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        slope = (b.total_s - a.total_s) / (b.size - a.size)
        return b.total_s + slope * (size - b.size)
    return rows[-1].per_change_ms * size / 1000


def render(
    rows: list[SizeRow],
    baseline: dict[str, Any] | None,
    profile: dict[str, Any] | None,
    *,
    quick: bool,
    sizes: list[int],
    failures: list[str],
    command: str,
    wall_s: float = 0.0,
) -> tuple[str, bool]:
    lines: list[str] = []
    lines += [
        "A September wave: N pupils change school at once. Each pupil's old school and its CLB hold 8 items "
        "(school: report, career, attendance, discipline; CLB: identification, report, guidance, medical) "
        "with real wrapped DEKs; a change plans 2 handovers (school, CLB) of 7 items (discipline never moves, "
        "T-SCH-4): 5 mandatory, 2 objectable. PostgreSQL, one fresh database per size; per-change = total / N.",
        "",
        "| changes N | handovers | grants created | set-up s (untimed) | enrol s | planning s | sweep s "
        "| **total s** | **per change ms** | changes/s | checks |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        d, s = row.data, row.seconds
        lines.append(
            f"| {row.size:,} | {d['handovers']:,} | {d['grants_created']:,} | {d['load_s']:.0f} | {s['enrol']:.1f} "
            f"| {s['planning']:.1f} | {s['sweep']:.1f} | **{row.total_s:.1f}** "
            f"| **{row.per_change_ms:.2f}** | {row.size / row.total_s:,.0f} | "
            f"{'all passed' if d['checks']['ok'] else 'FAILED'} |"
        )
    lines.append("")
    for row in rows:
        lines.append(
            f"- N = {row.size:,}: {_checks_text(row.data['checks'])}; peak RSS {row.data['peak_rss_mib']:.0f} MiB; "
            f"{_drift_text(row.data)}; {_environment_text(row.data)}."
        )

    lines += _render_meters(rows, baseline)

    ok = bool(rows) and not failures and all(row.data["checks"]["ok"] for row in rows)
    speedup_exec = speedup_total = None
    if baseline is not None:
        b_size = baseline["size"]
        b_exec_ms = baseline["execute_s"] / b_size * 1000
        b_plan_ms = baseline["plan_s"] / b_size * 1000
        b_total_ms = baseline["total_s"] / b_size * 1000
        lines += [
            "",
            f"**Baseline** (same run, N = {b_size:,}, its own fresh database): the same enrolment, planning one "
            "enrolment per transaction (`handover_plan_for_enrolment`, as the API registers a single change), then "
            "the execution one `save()` per row: per handover (one transaction, row lock) and per planned item "
            "`Grant(...).save()`, the holder's wrap read and unwrapped and the DEK wrapped for the new organisation "
            "(`WrappedKey(...).save()`), one `PupilItemGroupObjectPermission(...).save()` per role group "
            "(`roles_reading`, group by `role_group`), one `audit_append` per grant; then the dossier, the handover's "
            "state and its two events saved.",
            "",
            "| | N | planning ms/change | execution ms/change | total ms/change | checks |",
            "|---|---:|---:|---:|---:|---|",
            f"| row by row (baseline) | {b_size:,} | {b_plan_ms:.2f} | {b_exec_ms:.2f} | {b_total_ms:.2f} "
            f"| {'all passed' if baseline['checks']['ok'] else 'FAILED'} |",
        ]
        for row in rows:
            lines.append(
                f"| bulk (`handover_sweep`) | {row.size:,} | {row.seconds['planning'] / row.size * 1000:.2f} "
                f"| {row.execution_ms:.2f} | {row.per_change_ms:.2f} | |"
            )
        lines.append("")
        lines.append(f"- baseline checks: {_checks_text(baseline['checks'])}; {_environment_text(baseline)}.")
        ok = ok and bool(baseline["checks"]["ok"])
        if rows:
            smallest = rows[0]
            speedup_exec = b_exec_ms / smallest.execution_ms
            speedup_total = b_total_ms / smallest.per_change_ms

    lines += ["", "**Targets**", "", "| target | measured | result |", "|---|---|---|"]
    if rows:
        largest, smallest = rows[-1], rows[0]
        if largest.size >= TARGET_SIZE:
            at_target = largest.total_s * TARGET_SIZE / largest.size
            how = f"{largest.total_s:.0f} s at {largest.size:,}" + (
                f" (= {at_target:.0f} s per {TARGET_SIZE:,})" if largest.size != TARGET_SIZE else ""
            )
        else:
            at_target = _projection(rows, TARGET_SIZE)
            how = (
                f"**extrapolated** {at_target:.0f} s (not measured: largest size {largest.size:,}; linear through the "
                f"{'two largest sizes' if len(rows) >= 2 else 'largest size'})"
            )
        total_ok = at_target <= TARGET_TOTAL_S
        scaling = largest.per_change_ms / smallest.per_change_ms
        scaling_ok = scaling <= TARGET_MAX_SCALING
        lines.append(
            f"| {TARGET_SIZE:,} changes planned + executed <= {TARGET_TOTAL_S:.0f} s | {how} | {_met(total_ok)} |"
        )
        lines.append(
            f"| per change at {largest.size:,} <= {TARGET_MAX_SCALING}x at {smallest.size:,} "
            f"| {largest.per_change_ms:.2f} / {smallest.per_change_ms:.2f} ms = {scaling:.2f}x | {_met(scaling_ok)} |"
        )
        ok = ok and total_ok and scaling_ok
        if speedup_exec is not None and speedup_total is not None and baseline is not None:
            speed_ok = speedup_total >= TARGET_MIN_SPEEDUP
            lines.append(
                f"| bulk >= {TARGET_MIN_SPEEDUP:.0f}x the row-by-row baseline (the whole flow: planning + execution) "
                f"| {speedup_total:.1f}x (baseline {baseline['total_s'] / baseline['size'] * 1000:.2f} ms at "
                f"{baseline['size']:,} vs bulk {smallest.per_change_ms:.2f} ms at {smallest.size:,}); "
                f"execution alone: {speedup_exec:.1f}x | {_met(speed_ok)} |"
            )
            ok = ok and speed_ok
    if rows and (quick or rows[-1].size < TARGET_SIZE):
        projected = {n: _projection(rows, n) for n in FULL_SIZES}
        setup_s_per_change = rows[-1].data["load_s"] / rows[-1].size
        full_run_s = sum(projected.values()) + setup_s_per_change * sum(FULL_SIZES)
        lines += [
            "",
            f"The {TARGET_SIZE:,} target is **extrapolated**: sizes run were {', '.join(f'{n:,}' for n in sizes)}"
            + (" (`--quick`)" if quick else "")
            + ". Projected on this machine (linear through the largest measured sizes): "
            + ", ".join(f"{n:,} changes {projected[n] / 60:.0f} min" for n in FULL_SIZES)
            + f"; the full default run (with set-up, without baseline and profile) about {full_run_s / 60:.0f} min"
            + (f" (this run took {wall_s / 60:.0f} min in all)." if wall_s else "."),
        ]

    if profile is not None:
        lines += _render_profile(profile, rows)
    lines += [f"\n{failure.rstrip('.')}." for failure in failures]
    lines += [
        "",
        f"Run: `{command}`. Method: `config.settings.dev` with `DJANGO_DEBUG=false`, `CELERY_BROKER_URL=memory://` "
        "(the on-commit `handover_notify_many` messages, one per 100 handovers, are published to kombu's in-memory "
        "transport, no worker consumes them; the sweeps' `outbox_resend` re-publishes up to 1,000 of them each), "
        f"development keyring. PostgreSQL server: {_server_text(rows)}. "
        "Set-up per size (untimed; `bench/_wave_load.py`): organisations, agreements and "
        "role groups with `bulk_create`; pupils (real sealed identities, about 14 years old), old enrolments, "
        "dossiers, items, versions and holder wraps (real wraps of random DEKs) with `COPY`; holder and T-SCH-2 "
        "grants and their guardian rows with `INSERT ... SELECT`; then `VACUUM (ANALYZE)` and a `CHECKPOINT` (so that "
        "the set-up's WAL is not checkpointed inside the timed wave of the larger sizes only). Pupils have no parent "
        "records, so the school handover's notice (to the parents, CAP-3) has no addressee; the CLB handover's goes "
        "to the capable pupil. `enrolment_register` itself is not called in the wave (it would also take the pupil "
        "lock, check overlaps and write the T-SCH-2 enrolment grants of the reports to the new school); its cost "
        "is sampled in the profile run.",
    ]
    return "\n".join(lines), ok


def _render_profile(profile: dict[str, Any], rows: list[SizeRow]) -> list[str]:
    size = profile["size"]
    seconds, queries = profile["seconds"], profile["queries"]
    reference = rows[-1] if rows else None
    if reference is not None:
        order = sorted(("planning", "sweep"), key=lambda p: -reference.seconds[p])
        why = f"slowest at N = {reference.size:,}: {order[0]} ({reference.seconds[order[0]]:.1f} s)"
    else:
        order = sorted(("planning", "sweep"), key=lambda p: -seconds[p])
        why = f"slowest in the profile run: {order[0]}"
    lines = [
        "",
        f"**Profile** (separate fresh database, N = {size:,}; cProfile slows Python down, so these seconds are not "
        f"the timings above; {why}; {_environment_text(profile)}). SQL statements per change (counted with "
        "`connection.execute_wrapper`):",
        "",
        "| phase | profiled s | SQL statements | statements per change |",
        "|---|---:|---:|---:|",
    ]
    for phase in ("planning", "sweep"):
        lines.append(f"| {phase} | {seconds[phase]:.1f} | {queries[phase]:,} | {queries[phase] / size:.1f} |")
    if profile.get("service_sample"):
        lines += [
            "",
            f"The product's full per-enrolment service, `enrolment_register(..., ends_previous=True)` (pupil lock, "
            f"overlap check, ending the old enrolment, T-SCH-2 enrolment grants, planning), costs "
            f"{profile['service_s'] * 1000:.2f} ms per change against {profile['plan_only_s'] * 1000:.2f} ms for "
            f"`handover_plan_for_enrolment` alone (sample of {profile['service_sample'] // 2} + "
            f"{profile['service_sample'] - profile['service_sample'] // 2} pupils outside the profiled wave).",
        ]
    tables = profile["tables"]
    for rank, phase in enumerate(order):
        label = "slowest phase" if rank == 0 else "for comparison"
        blocks = [(f"cProfile: {phase} ({label}), top 15 functions by cumulative time", tables[phase])]
        if f"{phase}:product" in tables:
            blocks.append(
                (
                    f"cProfile: {phase}, the product's own functions (exchange, permissions, consent) and "
                    "Celery's `delay`, top 15 by cumulative time",
                    tables[f"{phase}:product"],
                )
            )
        for summary, table in blocks:
            lines += ["", f"<details><summary>{summary}</summary>", "", "```text", table, "```", "", "</details>"]
    return lines


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _raise_exit(signum: int, frame: types.FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        _fail(f"--sizes must be comma-separated integers, not {text!r}")
    if not sizes or sizes[0] < 10:
        _fail("--sizes needs at least one size >= 10")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary and write the ``wave`` section of docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="sizes 2k, 5k, 10k; baseline and profile at 1k")
    parser.add_argument("--sizes", help="comma-separated numbers of school changes (default 10000,50000,100000)")
    parser.add_argument("--baseline-size", type=int, help="changes for the row-by-row baseline (default <= 2,000)")
    parser.add_argument("--profile-size", type=int, help="changes for the profile run (default = baseline size)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile run")
    parser.add_argument(
        "--audit",
        choices=["full", "sequence"],
        default="full",
        help="check afterwards with audit_verify() (full) or only that the sequence is contiguous",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="do not wait (up to 20 min before each part) for other benchmarks (bench_access/store/crypto) to finish",
    )
    parser.add_argument("--save-results", type=Path, help="also write the raw results to this JSON file")
    parser.add_argument(
        "--from-results", type=Path, help="render (and write) the report from a --save-results file; runs nothing"
    )
    # Internal: the child phases that run Django.
    parser.add_argument("--phase", choices=["size", "baseline", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase:
        return _child(args)
    if args.from_results:
        saved = json.loads(args.from_results.read_text(encoding="utf-8"))
        return _report(saved, write=not args.no_write)

    url = os.environ.get("DATABASE_URL", "")
    if not url:
        _fail(
            "DATABASE_URL is not set. This benchmark needs PostgreSQL, e.g.\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python -m bench.bench_wave [--quick]\n"
            "(a database bench_wave_<random> is created there and dropped afterwards)."
        )
    if urlsplit(url).scheme not in POSTGRES_SCHEMES:
        _fail(f"DATABASE_URL must point to PostgreSQL (postgres://...), not {urlsplit(url).scheme}://")

    sizes = _parse_sizes(args.sizes) if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    side = min(QUICK_SIDE_SIZE if args.quick else FULL_SIDE_SIZE, sizes[0])
    baseline_size = args.baseline_size or side
    profile_size = args.profile_size or baseline_size
    command = (
        "python -m bench.bench_wave"
        + (" --quick" if args.quick else "")
        + (f" --sizes {args.sizes}" if args.sizes else "")
    )

    signal.signal(signal.SIGTERM, _raise_exit)
    _say(f"Machine: {machine_description()}")
    _say(f"Sizes {sizes}; baseline {baseline_size:,}; profile {'-' if args.no_profile else f'{profile_size:,}'}")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-wave-"))
    databases = Databases(url)
    rows: list[SizeRow] = []
    baseline: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    failures: list[str] = []
    try:
        base_url = databases.create(databases.base)
        _say(f"Created {databases.base}; migrating")
        _run(
            [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"],
            _django_env(workdir / "var-migrate", base_url),
            "manage.py migrate",
        )
        with databases.copy("baseline") as db_url:
            _say(f"Baseline: {baseline_size:,} changes, row by row")
            try:
                baseline = _run_phase(
                    "baseline",
                    _django_env(workdir / "var-baseline", db_url),
                    workdir,
                    wait=args.wait,
                    size=baseline_size,
                )
            except RuntimeError as exc:
                failures.append(f"Baseline: not measured, {exc}")
        for size in sizes:
            with databases.copy(f"n{size}") as db_url:
                _say(f"Wave of {size:,} changes")
                try:
                    data = _run_phase(
                        "size",
                        _django_env(workdir / f"var-{size}", db_url),
                        workdir,
                        wait=args.wait,
                        size=size,
                        audit=args.audit,
                    )
                except RuntimeError as exc:
                    failures.append(f"N = {size:,}: not measured, {exc}")
                    continue
                row = SizeRow(size=size, data=data)
                rows.append(row)
                _say(
                    f"N = {size:,}: total {row.total_s:.1f} s = {row.per_change_ms:.2f} ms per change "
                    f"(enrol {row.seconds['enrol']:.1f}, planning {row.seconds['planning']:.1f}, sweep "
                    f"{row.seconds['sweep']:.1f}); checks "
                    f"{'passed' if data['checks']['ok'] else 'FAILED'}"
                )
        if not args.no_profile:
            with databases.copy("profile") as db_url:
                _say(f"Profile: {profile_size:,} changes under cProfile")
                try:
                    profile = _run_phase(
                        "profile",
                        _django_env(workdir / "var-profile", db_url),
                        workdir,
                        wait=args.wait,
                        size=profile_size,
                    )
                except RuntimeError as exc:
                    failures.append(f"Profile: not made, {exc}")
    finally:
        databases.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    saved = {
        "rows": [{"size": row.size, "data": row.data} for row in rows],
        "baseline": baseline,
        "profile": profile,
        "quick": args.quick,
        "sizes": sizes,
        "failures": failures,
        "command": command,
        "wall_s": time.perf_counter() - started,
    }
    if args.save_results:
        args.save_results.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    status = _report(saved, write=not args.no_write)
    _say(f"Total {time.perf_counter() - started:.0f} s")
    return status


def _report(saved: dict[str, Any], *, write: bool) -> int:
    rows = [SizeRow(size=int(row["size"]), data=row["data"]) for row in saved["rows"]]
    body, ok = render(
        rows,
        saved["baseline"],
        saved["profile"],
        quick=bool(saved["quick"]),
        sizes=[int(n) for n in saved["sizes"]],
        failures=list(saved["failures"]),
        command=str(saved["command"]),
        wall_s=float(saved.get("wall_s") or 0.0),
    )
    _say("")
    _say(body)
    if write:
        write_section(name="wave", title="September wave: handovers planned and executed", body_markdown=body)
        _say("Wrote the 'wave' section of docs/performance.md")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
