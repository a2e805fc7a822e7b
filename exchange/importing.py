"""Shared machinery of the bulk imports: read CSV or JSON, a transaction (or savepoint) per row, a report
that names rows, columns and reasons but never the values (they are pupil data)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from tqdm import tqdm


@dataclass
class ImportResult:
    total: int
    done: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def failed_rows(self) -> int:
        return len({row for row, _field, _message in self.errors})

    def summary(self, *, dry_run: bool) -> str:
        verb = "would import" if dry_run else "imported"
        return f"{verb} {self.done} of {self.total} rows; {self.failed_rows} rows with errors"


def read_rows(path: Path, kind: str | None, required: tuple[str, ...]) -> tuple[list[dict[str, str]], int]:
    """The rows of a CSV (comma or semicolon, header row) or JSON (list of objects) file, and the first row's number."""
    if not path.is_file():
        raise CommandError(f"{path} does not exist")
    kind = kind or path.suffix.lstrip(".").lower()
    text = path.read_text(encoding="utf-8-sig")
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"not valid JSON: line {exc.lineno}, column {exc.colno}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise CommandError("the JSON file must hold a list of objects")
        return [{k: "" if v is None else str(v).strip() for k, v in r.items()} for r in data], 1
    if kind == "csv":
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;")
        reader = csv.DictReader(text.splitlines(), dialect=dialect)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CommandError(f"missing columns: {', '.join(missing)}")
        return [{k: (v or "").strip() for k, v in r.items() if k} for r in reader], 2
    raise CommandError("use --format csv or --format json")


def run_rows(
    rows: list[dict[str, str]],
    handler: Callable[[dict[str, str]], Any],
    *,
    first_row: int,
    dry_run: bool,
    progress: bool,
    batch_size: int = 1,
    finish_batch: Callable[[list[Any]], object] | None = None,
) -> ImportResult:
    """Run ``handler`` per row; a failing row never aborts the others.

    With ``batch_size`` > 1, rows run in one transaction per batch, each row in its own savepoint,
    and ``finish_batch`` receives what the handler returned for the batch's good rows (set-based
    work the rows left for the end, such as planning their handovers) before the batch commits.
    Should the batch fail as a whole, its rows run again one per transaction (``finish_batch``
    then runs in each row's), so one bad row still costs only itself.
    """
    result = ImportResult(total=len(rows))
    numbered = list(enumerate(rows, start=first_row))
    with tqdm(total=len(rows), unit="row", disable=not progress) as bar:
        for first in range(0, len(numbered), max(1, batch_size)):
            batch = numbered[first : first + max(1, batch_size)]
            if len(batch) > 1 and _run_batch(batch, handler, result, dry_run=dry_run, finish_batch=finish_batch):
                bar.update(len(batch))
                continue
            for number, row in batch:
                _run_one(number, row, handler, result, dry_run=dry_run, finish_batch=finish_batch)
                bar.update(1)
    return result


def _row_errors(number: int, exc: Exception) -> list[tuple[int, str, str]]:
    if isinstance(exc, ValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else {"row": exc.messages}
        return [(number, name, "; ".join(messages)) for name, messages in details.items()]
    return [(number, "row", f"malformed row ({type(exc).__name__})")]


def _run_one(
    number: int,
    row: dict[str, str],
    handler: Callable[[dict[str, str]], Any],
    result: ImportResult,
    *,
    dry_run: bool,
    finish_batch: Callable[[list[Any]], object] | None,
) -> None:
    try:
        with transaction.atomic():
            value = handler(row)
            if finish_batch is not None:
                finish_batch([value])
            if dry_run:
                transaction.set_rollback(True)
        result.done += 1
    except (ValidationError, KeyError, ValueError, TypeError) as exc:
        result.errors.extend(_row_errors(number, exc))


def _run_batch(
    batch: list[tuple[int, dict[str, str]]],
    handler: Callable[[dict[str, str]], Any],
    result: ImportResult,
    *,
    dry_run: bool,
    finish_batch: Callable[[list[Any]], object] | None,
) -> bool:
    """One transaction for the batch, a savepoint per row; False (nothing kept) if the batch failed."""
    done = 0
    errors: list[tuple[int, str, str]] = []
    values: list[Any] = []
    try:
        with transaction.atomic():
            for number, row in batch:
                try:
                    with transaction.atomic():
                        values.append(handler(row))
                    done += 1
                except (ValidationError, KeyError, ValueError, TypeError) as exc:
                    errors.extend(_row_errors(number, exc))
            if finish_batch is not None:
                finish_batch(values)
            if dry_run:
                transaction.set_rollback(True)
    except (DatabaseError, ValidationError):
        return False
    result.done += done
    result.errors.extend(errors)
    return True


def write_report(path: Path | None, result: ImportResult) -> None:
    if path is None:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "field", "message"])
        writer.writerows(result.errors)
