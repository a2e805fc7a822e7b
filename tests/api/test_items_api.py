"""Encrypted pupil file items through the API: round trip, versions, bad input, integrity, shredding.

These prove ARCHITECTURE.md "Crypto follows the grants" and T-CLB-6 (one dossier per pupil).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from exchange.models import ClbDossier, IntegrityFailure, ItemVersion, PupilItem, WrappedKey
from tests import files as samples

pytestmark = pytest.mark.django_db


def create(world, persona: str, pupil=None, *, file: tuple[str, bytes] | None = None, **fields: Any):
    pupil = pupil or world.lotte
    data: dict[str, Any] = {"category": "career", "kind": "document", "title": "Klassenraad juni", **fields}
    if file is not None:
        data["file"] = SimpleUploadedFile(file[0], file[1], content_type="application/octet-stream")
    return world.client(persona).post(f"/api/v1/pupils/{pupil.id}/items/create", data, format="multipart")


def error_fields(response) -> dict:
    return response.json()["error"]["fields"] or {}


def test_upload_read_and_download_round_trip(world) -> None:
    response = create(world, "care_a", body="Attest B, herexamen wiskunde", file=("rapport juni.pdf", samples.PDF))
    assert response.status_code == 201, response.content
    item_id = response.json()["id"]
    detail = world.client("care_a").get(f"/api/v1/items/{item_id}").json()
    assert detail["title"] == "Klassenraad juni"
    assert detail["body"] == "Attest B, herexamen wiskunde"
    assert detail["file"] == {"name": "rapport juni.pdf", "content_type": "application/pdf", "size": len(samples.PDF)}
    download = world.client("care_a").get(f"/api/v1/items/{item_id}/file")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == samples.PDF
    assert download["Content-Type"] == "application/pdf"
    assert download["Content-Disposition"].startswith("attachment;")
    listed = world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}/items").json()["results"]
    assert [row["title"] for row in listed] == ["Klassenraad juni"]
    assert "body" not in listed[0]


@pytest.mark.parametrize(
    ("name", "content", "mime"),
    [
        ("a.pdf", samples.PDF, "application/pdf"),
        ("a.png", samples.PNG, "image/png"),
        ("a.jpg", samples.JPEG, "image/jpeg"),
        ("a.docx", samples.docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("a.odt", samples.odt(), "application/vnd.oasis.opendocument.text"),
        ("a.txt", "Gesprek met leerling – geen bijzonderheden".encode(), "text/plain"),
    ],
)
def test_allowed_types_are_recognised_by_content(world, name: str, content: bytes, mime: str) -> None:
    response = create(world, "care_a", file=(name, content))
    assert response.status_code == 201, response.content
    detail = world.client("care_a").get(f"/api/v1/items/{response.json()['id']}").json()
    assert detail["file"]["content_type"] == mime


@pytest.mark.parametrize(
    ("name", "content"),
    [("virus.pdf", samples.EXE), ("archive.docx", samples.plain_zip()), ("binary.txt", b"\x00\x01\x02\xff" * 50)],
)
def test_disallowed_content_is_refused_whatever_the_name(world, name: str, content: bytes) -> None:
    response = create(world, "care_a", file=(name, content))
    assert response.status_code == 400
    assert "file" in error_fields(response)
    assert PupilItem.objects.count() == 0


def test_file_name_is_sanitised_and_extension_follows_content(world) -> None:
    response = create(world, "care_a", file=("../../etc/pass<wd>|x.txt", samples.PDF))
    item_id = response.json()["id"]
    name = world.client("care_a").get(f"/api/v1/items/{item_id}").json()["file"]["name"]
    assert name.startswith("pass")
    assert name.endswith(".pdf")  # the extension follows the content, not the name
    assert not set(name) & set('/\\<>|"')
    disposition = world.client("care_a").get(f"/api/v1/items/{item_id}/file")["Content-Disposition"]
    assert "/" not in disposition
    assert disposition.count('"') == 2


def test_a_new_version_never_overwrites_the_old_one(world) -> None:
    item_id = create(world, "care_a", body="versie 1").json()["id"]
    response = world.client("care_a").post(
        f"/api/v1/items/{item_id}/versions", {"title": "Klassenraad juni (herzien)", "body": "versie 2"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["current_version"] == 2
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").json()["body"] == "versie 2"
    old = world.client("care_a").get(f"/api/v1/items/{item_id}?version=1").json()
    assert (old["body"], old["title"], old["version"]) == ("versie 1", "Klassenraad juni", 1)
    assert world.client("care_a").get(f"/api/v1/items/{item_id}?version=3").status_code == 400
    assert world.client("care_a").get(f"/api/v1/items/{item_id}?version=abc").status_code == 400
    # Each version has its own data key.
    versions = ItemVersion.objects.filter(item_id=item_id)
    assert {bytes(w.wrapped_dek) for w in WrappedKey.objects.filter(item_version__in=versions)}.__len__() == 2


def test_a_read_fetches_the_version_and_its_key_in_one_query(world, django_assert_num_queries) -> None:
    """A version opens only with the reader's organisation's wrap of its key (ARCHITECTURE "Crypto follows the
    grants"; S-4 relies on it: a withdrawal deletes the wrap), fetched with the version in one query; a version
    that does not exist is a 400, one without a wrap for the reader a 404 (nothing to decrypt)."""
    from rest_framework.exceptions import NotFound

    from exchange import files

    item_id = create(world, "care_a", body="versie 1").json()["id"]
    world.client("care_a").post(f"/api/v1/items/{item_id}/versions", {"title": "v2", "body": "versie 2"}, format="json")
    item = PupilItem.objects.get(pk=item_id)
    with django_assert_num_queries(1):
        decrypted = files.item_decrypt(item=item, organisation=world.orgs["A"], user=None, version=1)
    assert (decrypted.version.version, decrypted.body) == (1, "versie 1")
    with django_assert_num_queries(1):
        assert files.item_decrypt(item=item, organisation=world.orgs["A"], user=None).body == "versie 2"
    with pytest.raises(ValidationError):
        files.item_decrypt(item=item, organisation=world.orgs["A"], user=None, version=3)
    with pytest.raises(NotFound):  # organisation B holds no wrap of this item's keys
        files.item_decrypt(item=item, organisation=world.orgs["B"], user=None)


def test_a_read_opens_the_version_asked_for_with_the_deciding_organisations_wrap(world) -> None:
    """ARCHITECTURE "Crypto follows the grants" (S-4 relies on it): ``item_read`` decrypts the version asked
    for (the current one by default) with the wrap of the organisation the decision names, also for a user
    with several memberships whose key fetch brings back wraps of each; a version that does not exist is a
    400; with that organisation's wrap gone the item does not exist for the reader (404)."""
    from rest_framework.exceptions import NotFound

    from exchange import files
    from exchange.services import membership_grant
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import Basis

    item_id = create(world, "care_a", body="versie 1").json()["id"]
    world.client("care_a").post(f"/api/v1/items/{item_id}/versions", {"title": "v2", "body": "versie 2"}, format="json")
    care = world.users["care_a"]
    # Also a CLB worker at X, whose organisation holds a wrap of this item's key too: the decision names A.
    membership_grant(user=care, organisation=world.orgs["X"], role="clb_worker")
    item = PupilItem.objects.get(pk=item_id)
    spec = GrantSpec(item=item, organisation=world.orgs["X"], basis=Basis.CONSENT, rule="S-1", source_id=uuid.uuid4())
    grants_create(specs=[spec])
    assert WrappedKey.objects.filter(item_version__item=item, organisation=world.orgs["X"]).exists()
    read = files.item_read(user=care, item_id=item_id, version=1)
    assert (read.decrypted.version.version, read.decrypted.body, read.access.organisation) == (
        1,
        "versie 1",
        world.orgs["A"],
    )
    assert files.item_read(user=care, item_id=item_id).decrypted.body == "versie 2"
    with pytest.raises(ValidationError):
        files.item_read(user=care, item_id=item_id, version=3)
    assert world.client("care_a").get(f"/api/v1/items/{item_id}?version=3").status_code == 400
    WrappedKey.objects.filter(item_version__item=item, item_version__version=2, organisation=world.orgs["A"]).delete()
    with pytest.raises(NotFound):
        files.item_read(user=care, item_id=item_id)
    assert files.item_read(user=care, item_id=item_id, version=1).decrypted.body == "versie 1"


def test_verslag_records_its_type_and_dates(world) -> None:
    bad = create(world, "care_a", category="report", kind="verslag", body="...")
    assert bad.status_code == 400
    assert {"report_type", "report_valid_from"} <= set(error_fields(bad))
    ok = create(
        world,
        "care_a",
        category="report",
        kind="verslag",
        body="Verslag toegang buitengewoon onderwijs",
        report_type="type 9",
        report_valid_from="2025-09-01",
        report_valid_until="2027-08-31",
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["report_type"] == "type 9"
    wrong_kind = create(world, "care_a", category="report", kind="note", body="x")
    assert wrong_kind.status_code == 400


def test_t_clb_6_clb_items_belong_to_one_dossier_per_pupil(world) -> None:
    first = create(world, "worker_x", category="guidance", kind="note", body="Intake").json()
    second = create(world, "doctor_x", category="medical", kind="record", body="Consult").json()
    assert first["dossier"] == second["dossier"]
    assert ClbDossier.objects.filter(pupil=world.lotte).count() == 1
    assert second["health"] is True  # health categories are always flagged


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"category": "gossip"}, "category"),
        ({"category": "guidance"}, "category"),  # a school holds no guidance items
        ({"category": "naft_progress"}, "category"),
        ({"kind": "poem"}, "kind"),
        ({"title": ""}, "title"),
        ({"authored_on": "yesterday"}, "authored_on"),
        ({"holder": str(uuid.uuid4())}, "holder"),
    ],
)
def test_bad_item_input_gets_a_clear_400(world, fields: dict, field: str) -> None:
    response = create(world, "care_a", body="x", **fields)
    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert PupilItem.objects.count() == 0


