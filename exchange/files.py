"""Pupil file items: create, version, read, stream and crypto-shred, all under envelope encryption.

Each version has a fresh DEK. Title, body and file name are ``aead.encrypt`` blobs, the file a
``aead.encrypt_stream`` stream in the file storage; all with associated data binding them to the
item id, version number, category and purpose, so a ciphertext moved to another row or version
fails to decrypt. The DEK exists only wrapped, once per organisation that may read the version
(``WrappedKey``); no wrap, no decryption.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import APIException

from exchange.crypto import aead
from exchange.crypto.aead import CryptoIntegrityError
from exchange.crypto.keyring import KeyringError, keyring_from_settings, wrap_aad
from exchange.filetypes import sanitise_file_name, sniff_content_type
from exchange.models import (
    HEALTH_CATEGORIES,
    Category,
    ClbDossier,
    IntegrityFailure,
    ItemVersion,
    Membership,
    Organisation,
    OrganisationKind,
    Pupil,
    PupilItem,
    WrappedKey,
)
from exchange.sqltext import column, columns, model_from_row, table
from exchange.uploads import SealedUpload

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 300
MAX_BODY_CHARS = 200_000


class ItemIntegrityError(APIException):
    """A stored ciphertext or wrapped key failed authentication; nothing of it is returned."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "integrity_failure"
    default_detail = "The stored content failed its integrity check and is not shown. The failure has been recorded."


@dataclass(frozen=True)
class FileInfo:
    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class DecryptedVersion:
    version: ItemVersion
    title: str
    body: str | None
    file: FileInfo | None


def _aad(item: PupilItem, version: int, purpose: str) -> bytes:
    return aead.item_aad(purpose=purpose, item_id=str(item.id), version=version, category=item.category)


def version_wrap_aad(*, item_id: uuid.UUID, version: int, organisation_id: uuid.UUID) -> bytes:
    """Associated data of a version's wrapped DEK: binds item, version and organisation."""
    return wrap_aad(item_id=f"{item_id}/v{version}", org_id=str(organisation_id))


def _wrap_aad(item: PupilItem, version: int, organisation_id: uuid.UUID) -> bytes:
    return version_wrap_aad(item_id=item.id, version=version, organisation_id=organisation_id)


