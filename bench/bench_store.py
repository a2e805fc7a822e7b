"""Benchmark the file store: server memory on large uploads/downloads, and KEK rotation over many items.

Run from the project root::

    python -m bench.bench_store            # full run (200 MB file, 100,000 items; a few minutes)
    python -m bench.bench_store --quick    # short run (50 MB file, 20,000 items)

Results are written to the ``store`` block of docs/performance.md. Everything runs in throwaway
directories (``LP_VAR_DIR``): the project's own ``var/`` and database are never touched.

What is measured:

* **server memory**: a real gunicorn server (1 sync worker, 1 thread; ``manage.py runserver`` if
  gunicorn does not start) on a fresh SQLite database with the demo personas. As ``care.a`` we
  upload a plain-text file to Lotte's file (multipart/form-data, streamed from a generator with a
  precomputed Content-Length) and stream it back in 1 MiB reads, checking the SHA-256. The
  worker's peak RSS (``VmHWM``, reset per phase through ``/proc/<pid>/clear_refs`` where the kernel
  allows it, and ``VmRSS`` sampled every 50 ms) minus its ``VmRSS`` before the round is the peak
  growth. Baseline: the same server's growth for a 1 MB file, measured first in the same run.
  Target: peak growth <= 64 MiB for a 200 MB file;
* **key rotation**: N items (100,000; 20,000 with ``--quick``) bulk-created with real wrapped
  DEKs under the development KEK, then ``manage.py rotate_keys --no-progress`` to a new KEK
  version 2, timed inside the process (``call_command``, so interpreter start-up is excluded).
  Baseline: plain in-memory :func:`exchange.crypto.keyring.rewrap` of the same wraps (no
  database). Target: >= 5,500 rewraps/s. Checked afterwards: every wrap is under version 2, 100
  sampled wraps unwrap to the original DEKs with a keyring holding *only* version 2, and a second
  run rewraps nothing. On PostgreSQL too when ``DATABASE_URL`` is set (a database
  ``bench_store_<random>`` is created there and dropped afterwards).

Django runs only in child processes (each phase gets its own environment); this process only
orchestrates, measures and writes the report.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench._report import machine_description, write_section

KIB = 1024
MIB = 1024 * 1024
PROJECT_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGET_PEAK_GROWTH_MIB = 64
TARGET_REWRAPS_PER_S = 5_500
MAX_UPLOAD_BYTES = 300 * MIB
SAMPLE_INTERVAL_S = 0.05
SAMPLE_UNWRAPS = 100
SCHOOL_A_NUMBER = "030001"  # seed_demo: School A – Sint-Jozefsinstituut


@dataclass(frozen=True)
class Plan:
    file_bytes: int
    items: int


FULL = Plan(file_bytes=200 * MIB, items=100_000)
QUICK = Plan(file_bytes=50 * MIB, items=20_000)


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _mib(kib: int) -> float:
    return kib / KIB


def _size_label(size: int) -> str:
    return f"{size / MIB:g} MB"


# --------------------------------------------------------------------------------------------
# Environments and child processes
# --------------------------------------------------------------------------------------------


def _django_env(var_dir: Path, *, database_url: str | None = None, keks: str | None = None) -> dict[str, str]:
    """Environment of a throwaway installation in ``var_dir`` (SQLite unless ``database_url``)."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "LP_KEKS", "LP_KEKS_FILE", "CELERY_BROKER_URL", "LP_OBJECT_STORAGE_BUCKET"):
        env.pop(name, None)
    tmp = var_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.dev",
        # Production runs with DEBUG off; with DEBUG on Django also keeps and formats every SQL
        # statement, which is not what we want to measure.
        DJANGO_DEBUG="false",
        LP_VAR_DIR=str(var_dir),
        LP_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
        LOG_LEVEL="WARNING",
        TMPDIR=str(tmp),  # the sealed upload spool files go here, and are removed with var_dir
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if keks:
        env["LP_KEKS"] = keks
    return env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    """Run a child process in the project root; return its stdout, raise with its output on failure."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and scripts, no shell
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def _run_phase(phase: str, env: dict[str, str], workdir: Path, **options: Any) -> dict[str, Any]:
    """Run ``python -m bench.bench_store --phase PHASE`` with ``env``; return its JSON result."""
    result = workdir / f"{phase}-{uuid.uuid4().hex}.json"
    args = [PYTHON, "-m", "bench.bench_store", "--phase", phase, "--result", str(result)]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    _run(args, env, f"phase {phase}")
    data: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    result.unlink()
    return data


# --------------------------------------------------------------------------------------------
# /proc: RSS of the server worker
# --------------------------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                values[key] = int(rest.split()[0])
    return values


def _reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` of ``pid`` to its current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    status = _proc_status(pid)
    return status["VmHWM"] <= status["VmRSS"] + 4 * KIB


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc, without psutil)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
        return [int(child) for child in text.split()]
    except OSError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class PeakSampler:
    """Samples ``VmRSS`` of a process every 50 ms in a thread; ``peak_kib`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak_kib = 0
        self.samples = 0

    def _sample(self) -> None:
        with contextlib.suppress(OSError, KeyError):
            self.peak_kib = max(self.peak_kib, _proc_status(self._pid)["VmRSS"])
            self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    kind: str  # "gunicorn" or "runserver"
    log: Path
    worker_pid: int = 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # The server runs in its own session: kill exactly that group (master + worker).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        if self.worker_pid and Path(f"/proc/{self.worker_pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker_pid, signal.SIGKILL)


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _start(kind: str, env: dict[str, str], workdir: Path) -> Server:
    port = _free_port()
    if kind == "gunicorn":
        args = [
            str(Path(PYTHON).parent / "gunicorn"),
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "1",
            "--timeout",
            "600",
        ]
    else:
        args = [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    log = workdir / f"{kind}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts, no shell
            args, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process=process, port=port, kind=kind, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _healthy(port):
            if kind == "gunicorn":
                workers = _children(process.pid)
                if len(workers) != 1:
                    server.stop()
                    raise RuntimeError(f"expected 1 gunicorn worker, found {workers}")
                server.worker_pid = workers[0]
            else:
                server.worker_pid = process.pid
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{kind} did not become healthy:\n{log.read_text(errors='replace')[-3000:]}")


def _start_server(env: dict[str, str], workdir: Path) -> Server:
    try:
        return _start("gunicorn", env, workdir)
    except (RuntimeError, OSError) as exc:
        _say(f"gunicorn failed ({str(exc).splitlines()[0]}); falling back to manage.py runserver --noreload")
        return _start("runserver", env, workdir)


# --------------------------------------------------------------------------------------------
# HTTP client side: streamed upload and download
# --------------------------------------------------------------------------------------------


def _text_block() -> bytes:
    """1 MiB of numbered ASCII lines; ``BBBBBBBB`` is replaced by the block number."""
    line = b"BBBBBBBB-%05d leerlingenpaspoort store benchmark: the quick brown fox jumps over the lazy dog.\n"
    lines = []
    total = 0
    number = 0
    while total < MIB:
        lines.append(line % number)
        total += len(lines[-1])
        number += 1
    return b"".join(lines)[:MIB]


def content_chunks(size: int) -> Iterator[bytes]:
    """``size`` bytes of plain ASCII text in 1 MiB chunks, generated on the fly (never held whole)."""
    template = _text_block()
    block = 0
    left = size
    while left > 0:
        chunk = template.replace(b"BBBBBBBB", b"%08d" % block)
        yield chunk[:left] if left < len(chunk) else chunk
        left -= len(chunk)
        block += 1


def _api(port: int, token: str, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Token {token}", "Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:500]!r}")
        return json.loads(body)
    finally:
        conn.close()


@dataclass(frozen=True)
class Transfer:
    item_id: str
    sha256: str
    seconds: float
    size: int


def upload(port: int, token: str, pupil_id: str, size: int) -> Transfer:
    """POST a ``size``-byte text file to the pupil's items; the body is streamed, never built whole."""
    boundary = "bench-" + secrets.token_hex(16)
    head = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in (("category", "career"), ("kind", "document"), ("title", f"Store benchmark, {size} B"))
        )
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench-store.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        start = time.perf_counter()
        conn.putrequest("POST", f"/api/v1/pupils/{pupil_id}/items/create")
        conn.putheader("Authorization", f"Token {token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.putheader("Accept", "application/json")
        conn.endheaders()
        try:
            conn.send(head)
            for chunk in content_chunks(size):
                digest.update(chunk)
                conn.send(chunk)
            conn.send(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. 413); its response says why
        response = conn.getresponse()
        body = response.read()
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload of {size} bytes: {response.status} {body[:500]!r}")
    return Transfer(item_id=json.loads(body)["id"], sha256=digest.hexdigest(), seconds=seconds, size=size)


def download(port: int, token: str, item_id: str) -> Transfer:
    """GET the item's file in 1 MiB reads, hashing as it arrives."""
    digest = hashlib.sha256()
    received = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        start = time.perf_counter()
        conn.request("GET", f"/api/v1/items/{item_id}/file", headers={"Authorization": f"Token {token}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download of {item_id}: {response.status} {response.read()[:500]!r}")
        declared = int(response.getheader("Content-Length") or -1)
        while chunk := response.read(MIB):
            digest.update(chunk)
            received += len(chunk)
        seconds = time.perf_counter() - start
    finally:
        conn.close()
    if declared != received:
        raise RuntimeError(f"download of {item_id}: Content-Length {declared}, received {received}")
    return Transfer(item_id=item_id, sha256=digest.hexdigest(), seconds=seconds, size=received)


# --------------------------------------------------------------------------------------------
# Part 1: server memory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundResult:
    size: int
    rss_before_kib: int
    upload_peak_kib: int  # highest RSS during the upload (VmHWM if reset worked, and samples)
    download_peak_kib: int
    rss_between_kib: int
    rss_after_kib: int
    upload_s: float
    download_s: float
    sha_ok: bool
    spool_files_left: int  # upload spool files (lp-upload-*) still in the server's TMPDIR afterwards

    @property
    def peak_kib(self) -> int:
        return max(self.upload_peak_kib, self.download_peak_kib)

    @property
    def growth_kib(self) -> int:
        return self.peak_kib - self.rss_before_kib

    @property
    def upload_growth_kib(self) -> int:
        return self.upload_peak_kib - self.rss_before_kib

    @property
    def download_growth_kib(self) -> int:
        return self.download_peak_kib - self.rss_before_kib

    @property
    def upload_mb_s(self) -> float:
        return self.size / self.upload_s / 1e6

    @property
    def download_mb_s(self) -> float:
        return self.size / self.download_s / 1e6


def _phase_peak(pid: int, sampler: PeakSampler, reset_ok: bool) -> int:
    status = _proc_status(pid)
    # Without a reset, VmHWM is the peak since the worker started, which may predate the phase.
    return max(sampler.peak_kib, status["VmHWM"]) if reset_ok else sampler.peak_kib


def _spool_files(tmp: Path) -> int:
    return sum(1 for _ in tmp.glob("lp-upload-*"))


def measure_round(server: Server, token: str, pupil_id: str, size: int, tmp: Path) -> tuple[RoundResult, bool]:
    """Upload then download ``size`` bytes; the worker's RSS before, peaks per phase and after."""
    pid = server.worker_pid
    time.sleep(0.5)  # let the previous request's clean-up finish
    before = _proc_status(pid)["VmRSS"]
    reset_ok = _reset_peak(pid)
    with PeakSampler(pid) as up_sampler:
        sent = upload(server.port, token, pupil_id, size)
    upload_peak = _phase_peak(pid, up_sampler, reset_ok)
    between = _proc_status(pid)["VmRSS"]
    reset_ok = _reset_peak(pid) and reset_ok
    with PeakSampler(pid) as down_sampler:
        got = download(server.port, token, sent.item_id)
    download_peak = _phase_peak(pid, down_sampler, reset_ok)
    after = _proc_status(pid)["VmRSS"]
    result = RoundResult(
        size=size,
        rss_before_kib=before,
        upload_peak_kib=upload_peak,
        download_peak_kib=download_peak,
        rss_between_kib=between,
        rss_after_kib=after,
        upload_s=sent.seconds,
        download_s=got.seconds,
        sha_ok=sent.sha256 == got.sha256 and got.size == size,
        spool_files_left=_spool_files(tmp),
    )
    _say(
        f"{_size_label(size)}: RSS before {_mib(before):.1f} MiB, peak growth upload "
        f"{_mib(result.upload_growth_kib):+.1f} MiB, download {_mib(result.download_growth_kib):+.1f} MiB; "
        f"upload {result.upload_mb_s:,.1f} MB/s, download {result.download_mb_s:,.1f} MB/s; "
        f"SHA-256 {'ok' if result.sha_ok else 'MISMATCH'}; upload spool files left {result.spool_files_left} "
        f"(VmHWM reset {'yes' if reset_ok else 'no'})"
    )
    if not result.sha_ok:
        raise RuntimeError(f"downloaded content differs from the uploaded content at {size} bytes")
    return result, reset_ok


@dataclass(frozen=True)
class MemoryResult:
    server: str
    baseline: RoundResult
    large: RoundResult
    hwm_reset: bool


def _token_of(seed_output: str, username: str) -> str:
    for line in seed_output.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == username and re.fullmatch(r"[0-9a-f]{40}", fields[1]):
            return fields[1]
    raise RuntimeError(f"no token for {username} in the seed_demo output")


def bench_memory(plan: Plan, workdir: Path) -> MemoryResult:
    var_dir = workdir / "memory"
    env = _django_env(var_dir)
    _say("memory: migrate + seed_demo in a throwaway SQLite database")
    _run([PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], env, "migrate")
    token = _token_of(_run([PYTHON, "manage.py", "seed_demo"], env, "seed_demo"), "care.a")
    server = _start_server(env, workdir)
    try:
        _say(f"memory: {server.kind} on port {server.port}, worker pid {server.worker_pid}")
        pupils = _api(server.port, token, "/api/v1/pupils?page_size=200")
        rows = pupils["results"] if isinstance(pupils, dict) else pupils
        lotte = next(row["id"] for row in rows if row["first_name"] == "Lotte")
        # Warm-up (not reported): imports, lazily built objects, the keyring and first allocations.
        tmp = Path(env["TMPDIR"])
        measure_round(server, token, lotte, 64 * KIB, tmp)
        baseline, reset_1 = measure_round(server, token, lotte, 1 * MIB, tmp)
        large, reset_2 = measure_round(server, token, lotte, plan.file_bytes, tmp)
        return MemoryResult(server=server.kind, baseline=baseline, large=large, hwm_reset=reset_1 and reset_2)
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# Part 2: key rotation (children run Django)
# --------------------------------------------------------------------------------------------


def _phase_populate(items: int, result: Path) -> None:
    """Child: migrate, seed, then bulk-create ``items`` items with real wraps under KEK v1."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from exchange.crypto.keyring import keyring_from_settings
    from exchange.files import version_wrap_aad
    from exchange.models import ItemVersion, Organisation, OrganisationKind, Pupil, PupilItem, WrappedKey

    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_demo", stdout=io.StringIO())
    school = Organisation.objects.get(kind=OrganisationKind.SCHOOL, official_number=SCHOOL_A_NUMBER)
    lotte = Pupil.objects.get(user__username="lotte")
    keyring = keyring_from_settings()
    today = timezone.localdate()
    org_id = str(school.id)
    every = max(1, items // SAMPLE_UNWRAPS)
    samples: dict[str, str] = {}
    batch = 5_000
    start = time.perf_counter()
    with transaction.atomic():
        for first in range(0, items, batch):
            new_items, new_versions, new_wraps = [], [], []
            for number in range(first, min(items, first + batch)):
                item_id, version_id, dek = uuid.uuid4(), uuid.uuid4(), os.urandom(32)
                new_items.append(
                    PupilItem(
                        id=item_id,
                        pupil=lotte,
                        holder=school,
                        category="career",
                        kind="document",
                        current_version=1,
                        health=False,
                    )
                )
                new_versions.append(
                    ItemVersion(
                        id=version_id, item_id=item_id, version=1, title_ciphertext=b"x" * 45, authored_on=today
                    )
                )
                kek_version, wrapped = keyring.wrap(
                    org_id=org_id, dek=dek, aad=version_wrap_aad(item_id=item_id, version=1, organisation_id=school.id)
                )
                new_wraps.append(
                    WrappedKey(
                        item_version_id=version_id,
                        organisation_id=school.id,
                        kek_version=kek_version,
                        wrapped_dek=wrapped,
                    )
                )
                if number % every == 0 and len(samples) < SAMPLE_UNWRAPS:
                    samples[str(item_id)] = dek.hex()
            PupilItem.objects.bulk_create(new_items)
            ItemVersion.objects.bulk_create(new_versions)
            WrappedKey.objects.bulk_create(new_wraps)
    seconds = time.perf_counter() - start
    data = {
        "items": items,
        "seconds": seconds,
        "wraps_v1": WrappedKey.objects.filter(kek_version=1).count(),
        "pupils": Pupil.objects.count(),
        "samples": samples,
        "org_id": org_id,
    }
    result.write_text(json.dumps(data), encoding="utf-8")


_REWRAPPED_RE = re.compile(r"Rewrapped (\d+) keys to KEK version (\d+); (\d+) left")


def _phase_rotate(samples_file: Path, result: Path) -> None:
    """Child (LP_KEKS holds v1 and v2): in-memory baseline, timed rotate_keys twice, verification."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from exchange.crypto.keyring import LocalKeyring, reset_keyring_cache, rewrap
    from exchange.files import version_wrap_aad
    from exchange.models import WrappedKey

    # Baseline: the same rewraps as rotate_keys does (same rows, AAD built the same way) without
    # the database, with a fresh keyring (derivation included, as in the command).
    rows = list(
        WrappedKey.objects.values_list(
            "organisation_id", "kek_version", "wrapped_dek", "item_version__item_id", "item_version__version"
        )
    )
    fresh = LocalKeyring.from_strings(keks=settings.LP_KEKS, blind_index_key=settings.LP_BLIND_INDEX_KEY)
    start = time.perf_counter()
    for org_id, kek_version, wrapped, item_id, version in rows:
        rewrap(
            fresh,
            org_id=str(org_id),
            kek_version=kek_version,
            wrapped=bytes(wrapped),
            aad=version_wrap_aad(item_id=item_id, version=version, organisation_id=org_id),
        )
    baseline_s = time.perf_counter() - start
    del fresh

    runs = []
    for _ in range(2):
        reset_keyring_cache()  # each run builds its keyring, as a fresh `manage.py rotate_keys` would
        out = io.StringIO()
        start = time.perf_counter()
        call_command("rotate_keys", "--no-progress", stdout=out)
        seconds = time.perf_counter() - start
        match = _REWRAPPED_RE.search(out.getvalue())
        if match is None:
            raise RuntimeError(f"unexpected rotate_keys output: {out.getvalue()!r}")
        runs.append(
            {
                "seconds": seconds,
                "rewrapped": int(match[1]),
                "target": int(match[2]),
                "left": int(match[3]),
                "output": out.getvalue().strip(),
            }
        )

    # Verification, outside the timing.
    v2_entry = next(entry.strip() for entry in settings.LP_KEKS.split(",") if entry.strip().startswith("2:"))
    only_v2 = LocalKeyring.from_strings(keks=v2_entry, blind_index_key=settings.LP_BLIND_INDEX_KEY)
    samples: dict[str, str] = json.loads(samples_file.read_text(encoding="utf-8"))["samples"]
    unwrapped_ok = 0
    for sample_item_id, dek_hex in samples.items():
        wrap = WrappedKey.objects.select_related("item_version").get(item_version__item_id=uuid.UUID(sample_item_id))
        dek = only_v2.unwrap(
            org_id=str(wrap.organisation_id),
            kek_version=wrap.kek_version,
            wrapped=bytes(wrap.wrapped_dek),
            aad=version_wrap_aad(
                item_id=wrap.item_version.item_id,
                version=wrap.item_version.version,
                organisation_id=wrap.organisation_id,
            ),
        )
        unwrapped_ok += dek.hex() == dek_hex
    data = {
        "wraps": len(rows),
        "baseline_s": baseline_s,
        "runs": runs,
        "not_v2": WrappedKey.objects.exclude(kek_version=2).count(),
        "total_wraps": WrappedKey.objects.count(),
        "samples": len(samples),
        "unwrapped_ok": unwrapped_ok,
        "vendor": _vendor(),
    }
    result.write_text(json.dumps(data), encoding="utf-8")


def _vendor() -> str:
    from django.db import connection

    return str(connection.vendor)


@dataclass(frozen=True)
class RotationResult:
    store: str
    items: int
    wraps: int
    populate_s: float
    rotate_s: float
    rewrapped: int  # by the first run: item wraps plus the pupils' identity wraps
    baseline_s: float
    second_rewrapped: int
    second_s: float
    left: int
    not_v2: int
    samples: int
    unwrapped_ok: int

    @property
    def rate(self) -> float:
        return self.rewrapped / self.rotate_s

    @property
    def baseline_rate(self) -> float:
        return self.wraps / self.baseline_s

    @property
    def verified(self) -> bool:
        return (
            self.not_v2 == 0
            and self.left == 0
            and self.second_rewrapped == 0
            and self.unwrapped_ok == self.samples == SAMPLE_UNWRAPS
        )


def bench_rotation(plan: Plan, workdir: Path, *, store: str, database_url: str | None = None) -> RotationResult:
    from exchange.crypto.keyring import DEVELOPMENT_KEKS, generate_kek_string

    var_dir = workdir / f"rotation-{store.lower()}"
    _say(f"rotation ({store}): creating {plan.items:,} items with wrapped DEKs under KEK v1")
    populate = _run_phase("populate", _django_env(var_dir, database_url=database_url), workdir, items=plan.items)
    if populate["wraps_v1"] != plan.items:
        raise RuntimeError(f"expected {plan.items} wraps under v1, found {populate['wraps_v1']}")
    samples_file = workdir / f"samples-{store.lower()}.json"
    samples_file.write_text(json.dumps(populate), encoding="utf-8")
    _say(f"rotation ({store}): created in {populate['seconds']:.1f} s; rotating to KEK v2")
    keks = DEVELOPMENT_KEKS + "," + generate_kek_string(2)
    rotated = _run_phase(
        "rotate", _django_env(var_dir, database_url=database_url, keks=keks), workdir, samples=samples_file
    )
    first, second = rotated["runs"]
    result = RotationResult(
        store=store,
        items=plan.items,
        wraps=rotated["wraps"],
        populate_s=populate["seconds"],
        rotate_s=first["seconds"],
        rewrapped=first["rewrapped"],
        baseline_s=rotated["baseline_s"],
        second_rewrapped=second["rewrapped"],
        second_s=second["seconds"],
        left=second["left"],
        not_v2=rotated["not_v2"],
        samples=rotated["samples"],
        unwrapped_ok=rotated["unwrapped_ok"],
    )
    _say(
        f"rotation ({store}): rotate_keys {result.rewrapped:,} in {result.rotate_s:.2f} s = {result.rate:,.0f}/s; "
        f"in-memory rewrap {result.baseline_rate:,.0f}/s; second run rewrapped {result.second_rewrapped}; "
        f"not under v2: {result.not_v2}; v2-only unwraps {result.unwrapped_ok}/{result.samples}"
    )
    return result


@contextlib.contextmanager
def _postgres_database(url: str) -> Iterator[str]:
    """Create ``bench_store_<random>`` on the server of ``url``; yield its URL; drop it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"bench_store_{secrets.token_hex(6)}"
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme in {"postgres", "postgresql", "pgsql"} else parts.scheme
    admin_url = urlunsplit((scheme, parts.netloc, parts.path or "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def render(
    memory: MemoryResult, rotations: list[RotationResult], *, quick: bool, plan: Plan, failures: list[str]
) -> str:
    base, large = memory.baseline, memory.large
    ratio = f"{large.growth_kib / base.growth_kib:.1f}x" if base.growth_kib > 0 else "n/a (1 MB growth <= 0)"
    growth_mib = _mib(large.growth_kib)
    lines = [
        f"**Server memory.** {memory.server} (1 worker, 1 thread), fresh SQLite database, demo personas; "
        "`care.a` uploads a plain-text file to Lotte's file (`POST /api/v1/pupils/<id>/items/create`, "
        "multipart/form-data streamed from a generator) and downloads it (`GET /api/v1/items/<id>/file`, 1 MiB "
        "reads; SHA-256 compared). Growth = worker's peak RSS during the phase minus its RSS before the round "
        "(MiB); MB/s = 10^6 bytes per second, end to end on loopback (the upload time includes the server's "
        "re-encryption and storage).",
        "",
        "| File | RSS before (MiB) | peak growth upload | peak growth download | peak growth | RSS after "
        "| upload MB/s | download MB/s | SHA-256 | upload spool files left |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in (base, large):
        lines.append(
            f"| {_size_label(row.size)} | {_mib(row.rss_before_kib):.1f} | {_mib(row.upload_growth_kib):+.1f} "
            f"| {_mib(row.download_growth_kib):+.1f} | {_mib(row.growth_kib):+.1f} | {_mib(row.rss_after_kib):.1f} "
            f"| {row.upload_mb_s:,.1f} | {row.download_mb_s:,.1f} | {'equal' if row.sha_ok else 'DIFFERENT'} "
            f"| {row.spool_files_left} |"
        )
    lines += [
        "",
        f"Target peak growth <= {TARGET_PEAK_GROWTH_MIB} MiB for a {_size_label(large.size)} file: "
        f"{_met(growth_mib <= TARGET_PEAK_GROWTH_MIB)} ({growth_mib:+.1f} MiB; {ratio} the growth for 1 MB)."
        + (" (`--quick`: 50 MB instead of 200 MB.)" if quick else ""),
        "",
        "**Key rotation.** N items held by school A for Lotte, bulk-created with one real wrapped DEK each "
        "(KEK v1); then `LP_KEKS` = development v1 + a new v2 and `manage.py rotate_keys --no-progress` "
        "(default batch 2,000), timed inside the process with `call_command` (no interpreter start-up). "
        "rewraps/s counts every key the command rewrapped (the items' wraps plus the pupils' identity keys). "
        "**in-memory** = `keyring.rewrap()` of the same wraps, AAD built the same way, fresh keyring, no database.",
        "",
        "| Database | items | rotate_keys s | rotate_keys rewraps/s | in-memory rewraps/s | rotate / in-memory "
        f"| target >= {TARGET_REWRAPS_PER_S:,}/s | checks |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for rot in rotations:
        checks = (
            f"all v2: {'yes' if rot.not_v2 == 0 else f'NO ({rot.not_v2} not)'}; "
            f"v2-only unwraps {rot.unwrapped_ok}/{rot.samples}; second run rewrapped {rot.second_rewrapped}"
        )
        lines.append(
            f"| {rot.store} | {rot.items:,} | {rot.rotate_s:.2f} | {rot.rate:,.0f} | {rot.baseline_rate:,.0f} "
            f"| {rot.rate / rot.baseline_rate:.2f}x | {_met(rot.rate >= TARGET_REWRAPS_PER_S)} | {checks} |"
        )
    lines += [f"\n{failure.rstrip('.')}." for failure in failures]
    lines += [
        "",
        f"Run: `python -m bench.bench_store{' --quick' if quick else ''}` ({_size_label(plan.file_bytes)} file, "
        f"{plan.items:,} items). Method: throwaway `LP_VAR_DIR` per part, `config.settings.dev` with "
        f"`DJANGO_DEBUG=false`, `LP_MAX_UPLOAD_BYTES` = {MAX_UPLOAD_BYTES // MIB} MiB. RSS from "
        "`/proc/<worker>/status`: `VmRSS` before, `VmHWM` "
        + (
            "reset before each phase (`/proc/<pid>/clear_refs` = 5)"
            if memory.hwm_reset
            else "could not be reset, so only the 50 ms samples are used"
        )
        + f" and `VmRSS` sampled every {SAMPLE_INTERVAL_S * 1000:.0f} ms; a 64 KB round runs first as warm-up "
        "(not shown). Rotation verified afterwards: every wrap under v2, 100 sampled wraps unwrap to their "
        "original DEKs with a keyring holding only KEK v2, and a second run rewraps 0 (safe to run twice).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary and write the docs/performance.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50 MB file and 20,000 items (about a minute)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    # Internal: the child phases that run Django.
    parser.add_argument("--phase", choices=["populate", "rotate"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.phase == "populate":
        _phase_populate(args.items, args.result)
        return 0
    if args.phase == "rotate":
        _phase_rotate(args.samples, args.result)
        return 0

    plan = QUICK if args.quick else FULL
    _say(f"Machine: {machine_description()}")
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench-store-"))
    failures: list[str] = []
    try:
        memory = bench_memory(plan, workdir)
        rotations = [bench_rotation(plan, workdir, store="SQLite")]
        database_url = os.environ.get("DATABASE_URL", "")
        if database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
            # Optional: a failure here is reported, and does not throw away the SQLite results.
            try:
                with _postgres_database(database_url) as url:
                    rotations.append(bench_rotation(plan, workdir, store="PostgreSQL", database_url=url))
            except Exception as exc:
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                failures.append(
                    f"PostgreSQL: not measured, {lines[0].rstrip(':') if lines else type(exc).__name__} "
                    f"({lines[-1] if lines else ''})"
                )
                _say(f"rotation (PostgreSQL) failed:\n{exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    body = render(memory, rotations, quick=args.quick, plan=plan, failures=failures)
    if not args.no_write:
        write_section(name="store", title="File store: server memory and key rotation", body_markdown=body)
        _say("Wrote the 'store' section of docs/performance.md")
    _say(f"Total {time.perf_counter() - started:.0f} s")
    ok = _mib(memory.large.growth_kib) <= TARGET_PEAK_GROWTH_MIB and all(
        rot.rate >= TARGET_REWRAPS_PER_S and rot.verified for rot in rotations
    )
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
