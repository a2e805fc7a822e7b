"""Write benchmark results into docs/performance.md, one marked block per benchmark.

Each benchmark owns the block between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
rewriting one benchmark's results leaves the others' blocks and any hand-written text untouched.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["machine_description", "write_section"]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")

_PREAMBLE = (
    "# Performance\n"
    "\n"
    "Benchmarks are run on demand (`python -m bench.<name>`, `--quick` for a short run) and every result "
    "is a ratio against a baseline measured in the same run on the same machine, so figures from "
    "different machines compare like with like.\n"
)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in {"model name", "Hardware", "cpu model"} and value.strip():
                    return value.strip()
    except OSError:
        return None
    return None


def _total_memory() -> str | None:
    try:
        with open("/proc/meminfo", encoding="utf-8", errors="replace") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    kib = int(line.split()[1])
                    return f"{kib / (1024 * 1024):.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        return None
    return None


def machine_description() -> str:
    """Describe the machine: platform, Python version, CPU count and model, total memory.

    CPU model and memory come from /proc and are left out where it is not readable.
    """
    parts = [
        platform.platform(),
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"{os.cpu_count() or '?'} CPUs",
    ]
    cpu = _cpu_model()
    if cpu:
        parts.append(cpu)
    memory = _total_memory()
    if memory:
        parts.append(memory)
    return "; ".join(parts)


def _resolve(path: str) -> Path:
    # Relative paths are relative to the project root, so the benchmark may run from anywhere.
    candidate = Path(path)
    return candidate if candidate.is_absolute() else _PROJECT_ROOT / candidate


def write_section(*, name: str, title: str, body_markdown: str, path: str = "docs/performance.md") -> None:
    """Create or update the benchmark block ``name`` in the performance document.

    The document is created with a "# Performance" heading and an explanatory sentence if it does
    not exist. Only the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is
    replaced (the block is appended if absent). The block holds ``## title``, a line with the UTC
    date and time and :func:`machine_description`, then ``body_markdown``.

    The file is replaced atomically (temporary file + rename), so a reader never sees half of it.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError("benchmark name must be lowercase letters, digits, '-' or '_'")
    target = _resolve(path)
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"{start}\n## {title}\n\n_Run {when} on {machine_description()}._\n\n{body_markdown.strip()}\n{end}"

    try:
        document = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        document = _PREAMBLE
    begin = document.find(start)
    finish = document.find(end, begin) if begin >= 0 else -1
    if begin >= 0 and finish >= 0:
        document = document[:begin] + block + document[finish + len(end) :]
    else:
        document = document.rstrip("\n") + "\n\n" + block + "\n"

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644  # mkstemp would leave 0600, unlike every other file in the repository
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(document)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
