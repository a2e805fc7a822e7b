"""Authenticated encryption of item content with per-item data keys (DEKs).

Two formats live here, both AES-256-GCM from the ``cryptography`` library:

* **Blob** (:func:`encrypt` / :func:`decrypt`) for content that comfortably fits in memory
  (JSON documents, reports)::

      0x01 | nonce (12 random bytes) | ciphertext || tag (16 bytes)

* **Stream** (:func:`encrypt_stream` / :func:`decrypt_stream`) for large files, the STREAM
  construction of Hoang, Reyhanitabar, Rogaway and Vizár (as used by Tink's streaming AEAD and
  libsodium's secretstream)::

      header  = 0x02 | segment_size (4 bytes, big-endian) | nonce prefix (7 random bytes)
      segment = ciphertext || tag (16 bytes), one per plaintext segment of ``segment_size`` bytes
                (the last one may be shorter, and is empty only for an empty plaintext)
      nonce_i = nonce prefix (7) | i (4 bytes, big-endian) | last flag (1 byte: 0x00 or 0x01)

  Every segment is sealed under a stream key derived from the DEK with HKDF-SHA256 (so the
  stream nonces can never collide with blob nonces under the same DEK), and with associated data
  that binds the caller's ``aad`` and the complete header. Because the segment index and the
  "last" flag are inside the nonce, dropping, reordering, duplicating or appending segments, or
  truncating the stream at a segment boundary, all make authentication fail.

The associated data (AAD) is what makes a ciphertext belong to one place: callers build it with
:func:`item_aad`, so a ciphertext copied to another item, another version or another category
does not decrypt.

Nothing in this module logs, and no exception message contains key material, plaintext or
ciphertext: every authentication failure is the same generic :class:`CryptoIntegrityError`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BLOB_FORMAT_V1",
    "DEK_BYTES",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "NONCE_BYTES",
    "STREAM_FORMAT_V1",
    "STREAM_HEADER_BYTES",
    "TAG_BYTES",
    "CryptoIntegrityError",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "item_aad",
    "new_dek",
    "stream_ciphertext_size",
]

DEK_BYTES = 32
"""Length of a data-encryption key: AES-256."""

NONCE_BYTES = 12
"""AES-GCM nonce length. 96-bit random nonces are safe for far more messages per key than one DEK
ever protects (a DEK belongs to a single item version)."""

TAG_BYTES = 16
"""AES-GCM authentication tag length (full length, never truncated)."""

BLOB_FORMAT_V1 = 0x01
"""First byte of a blob produced by :func:`encrypt`."""

STREAM_FORMAT_V1 = 0x02
"""First byte of a stream produced by :func:`encrypt_stream`."""

_BLOB_HEADER_BYTES = 1 + NONCE_BYTES
_BLOB_FORMAT_BYTE = bytes((BLOB_FORMAT_V1,))
# Below this size, building the blob with one join is cheaper than sealing in place.
_IN_PLACE_MIN_BYTES = 16 * 1024
_STREAM_PREFIX_BYTES = 7
STREAM_HEADER_BYTES = 1 + 4 + _STREAM_PREFIX_BYTES
"""Length of the stream header: format byte, segment size, nonce prefix."""

MIN_SEGMENT_SIZE = 16
"""Smallest accepted plaintext segment size (tiny sizes are only useful in tests)."""

MAX_SEGMENT_SIZE = 64 << 20
"""Largest accepted plaintext segment size. It is also the bound on memory a decrypting reader
allocates per segment, whatever a (possibly forged) header claims."""

_MAX_SEGMENTS = 1 << 32  # the segment counter is 4 bytes in the nonce

_STREAM_KEY_INFO = b"leerlingenpaspoort/stream-key/v1"
_STREAM_SEGMENT_AAD_DOMAIN = "leerlingenpaspoort/stream-segment/v1"
_ITEM_AAD_DOMAIN = "leerlingenpaspoort/item/v1"


class CryptoIntegrityError(Exception):
    """A ciphertext or wrapped key failed authentication, or is not in a format we wrote.

    Raised for a wrong key, wrong associated data, any modified byte, a truncated or extended
    stream, or an unknown format. The message is deliberately generic: it never contains key
    material, plaintext or ciphertext, so it is safe to log.
    """


# ---------------------------------------------------------------------------------------------
# Canonical encoding shared by every AAD builder in this package.
# ---------------------------------------------------------------------------------------------


def _length_prefixed(domain: str, *fields: bytes) -> bytes:
    """Encode ``domain`` and ``fields`` unambiguously: each part as 4-byte length || bytes.

    Length prefixes (rather than a separator) make the encoding injective: no two different
    tuples of fields encode to the same bytes, whatever characters the fields contain. The
    domain string separates the different uses (item content vs. key wraps vs. segments).
    """
    parts = [domain.encode("utf-8"), *fields]
    out = bytearray()
    for part in parts:
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def _text_field(name: str, value: str) -> bytes:
    """UTF-8 encode a non-empty text field for an AAD (an empty one is almost surely a bug)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value.encode("utf-8")


