"""Key rotation rewraps every DEK under the newest KEK, resumably, without touching content."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import override_settings

from exchange.crypto.keyring import (
    DEVELOPMENT_BLIND_INDEX_KEY,
    DEVELOPMENT_KEKS,
    generate_kek_string,
    reset_keyring_cache,
)
from exchange.models import ItemVersion, Pupil, PupilParent, WrappedKey

pytestmark = pytest.mark.django_db

NEW_KEYRING = DEVELOPMENT_KEKS + "," + generate_kek_string(2)


@pytest.fixture
def items(world) -> list[str]:
    ids = []
    for n in range(5):
        response = world.client("care_a").post(
            f"/api/v1/pupils/{world.lotte.id}/items/create",
            {"category": "career", "kind": "note", "title": f"item {n}", "body": f"inhoud {n}"},
            format="json",
        )
        ids.append(response.json()["id"])
    return ids


@pytest.fixture
def rotated_keyring():
    reset_keyring_cache()
    with override_settings(LP_KEKS=NEW_KEYRING, LP_BLIND_INDEX_KEY=DEVELOPMENT_BLIND_INDEX_KEY):
        reset_keyring_cache()
        yield
    reset_keyring_cache()


def _content_snapshot() -> list[tuple]:
    return sorted(
        (str(v.id), bytes(v.title_ciphertext), bytes(v.body_ciphertext or b"")) for v in ItemVersion.objects.all()
    ) + sorted((str(p.id), bytes(p.identity_ciphertext)) for p in Pupil.objects.all())


def test_rotation_rewraps_everything_and_keeps_it_readable(world, items, rotated_keyring) -> None:
    before = _content_snapshot()
    out = io.StringIO()
    call_command("rotate_keys", "--no-progress", "--batch-size", "2", stdout=out)
    assert "0 left" in out.getvalue()
    assert set(WrappedKey.objects.values_list("kek_version", flat=True)) == {2}
    assert set(Pupil.objects.values_list("identity_kek_version", flat=True)) == {2}
    assert set(PupilParent.objects.values_list("identity_kek_version", flat=True)) == {2}
    assert _content_snapshot() == before  # content is never re-encrypted
    for n, item_id in enumerate(items):
        assert world.client("care_a").get(f"/api/v1/items/{item_id}").json()["body"] == f"inhoud {n}"
    lotte = world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}").json()
    assert lotte["first_name"] == "Lotte"
    assert lotte["parents"][0]["first_name"] == "An"
    again = io.StringIO()
    call_command("rotate_keys", "--no-progress", stdout=again)
    assert again.getvalue().startswith("Rewrapped 0 keys")


def test_interrupted_rotation_leaves_everything_readable_and_resumes(
    world, items, rotated_keyring, monkeypatch
) -> None:
    import tqdm

    calls = {"n": 0}
    real_update = tqdm.tqdm.update

    def interrupt_after_first_batch(self, n=1):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, after one committed batch
        return real_update(self, n)

    monkeypatch.setattr(tqdm.tqdm, "update", interrupt_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        call_command("rotate_keys", "--no-progress", "--batch-size", "2", stdout=io.StringIO())
    monkeypatch.setattr(tqdm.tqdm, "update", real_update)
    versions = list(WrappedKey.objects.values_list("kek_version", flat=True))
    assert set(versions) == {1, 2}  # half rotated: some wraps still under v1, some under v2
    for item_id in items:
        assert world.client("care_a").get(f"/api/v1/items/{item_id}").status_code == 200
    call_command("rotate_keys", "--no-progress", stdout=io.StringIO())
    assert set(WrappedKey.objects.values_list("kek_version", flat=True)) == {2}
