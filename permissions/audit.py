"""The audit hash chain (ACC-5): append, verify, export. No plaintext ever goes in."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from permissions.bulk import insert_rows
from permissions.models import AuditEvent, AuditHead
from permissions.prepared import server_bound

GENESIS = "0" * 64


def _canonical(
    *,
    sequence: int,
    at: datetime,
    actor_id: int | None,
    organisation_id: uuid.UUID | None,
    role: str,
    pupil_id: uuid.UUID | None,
    item_id: uuid.UUID | None,
    action: str,
    purpose: str,
    legal_basis: str,
    outcome: str,
) -> bytes:
    document = {
        "sequence": sequence,
        "at": canonical_at(at),
        "actor": actor_id,
        "organisation": str(organisation_id) if organisation_id else None,
        "role": role,
        "pupil": str(pupil_id) if pupil_id else None,
        "item": str(item_id) if item_id else None,
        "action": action,
        "purpose": purpose,
        "legal_basis": legal_basis,
        "outcome": outcome,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def canonical_at(at: datetime) -> str:
    """An event's time as the canonical document writes it (UTC, microseconds)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"|" + canonical).hexdigest()


def _event_canonical(event: AuditEvent) -> bytes:
    return _canonical(
        sequence=event.sequence,
        at=event.at,
        actor_id=event.actor_id,
        organisation_id=event.organisation_id,
        role=event.role,
        pupil_id=event.pupil_id,
        item_id=event.item_id,
        action=event.action,
        purpose=event.purpose,
        legal_basis=event.legal_basis,
        outcome=event.outcome,
    )


def actor_id_of(actor: Any) -> int | None:
    """The user an event names: an authenticated user's id, else none (anonymous, system)."""
    return actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None