def item_aad(*, purpose: str, item_id: str, version: int, category: str) -> bytes:
    """Build the associated data that binds a ciphertext to one item version.

    Args:
        purpose: what the ciphertext is within the item, e.g. ``"content"``, ``"file"`` or
            ``"identity"``, so that two ciphertexts of the same item cannot be swapped.
        item_id: stable identifier of the item (e.g. its UUID as text).
        version: the item version (non-negative integer).
        category: the item category (e.g. medical, CLB dossier); a ciphertext re-labelled into
            another category, which may be readable by other organisations, will not decrypt.

    Returns:
        A canonical, length-prefixed encoding. Equal inputs always give equal bytes; different
        inputs never do.
    """
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < (1 << 63):
        raise ValueError("version must be a non-negative integer")
    return _length_prefixed(
        _ITEM_AAD_DOMAIN,
        _text_field("purpose", purpose),
        _text_field("item_id", item_id),
        version.to_bytes(8, "big"),
        _text_field("category", category),
    )


# ---------------------------------------------------------------------------------------------
# Blob format
# ---------------------------------------------------------------------------------------------


def new_dek() -> bytes:
    """Return a fresh random 256-bit data-encryption key from the operating system CSPRNG."""
    return AESGCM.generate_key(bit_length=DEK_BYTES * 8)


def _check_dek(dek: bytes) -> None:
    # A wrong-length key is a programming error, not tampering, so it is a ValueError. The
    # message names the expected length only.
    if len(dek) != DEK_BYTES:
        raise ValueError(f"a DEK must be {DEK_BYTES} bytes")


