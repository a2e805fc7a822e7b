"""Hand-written SQL against the models: quoted names, and model instances from raw rows.

Used where a statement is written by hand (``permissions.access``, ``exchange.files``): names come from
model metadata, never from input; rows come back converted as the ORM converts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections
from django.db.models import Model


def table(model: type[Model]) -> str:
    return f'"{model._meta.db_table}"'


def column(model: type[Model], field: str) -> str:
    return f'"{model._meta.get_field(field).column}"'  # type: ignore[union-attr]


def columns(model: type[Model], alias: str) -> list[str]:
    """All the model's concrete columns, qualified with ``alias``, in field order."""
    return [f'{alias}."{field.column}"' for field in model._meta.concrete_fields]


def model_from_row(model: type[Model], values: Sequence[Any], connection: Any) -> Any:
    """A model instance from raw column values (``columns`` order), converted as the ORM converts them."""
    return rows_to_models(model, [values], connection)[0]


def rows_to_models(model: type[Model], rows: Sequence[Sequence[Any]], connection: Any) -> list[Any]:
    """Model instances from raw rows of all the model's concrete columns, converted as the ORM converts them."""
    db = connections[connection.alias]  # the wrapper itself, not the proxy that looks it up per attribute
    names, converters = _converters(model, db)
    instances = []
    for row in rows:
        values = list(row)
        for n, col, found in converters:
            for converter in found:
                values[n] = converter(values[n], col, db)
        instances.append(model.from_db(db.alias, names, values))
    return instances


def _converters(model: type[Model], db: Any) -> tuple[list[str], list[tuple[int, Any, list[Any]]]]:
    """The model's column names and the ORM's converters of its columns, looked up once per connection
    wrapper (a converter may be a method of that connection's operations)."""
    cache: dict[type[Model], Any] = db.__dict__.setdefault("_lp_converters", {})
    if model not in cache:
        fields = model._meta.concrete_fields
        converters = []
        for n, field in enumerate(fields):
            col = field.get_col(model._meta.db_table)
            found = [*db.ops.get_db_converters(col), *col.get_db_converters(db)]
            if found:
                converters.append((n, col, found))
        cache[model] = ([field.attname for field in fields], converters)
    return cache[model]