def audit_append(
    *,
    action: str,
    outcome: str,
    actor: Any = None,
    organisation_id: uuid.UUID | None = None,
    role: str = "",
    pupil_id: uuid.UUID | None = None,
    item_id: uuid.UUID | None = None,
    purpose: str = "",
    legal_basis: str = "",
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction (or its own).

    On PostgreSQL one statement locks the head, inserts the event and moves the head (one round trip,
    its own transaction when the caller has none); elsewhere the ORM does the same in three.
    """
    fields = _event_fields(
        action=action,
        outcome=outcome,
        actor=actor,
        organisation_id=organisation_id,
        role=role,
        pupil_id=pupil_id,
        item_id=item_id,
        purpose=purpose,
        legal_basis=legal_basis,
    )
    if connection.vendor == "postgresql":
        return _append_postgresql(fields)
    # No savepoint: an append that fails fails the caller's transaction too (nothing is read unaudited).
    with transaction.atomic(savepoint=False):
        head, _created = AuditHead.objects.select_for_update().get_or_create(id=1)
        sequence = head.sequence + 1
        digest = _hash(head.hash, _canonical(sequence=sequence, **fields))
        event = AuditEvent.objects.create(sequence=sequence, prev_hash=head.hash, hash=digest, **fields)
        head.sequence = sequence
        head.hash = digest
        head.save(update_fields=["sequence", "hash"])
    return event


# An event's optional fields and their values when not given (``audit_append``'s keywords).
_EVENT_DEFAULTS: dict[str, Any] = {
    "organisation_id": None,
    "role": "",
    "pupil_id": None,
    "item_id": None,
    "purpose": "",
    "legal_basis": "",
}


def _event_fields(*, action: str, outcome: str, actor: Any = None, **given: Any) -> dict[str, Any]:
    """The columns of an event described with ``audit_append``'s keywords, stamped now."""
    unknown = set(given) - set(_EVENT_DEFAULTS)
    if unknown:
        raise TypeError(f"not an audit event field: {', '.join(sorted(unknown))}")
    return {
        "at": timezone.now(),
        "actor_id": actor_id_of(actor),
        **_EVENT_DEFAULTS,
        **given,
        "action": action,
        "outcome": outcome,
    }


_SEQUENCE_LAST = b',"sequence":0}'


def head_lock_statement() -> str:
    """PostgreSQL: lock the chain's head until the transaction ends (one row; none without a head)."""
    head_table = connection.ops.quote_name(AuditHead._meta.db_table)
    return f"SELECT sequence FROM {head_table} WHERE id = 1 FOR UPDATE"  # noqa: S608 - name from model metadata


def _append_sql(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """Lock the head, hash, insert and move the head in one statement (``_append_text``), and its one value.

    The value is the event's canonical document (``_canonical``) up to its sequence, which sorts last among
    the keys: the statement hashes ``prev_hash|document<n>}`` with PostgreSQL's ``sha256``, the digest
    ``_hash`` gives (``audit_verify`` recomputes every one in Python), and takes the row's columns from the
    same document. What is stored is what was hashed, and a read's append adapts one string, not a value
    per column (docs/performance.md).
    """
    zero = _canonical(sequence=0, **fields)
    if not zero.endswith(_SEQUENCE_LAST):  # pragma: no cover - guards a change of the canonical form
        raise RuntimeError("the canonical audit document no longer ends with its sequence")
    return _append_text(connections[DEFAULT_DB_ALIAS].vendor), [zero[: -len(b"0}")].decode("ascii")]


@functools.cache
def _append_text(vendor: str) -> str:
    """The append statement: built once.

    The head row is locked ``FOR UPDATE`` first, so concurrent appends queue on it and each sees its
    predecessor. Each column is read from the document (``->>`` gives NULL for a JSON null) and cast to its
    column's type; text goes in as it is, so a value too long for its column fails the statement rather than
    being cut."""
    quote = connection.ops.quote_name
    event_table, head_table = quote(AuditEvent._meta.db_table), quote(AuditHead._meta.db_table)
    columns: list[str] = []
    values: list[str] = []
    for key in _canonical_keys()[:-1]:
        field: Any = AuditEvent._meta.get_field(_COLUMN_OF_KEY.get(key, key))
        if not re.fullmatch(r"[a-z_]+", key):  # pragma: no cover - the keys are _canonical's own
            raise RuntimeError(f"not a canonical key: {key!r}")
        value = f"lp_doc ->> '{key}'"
        if field.get_internal_type() != "CharField":
            value = f"CAST({value} AS {field.db_type(connection)})"
        columns.append(quote(field.column))
        values.append(value)
    return (
        f"WITH head AS (SELECT sequence, hash FROM {head_table} WHERE id = 1 FOR UPDATE),"  # noqa: S608 - names from model metadata, keys checked
        " given AS (SELECT %s::text AS prefix),"
        " next AS (SELECT sequence + 1 AS sequence, hash AS prev_hash,"
        " encode(sha256(convert_to(hash || '|' || prefix || (sequence + 1)::text || '}', 'UTF8')), 'hex') AS hash,"
        " CAST(prefix || '0}' AS jsonb) AS lp_doc FROM head CROSS JOIN given),"
        f" event AS (INSERT INTO {event_table} (sequence, {', '.join(columns)}, prev_hash, hash)"
        f" SELECT sequence, {', '.join(values)}, prev_hash, hash FROM next"
        " RETURNING id, sequence, prev_hash, hash)"
        f" UPDATE {head_table} SET sequence = event.sequence, hash = event.hash FROM event"
        f" WHERE {head_table}.id = 1 RETURNING event.id, event.sequence, event.prev_hash, event.hash"
    )


def _append_postgresql(fields: dict[str, Any]) -> AuditEvent:
    """``_append_sql``, run; the first event ever creates the head first."""
    sql, params = _append_sql(fields)
    head_table = connection.ops.quote_name(AuditHead._meta.db_table)
    with server_bound(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:  # the first event ever: create the head, then append
            with transaction.atomic(savepoint=False):
                cursor.execute(
                    f"INSERT INTO {head_table} (id, sequence, hash) VALUES (1, 0, %s) ON CONFLICT (id) DO NOTHING",  # noqa: S608 - names from model metadata
                    [GENESIS],
                )
                cursor.execute(sql, params)
                row = cursor.fetchone()
    event_id, sequence, prev_hash, digest = row
    event = AuditEvent(id=event_id, sequence=sequence, prev_hash=prev_hash, hash=digest, **fields)
    event._state.adding = False
    event._state.db = connection.alias
    return event


# --- Appending from SQL: the decision and its audit event in one statement (permissions.access) -----

_LITERAL = re.compile(r'[{},:]?"[A-Za-z0-9_.-]*":?')


def json_literal(value: str, *, before: str = "", after: str = "") -> str:
    """``before``, a code's JSON text and ``after`` as an SQL string literal. Codes only: the text is checked
    to hold no quote, backslash or percent sign that could change the SQL or its placeholders."""
    text = before + json.dumps(value) + after
    if not _LITERAL.fullmatch(text):
        raise ValueError(f"not an audit code: {value!r}")
    return "'" + text + "'"


@dataclass(frozen=True)
class SqlField:
    """One event field written by SQL: ``value`` for its column, ``json`` for its JSON text in the canonical
    document (as ``json.dumps`` writes it, so ``audit_verify`` recomputes the same hash in Python)."""

    value: str
    json: str


def _canonical_keys() -> list[str]:
    sample = _canonical(
        sequence=0,
        at=datetime(2000, 1, 1, tzinfo=UTC),
        actor_id=None,
        organisation_id=None,
        role="",
        pupil_id=None,
        item_id=None,
        action="",
        purpose="",
        legal_basis="",
        outcome="",
    )
    return list(json.loads(sample))


# The canonical document's keys name these columns (the others are the same word).
_COLUMN_OF_KEY = {"actor": "actor_id", "organisation": "organisation_id", "pupil": "pupil_id", "item": "item_id"}


def chained_append_sql(*, source: str, fields: dict[str, SqlField]) -> str:
    """CTEs, to follow in a ``WITH`` list after ``source`` (a CTE of at most one row), that append the event
    ``fields`` describe to the chain when ``source`` has its row: lock the head, hash, insert, move the head.
    ``lp_moved`` returns the new event's sequence (no row: no event, or no head yet).

    The SQL writes the canonical document (``_canonical``) itself: ``fields`` give each value's JSON text,
    and the keys, in their sorted order, are literals, with the sequence last. ``audit_verify`` recomputes
    every hash from the stored columns in Python, so a difference between the two writers breaks the chain
    at its first event (tests compare them field by field). The head is locked ``FOR UPDATE`` as in
    ``_append_postgresql``: concurrent appends queue on it and each sees its predecessor.
    """
    keys = _canonical_keys()
    if keys[-1] != "sequence" or set(keys[:-1]) != set(fields):
        raise ValueError(f"the event fields must be the canonical keys but the sequence: {keys}")
    parts = []
    for n, key in enumerate(keys):
        parts.append(json_literal(key, before="{" if n == 0 else ",", after=":"))
        if key != "sequence":
            parts.append(f"({fields[key].json})")
    document = " || ".join(parts)
    event, head = (
        connection.ops.quote_name(AuditEvent._meta.db_table),
        connection.ops.quote_name(AuditHead._meta.db_table),
    )
    columns = [_COLUMN_OF_KEY.get(key, key) for key in keys[:-1]]
    return (
        f"lp_head AS (SELECT sequence, hash FROM {head} WHERE id = 1 FOR UPDATE),"  # noqa: S608 - names from model metadata
        " lp_next AS (SELECT lp_h.sequence + 1 AS sequence, lp_h.hash AS prev_hash,"
        f" {', '.join(f'{fields[key].value} AS {column}' for key, column in zip(keys[:-1], columns, strict=True))},"
        f" encode(sha256(convert_to(lp_h.hash || '|' || {document} || (lp_h.sequence + 1)::text || '}}', 'UTF8')),"
        f" 'hex') AS hash FROM {source} CROSS JOIN lp_head lp_h),"
        f" lp_event AS (INSERT INTO {event} (sequence, {', '.join(columns)}, prev_hash, hash)"
        f" SELECT sequence, {', '.join(columns)}, prev_hash, hash FROM lp_next RETURNING sequence, hash),"
        f" lp_moved AS (UPDATE {head} SET sequence = lp_event.sequence, hash = lp_event.hash FROM lp_event"
        f" WHERE {head}.id = 1 RETURNING lp_event.sequence)"
    )


def ensure_head() -> None:
    """Create the chain's head if it does not exist yet (before the first event ever)."""
    AuditHead.objects.get_or_create(id=1)


@dataclass(frozen=True)
class EventSpec:
    action: str
    outcome: str
    actor_id: int | None = None
    organisation_id: uuid.UUID | None = None
    role: str = ""
    pupil_id: uuid.UUID | None = None
    item_id: uuid.UUID | None = None
    purpose: str = ""
    legal_basis: str = ""


EVENT_COLUMNS = (
    "sequence",
    "at",
    "actor",
    "organisation_id",
    "role",
    "pupil_id",
    "item_id",
    "action",
    "purpose",
    "legal_basis",
    "outcome",
    "prev_hash",
    "hash",
)


def audit_append_many(*, events: list[EventSpec]) -> int:
    """Append many events under one lock of the head, in one bulk insert (bulk grants, handovers)."""
    if not events:
        return 0
    with transaction.atomic():
        head, _created = AuditHead.objects.select_for_update().get_or_create(id=1)
        sequence, prev = head.sequence, head.hash
        at = timezone.now()
        rows = []
        for spec in events:
            sequence += 1
            canonical = _canonical(
                sequence=sequence,
                at=at,
                actor_id=spec.actor_id,
                organisation_id=spec.organisation_id,
                role=spec.role,
                pupil_id=spec.pupil_id,
                item_id=spec.item_id,
                action=spec.action,
                purpose=spec.purpose,
                legal_basis=spec.legal_basis,
                outcome=spec.outcome,
            )
            digest = _hash(prev, canonical)
            rows.append(
                (
                    sequence,
                    at,
                    spec.actor_id,
                    spec.organisation_id,
                    spec.role,
                    spec.pupil_id,
                    spec.item_id,
                    spec.action,
                    spec.purpose,
                    spec.legal_basis,
                    spec.outcome,
                    prev,
                    digest,
                )
            )
            prev = digest
        insert_rows(AuditEvent, EVENT_COLUMNS, rows)
        head.sequence = sequence
        head.hash = prev
        head.save(update_fields=["sequence", "hash"])
    return len(rows)


@dataclass(frozen=True)
class ChainBreak:
    sequence: int
    reason: str


def audit_verify(*, batch_size: int = 5000) -> tuple[int, ChainBreak | None]:
    """Walk the chain in order; return the number of events checked and the first broken link."""
    expected_prev = GENESIS
    expected_sequence = 1
    checked = 0
    for event in _iterate(batch_size):
        if event.sequence != expected_sequence:
            return checked, ChainBreak(expected_sequence, "missing event (deleted row or gap in the sequence)")
        if event.prev_hash != expected_prev:
            return checked, ChainBreak(event.sequence, "previous hash does not match (row deleted or reordered)")
        if _hash(event.prev_hash, _event_canonical(event)) != event.hash:
            return checked, ChainBreak(event.sequence, "content does not match its hash (row modified)")
        expected_prev = event.hash
        expected_sequence += 1
        checked += 1
    head = AuditHead.objects.filter(id=1).first()
    if head is not None and (head.sequence != checked or head.hash != expected_prev):
        return checked, ChainBreak(checked + 1, "the chain ends before its recorded head (last rows deleted)")
    return checked, None


def _iterate(batch_size: int) -> Iterator[AuditEvent]:
    last = 0
    while True:
        batch = list(AuditEvent.objects.filter(sequence__gt=last).order_by("sequence")[:batch_size])
        if not batch:
            return
        yield from batch
        last = batch[-1].sequence