def encrypt(*, dek: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``dek`` with AES-256-GCM, binding it to ``aad``.

    Args:
        dek: a 32-byte data-encryption key (see :func:`new_dek`).
        plaintext: the bytes to protect; any length that fits in memory.
        aad: associated data, normally from :func:`item_aad`. It is authenticated, not stored:
            the same value must be passed to :func:`decrypt`.

    Returns:
        ``0x01 | 12-byte random nonce | ciphertext || 16-byte tag``
        (``len(plaintext) + 29`` bytes).
    """
    _check_dek(dek)
    nonce = os.urandom(NONCE_BYTES)
    cipher = AESGCM(dek)
    if len(plaintext) < _IN_PLACE_MIN_BYTES:
        return b"".join((_BLOB_FORMAT_BYTE, nonce, cipher.encrypt(nonce, plaintext, aad)))
    # Large content: seal directly into the final buffer instead of prepending the header to the
    # ciphertext, which would copy it (about 10% of the cost at 1 MB, 35% at 50 MB). BytesIO is
    # used because getvalue() hands over its buffer as an immutable ``bytes`` without copying
    # when no view of it is alive; if it ever did copy, the result would still be correct.
    total = _BLOB_HEADER_BYTES + len(plaintext) + TAG_BYTES
    out = io.BytesIO()
    out.write(_BLOB_FORMAT_BYTE)
    out.write(nonce)
    out.seek(total - 1)
    out.write(b"\x00")  # grows the buffer to its final size
    with out.getbuffer() as view, view[_BLOB_HEADER_BYTES:] as body:
        cipher.encrypt_into(nonce, plaintext, aad, body)
    return out.getvalue()


def decrypt(*, dek: bytes, blob: bytes, aad: bytes) -> bytes:
    """Authenticate and decrypt a blob produced by :func:`encrypt`.

    Args:
        dek: the 32-byte data-encryption key the blob was sealed with.
        blob: the stored blob.
        aad: the associated data used at encryption time.

    Returns:
        The plaintext.

    Raises:
        CryptoIntegrityError: wrong key, wrong AAD, any modified byte, truncated or unknown format.
    """
    _check_dek(dek)
    if len(blob) < _BLOB_HEADER_BYTES + TAG_BYTES or blob[0] != BLOB_FORMAT_V1:
        raise CryptoIntegrityError("ciphertext is not in a supported format")
    view = memoryview(blob)  # slices of a memoryview do not copy the (possibly large) ciphertext
    try:
        return AESGCM(dek).decrypt(view[1:_BLOB_HEADER_BYTES], view[_BLOB_HEADER_BYTES:], aad)
    except InvalidTag:
        raise CryptoIntegrityError("ciphertext failed authentication") from None


# ---------------------------------------------------------------------------------------------
# Stream format
# ---------------------------------------------------------------------------------------------


def _check_segment_size(segment_size: int) -> None:
    if isinstance(segment_size, bool) or not isinstance(segment_size, int):
        raise ValueError("segment_size must be an integer")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}")


def _stream_cipher(dek: bytes) -> AESGCM:
    """Derive the stream key from the DEK (domain separation from blob encryption)."""
    key = HKDF(algorithm=hashes.SHA256(), length=DEK_BYTES, salt=None, info=_STREAM_KEY_INFO).derive(dek)
    return AESGCM(key)


def _segment_aad(header: bytes, aad: bytes) -> bytes:
    # The whole header is authenticated with every segment: changing the format byte, segment
    # size or nonce prefix makes the first segment fail.
    return _length_prefixed(_STREAM_SEGMENT_AAD_DOMAIN, header, aad)


def stream_ciphertext_size(plaintext_size: int, segment_size: int = 1 << 20) -> int:
    """Return the exact number of bytes :func:`encrypt_stream` produces for ``plaintext_size``.

    Useful to set a Content-Length or check a stored object's size before reading it.
    """
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext_size must be non-negative")
    # ceil(n / s), but at least one (possibly empty) last segment.
    segments = max(1, -(-plaintext_size // segment_size))
    return STREAM_HEADER_BYTES + plaintext_size + segments * TAG_BYTES


def encrypt_stream(
    *, dek: bytes, chunks: Iterable[bytes | bytearray | memoryview], aad: bytes, segment_size: int = 1 << 20
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext chunks as a STREAM of fixed-size sealed segments.

    Input chunks may have any sizes; they are re-chunked into ``segment_size`` plaintext
    segments. Memory use is O(``segment_size``) plus the size of one input chunk: the input is
    never gathered whole.

    Args:
        dek: a 32-byte data-encryption key.
        chunks: the plaintext, in pieces of any size (e.g. ``iter(lambda: f.read(1 << 16), b"")``).
            ``bytes`` chunks are used without copying; mutable ones (a ``bytearray`` the caller
            refills) are copied where data must be held back, so reusing the buffer is safe.
        aad: associated data, normally from :func:`item_aad`; pass the same to
            :func:`decrypt_stream`.
        segment_size: plaintext bytes per segment (:data:`MIN_SEGMENT_SIZE` ..
            :data:`MAX_SEGMENT_SIZE`); stored in the header, so the reader needs no parameter.

    Yields:
        First the 12-byte header, then each sealed segment (``segment_size + 16`` bytes, the
        last one shorter). Concatenated, they are :func:`stream_ciphertext_size` bytes long.
        An empty plaintext still yields one sealed (empty) last segment.
    """
    # Validate eagerly, so a bad argument fails at the call and not at the first ``next()``.
    _check_dek(dek)
    _check_segment_size(segment_size)
    return _encrypt_stream(dek, chunks, aad, segment_size)


def _encrypt_stream(
    dek: bytes, chunks: Iterable[bytes | bytearray | memoryview], aad: bytes, segment_size: int
) -> Iterator[bytes]:
    prefix = os.urandom(_STREAM_PREFIX_BYTES)
    header = bytes((STREAM_FORMAT_V1,)) + segment_size.to_bytes(4, "big") + prefix
    cipher = _stream_cipher(dek)
    segment_aad = _segment_aad(header, aad)
    counter = 0

    def seal(data: bytes | bytearray | memoryview, last: bool) -> bytes:
        nonlocal counter
        if counter >= _MAX_SEGMENTS:
            raise ValueError("stream too long for this segment size")
        nonce = prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        counter += 1
        return cipher.encrypt(nonce, data, segment_aad)

    yield header
    # ``tail`` holds at most one segment of plaintext not yet sealed. A full segment is only sealed
    # as "not last" once we know more data follows; whatever remains at the end is the last one.
    # It is a view into the caller's chunk when that chunk is immutable ``bytes`` (no copy, which
    # matters for large single-chunk inputs), and a private bytearray otherwise.
    tail: bytearray | memoryview = memoryview(b"")
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        if not len(view):
            continue
        if len(tail):
            need = segment_size - len(tail)
            if need:
                if isinstance(tail, memoryview):
                    tail = bytearray(tail)
                if len(view) <= need:
                    tail += view
                    continue
                tail += view[:need]
                view = view[need:]
            yield seal(tail, last=False)
            tail = memoryview(b"")
        # Seal whole segments straight from the caller's buffer, keeping back the tail, which may
        # turn out to be the last segment.
        while len(view) > segment_size:
            yield seal(view[:segment_size], last=False)
            view = view[segment_size:]
        # A mutable chunk (bytearray, memoryview of one) may be reused by the caller: copy it.
        tail = view if isinstance(chunk, bytes) else bytearray(view)
    yield seal(tail, last=True)


def _read_exact(read: Callable[[int], bytes], size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of input (file-likes may return short reads)."""
    data = read(size)
    if not data or len(data) >= size:
        return data or b""
    parts = [data]
    got = len(data)
    while got < size:
        more = read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def decrypt_stream(*, dek: bytes, read: Callable[[int], bytes], aad: bytes) -> Iterator[bytes]:
    """Authenticate and decrypt a stream produced by :func:`encrypt_stream`.

    Args:
        dek: the 32-byte data-encryption key.
        read: a file-like ``read(n)`` returning up to ``n`` bytes, and ``b""`` at end of input.
        aad: the associated data used at encryption time.

    Yields:
        Plaintext segments, each only after it has been authenticated. Memory use is
        O(segment size): at most two ciphertext segments are held (one look-ahead, needed to
        know which segment is the last).

    Raises:
        CryptoIntegrityError: wrong key or AAD, any modified byte, missing header, segments
        dropped, reordered, duplicated or appended, or a truncated stream. The error is raised
        when the bad segment is reached: segments yielded before it were authentic, but the
        consumer must treat its output as provisional (e.g. write to a temporary file) until the
        iterator finishes without error, because a truncation is only detected at the end.
    """
    _check_dek(dek)
    return _decrypt_stream(dek, read, aad)


def _decrypt_stream(dek: bytes, read: Callable[[int], bytes], aad: bytes) -> Iterator[bytes]:
    header = bytes(_read_exact(read, STREAM_HEADER_BYTES))  # bytes even if ``read`` gives views
    if len(header) != STREAM_HEADER_BYTES or header[0] != STREAM_FORMAT_V1:
        raise CryptoIntegrityError("stream is not in a supported format")
    segment_size = int.from_bytes(header[1:5], "big")
    # Refuse absurd sizes before allocating anything for them (the header is not yet authenticated).
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise CryptoIntegrityError("stream is not in a supported format")
    prefix = header[5:]
    cipher = _stream_cipher(dek)
    segment_aad = _segment_aad(header, aad)
    sealed_size = segment_size + TAG_BYTES

    def open_segment(data: bytes, index: int, last: bool) -> bytes:
        if index >= _MAX_SEGMENTS or len(data) < TAG_BYTES:
            raise CryptoIntegrityError("stream failed authentication")
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        try:
            return cipher.decrypt(nonce, data, segment_aad)
        except InvalidTag:
            raise CryptoIntegrityError("stream failed authentication") from None

    index = 0
    current = _read_exact(read, sealed_size)
    while True:
        if len(current) < sealed_size:
            # A short (or empty) read means end of input: this must be the last segment.
            yield open_segment(current, index, last=True)
            return
        following = _read_exact(read, sealed_size)
        if not following:
            yield open_segment(current, index, last=True)
            return
        yield open_segment(current, index, last=False)
        current = following
        index += 1
