"""Unit tests for exchange.crypto: AEAD blobs and streams, key wraps, rotation, blind indexes.

Pure tests: no database, no Django settings needed except in the last test (which configures
minimal settings itself when no settings module is active).

Most of these prove the ARCHITECTURE rule **"Crypto follows the grants"**: content is only
readable with a DEK, a DEK is only obtainable through a wrap for one organisation and one item,
and any attempt to move ciphertext or wraps to another item, version, category or organisation,
or to tamper with them, fails authentication rather than yielding data.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator

import pytest

from exchange.crypto import (
    DEK_BYTES,
    DEVELOPMENT_BLIND_INDEX_KEY,
    DEVELOPMENT_KEKS,
    CryptoIntegrityError,
    Keyring,
    KeyringError,
    LocalKeyring,
    decrypt,
    decrypt_stream,
    encrypt,
    encrypt_stream,
    generate_blind_index_key_string,
    generate_kek_string,
    item_aad,
    keyring_from_settings,
    new_dek,
    reset_keyring_cache,
    rewrap,
    stream_ciphertext_size,
    wrap_aad,
)
from exchange.crypto.aead import STREAM_HEADER_BYTES, TAG_BYTES

SEG = 64  # small segment size so that multi-segment streams stay tiny
SECRET = b"medisch verslag: diagnose X voor leerling Lotte"

KEK1 = bytes(range(32))
KEK2 = bytes(range(32, 64))
BLIND = bytes(range(64, 96))


def aad_for(item_id: str = "item-1", version: int = 1, category: str = "medical", purpose: str = "content") -> bytes:
    return item_aad(purpose=purpose, item_id=item_id, version=version, category=category)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def keyring_v1() -> LocalKeyring:
    return LocalKeyring(keks={1: KEK1}, blind_index_key=BLIND)


def keyring_v1_v2() -> LocalKeyring:
    return LocalKeyring(keks={1: KEK1, 2: KEK2}, blind_index_key=BLIND)


# --------------------------------------------------------------------------------------------
# Blob AEAD
# --------------------------------------------------------------------------------------------


def test_round_trip() -> None:
    dek = new_dek()
    assert len(dek) == DEK_BYTES
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    assert SECRET not in blob
    assert blob[0] == 0x01
    assert len(blob) == 1 + 12 + len(SECRET) + 16
    assert decrypt(dek=dek, blob=blob, aad=aad_for()) == SECRET


def test_round_trip_empty_plaintext() -> None:
    dek = new_dek()
    assert decrypt(dek=dek, blob=encrypt(dek=dek, plaintext=b"", aad=b""), aad=b"") == b""


def test_nonce_is_random_per_encryption() -> None:
    dek = new_dek()
    assert encrypt(dek=dek, plaintext=SECRET, aad=b"a") != encrypt(dek=dek, plaintext=SECRET, aad=b"a")


def test_new_dek_is_random() -> None:
    assert new_dek() != new_dek()


@pytest.mark.parametrize(
    "wrong",
    [
        {"version": 2},
        {"category": "clb-dossier"},
        {"purpose": "file"},
        {"item_id": "item-2"},
    ],
)
def test_wrong_aad_refused(wrong: dict[str, object]) -> None:
    """Crypto follows the grants: a ciphertext only opens for its own item, version, category and purpose."""
    dek = new_dek()
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=blob, aad=aad_for(**wrong))  # type: ignore[arg-type]


def test_ciphertext_swapped_between_items_refused() -> None:
    """Crypto follows the grants: copying item 2's ciphertext into item 1's row does not decrypt.

    Even with the right DEK for the row (the attacker swaps the content column only, or both items
    happen to be readable), the AAD binds the ciphertext to its item id.
    """
    dek = new_dek()
    blob_1 = encrypt(dek=dek, plaintext=b"pupil one", aad=aad_for("item-1"))
    blob_2 = encrypt(dek=dek, plaintext=b"pupil two", aad=aad_for("item-2"))
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=blob_2, aad=aad_for("item-1"))
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=blob_1, aad=aad_for("item-2"))


def test_wrong_key_refused() -> None:
    blob = encrypt(dek=new_dek(), plaintext=SECRET, aad=aad_for())
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=new_dek(), blob=blob, aad=aad_for())


@pytest.mark.parametrize("where", ["format", "nonce", "content", "tag"])
def test_flipped_byte_refused(where: str) -> None:
    dek = new_dek()
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    index = {"format": 0, "nonce": 5, "content": 13 + 3, "tag": len(blob) - 1}[where]
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=flip(blob, index), aad=aad_for())


@pytest.mark.parametrize("length", [0, 1, 13, 28])
def test_truncated_blob_refused(length: int) -> None:
    dek = new_dek()
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=blob[:length], aad=aad_for())


@pytest.mark.parametrize("size", [16 * 1024 - 1, 16 * 1024, 300_000])
def test_large_blob_round_trip_and_tamper(size: int) -> None:
    """Large blobs are sealed in place (no extra copy); same format, same checks."""
    dek = new_dek()
    plaintext = os.urandom(size)
    blob = encrypt(dek=dek, plaintext=plaintext, aad=aad_for())
    assert type(blob) is bytes
    assert len(blob) == 1 + 12 + size + 16 and blob[0] == 0x01
    assert decrypt(dek=dek, blob=blob, aad=aad_for()) == plaintext
    for index in (3, 13 + size // 2, len(blob) - 1):
        with pytest.raises(CryptoIntegrityError):
            decrypt(dek=dek, blob=flip(blob, index), aad=aad_for())
    with pytest.raises(CryptoIntegrityError):
        decrypt(dek=dek, blob=blob, aad=aad_for("item-2"))


def test_integrity_error_message_is_generic() -> None:
    dek = new_dek()
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    with pytest.raises(CryptoIntegrityError) as caught:
        decrypt(dek=dek, blob=flip(blob, 20), aad=aad_for())
    message = str(caught.value)
    assert SECRET.decode() not in message
    assert dek.hex() not in message
    assert repr(dek) not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_wrong_dek_length_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt(dek=b"short", plaintext=SECRET, aad=b"")


def test_item_aad_is_canonical_and_unambiguous() -> None:
    assert aad_for() == aad_for()
    # Length prefixes: moving characters between fields changes the encoding.
    a = item_aad(purpose="content", item_id="ab", version=1, category="c")
    b = item_aad(purpose="content", item_id="a", version=1, category="bc")
    assert a != b
    with pytest.raises(ValueError):
        item_aad(purpose="content", item_id="", version=1, category="medical")
    with pytest.raises(ValueError):
        item_aad(purpose="content", item_id="x", version=-1, category="medical")


# --------------------------------------------------------------------------------------------
# Streaming AEAD
# --------------------------------------------------------------------------------------------


def stream_ct(plaintext: bytes, aad: bytes, dek: bytes, chunk: int = 50) -> list[bytes]:
    """Encrypt in irregular input chunks; return the header and the sealed segments."""
    chunks = [plaintext[i : i + chunk] for i in range(0, len(plaintext), chunk)]
    return list(encrypt_stream(dek=dek, chunks=chunks, aad=aad, segment_size=SEG))


def read_all(data: bytes, aad: bytes, dek: bytes) -> bytes:
    return b"".join(decrypt_stream(dek=dek, read=io.BytesIO(data).read, aad=aad))


def partial_read(data: bytes, aad: bytes, dek: bytes) -> tuple[list[bytes], BaseException | None]:
    """Decrypt, collecting what was yielded before an error."""
    yielded: list[bytes] = []
    try:
        for piece in decrypt_stream(dek=dek, read=io.BytesIO(data).read, aad=aad):
            yielded.append(piece)
    except CryptoIntegrityError as error:
        return yielded, error
    return yielded, None


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, SEG * 7 // 2, 5 * SEG])
def test_stream_round_trip(size: int) -> None:
    dek = new_dek()
    plaintext = os.urandom(size)
    pieces = stream_ct(plaintext, aad_for(purpose="file"), dek)
    ciphertext = b"".join(pieces)
    assert len(ciphertext) == stream_ciphertext_size(size, SEG)
    # Header, then fixed-size sealed segments; an empty plaintext still has one (last) segment.
    assert len(pieces[0]) == STREAM_HEADER_BYTES
    assert all(len(p) == SEG + TAG_BYTES for p in pieces[1:-1])
    assert len(pieces) == 1 + max(1, -(-size // SEG))
    assert read_all(ciphertext, aad_for(purpose="file"), dek) == plaintext


@pytest.mark.parametrize("chunk", [1, 7, SEG, SEG + 3, 10_000])
def test_stream_rechunks_any_input_chunking(chunk: int) -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 3 + 5)
    pieces = stream_ct(plaintext, b"aad", dek, chunk=chunk)
    assert [len(p) for p in pieces[1:]] == [SEG + 16, SEG + 16, SEG + 16, 5 + 16]
    assert read_all(b"".join(pieces), b"aad", dek) == plaintext


def test_stream_copies_reused_mutable_buffers() -> None:
    """A reader that refills one bytearray (readinto style) must not corrupt held-back data."""
    dek = new_dek()
    plaintext = os.urandom(SEG * 4 + 11)
    source = io.BytesIO(plaintext)

    def refill() -> Iterator[bytearray]:
        buffer = bytearray(SEG // 2 + 3)
        while True:
            n = source.readinto(buffer)
            if not n:
                return
            yield buffer if n == len(buffer) else buffer[:n]

    pieces = list(encrypt_stream(dek=dek, chunks=refill(), aad=b"aad", segment_size=SEG))
    assert read_all(b"".join(pieces), b"aad", dek) == plaintext


def test_stream_accepts_memoryview_and_empty_chunks() -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 2 + 1)
    chunks: list[bytes | memoryview] = [b"", memoryview(plaintext)[:10], b"", memoryview(plaintext)[10:], b""]
    pieces = list(encrypt_stream(dek=dek, chunks=chunks, aad=b"aad", segment_size=SEG))
    assert read_all(b"".join(pieces), b"aad", dek) == plaintext


def test_stream_reads_from_short_reads() -> None:
    """A file-like that returns fewer bytes than asked (pipes, sockets) still works."""
    dek = new_dek()
    plaintext = os.urandom(SEG * 2 + 9)
    source = io.BytesIO(b"".join(stream_ct(plaintext, b"aad", dek)))

    def dribble(n: int) -> bytes:
        return source.read(min(n, 5))

    assert b"".join(decrypt_stream(dek=dek, read=dribble, aad=b"aad")) == plaintext


def test_stream_is_lazy_and_memory_bounded() -> None:
    """The first segment is emitted before the input is exhausted: the file is never held whole."""
    consumed = 0

    def source() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(1000):
            consumed += 10
            yield b"x" * 10

    stream = encrypt_stream(dek=new_dek(), chunks=source(), aad=b"", segment_size=SEG)
    next(stream)  # header
    next(stream)  # first segment
    assert consumed < 3 * SEG


def test_stream_wrong_aad_and_wrong_key_refused() -> None:
    """Crypto follows the grants: a stored file only opens for its own item and with its own DEK."""
    dek = new_dek()
    ciphertext = b"".join(stream_ct(os.urandom(SEG * 2), aad_for("item-1", purpose="file"), dek))
    yielded, error = partial_read(ciphertext, aad_for("item-2", purpose="file"), dek)
    assert yielded == [] and error is not None
    yielded, error = partial_read(ciphertext, aad_for("item-1", purpose="file"), new_dek())
    assert yielded == [] and error is not None


def test_stream_truncation_refused() -> None:
    """Dropping the last segment is detected; only authentic earlier segments were yielded."""
    dek = new_dek()
    plaintext = os.urandom(SEG * 3)
    pieces = stream_ct(plaintext, b"aad", dek)
    yielded, error = partial_read(b"".join(pieces[:-1]), b"aad", dek)
    assert error is not None
    assert plaintext.startswith(b"".join(yielded))
    assert len(b"".join(yielded)) < SEG * 2


@pytest.mark.parametrize("keep", [0, 6, STREAM_HEADER_BYTES, STREAM_HEADER_BYTES + 10])
def test_stream_cut_inside_header_or_first_segment_refused(keep: int) -> None:
    dek = new_dek()
    ciphertext = b"".join(stream_ct(os.urandom(SEG * 2), b"aad", dek))
    yielded, error = partial_read(ciphertext[:keep], b"aad", dek)
    assert yielded == [] and error is not None


def test_stream_truncation_mid_segment_refused() -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 3)
    ciphertext = b"".join(stream_ct(plaintext, b"aad", dek))
    yielded, error = partial_read(ciphertext[:-5], b"aad", dek)
    assert error is not None
    assert plaintext.startswith(b"".join(yielded))


def test_stream_segment_swap_refused() -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 3)
    header, s0, s1, s2 = stream_ct(plaintext, b"aad", dek)
    yielded, error = partial_read(header + s1 + s0 + s2, b"aad", dek)
    assert yielded == [] and error is not None


def test_stream_duplicated_segment_refused() -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 3)
    header, s0, s1, s2 = stream_ct(plaintext, b"aad", dek)
    yielded, error = partial_read(header + s0 + s0 + s1 + s2, b"aad", dek)
    assert error is not None
    assert b"".join(yielded) == plaintext[:SEG]


@pytest.mark.parametrize("extra", [b"\x00", os.urandom(SEG + TAG_BYTES)])
def test_stream_appended_bytes_refused(extra: bytes) -> None:
    dek = new_dek()
    plaintext = os.urandom(SEG * 2 + 3)
    ciphertext = b"".join(stream_ct(plaintext, b"aad", dek))
    yielded, error = partial_read(ciphertext + extra, b"aad", dek)
    assert error is not None
    assert b"".join(yielded) != plaintext  # the real last segment is never accepted as non-last


def test_stream_segment_from_another_stream_refused() -> None:
    """Same DEK, same AAD, different stream: segments are bound to their stream's header."""
    dek = new_dek()
    plaintext = os.urandom(SEG * 2)
    a = stream_ct(plaintext, b"aad", dek)
    b = stream_ct(plaintext, b"aad", dek)
    yielded, error = partial_read(a[0] + b[1] + b[2], b"aad", dek)
    assert yielded == [] and error is not None