def test_item_needs_a_body_or_a_file(world) -> None:
    response = create(world, "care_a")
    assert response.status_code == 400
    assert "body" in error_fields(response)


@pytest.mark.parametrize(
    "purpose",
    ["p" * 101, "MDO\x00voorbereiden", "regel\nnieuwe regel", "tab\tgescheiden"],
    ids=["too-long", "nul", "newline", "tab"],
)
def test_acc5_a_purpose_that_cannot_be_kept_as_given_is_a_400_and_nothing_is_shown(world, purpose: str) -> None:
    """ACC-5: the stated purpose (``X-Purpose``) goes into the audit trail as given, so one that is too long or
    holds control characters is refused with a 400 naming the header, on every audited operation, before
    anything is shown, written or recorded (it was cut to 100 characters, and a NUL failed the read's commit)."""
    from permissions.models import AuditEvent

    item_id = create(world, "care_a", body="Gesprek met ouders").json()["id"]
    client = world.client("care_a")
    events = AuditEvent.objects.count()
    requests = [
        client.get(f"/api/v1/items/{item_id}", HTTP_X_PURPOSE=purpose),
        client.get(f"/api/v1/items/{item_id}/file", HTTP_X_PURPOSE=purpose),
        client.get(f"/api/v1/pupils/{world.lotte.id}/items", HTTP_X_PURPOSE=purpose),
        client.get("/api/v1/items", HTTP_X_PURPOSE=purpose),
        client.post(
            f"/api/v1/items/{item_id}/versions", {"title": "t", "body": "b"}, format="json", HTTP_X_PURPOSE=purpose
        ),
    ]
    for response in requests:
        assert response.status_code == 400, response.content
        assert "X-Purpose" in error_fields(response)
        assert b"Gesprek" not in response.content
    assert AuditEvent.objects.count() == events
    assert ItemVersion.objects.filter(item_id=item_id).count() == 1
    kept = "p" * 100
    assert client.get(f"/api/v1/items/{item_id}", HTTP_X_PURPOSE=kept).status_code == 200
    assert AuditEvent.objects.filter(item_id=item_id, action="read").get().purpose == kept