class _IterReader(io.RawIOBase):
    """A read-only file over an iterator of byte strings, so storages can stream it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _check_text(*, title: str, body: str | None) -> None:
    errors: dict[str, str] = {}
    if not title.strip():
        errors["title"] = _("A title is required.")
    elif len(title) > MAX_TITLE_CHARS:
        errors["title"] = _("A title has at most %(n)s characters.") % {"n": MAX_TITLE_CHARS}
    if body is not None and len(body) > MAX_BODY_CHARS:
        errors["body"] = _("A text body has at most %(n)s characters; attach longer texts as a file.") % {
            "n": MAX_BODY_CHARS
        }
    if errors:
        raise ValidationError(errors)


def _check_upload(upload: SealedUpload | None) -> str | None:
    if upload is None:
        return None
    content_type = sniff_content_type(upload.head)
    if content_type is None:
        raise ValidationError(
            {"file": _("This file type is not accepted: upload a PDF, PNG, JPEG, DOCX, ODT or plain text file.")}
        )
    return content_type


def _version_create(
    *,
    item: PupilItem,
    number: int,
    title: str,
    body: str | None,
    upload: SealedUpload | None,
    content_type: str | None,
    authored_on: date,
    author: Any,
    readers: Iterable[uuid.UUID],
) -> ItemVersion:
    dek = aead.new_dek()
    version = ItemVersion(
        id=uuid.uuid4(),
        item=item,
        version=number,
        title_ciphertext=aead.encrypt(dek=dek, plaintext=title.encode(), aad=_aad(item, number, "title")),
        body_ciphertext=(
            aead.encrypt(dek=dek, plaintext=body.encode(), aad=_aad(item, number, "body")) if body is not None else None
        ),
        authored_by=author,
        authored_on=authored_on,
    )
    if upload is not None and content_type is not None:
        safe_name = sanitise_file_name(upload.name or "", content_type)
        stream = aead.encrypt_stream(
            dek=dek,
            chunks=upload.chunks(),
            aad=_aad(item, number, "file"),
            segment_size=settings.LP_STREAM_SEGMENT_BYTES,
        )
        # The stored name carries no pupil data: ids only.
        blob = File(_IterReader(stream))  # type: ignore[arg-type]
        version.file_blob = default_storage.save(f"items/{item.id}/{version.id}.bin", blob)
        version.file_name_ciphertext = aead.encrypt(
            dek=dek, plaintext=safe_name.encode(), aad=_aad(item, number, "file_name")
        )
        version.file_size = upload.size
        version.file_content_type = content_type
    version.save(force_insert=True)
    keyring = keyring_from_settings()
    wraps = []
    for organisation_id in set(readers):
        kek_version, wrapped = keyring.wrap(
            org_id=str(organisation_id), dek=dek, aad=_wrap_aad(item, number, organisation_id)
        )
        wraps.append(
            WrappedKey(
                item_version=version, organisation_id=organisation_id, kek_version=kek_version, wrapped_dek=wrapped
            )
        )
    WrappedKey.objects.bulk_create(wraps)
    return version


@transaction.atomic
def item_create(
    *,
    pupil: Pupil,
    holder: Organisation,
    category: str,
    kind: str,
    title: str,
    body: str | None = None,
    upload: SealedUpload | None = None,
    authored_on: date | None = None,
    author: Any = None,
    flags: dict[str, bool] | None = None,
    report_type: str = "",
    report_valid_from: date | None = None,
    report_valid_until: date | None = None,
    item_rule: str = "",
) -> PupilItem:
    """Store a new item for ``pupil`` held by ``holder``, encrypted, readable by the holder."""
    _check_text(title=title, body=body)
    if body is None and upload is None:
        raise ValidationError({"body": _("An item needs a text body, a file, or both.")})
    content_type = _check_upload(upload)
    item = PupilItem(
        id=uuid.uuid4(),
        pupil=pupil,
        holder=holder,
        category=category,
        kind=kind,
        report_type=report_type,
        report_valid_from=report_valid_from,
        report_valid_until=report_valid_until,
        created_by=author,
        current_version=1,
        **(flags or {}),
    )
    if category in HEALTH_CATEGORIES:
        item.health = True
    if holder.kind == OrganisationKind.CLB:
        # T-CLB-6: one dossier per pupil; a CLB's items belong to it.
        item.dossier, _created = ClbDossier.objects.get_or_create(pupil=pupil, defaults={"clb": holder})
    item.full_clean(exclude=["pupil", "holder", "dossier", "created_by", "shredded_by"], validate_constraints=False)
    item.save(force_insert=True)
    version = _version_create(
        item=item,
        number=1,
        title=title,
        body=body,
        upload=upload,
        content_type=content_type,
        authored_on=authored_on or timezone.localdate(),
        author=author,
        readers=[holder.id],
    )
    # The holder's own grant (S-0): the ledger records every reader, the holder included.
    from permissions.audit import audit_append
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import AuditAction, AuditOutcome, Basis

    grants_create(specs=[GrantSpec(item=item, organisation=holder, basis=Basis.HOLDER, rule="S-0")], created_by=author)
    if category == Category.REPORT:
        from permissions.grants import enrolment_grants_sync

        enrolment_grants_sync(pupil_id=pupil.id, created_by=author)
    audit_append(
        action=AuditAction.WRITE,
        outcome=AuditOutcome.ALLOWED,
        actor=author,
        organisation_id=holder.id,
        pupil_id=pupil.id,
        item_id=item.id,
        purpose="create",
        legal_basis=item_rule or "S-0",
    )
    del version
    return item


@transaction.atomic
def item_add_version(
    *,
    item: PupilItem,
    title: str,
    body: str | None = None,
    upload: SealedUpload | None = None,
    authored_on: date | None = None,
    author: Any = None,
) -> ItemVersion:
    """Add a version; earlier versions stay untouched. Readers of the current version read the new one."""
    _check_text(title=title, body=body)
    if body is None and upload is None:
        raise ValidationError({"body": _("A version needs a text body, a file, or both.")})
    content_type = _check_upload(upload)
    locked = PupilItem.objects.select_for_update().get(pk=item.pk)
    if locked.is_shredded:
        raise ValidationError({"item": _("This item has been destroyed.")})
    readers = WrappedKey.objects.filter(item_version__item=locked, item_version__version=locked.current_version)
    number = locked.current_version + 1
    version = _version_create(
        item=locked,
        number=number,
        title=title,
        body=body,
        upload=upload,
        content_type=content_type,
        authored_on=authored_on or timezone.localdate(),
        author=author,
        readers=[*readers.values_list("organisation_id", flat=True), locked.holder_id],
    )
    locked.current_version = number
    locked.save(update_fields=["current_version"])
    item.current_version = number
    return version


def _record_failure(
    *, version: ItemVersion | None, item: PupilItem, organisation: Organisation, user: Any, part: str
) -> None:
    IntegrityFailure.objects.create(
        item_version=version,
        pupil_id=item.pupil_id,
        organisation=organisation,
        user=user if getattr(user, "is_authenticated", False) else None,
        part=part,
    )
    logger.error("integrity failure: item=%s part=%s organisation=%s", item.id, part, organisation.id)
    from permissions.audit import audit_append
    from permissions.models import AuditAction, AuditOutcome

    audit_append(
        action=AuditAction.INTEGRITY,
        outcome=AuditOutcome.FAILED,
        actor=user,
        organisation_id=organisation.id,
        pupil_id=item.pupil_id,
        item_id=item.id,
        purpose=part,
    )


@dataclass(frozen=True)
class _Sealed:
    """A version's ciphertexts with the reading organisation's wrap of its DEK: all a read needs from the
    database (``_sealed_statement``, one query); opening it is crypto only, unless the crypto fails."""

    item: PupilItem
    organisation: Organisation
    version: ItemVersion
    wrap: WrappedKey


class _Broken(Exception):
    """A ciphertext or wrap failed authentication (``part``); recorded by the caller, outside any read."""

    def __init__(self, part: str) -> None:
        super().__init__(part)
        self.part = part


def _sealed_statement(
    *, item_id: Any, version: int | None, user: Any = None, organisation: Any = None
) -> tuple[str, list[Any]]:
    """One query for a version (the current one when ``version`` is None) and its wraps for the reader: the
    wrap of ``organisation``, or of every organisation ``user`` is an active member of. A row per wrap found,
    or one row without a wrap; no row: no such version."""

    def prep(model: Any, value: Any) -> Any:
        return model._meta.pk.get_db_prep_value(model._meta.pk.to_python(value), connection)

    v, w, m = ItemVersion, WrappedKey, Membership
    selected = [*columns(v, "lp_v"), *columns(w, "lp_w")]
    if organisation is not None:
        readers, reader = "%s", prep(Organisation, organisation.pk)
    else:
        readers = (
            f"SELECT lp_m.{column(m, 'organisation')} FROM {table(m)} lp_m"  # noqa: S608 - names from model metadata
            f" WHERE lp_m.{column(m, 'user')} = %s AND lp_m.{column(m, 'active')}"
        )
        reader = getattr(user, "pk", None)
    item = prep(PupilItem, item_id)
    sql = (
        f"SELECT {', '.join(selected)} FROM {table(v)} lp_v"  # noqa: S608 - names from model metadata, values bound
        f" LEFT OUTER JOIN {table(w)} lp_w ON lp_w.{column(w, 'item_version')} = lp_v.{column(v, 'id')}"
        f" AND lp_w.{column(w, 'organisation')} IN ({readers})"
        f" WHERE lp_v.{column(v, 'item')} = %s AND lp_v.{column(v, 'version')} = COALESCE(%s,"
        f" (SELECT lp_i.{column(PupilItem, 'current_version')} FROM {table(PupilItem)} lp_i"
        f" WHERE lp_i.{column(PupilItem, 'id')} = %s))"
    )
    return sql, [reader, item, version, item]


def _sealed_from_rows(rows: list[Any], *, item: PupilItem, organisation: Organisation, version: int | None) -> _Sealed:
    """The version and ``organisation``'s wrap from ``_sealed_statement``'s rows. No version of that number: a
    400; no wrap for the organisation: a 404 (a grant without a wrapped key cannot decrypt, so to the reader
    the item does not exist)."""
    from rest_framework.exceptions import NotFound

    if not rows:
        number = version or item.current_version
        raise ValidationError({"version": _("This item has no version %(n)s.") % {"n": number}})
    width = len(ItemVersion._meta.concrete_fields)
    organisation_at = width + [f.name for f in WrappedKey._meta.concrete_fields].index("organisation")
    for row in rows:
        if row[organisation_at] is None:
            continue
        wrap = model_from_row(WrappedKey, row[width:], connection)
        if wrap.organisation_id == organisation.pk:
            row_version = model_from_row(ItemVersion, row[:width], connection)
            row_version.item = item
            return _Sealed(item=item, organisation=organisation, version=row_version, wrap=wrap)
    raise NotFound


def _unwrap(sealed: _Sealed) -> bytes:
    version, organisation = sealed.version, sealed.organisation
    try:
        return keyring_from_settings().unwrap(
            org_id=str(organisation.id),
            kek_version=sealed.wrap.kek_version,
            wrapped=bytes(sealed.wrap.wrapped_dek),
            aad=_wrap_aad(sealed.item, version.version, organisation.id),
        )
    except (CryptoIntegrityError, KeyringError):
        raise _Broken("wrap") from None


def _open(sealed: _Sealed, *, dek: bytes) -> DecryptedVersion:
    item, row = sealed.item, sealed.version
    part = "title"
    try:
        title = aead.decrypt(dek=dek, blob=bytes(row.title_ciphertext), aad=_aad(item, row.version, "title")).decode()
        part = "body"
        body = None
        if row.body_ciphertext is not None:
            body = aead.decrypt(dek=dek, blob=bytes(row.body_ciphertext), aad=_aad(item, row.version, "body")).decode()
        part = "file_name"
        file_info = None
        if row.file_blob and row.file_name_ciphertext is not None:
            name = aead.decrypt(
                dek=dek, blob=bytes(row.file_name_ciphertext), aad=_aad(item, row.version, "file_name")
            ).decode()
            file_info = FileInfo(name=name, content_type=row.file_content_type, size=row.file_size or 0)
    except CryptoIntegrityError:
        raise _Broken(part) from None
    return DecryptedVersion(version=row, title=title, body=body, file=file_info)


def _opened(sealed: _Sealed) -> tuple[DecryptedVersion, bytes] | _Broken:
    """Crypto only (no statement): the decrypted version and its DEK, or what failed."""
    try:
        dek = _unwrap(sealed)
        return _open(sealed, dek=dek), dek
    except _Broken as broken:
        return broken


def _checked(
    opened: tuple[DecryptedVersion, bytes] | _Broken, *, sealed: _Sealed, user: Any
) -> tuple[DecryptedVersion, bytes]:
    """``_opened``'s result, or its failure recorded (``IntegrityFailure`` and an audit event) and a 409."""
    if isinstance(opened, _Broken):
        version = sealed.version
        _record_failure(
            version=version, item=sealed.item, organisation=sealed.organisation, user=user, part=opened.part
        )
        raise ItemIntegrityError
    return opened


