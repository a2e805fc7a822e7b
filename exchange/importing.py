"""Shared machinery of the bulk imports: read CSV or JSON, one transaction per row, a report
that names rows, columns and reasons but never the values (they are pupil data)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction
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
    handler: Callable[[dict[str, str]], None],
    *,
    first_row: int,
    dry_run: bool,
    progress: bool,
) -> ImportResult:
    """Run ``handler`` per row in its own transaction; a failing row never aborts the others."""
    result = ImportResult(total=len(rows))
    for number, row in enumerate(tqdm(rows, unit="row", disable=not progress), start=first_row):
        try:
            with transaction.atomic():
                handler(row)
                if dry_run:
                    transaction.set_rollback(True)
            result.done += 1
        except ValidationError as exc:
            details = exc.message_dict if hasattr(exc, "error_dict") else {"row": exc.messages}
            result.errors.extend((number, name, "; ".join(messages)) for name, messages in details.items())
        except (KeyError, ValueError, TypeError) as exc:
            result.errors.append((number, "row", f"malformed row ({type(exc).__name__})"))
    return result


def write_report(path: Path | None, result: ImportResult) -> None:
    if path is None:
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "field", "message"])
        writer.writerows(result.errors)
