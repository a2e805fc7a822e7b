"""Benchmark exchange.crypto against raw AES-GCM in the same run, and measure KEK rotation speed.

Run from the project root::

    python -m bench.bench_crypto            # full run (a few minutes)
    python -m bench.bench_crypto --quick    # short run

Results are written to the ``crypto`` block of docs/performance.md. Django is not needed.

What is measured:

* round trip (encrypt then decrypt) of 4 KB, 1 MB and 50 MB with our blob format
  (:func:`exchange.crypto.encrypt` / :func:`~exchange.crypto.decrypt`) and our stream format
  (1 MiB segments), against the raw ``AESGCM(key).encrypt/decrypt`` of the same bytes with a fresh
  random nonce and no framing. Target: blob/raw >= 0.9x at 1 MB;
* rotation: unwrap under KEK v1 and wrap under v2 of 100,000 DEKs (1 organisation, then spread
  over 1,000 organisations), with a fresh keyring per round so key derivation is included.
  Target: >= 5,500 rewraps/s.

Timings are best-of-N with ``time.perf_counter``; the variants are interleaved round by round so
that drift (CPU frequency, other load) affects them alike.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench._report import machine_description, write_section
from exchange.crypto import (
    LocalKeyring,
    decrypt,
    decrypt_stream,
    encrypt,
    encrypt_stream,
    item_aad,
    new_dek,
    rewrap,
    wrap_aad,
)

KB = 1024
MB = 1024 * 1024
SIZES = [("4 KB", 4 * KB), ("1 MB", 1 * MB), ("50 MB", 50 * MB)]
TARGET_RATIO_1MB = 0.9
TARGET_REWRAPS_PER_S = 5_500


@dataclass(frozen=True)
class Plan:
    """How much work each measurement does: (repetitions per round, rounds)."""

    reps: dict[int, tuple[int, int]]
    rewrap_deks: int
    rewrap_rounds: int


FULL = Plan(reps={4 * KB: (5_000, 7), 1 * MB: (100, 7), 50 * MB: (2, 5)}, rewrap_deks=100_000, rewrap_rounds=3)
QUICK = Plan(reps={4 * KB: (1_000, 3), 1 * MB: (20, 3), 50 * MB: (1, 2)}, rewrap_deks=100_000, rewrap_rounds=1)


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def tune_glibc_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds so that large buffers are reused, not re-faulted.

    By default glibc returns freed multi-megabyte buffers to the kernel and faults them in again
    on the next allocation; at 1 MB and above that page-fault cost dominates *both* the baseline
    and our code and would hide our overhead. Returns False where it cannot be applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 256 * MB)) and bool(mallopt(m_trim_threshold, 1024 * MB))


class _PieceReader:
    """File-like ``read`` over a list of byte strings without joining them (no extra copy).

    Stands in for reading the stored object: when reads line up with the pieces (as the stream
    reader's do) each read returns a piece as is.
    """

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces
        self._index = 0
        self._offset = 0

    def read(self, size: int) -> bytes:
        while self._index < len(self._pieces):
            piece = self._pieces[self._index]
            if self._offset == 0 and len(piece) <= size:
                self._index += 1
                return piece
            if self._offset < len(piece):
                chunk = piece[self._offset : self._offset + size]
                self._offset += len(chunk)
                return chunk
            self._index += 1
            self._offset = 0
        return b""


def _time(fn: Callable[[], object], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _interleaved_best(variants: dict[str, Callable[[], object]], reps: int, rounds: int) -> dict[str, float]:
    """Best (lowest) seconds per call of each variant, variants interleaved round by round."""
    best = dict.fromkeys(variants, float("inf"))
    for fn in variants.values():  # warm-up: caches, allocator state, CPU frequency
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            best[name] = min(best[name], _time(fn, reps))
    return best


@dataclass(frozen=True)
class ThroughputRow:
    label: str
    size: int
    raw: float  # MB/s
    blob: float
    stream: float


def bench_throughput(plan: Plan) -> list[ThroughputRow]:
    """Round-trip throughput of raw AES-GCM, our blob format and our stream format."""
    rows = []
    dek = new_dek()
    aad = item_aad(purpose="content", item_id="9b2f6a52-2f63-4c55-a1a7-3f0b6f1e4c11", version=3, category="medical")
    raw_cipher = AESGCM(dek)  # the baseline gets its cipher for free, built once
    for label, size in SIZES:
        data = os.urandom(size)

        def raw(data: bytes = data) -> bytes:
            nonce = os.urandom(12)
            return raw_cipher.decrypt(nonce, raw_cipher.encrypt(nonce, data, aad), aad)

        def blob(data: bytes = data) -> bytes:
            return decrypt(dek=dek, blob=encrypt(dek=dek, plaintext=data, aad=aad), aad=aad)

        def stream(data: bytes = data) -> int:
            pieces = list(encrypt_stream(dek=dek, chunks=(data,), aad=aad))
            return sum(len(p) for p in decrypt_stream(dek=dek, read=_PieceReader(pieces).read, aad=aad))

        # Correctness first: a fast wrong answer is worth nothing.
        assert raw() == data and blob() == data and stream() == size
        reps, rounds = plan.reps[size]
        best = _interleaved_best({"raw": raw, "blob": blob, "stream": stream}, reps, rounds)
        rows.append(ThroughputRow(label, size, *(size / best[v] / 1e6 for v in ("raw", "blob", "stream"))))
        _say(
            f"{label}: raw {rows[-1].raw:,.0f} MB/s, blob {rows[-1].blob:,.0f} MB/s, stream {rows[-1].stream:,.0f} MB/s"
        )
        del data
    return rows


@dataclass(frozen=True)
class RewrapRow:
    orgs: int
    deks: int
    ours: float  # rewraps/s
    raw: float


def bench_rewrap(plan: Plan, orgs: int) -> RewrapRow:
    """Rewrap ``plan.rewrap_deks`` DEKs from KEK v1 to v2, spread over ``orgs`` organisations."""
    kek_1, kek_2, blind = os.urandom(32), os.urandom(32), os.urandom(32)
    before = LocalKeyring(keks={1: kek_1}, blind_index_key=blind)
    rows: list[tuple[str, str, int, bytes]] = []
    deks: list[bytes] = []
    for i in range(plan.rewrap_deks):
        org_id, item_id = f"org-{i % orgs:05d}", f"item-{i:08d}"
        dek = new_dek()
        version, wrapped = before.wrap(org_id=org_id, dek=dek, aad=wrap_aad(item_id=item_id, org_id=org_id))
        rows.append((item_id, org_id, version, wrapped))
        deks.append(dek)

    best_ours = float("inf")
    results: list[tuple[int, bytes]] = []
    for _ in range(plan.rewrap_rounds):
        # A fresh keyring each round: the timing includes deriving every organisation's keys.
        after = LocalKeyring(keks={1: kek_1, 2: kek_2}, blind_index_key=blind)
        start = time.perf_counter()
        results = [
            rewrap(
                after, org_id=org_id, kek_version=version, wrapped=wrapped, aad=wrap_aad(item_id=item_id, org_id=org_id)
            )
            for item_id, org_id, version, wrapped in rows
        ]
        best_ours = min(best_ours, time.perf_counter() - start)
    # Spot-check correctness outside the timing.
    for i in range(0, len(rows), max(1, len(rows) // 100)):
        item_id, org_id, _, _ = rows[i]
        version, wrapped = results[i]
        unwrapped = after.unwrap(
            org_id=org_id, kek_version=version, wrapped=wrapped, aad=wrap_aad(item_id=item_id, org_id=org_id)
        )
        assert version == 2 and unwrapped == deks[i]

    # Baseline: the bare AES-GCM work of a rewrap (decrypt + encrypt 32 bytes, one prebuilt key,
    # fixed AAD): what no implementation can beat.
    cipher_1, cipher_2 = AESGCM(kek_1), AESGCM(kek_2)
    raw_aad = wrap_aad(item_id="item-00000000", org_id="org-00000")
    raw_rows = []
    for _, _, _, _ in rows:
        nonce = os.urandom(12)
        raw_rows.append((nonce, cipher_1.encrypt(nonce, new_dek(), raw_aad)))
    best_raw = float("inf")
    for _ in range(plan.rewrap_rounds):
        start = time.perf_counter()
        for nonce, sealed in raw_rows:
            fresh = os.urandom(12)
            cipher_2.encrypt(fresh, cipher_1.decrypt(nonce, sealed, raw_aad), raw_aad)
        best_raw = min(best_raw, time.perf_counter() - start)

    row = RewrapRow(orgs, len(rows), len(rows) / best_ours, len(rows) / best_raw)
    _say(f"rewrap, {orgs} org(s): {row.ours:,.0f}/s (raw AES-GCM {row.raw:,.0f}/s)")
    return row


def _met(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def render(
    throughput: list[ThroughputRow], rewraps: list[RewrapRow], *, quick: bool, malloc_tuned: bool, plan: Plan
) -> str:
    """Markdown body of the performance section."""
    lines = [
        "Round trip = encrypt then decrypt of the same plaintext; MB/s = 10^6 plaintext bytes per second, "
        "best of N interleaved rounds. **raw** = `AESGCM(key).encrypt/decrypt` with a fresh random nonce, "
        "cipher object built once, no framing. **blob** = `exchange.crypto.encrypt/decrypt` "
        "(format byte + nonce + ciphertext, a new `AESGCM` per call). **stream** = "
        "`encrypt_stream/decrypt_stream` with 1 MiB segments (stream-key derivation per call).",
        "",
        "| Size | raw MB/s | blob MB/s | blob / raw | stream MB/s | stream / raw |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in throughput:
        lines.append(
            f"| {row.label} | {row.raw:,.0f} | {row.blob:,.0f} | {row.blob / row.raw:.2f}x "
            f"| {row.stream:,.0f} | {row.stream / row.raw:.2f}x |"
        )
    at_1mb = next(row for row in throughput if row.size == 1 * MB)
    ratio = at_1mb.blob / at_1mb.raw
    lines += [
        "",
        f"Target blob / raw >= {TARGET_RATIO_1MB}x at 1 MB: {_met(ratio >= TARGET_RATIO_1MB)} ({ratio:.2f}x; "
        f"stream {at_1mb.stream / at_1mb.raw:.2f}x).",
        "",
        "Rotation: `rewrap()` = unwrap under KEK v1 + wrap under v2 (HKDF per-organisation keys, cached; fresh "
        "keyring per round, so derivation is included). **raw** = bare AES-GCM decrypt + encrypt of 32 bytes "
        "with two prebuilt keys and a fixed AAD.",
        "",
        "| Organisations | DEKs | rewraps/s | raw AES-GCM/s | ours / raw | target >= 5,500/s |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for rw in rewraps:
        lines.append(
            f"| {rw.orgs:,} | {rw.deks:,} | {rw.ours:,.0f} | {rw.raw:,.0f} | {rw.ours / rw.raw:.2f}x "
            f"| {_met(rw.ours >= TARGET_REWRAPS_PER_S)} |"
        )
    reps = ", ".join(f"{label}: {plan.reps[size][0]}x{plan.reps[size][1]}" for label, size in SIZES)
    lines += [
        "",
        f"Run: `python -m bench.bench_crypto{' --quick' if quick else ''}` (repetitions x rounds: {reps}; "
        f"rewrap rounds: {plan.rewrap_rounds}). Single-threaded. glibc malloc thresholds "
        f"{'raised' if malloc_tuned else 'left at defaults'} "
        "(so page faults on reallocated multi-MB buffers do not dominate both sides; "
        "`--no-malloc-tuning` to measure with defaults).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a summary and write the docs/performance.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 30 seconds)")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc malloc defaults")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    malloc_tuned = False if args.no_malloc_tuning else tune_glibc_malloc()
    _say(f"Machine: {machine_description()}")
    throughput = bench_throughput(plan)
    rewraps = [bench_rewrap(plan, orgs) for orgs in (1, 1_000)]
    body = render(throughput, rewraps, quick=args.quick, malloc_tuned=malloc_tuned, plan=plan)
    if not args.no_write:
        write_section(name="crypto", title="Encryption at rest (exchange.crypto)", body_markdown=body)
        _say("Wrote the 'crypto' section of docs/performance.md")
    at_1mb = next(row for row in throughput if row.size == 1 * MB)
    ok = at_1mb.blob / at_1mb.raw >= TARGET_RATIO_1MB and all(r.ours >= TARGET_REWRAPS_PER_S for r in rewraps)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
