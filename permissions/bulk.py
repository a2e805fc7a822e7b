"""Insert many ledger rows without building a model instance per row.

The grants ledger writes several rows per grant (the grant, a key wrap, guardian rows, an audit
event); a September wave writes hundreds of thousands. Django's ``bulk_create`` costs a model
instance and a per-value preparation per field, which dominated the wave's time. ``insert_rows``
takes plain tuples. On PostgreSQL it sends one ``INSERT ... SELECT * FROM unnest(...)`` per batch,
one typed array per column (a handful of parameters, whatever the number of rows); elsewhere
(SQLite in development and tests) it prepares each value with the field's own
``get_db_prep_save`` and uses ``executemany``. Values are bound, never interpolated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models


def _columns(model: type[models.Model], fields: Sequence[str]) -> list[models.Field[Any, Any]]:
    return [model._meta.get_field(name) for name in fields]  # type: ignore[misc]


def insert_rows(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
    batch_size: int = 5000,
) -> int:
    """Insert ``rows`` (tuples in the order of ``fields``; foreign keys by ``<name>_id`` value).

    With ``ignore_conflicts`` a row that violates a unique constraint is skipped (idempotent
    writes, as ``bulk_create(ignore_conflicts=True)``). Returns the number of rows sent.
    """
    rows = list(rows)
    if not rows:
        return 0
    columns = _columns(model, fields)
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(field.column) for field in columns)
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{_array_type(field)}" for field in columns)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){conflict}"  # noqa: S608 - names from _meta
            for first in range(0, len(rows), batch_size):
                batch = rows[first : first + batch_size]
                cursor.execute(sql, [[row[i] for row in batch] for i in range(len(columns))])
        else:
            verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
            marks = ", ".join(["%s"] * len(columns))
            sql = f"{verb} INTO {table} ({names}) VALUES ({marks})"
            prepared = [
                [field.get_db_prep_save(value, connection) for field, value in zip(columns, row, strict=True)]
                for row in rows
            ]
            cursor.executemany(sql, prepared)
    return len(rows)


def _array_type(field: models.Field[Any, Any]) -> str:
    db_type = field.db_type(connection)  # a foreign key reports its target's column type
    if db_type is None:
        raise ValueError(f"{field.name} has no column type")
    if db_type.startswith("varchar"):
        # Not varchar(n)[]: an explicit cast to varchar(n) truncates silently, while storing text
        # into a varchar(n) column refuses a value that is too long, as an ordinary INSERT does.
        return "text[]"
    return db_type + "[]"