def test_missing_pupil_or_pupil_of_another_organisation_is_404(world) -> None:
    missing = world.client("care_a").post(
        f"/api/v1/pupils/{uuid.uuid4()}/items/create", {"category": "career", "kind": "note", "title": "t", "body": "b"}
    )
    assert missing.status_code == 404
    assert create(world, "care_a", pupil=world.sam, body="x").status_code == 404  # Sam is at school C
    assert create(world, "worker_y", category="guidance", kind="note", body="x").status_code == 404
    assert world.client("care_b").get(f"/api/v1/pupils/{world.lotte.id}/items").status_code == 404


@pytest.mark.parametrize("persona", ["care_b", "worker_y", "worker_x", "coach_n", "stranger", "parent_lotte"])
def test_only_the_holding_organisation_reaches_an_item(world, persona: str) -> None:
    item_id = create(world, "care_a", body="x", file=("a.pdf", samples.PDF)).json()["id"]
    for path in (f"/api/v1/items/{item_id}", f"/api/v1/items/{item_id}/file"):
        response = world.client(persona).get(path)
        assert response.status_code == 404
        assert response.json() == world.client(persona).get(f"/api/v1/items/{uuid.uuid4()}").json()
    assert world.client(None).get(f"/api/v1/items/{item_id}").status_code == 401