def item_decrypt(
    *, item: PupilItem, organisation: Organisation, user: Any, version: int | None = None
) -> DecryptedVersion:
    """Decrypt title, body and file name of a version with ``organisation``'s wrap. No access check: a read
    goes through ``item_read``; this one opens what an organisation holds the key of (one query)."""
    sql, params = _sealed_statement(item_id=item.pk, version=version, organisation=organisation)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    sealed = _sealed_from_rows(rows, item=item, organisation=organisation, version=version)
    return _checked(_opened(sealed), sealed=sealed, user=user)[0]


@dataclass(frozen=True)
class ItemRead:
    """One read of an item: who read it as what (``access``), the decrypted version, and what the caller's
    ``present`` made of them (``item_read``)."""

    access: Any
    decrypted: DecryptedVersion
    presented: Any = None


def _read(
    *, user: Any, item_id: Any, version: int | None, purpose: str, present: Callable[[ItemRead], Any] | None = None
) -> tuple[ItemRead, bytes]:
    from permissions.access import item_reading

    follow = _sealed_statement(item_id=item_id, version=version, user=user)
    presented = None
    with item_reading(user=user, item_id=item_id, follow=follow, purpose=purpose) as reading:
        # The read's audit event is committing: no statement in here, and nothing leaves before the block ends.
        access = reading.access
        sealed = _sealed_from_rows(reading.rows, item=access.item, organisation=access.organisation, version=version)
        opened = _opened(sealed)
        if present is not None and not isinstance(opened, _Broken):
            presented = present(ItemRead(access=access, decrypted=opened[0]))
    decrypted, dek = _checked(opened, sealed=sealed, user=user)
    return ItemRead(access=access, decrypted=decrypted, presented=presented), dek