@pytest.mark.parametrize("index", [0, 1, 4, 11, 12, 40, STREAM_HEADER_BYTES + SEG + 5, -1])
def test_stream_flipped_byte_refused(index: int) -> None:
    """Header (format, segment size, nonce prefix), content and tags are all authenticated."""
    dek = new_dek()
    plaintext = os.urandom(SEG * 3 + 7)
    ciphertext = b"".join(stream_ct(plaintext, b"aad", dek))
    tampered = flip(ciphertext, index % len(ciphertext))
    yielded, error = partial_read(tampered, b"aad", dek)
    assert error is not None
    # Nothing unauthenticated came out: at most the segments before the tampered one.
    segment_of_flip = max(0, (index % len(ciphertext) - STREAM_HEADER_BYTES) // (SEG + TAG_BYTES))
    assert b"".join(yielded) == plaintext[: SEG * segment_of_flip]


def test_stream_empty_input_and_header_only_refused() -> None:
    dek = new_dek()
    for data in (b"", b"".join(stream_ct(b"", b"aad", dek))[:STREAM_HEADER_BYTES]):
        yielded, error = partial_read(data, b"aad", dek)
        assert yielded == [] and error is not None


def test_stream_argument_validation_is_eager() -> None:
    with pytest.raises(ValueError):
        encrypt_stream(dek=new_dek(), chunks=[], aad=b"", segment_size=1)
    with pytest.raises(ValueError):
        decrypt_stream(dek=b"short", read=io.BytesIO().read, aad=b"")
    with pytest.raises(ValueError):
        stream_ciphertext_size(-1)


def test_stream_ciphertext_size() -> None:
    assert stream_ciphertext_size(0, SEG) == STREAM_HEADER_BYTES + TAG_BYTES
    assert stream_ciphertext_size(SEG, SEG) == STREAM_HEADER_BYTES + SEG + TAG_BYTES
    assert stream_ciphertext_size(SEG + 1, SEG) == STREAM_HEADER_BYTES + SEG + 1 + 2 * TAG_BYTES
    assert stream_ciphertext_size(50 << 20) == STREAM_HEADER_BYTES + (50 << 20) + 50 * TAG_BYTES


# --------------------------------------------------------------------------------------------
# Key wrapping
# --------------------------------------------------------------------------------------------


def test_local_keyring_implements_protocol() -> None:
    assert isinstance(keyring_v1(), Keyring)


def test_wrap_round_trip_and_content_decrypts() -> None:
    keyring = keyring_v1()
    dek = new_dek()
    blob = encrypt(dek=dek, plaintext=SECRET, aad=aad_for())
    version, wrapped = keyring.wrap(org_id="school-a", dek=dek, aad=wrap_aad(item_id="item-1", org_id="school-a"))
    assert version == 1
    assert len(wrapped) == 61
    assert dek not in wrapped
    unwrapped = keyring.unwrap(
        org_id="school-a", kek_version=1, wrapped=wrapped, aad=wrap_aad(item_id="item-1", org_id="school-a")
    )
    assert decrypt(dek=unwrapped, blob=blob, aad=aad_for()) == SECRET


def test_wrong_org_unwrap_refused() -> None:
    """Crypto follows the grants: an organisation without its own wrap cannot obtain the DEK.

    Neither by unwrapping another organisation's wrap as itself, nor by claiming to be that
    organisation while keeping its own item/org AAD.
    """
    keyring = keyring_v1()
    dek = new_dek()
    aad_a = wrap_aad(item_id="item-1", org_id="school-a")
    _, wrapped = keyring.wrap(org_id="school-a", dek=dek, aad=aad_a)
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(org_id="clb-x", kek_version=1, wrapped=wrapped, aad=wrap_aad(item_id="item-1", org_id="clb-x"))
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(org_id="clb-x", kek_version=1, wrapped=wrapped, aad=aad_a)
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(
            org_id="school-a", kek_version=1, wrapped=wrapped, aad=wrap_aad(item_id="item-1", org_id="clb-x")
        )


def test_wrap_moved_to_another_item_refused() -> None:
    """Crypto follows the grants: a grant (wrap) on item 1 gives nothing on item 2."""
    keyring = keyring_v1()
    _, wrapped = keyring.wrap(org_id="school-a", dek=new_dek(), aad=wrap_aad(item_id="item-1", org_id="school-a"))
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(
            org_id="school-a", kek_version=1, wrapped=wrapped, aad=wrap_aad(item_id="item-2", org_id="school-a")
        )


@pytest.mark.parametrize("index", [0, 1, 12, 13, 30, 60])
def test_flipped_byte_in_wrapped_key_refused(index: int) -> None:
    keyring = keyring_v1()
    aad = wrap_aad(item_id="item-1", org_id="school-a")
    _, wrapped = keyring.wrap(org_id="school-a", dek=new_dek(), aad=aad)
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(org_id="school-a", kek_version=1, wrapped=flip(wrapped, index), aad=aad)


def test_truncated_wrapped_key_refused() -> None:
    keyring = keyring_v1()
    aad = wrap_aad(item_id="item-1", org_id="school-a")
    _, wrapped = keyring.wrap(org_id="school-a", dek=new_dek(), aad=aad)
    with pytest.raises(CryptoIntegrityError):
        keyring.unwrap(org_id="school-a", kek_version=1, wrapped=wrapped[:-1], aad=aad)


def test_different_master_key_cannot_unwrap() -> None:
    aad = wrap_aad(item_id="item-1", org_id="school-a")
    _, wrapped = keyring_v1().wrap(org_id="school-a", dek=new_dek(), aad=aad)
    other = LocalKeyring(keks={1: KEK2}, blind_index_key=BLIND)
    with pytest.raises(CryptoIntegrityError):
        other.unwrap(org_id="school-a", kek_version=1, wrapped=wrapped, aad=aad)


# --------------------------------------------------------------------------------------------
# Rotation
# --------------------------------------------------------------------------------------------


def test_rotation_rewraps_under_newest_version() -> None:
    aad = wrap_aad(item_id="item-1", org_id="school-a")
    dek = new_dek()
    version, wrapped = keyring_v1().wrap(org_id="school-a", dek=dek, aad=aad)
    assert version == 1

    rotated = keyring_v1_v2()
    assert rotated.current_version() == 2
    # Old wraps still unwrap after the new version is added.
    assert rotated.unwrap(org_id="school-a", kek_version=1, wrapped=wrapped, aad=aad) == dek

    new_version, new_wrapped = rewrap(rotated, org_id="school-a", kek_version=1, wrapped=wrapped, aad=aad)
    assert new_version == 2
    assert rotated.unwrap(org_id="school-a", kek_version=2, wrapped=new_wrapped, aad=aad) == dek
    # Idempotent: already current is left alone.
    assert rewrap(rotated, org_id="school-a", kek_version=2, wrapped=new_wrapped, aad=aad) == (2, new_wrapped)

    # The KEK version is bound in the wrap: claiming another version fails.
    with pytest.raises(CryptoIntegrityError):
        rotated.unwrap(org_id="school-a", kek_version=1, wrapped=new_wrapped, aad=aad)

    # Once v1 is retired, only rewrapped keys remain readable; the error names the version only.
    retired = LocalKeyring(keks={2: KEK2}, blind_index_key=BLIND)
    assert retired.unwrap(org_id="school-a", kek_version=2, wrapped=new_wrapped, aad=aad) == dek
    with pytest.raises(KeyringError, match="version 1") as caught:
        retired.unwrap(org_id="school-a", kek_version=1, wrapped=wrapped, aad=aad)
    assert base64.urlsafe_b64encode(KEK1).decode() not in str(caught.value)


def test_wrap_with_explicit_and_unknown_version() -> None:
    keyring = keyring_v1_v2()
    aad = wrap_aad(item_id="item-1", org_id="school-a")
    assert keyring.wrap(org_id="school-a", dek=new_dek(), aad=aad, version=1)[0] == 1
    with pytest.raises(KeyringError, match="version 7"):
        keyring.wrap(org_id="school-a", dek=new_dek(), aad=aad, version=7)


# --------------------------------------------------------------------------------------------
# Blind index
# --------------------------------------------------------------------------------------------


def test_blind_index_deterministic_namespaced_and_keyed() -> None:
    keyring = keyring_v1()
    index = keyring.blind_index(namespace="national-number", value="85073003328")
    assert index == keyring.blind_index(namespace="national-number", value="85073003328")
    assert len(index) == 64 and int(index, 16) >= 0
    assert "85073003328" not in index
    assert index != keyring.blind_index(namespace="national-number", value="85073003329")
    assert index != keyring.blind_index(namespace="pupil-code", value="85073003328")
    # Same value under a different blind-index key: unrelated index.
    other = LocalKeyring(keks={1: KEK1}, blind_index_key=bytes(range(100, 132)))
    assert index != other.blind_index(namespace="national-number", value="85073003328")
    # The blind index does not depend on the KEKs (they rotate; the index must not).
    assert index == keyring_v1_v2().blind_index(namespace="national-number", value="85073003328")


def test_blind_index_key_must_be_separate_from_keks() -> None:
    with pytest.raises(KeyringError, match="separate"):
        LocalKeyring(keks={1: KEK1}, blind_index_key=KEK1)


# --------------------------------------------------------------------------------------------
# Configuration parsing and development keys
# --------------------------------------------------------------------------------------------


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def test_from_strings_parses_versions() -> None:
    keyring = LocalKeyring.from_strings(
        keks=f" 1:{b64(KEK1)},\n2:{b64(KEK2).rstrip('=')} \n", blind_index_key=b64(BLIND)
    )
    assert keyring.current_version() == 2
    assert keyring.versions() == [1, 2]
    aad = wrap_aad(item_id="i", org_id="o")
    dek = new_dek()
    _, wrapped = keyring.wrap(org_id="o", dek=dek, aad=aad, version=1)
    assert keyring_v1().unwrap(org_id="o", kek_version=1, wrapped=wrapped, aad=aad) == dek


SHORT_KEY = b64(b"tooshort-secret-value!")  # 22 bytes


@pytest.mark.parametrize(
    ("keks", "blind", "leak"),
    [
        ("", b64(BLIND), None),
        (b64(KEK1), b64(BLIND), b64(KEK1)),  # missing version
        (f"x:{b64(KEK1)}", b64(BLIND), b64(KEK1)),
        (f"{b64(KEK1)}:1", b64(BLIND), b64(KEK1)),  # swapped fields: key in the version slot
        (f"0:{b64(KEK1)}", b64(BLIND), b64(KEK1)),
        (f"1:{SHORT_KEY}", b64(BLIND), SHORT_KEY),
        (f"1:{b64(KEK1)}!!", b64(BLIND), b64(KEK1)),
        (f"1:{b64(KEK1)[:-3]}", b64(BLIND), b64(KEK1)[:-3]),  # bad length / padding
        (f"1:{b64(KEK1)},1:{b64(KEK2)}", b64(BLIND), b64(KEK2)),  # duplicate version
        (f"1:{b64(KEK1)}", SHORT_KEY, SHORT_KEY),
        (f"1:{b64(KEK1)}", "not base64 at all", "not base64 at all"),
    ],
)
def test_from_strings_rejects_bad_input_without_leaking(keks: str, blind: str, leak: str | None) -> None:
    with pytest.raises(KeyringError) as caught:
        LocalKeyring.from_strings(keks=keks, blind_index_key=blind)
    message = str(caught.value)
    assert message
    if leak is not None:
        assert leak not in message
        assert leak[:8] not in message
    assert caught.value.__cause__ is None


def test_repr_does_not_show_keys() -> None:
    text = repr(keyring_v1_v2())
    for key in (KEK1, KEK2, BLIND):
        assert b64(key) not in text and key.hex() not in text and repr(key) not in text
    assert "versions=[1, 2]" in text


def test_generated_strings_parse_and_are_random() -> None:
    entry_1, entry_2 = generate_kek_string(1), generate_kek_string(2)
    assert entry_1.startswith("1:") and entry_2.startswith("2:")
    assert entry_1[2:] != entry_2[2:]
    keyring = LocalKeyring.from_strings(keks=f"{entry_1},{entry_2}", blind_index_key=generate_blind_index_key_string())
    assert keyring.current_version() == 2
    assert not keyring.is_development()
    with pytest.raises(ValueError):
        generate_kek_string(0)


def test_is_development() -> None:
    dev = LocalKeyring.from_strings(keks=DEVELOPMENT_KEKS, blind_index_key=DEVELOPMENT_BLIND_INDEX_KEY)
    assert dev.is_development()
    assert base64.urlsafe_b64decode(DEVELOPMENT_KEKS.split(":", 1)[1]).startswith(b"DEVELOPMENT-ONLY")
    # A development key anywhere taints the keyring: a real v2 does not make a dev v1 safe.
    mixed = LocalKeyring.from_strings(keks=f"{DEVELOPMENT_KEKS},2:{b64(KEK2)}", blind_index_key=b64(BLIND))
    assert mixed.is_development()
    dev_blind_only = LocalKeyring.from_strings(keks=f"1:{b64(KEK1)}", blind_index_key=DEVELOPMENT_BLIND_INDEX_KEY)
    assert dev_blind_only.is_development()
    assert not keyring_v1().is_development()


def test_keyring_from_settings_is_cached_and_resettable() -> None:
    from django.conf import settings
    from django.test import override_settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        settings.configure()  # running with -p no:django and no settings module
    reset_keyring_cache()
    try:
        with override_settings(LP_KEKS=f"1:{b64(KEK1)}", LP_BLIND_INDEX_KEY=b64(BLIND)):
            keyring = keyring_from_settings()
            assert keyring is keyring_from_settings()
            assert keyring.current_version() == 1
            assert not keyring.is_development()
        reset_keyring_cache()
        with override_settings(LP_KEKS=f"1:{b64(KEK1)},2:{b64(KEK2)}", LP_BLIND_INDEX_KEY=b64(BLIND)):
            assert keyring_from_settings().current_version() == 2
        reset_keyring_cache()
        with override_settings(LP_KEKS="", LP_BLIND_INDEX_KEY=b64(BLIND)), pytest.raises(KeyringError, match="LP_KEKS"):
            keyring_from_settings()
    finally:
        reset_keyring_cache()
