"""Pupil identity at rest: encrypted per pupil, found by an HMAC blind index.

The identity (names, national number, birth date, address) is one JSON document encrypted with
AES-256-GCM under a per-pupil DEK, with associated data binding it to the pupil id, so an identity
blob copied onto another pupil row fails to decrypt. The DEK is wrapped under the platform's
identity KEK (``org_id = "platform:identity"``): identification data are needed by every
organisation with a relation to the pupil (DOMAIN.md: `identification` always moves), so who may
*see* them is decided by the relation check in the selectors, not by per-organisation wraps.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import date

from exchange.crypto import aead
from exchange.crypto.keyring import keyring_from_settings, wrap_aad
from exchange.domain import CAPACITY_PRESUMPTION_AGE, age_on

IDENTITY_KEK_ORG = "platform:identity"
NATIONAL_NUMBER_NAMESPACE = "national_number"


@dataclass(frozen=True)
class PupilIdentity:
    national_number: str
    first_name: str
    last_name: str
    birth_date: date
    address: str

    def age_on(self, day: date) -> int:
        return age_on(self.birth_date, day)

    def is_presumed_capable(self, day: date) -> bool:
        """CAP-1: presumed capable from 12 on the day of the decision."""
        return self.age_on(day) >= CAPACITY_PRESUMPTION_AGE


@dataclass(frozen=True)
class SealedIdentity:
    ciphertext: bytes
    wrapped_dek: bytes
    kek_version: int


def _aad(pupil_id: uuid.UUID) -> bytes:
    return aead.item_aad(purpose="identity", item_id=str(pupil_id), version=1, category="identification")


def _wrap_aad(pupil_id: uuid.UUID) -> bytes:
    return wrap_aad(item_id=f"pupil:{pupil_id}", org_id=IDENTITY_KEK_ORG)


def national_number_index(national_number: str) -> str:
    """Blind index of a normalised national number (HMAC under the separate blind-index key)."""
    return keyring_from_settings().blind_index(namespace=NATIONAL_NUMBER_NAMESPACE, value=national_number)


def identity_seal(*, pupil_id: uuid.UUID, identity: PupilIdentity) -> SealedIdentity:
    """Encrypt an identity for the pupil row ``pupil_id`` under a fresh DEK."""
    document = asdict(identity) | {"birth_date": identity.birth_date.isoformat()}
    dek = aead.new_dek()
    ciphertext = aead.encrypt(
        dek=dek, plaintext=json.dumps(document, sort_keys=True).encode("utf-8"), aad=_aad(pupil_id)
    )
    version, wrapped = keyring_from_settings().wrap(org_id=IDENTITY_KEK_ORG, dek=dek, aad=_wrap_aad(pupil_id))
    return SealedIdentity(ciphertext=ciphertext, wrapped_dek=wrapped, kek_version=version)


def identity_open(*, pupil_id: uuid.UUID, sealed: SealedIdentity) -> PupilIdentity:
    """Decrypt a pupil's identity; raises ``CryptoIntegrityError`` if anything was tampered with."""
    dek = keyring_from_settings().unwrap(
        org_id=IDENTITY_KEK_ORG,
        kek_version=sealed.kek_version,
        wrapped=bytes(sealed.wrapped_dek),
        aad=_wrap_aad(pupil_id),
    )
    document = json.loads(aead.decrypt(dek=dek, blob=bytes(sealed.ciphertext), aad=_aad(pupil_id)))
    return PupilIdentity(
        national_number=document["national_number"],
        first_name=document["first_name"],
        last_name=document["last_name"],
        birth_date=date.fromisoformat(document["birth_date"]),
        address=document["address"],
    )


@dataclass(frozen=True)
class ParentIdentity:
    first_name: str
    last_name: str
    email: str


def _parent_aad(parent_id: uuid.UUID) -> bytes:
    return aead.item_aad(purpose="parent_identity", item_id=str(parent_id), version=1, category="identification")


def _parent_wrap_aad(parent_id: uuid.UUID) -> bytes:
    return wrap_aad(item_id=f"parent:{parent_id}", org_id=IDENTITY_KEK_ORG)


def parent_identity_seal(*, parent_id: uuid.UUID, identity: ParentIdentity) -> SealedIdentity:
    """Encrypt a parent's names and e-mail address for the row ``parent_id`` under a fresh DEK."""
    dek = aead.new_dek()
    plaintext = json.dumps(asdict(identity), sort_keys=True).encode("utf-8")
    ciphertext = aead.encrypt(dek=dek, plaintext=plaintext, aad=_parent_aad(parent_id))
    version, wrapped = keyring_from_settings().wrap(org_id=IDENTITY_KEK_ORG, dek=dek, aad=_parent_wrap_aad(parent_id))
    return SealedIdentity(ciphertext=ciphertext, wrapped_dek=wrapped, kek_version=version)


def parent_identity_open(*, parent_id: uuid.UUID, sealed: SealedIdentity) -> ParentIdentity:
    dek = keyring_from_settings().unwrap(
        org_id=IDENTITY_KEK_ORG,
        kek_version=sealed.kek_version,
        wrapped=bytes(sealed.wrapped_dek),
        aad=_parent_wrap_aad(parent_id),
    )
    document = json.loads(aead.decrypt(dek=dek, blob=bytes(sealed.ciphertext), aad=_parent_aad(parent_id)))
    return ParentIdentity(**document)


def parent_rewrap_aad(parent_id: uuid.UUID) -> bytes:
    """The wrap AAD of a parent's identity DEK (for key rotation)."""
    return _parent_wrap_aad(parent_id)


def identity_rewrap_aad(pupil_id: uuid.UUID) -> bytes:
    """The wrap AAD of a pupil's identity DEK (for key rotation)."""
    return _wrap_aad(pupil_id)