def item_read(
    *,
    user: Any,
    item_id: Any,
    version: int | None = None,
    purpose: str = "",
    present: Callable[[ItemRead], Any] | None = None,
) -> ItemRead:
    """Read one item: decided and audited (``permissions.access.item_reading``), then its version (the current
    one by default) decrypted with the wrap of the organisation the user reads it for. ``NotFound`` when not
    allowed or missing, a 400 for a version that does not exist, a 409 when a ciphertext fails authentication.
    Returns once the read's audit event has committed (``AuditNotRecorded``, a 503, when it could not).

    ``present`` (the API's serializer) runs on the decrypted read while that commit is under way, so the two
    overlap; it may run no statement (``StatementDuringRead``), and what it returns is ``presented``."""
    return _read(user=user, item_id=item_id, version=version, purpose=purpose, present=present)[0]


def item_read_file(
    *, user: Any, item_id: Any, version: int | None = None, purpose: str = ""
) -> tuple[ItemRead, Iterator[bytes]]:
    """``item_read``, and the version's file decrypted as a stream of authenticated segments (``NotFound``
    when the version has no file)."""
    read, dek = _read(user=user, item_id=item_id, version=version, purpose=purpose)
    decrypted, item, organisation = read.decrypted, read.access.item, read.access.organisation
    if decrypted.file is None:
        from rest_framework.exceptions import NotFound

        raise NotFound
    row = decrypted.version

    def stream() -> Iterator[bytes]:
        with default_storage.open(row.file_blob, "rb") as handle:
            try:
                yield from aead.decrypt_stream(dek=dek, read=handle.read, aad=_aad(item, row.version, "file"))
            except CryptoIntegrityError:
                _record_failure(version=row, item=item, organisation=organisation, user=user, part="file")
                raise

    return read, stream()


