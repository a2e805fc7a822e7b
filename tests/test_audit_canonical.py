"""The audit event's canonical document (ACC-5): the bytes each event's hash covers.

``permissions.audit._canonical`` writes the document out directly (it runs on every read); these tests hold it
to the definition, ``json.dumps`` of the fields with sorted keys and no spaces, byte for byte. A difference
would make ``audit_verify`` report a broken chain for events written before and after it.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from permissions.audit import _canonical, canonical_at

TEXTS = [
    "",
    "read",
    "ACC-4",
    "clb_worker",
    'zorg "dringend"',
    "back\\slash",
    "50% van de tijd",
    "ça, één, ß",
    "tab\there",
    "nul\x00byte",
    "del\x7f",
    '{"json": [1, 2]}',
    "emoji \U0001f600",
    "~!#[]",
]


def _canonical_reference(**fields: Any) -> bytes:
    """The definition: json.dumps of the document, sorted keys, no spaces."""
    document = {
        "sequence": fields["sequence"],
        "at": canonical_at(fields["at"]),
        "actor": fields["actor_id"],
        "organisation": str(fields["organisation_id"]) if fields["organisation_id"] else None,
        "role": fields["role"],
        "pupil": str(fields["pupil_id"]) if fields["pupil_id"] else None,
        "item": str(fields["item_id"]) if fields["item_id"] else None,
        "action": fields["action"],
        "purpose": fields["purpose"],
        "legal_basis": fields["legal_basis"],
        "outcome": fields["outcome"],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_acc5_the_canonical_document_is_json_dumps_byte_for_byte() -> None:
    """ACC-5: for any text (quotes, backslashes, percent signs, control and non-ASCII characters), id and time,
    the document the chain hashes is exactly the sorted, compact JSON of the event's fields."""
    chooser = random.Random(20261203)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    for _ in range(3000):
        fields = {
            "sequence": chooser.choice([0, 1, 7, 10**12]),
            "at": datetime(2026, 1, 1, tzinfo=UTC).astimezone(chooser.choice(zones))
            + timedelta(microseconds=chooser.randrange(10**14)),
            "actor_id": chooser.choice([None, 1, 424242]),
            "organisation_id": chooser.choice([None, uuid.UUID(int=chooser.getrandbits(128))]),
            "role": chooser.choice(TEXTS),
            "pupil_id": chooser.choice([None, uuid.UUID(int=chooser.getrandbits(128))]),
            "item_id": chooser.choice([None, uuid.UUID(int=chooser.getrandbits(128))]),
            "action": chooser.choice(TEXTS),
            "purpose": chooser.choice(TEXTS) + chooser.choice(TEXTS),
            "legal_basis": chooser.choice(TEXTS),
            "outcome": chooser.choice(TEXTS),
        }
        assert _canonical(**fields) == _canonical_reference(**fields), fields
    every_character = "".join(chr(code) for code in range(0x300))
    fields.update(purpose=every_character, role=every_character)
    assert _canonical(**fields) == _canonical_reference(**fields)
