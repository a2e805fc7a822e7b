"""No pupil plaintext or key material at rest: every table, every stored file, the logs.

Pupils and items with unique marker strings are created through the API; then every table is
read with raw SQL and every stored file as raw bytes. ARCHITECTURE.md: "Nothing — database,
file storage, logs ... — holds pupil plaintext or key material."
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from exchange.crypto import aead
from exchange.domain import national_number_for
from tests.conftest import start_of_school_year
from tests.factories import years_ago

pytestmark = pytest.mark.django_db


def _row_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogatepass")


def _database_dump() -> bytes:
    parts: list[bytes] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names from introspection
            for row in cursor.fetchall():
                parts.extend(_row_bytes(value) for value in row)
    return b"\x00".join(parts)


def _storage_dump() -> bytes:
    root = Path(settings.MEDIA_ROOT)
    return b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret).rstrip(b"=")]


def test_no_marker_national_number_or_dek_at_rest(world, caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    deks: list[bytes] = []
    real_new_dek = aead.new_dek

    def recording_new_dek() -> bytes:
        dek = real_new_dek()
        deks.append(dek)
        return dek

    # Record every DEK the code generates (the real generator still makes it) so we can look for it.
    monkeypatch.setattr(aead, "new_dek", recording_new_dek)

    markers: list[str] = []
    numbers: list[str] = []

    def marker(label: str) -> str:
        value = f"MARKER{label}{uuid.uuid4().hex[:10]}"
        markers.append(value)
        return value

    for serial in range(3):
        birth = years_ago(13, days=serial)
        number = national_number_for(birth, 700 + serial)
        numbers.append(number)
        response = world.client("admin_b").post(
            "/api/v1/enrolments/create",
            {
                "school": str(world.orgs["B"].id),
                "national_number": number,
                "first_name": marker("first"),
                "last_name": marker("last"),
                "birth_date": birth.isoformat(),
                "address": marker("address"),
                "level": "secundair",
                "start": start_of_school_year().isoformat(),
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        pupil_id = response.json()["pupil"]
        parent = world.client("admin_b").post(
            f"/api/v1/pupils/{pupil_id}/parents",
            {
                "first_name": marker("pfirst"),
                "last_name": marker("plast"),
                "email": f"{marker('mail').lower()}@example.org",
            },
            format="json",
        )
        assert parent.status_code == 201, parent.content
        file_body = f"{marker('file')} verslag inhoud".encode()
        item = world.client("care_b").post(
            f"/api/v1/pupils/{pupil_id}/items/create",
            {
                "category": "career",
                "kind": "document",
                "title": marker("title"),
                "body": marker("body"),
                "file": SimpleUploadedFile(f"{marker('filename')}.txt", file_body),
            },
            format="multipart",
        )
        assert item.status_code == 201, item.content
        version = world.client("care_b").post(
            f"/api/v1/items/{item.json()['id']}/versions",
            {"title": marker("title2"), "body": marker("body2")},
            format="json",
        )
        assert version.status_code == 201
        # Reading decrypts: it must not leave plaintext behind either.
        assert world.client("care_b").get(f"/api/v1/items/{item.json()['id']}").status_code == 200
        assert b"".join(
            world.client("care_b").get(f"/api/v1/items/{item.json()['id']}/file?version=1").streaming_content
        )

    assert deks, "the items were encrypted with generated DEKs"
    database = _database_dump()
    storage = _storage_dump()
    logs = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).encode()
    for haystack_name, haystack in (("database", database), ("storage", storage), ("logs", logs)):
        for value in markers + numbers:
            assert value.encode() not in haystack, f"{value} found in {haystack_name}"
        for dek in deks:
            for form in _forms(dek):
                assert form not in haystack, f"a DEK found in {haystack_name}"
    # Uploads are sealed in memory-keyed temp files, removed after the request.
    leftovers = [name for name in os.listdir(os.environ.get("TMPDIR", "/tmp")) if name.startswith("lp-upload-")]  # noqa: S108
    assert leftovers == []
