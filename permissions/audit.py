"""The audit hash chain (ACC-5): append, verify, export. No plaintext ever goes in."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from permissions.models import AuditEvent, AuditHead

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
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
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
    """Append one event to the chain, in the caller's transaction (or its own)."""
    actor_id = actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        head, _created = AuditHead.objects.select_for_update().get_or_create(id=1)
        sequence = head.sequence + 1
        at = timezone.now()
        canonical = _canonical(
            sequence=sequence,
            at=at,
            actor_id=actor_id,
            organisation_id=organisation_id,
            role=role,
            pupil_id=pupil_id,
            item_id=item_id,
            action=action,
            purpose=purpose,
            legal_basis=legal_basis,
            outcome=outcome,
        )
        digest = _hash(head.hash, canonical)
        event = AuditEvent.objects.create(
            sequence=sequence,
            at=at,
            actor_id=actor_id,
            organisation_id=organisation_id,
            role=role,
            pupil_id=pupil_id,
            item_id=item_id,
            action=action,
            purpose=purpose,
            legal_basis=legal_basis,
            outcome=outcome,
            prev_hash=head.hash,
            hash=digest,
        )
        head.sequence = sequence
        head.hash = digest
        head.save(update_fields=["sequence", "hash"])
    return event


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
                AuditEvent(
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
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        AuditEvent.objects.bulk_create(rows, batch_size=2000)
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