def item_titles(*, items: list[PupilItem], organisation_ids: set[uuid.UUID], user: Any) -> dict[uuid.UUID, str]:
    """Titles of the current versions of ``items`` for a list, in two queries however long the list.

    Each title is decrypted with the wrap of one of ``organisation_ids`` (the reader's organisations).
    """
    versions = {
        v.item_id: v
        for v in ItemVersion.objects.filter(item__in=items, version__in={i.current_version for i in items}).only(
            "id", "item_id", "version", "title_ciphertext"
        )
        if v.version == next(i.current_version for i in items if i.pk == v.item_id)
    }
    wraps: dict[uuid.UUID, WrappedKey] = {}
    for candidate in WrappedKey.objects.filter(
        item_version__in=[v.id for v in versions.values()], organisation_id__in=organisation_ids
    ):
        wraps.setdefault(candidate.item_version_id, candidate)
    keyring = keyring_from_settings()
    by_id = {i.pk: i for i in items}
    titles: dict[uuid.UUID, str] = {}
    for item_id, version in versions.items():
        wrap = wraps.get(version.id)
        if wrap is None:
            continue
        item = by_id[item_id]
        try:
            dek = keyring.unwrap(
                org_id=str(wrap.organisation_id),
                kek_version=wrap.kek_version,
                wrapped=bytes(wrap.wrapped_dek),
                aad=_wrap_aad(item, version.version, wrap.organisation_id),
            )
            titles[item_id] = aead.decrypt(
                dek=dek, blob=bytes(version.title_ciphertext), aad=_aad(item, version.version, "title")
            ).decode()
        except (CryptoIntegrityError, KeyringError):
            _record_failure(version=version, item=item, organisation=item.holder, user=user, part="title")
            titles[item_id] = ""
    return titles


SHRED_REASONS = ("retention_expired", "erasure_request", "entered_in_error")


@transaction.atomic
def item_shred(*, item: PupilItem, by: Any, reason: str) -> PupilItem:
    """Crypto-shred an item: destroy every wrap of every version's DEK and the stored blobs; recorded."""
    if reason not in SHRED_REASONS:
        raise ValidationError({"reason": _("Choose one of: %(r)s.") % {"r": ", ".join(SHRED_REASONS)}})
    locked = PupilItem.objects.select_for_update().get(pk=item.pk)
    if locked.is_shredded:
        return locked
    WrappedKey.objects.filter(item_version__item=locked).delete()
    blobs = list(ItemVersion.objects.filter(item=locked).exclude(file_blob="").values_list("file_blob", flat=True))
    from permissions.audit import audit_append
    from permissions.grants import grants_revoke
    from permissions.models import AuditAction, AuditOutcome, Grant

    grants_revoke(grants=Grant.objects.filter(item=locked), revoked_by=by, purpose="shred")
    audit_append(
        action=AuditAction.SHRED,
        outcome=AuditOutcome.ALLOWED,
        actor=by,
        organisation_id=locked.holder_id,
        pupil_id=locked.pupil_id,
        item_id=locked.pk,
        purpose=reason,
        legal_basis="RET-1",
    )
    locked.shredded_at = timezone.now()
    locked.shredded_by = by
    locked.shred_reason = reason
    locked.save(update_fields=["shredded_at", "shredded_by", "shred_reason"])

    def delete_blobs() -> None:
        for name in blobs:
            default_storage.delete(name)

    transaction.on_commit(delete_blobs)
    return locked