@override_settings(LP_MAX_UPLOAD_BYTES=1024)
def test_upload_over_the_limit_is_refused_while_streaming_and_nothing_is_stored(world) -> None:
    response = create(world, "care_a", file=("big.txt", b"a" * 5000))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert "MB" in response.json()["error"]["message"]
    assert PupilItem.objects.count() == 0
    assert ItemVersion.objects.count() == 0


def _item_with_file(world) -> tuple[str, ItemVersion]:
    item_id = create(world, "care_a", body="geheim", file=("a.pdf", samples.PDF)).json()["id"]
    return item_id, ItemVersion.objects.get(item_id=item_id)


def _flip(blob: bytes, at: int = -1) -> bytes:
    data = bytearray(blob)
    data[at] ^= 0x01
    return bytes(data)


def test_flipped_byte_in_content_is_refused_and_recorded(world) -> None:
    item_id, version = _item_with_file(world)
    ItemVersion.objects.filter(pk=version.pk).update(body_ciphertext=_flip(bytes(version.body_ciphertext)))
    response = world.client("care_a").get(f"/api/v1/items/{item_id}")
    assert response.status_code == 409
    assert b"geheim" not in response.content
    assert IntegrityFailure.objects.filter(item_version=version, part="body").count() == 1


def test_flipped_byte_in_wrapped_key_is_refused_and_recorded(world) -> None:
    item_id, version = _item_with_file(world)
    wrap = WrappedKey.objects.get(item_version=version)
    WrappedKey.objects.filter(pk=wrap.pk).update(wrapped_dek=_flip(bytes(wrap.wrapped_dek), 20))
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 409
    assert IntegrityFailure.objects.filter(item_version=version, part="wrap").exists()


def test_ciphertext_swapped_between_two_items_does_not_decrypt(world) -> None:
    first_id, first = _item_with_file(world)
    second_id, second = _item_with_file(world)
    # Even with the right key for the row, a title moved from another item fails (AAD binds the item id).
    ItemVersion.objects.filter(pk=second.pk).update(title_ciphertext=bytes(first.title_ciphertext))
    assert world.client("care_a").get(f"/api/v1/items/{second_id}").status_code == 409
    assert world.client("care_a").get(f"/api/v1/items/{first_id}").status_code == 200


def test_flipped_byte_in_stored_file_stops_the_download(world) -> None:
    from exchange.crypto.aead import CryptoIntegrityError

    item_id, version = _item_with_file(world)
    path = default_storage.path(version.file_blob)
    with open(path, "r+b") as handle:
        handle.seek(30)
        byte = handle.read(1)
        handle.seek(30)
        handle.write(bytes([byte[0] ^ 0x01]))
    response = world.client("care_a").get(f"/api/v1/items/{item_id}/file")
    with pytest.raises(CryptoIntegrityError):
        b"".join(response.streaming_content)
    assert IntegrityFailure.objects.filter(item_version=version, part="file").exists()


def test_stored_file_holds_only_ciphertext(world) -> None:
    _item_id, version = _item_with_file(world)
    with default_storage.open(version.file_blob, "rb") as handle:
        stored = handle.read()
    assert samples.PDF not in stored
    assert b"%PDF" not in stored
    assert str(world.lotte.id) not in version.file_blob or version.file_blob.startswith("items/")


def test_shredding_destroys_every_wrap_and_the_blob_for_good(world, django_capture_on_commit_callbacks) -> None:
    from rest_framework.exceptions import NotFound

    from exchange import files

    item_id, version = _item_with_file(world)
    world.client("care_a").post(f"/api/v1/items/{item_id}/versions", {"title": "v2", "body": "v2"}, format="json")
    url = f"/api/v1/items/{item_id}/shred"
    assert world.client("care_a").post(url, {"reason": "erasure_request"}, format="json").status_code == 404
    assert world.client("director_a").post(url, {"reason": "because"}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("director_a").post(url, {"reason": "erasure_request"}, format="json")
    assert response.status_code == 200
    item = PupilItem.objects.get(pk=item_id)
    assert item.shredded_at is not None
    assert item.shredded_by == world.users["director_a"]
    assert item.shred_reason == "erasure_request"
    assert not WrappedKey.objects.filter(item_version__item_id=item_id).exists()
    assert not default_storage.exists(version.file_blob)
    assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 404
    # Even a caller that bypasses the access check cannot decrypt: no wrap is left.
    with pytest.raises(NotFound):
        files.item_decrypt(item=item, organisation=world.orgs["A"], user=None)
