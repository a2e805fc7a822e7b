"""Key-encryption keys (KEKs): wrapping data keys per organisation, rotation and blind indexes.

A data-encryption key (DEK) is never stored in the clear. For every organisation that may read an
item, the DEK is *wrapped* (encrypted) under that organisation's KEK, and the wrap is bound to the
item and the organisation with associated data from :func:`wrap_aad`. Granting access means adding
a wrap; revoking means deleting it; deleting every wrap of an item (crypto-shredding) makes its
content unreadable even where backups of the ciphertext survive.

The :class:`Keyring` protocol is small on purpose, so that a KMS or HashiCorp Vault Transit
backend can implement it. :class:`LocalKeyring` is the implementation for keys held by the
application (from an environment variable or a ``*_FILE`` secret):

* master KEKs are versioned (``dict[int, bytes]``, 32 bytes each); new wraps use the highest
  version, older versions stay available to unwrap until rotation has rewrapped everything;
* each organisation's KEK is derived as
  ``HKDF-SHA256(master_v, salt=None, info=b"leerlingenpaspoort/kek/org/" + org_id)``. This is what
  a KMS does with one key per organisation, or with an "encryption context" bound to a single key:
  one organisation's KEK can never unwrap another organisation's DEKs, and no per-organisation
  secret needs to be stored;
* a wrapped DEK is ``0x10 | nonce (12 random bytes) | AES-256-GCM(org_kek, dek) || tag`` (61
  bytes), with associated data = the caller's :func:`wrap_aad` plus the KEK version, so a wrap
  cannot be moved to another item, organisation or claimed version;
* blind indexes (exact-match lookup of e.g. a national register number without storing it in the
  clear) are HMAC-SHA256 under a *separate* key, never under a KEK.

Rotation (:func:`rewrap`) unwraps under the old version and wraps under the newest one without
touching content. It must be fast (target: >= 5,500 rewraps/s), so derived keys and their
``AESGCM`` objects are cached per (version, organisation).

Nothing here logs, and no exception message contains key material: errors name at most a KEK
version or the position of a malformed configuration entry.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import threading
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .aead import DEK_BYTES, NONCE_BYTES, TAG_BYTES, CryptoIntegrityError, _length_prefixed, _text_field

__all__ = [
    "DEVELOPMENT_BLIND_INDEX_KEY",
    "DEVELOPMENT_KEKS",
    "KEK_BYTES",
    "WRAPPED_DEK_BYTES",
    "WRAP_FORMAT_V1",
    "Keyring",
    "KeyringError",
    "LocalKeyring",
    "generate_blind_index_key_string",
    "generate_kek_string",
    "keyring_from_settings",
    "reset_keyring_cache",
    "rewrap",
    "wrap_aad",
]

KEK_BYTES = 32
"""Length of a master KEK and of the blind-index key: 256 bits."""

WRAP_FORMAT_V1 = 0x10
"""First byte of a wrapped DEK (distinct from content formats, so the two cannot be confused)."""

_WRAP_FORMAT_BYTE = bytes((WRAP_FORMAT_V1,))
_WRAP_HEADER_BYTES = 1 + NONCE_BYTES
WRAPPED_DEK_BYTES = _WRAP_HEADER_BYTES + DEK_BYTES + TAG_BYTES
"""Length of a wrapped DEK: 61 bytes."""

_ORG_KEK_INFO_PREFIX = b"leerlingenpaspoort/kek/org/"
_WRAP_AAD_DOMAIN = "leerlingenpaspoort/wrap/v1"
_WRAP_VERSION_AAD_DOMAIN = "leerlingenpaspoort/wrap-kek-version/v1"
_BLIND_INDEX_DOMAIN = "leerlingenpaspoort/blind-index/v1"

# Development-only keys. They are public (they are in the source code) and spell out what they
# are when decoded: b"DEVELOPMENT-ONLY-KEK-NOT-SECRET!" and b"DEVELOPMENT-ONLY-BLIND-INDEX-KEY".
# NEVER use them in production: anyone can decrypt data wrapped under them.
# ``LocalKeyring.is_development()`` detects them so deployment checks can refuse to start.
DEVELOPMENT_KEKS = "1:" + base64.urlsafe_b64encode(b"DEVELOPMENT-ONLY-KEK-NOT-SECRET!").decode("ascii")
"""Value for ``LP_KEKS`` in development and tests only. Never for production."""

DEVELOPMENT_BLIND_INDEX_KEY = base64.urlsafe_b64encode(b"DEVELOPMENT-ONLY-BLIND-INDEX-KEY").decode("ascii")
"""Value for ``LP_BLIND_INDEX_KEY`` in development and tests only. Never for production."""

_DEVELOPMENT_KEK_BYTES = b"DEVELOPMENT-ONLY-KEK-NOT-SECRET!"
_DEVELOPMENT_BLIND_KEY_BYTES = b"DEVELOPMENT-ONLY-BLIND-INDEX-KEY"

# Bounded so that a process serving many organisations over a long time does not grow without
# limit; 65,536 entries (~a few tens of MB at most) is far more than versions x organisations.
_ORG_CIPHER_CACHE_SIZE = 1 << 16

_B64_KEY_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_VERSION_RE = re.compile(r"[0-9]{1,9}")


class KeyringError(Exception):
    """The keyring is misconfigured, or a KEK version is not available.

    Messages never contain key material; they name at most a KEK version or the position of a
    malformed configuration entry.
    """


def wrap_aad(*, item_id: str, org_id: str) -> bytes:
    """Build the associated data binding a wrapped DEK to one item and one organisation.

    Pass the result to :meth:`Keyring.wrap` and :meth:`Keyring.unwrap`. The keyring adds the KEK
    version itself. A wrap copied to another item or another organisation's row fails to unwrap.
    """
    return _length_prefixed(_WRAP_AAD_DOMAIN, _text_field("item_id", item_id), _text_field("org_id", org_id))


@runtime_checkable
class Keyring(Protocol):
    """Source of KEKs: wraps and unwraps DEKs per organisation, and computes blind indexes.

    Implementations may keep keys locally (:class:`LocalKeyring`) or delegate to a KMS/Vault; the
    DEK then travels to the KMS and back, the KEK never leaves it.
    """

    def current_version(self) -> int:
        """Return the KEK version that new wraps use (the newest one)."""
        ...

    def wrap(self, *, org_id: str, dek: bytes, aad: bytes, version: int | None = None) -> tuple[int, bytes]:
        """Wrap ``dek`` for ``org_id``; return ``(kek_version, wrapped)``.

        ``aad`` comes from :func:`wrap_aad`. ``version`` defaults to :meth:`current_version`.
        """
        ...

    def unwrap(self, *, org_id: str, kek_version: int, wrapped: bytes, aad: bytes) -> bytes:
        """Return the DEK in ``wrapped``.

        Raises :class:`KeyringError` if ``kek_version`` is not available and
        :class:`~exchange.crypto.aead.CryptoIntegrityError` if the wrap does not authenticate
        (wrong organisation, item, version or a modified byte).
        """
        ...

    def blind_index(self, *, namespace: str, value: str) -> str:
        """Return a deterministic keyed hash (hex) of ``value`` for exact-match lookup.

        ``namespace`` separates uses (the same value in two namespaces gives unrelated indexes).
        Callers normalise ``value`` first (e.g. digits only for a national number).
        """
        ...

    def is_development(self) -> bool:
        """Return True if any configured key is a public development key."""
        ...


class LocalKeyring:
    """Keyring holding versioned master KEKs and a blind-index key in process memory.

    See the module docstring for the derivation and the wrap format. Instances are thread-safe:
    the only mutable state is the derived-key cache, guarded by ``functools.lru_cache``.
    """

    def __init__(self, *, keks: Mapping[int, bytes], blind_index_key: bytes) -> None:
        """Create a keyring from raw keys.

        Args:
            keks: master KEKs by version (positive integers), 32 bytes each.
            blind_index_key: 32-byte HMAC key for blind indexes; must differ from every KEK.

        Raises:
            KeyringError: on a missing, short or reused key (the message names versions only).
        """
        if not keks:
            raise KeyringError("at least one KEK version is required")
        checked: dict[int, bytes] = {}
        for version, key in keks.items():
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise KeyringError("KEK versions must be positive integers")
            if not isinstance(key, bytes) or len(key) != KEK_BYTES:
                raise KeyringError(f"KEK version {version} must be {KEK_BYTES} bytes")
            checked[version] = key
        if not isinstance(blind_index_key, bytes) or len(blind_index_key) != KEK_BYTES:
            raise KeyringError(f"the blind-index key must be {KEK_BYTES} bytes")
        if any(hmac.compare_digest(blind_index_key, key) for key in checked.values()):
            raise KeyringError("the blind-index key must be separate from every KEK")
        self._keks = checked
        self._current = max(checked)
        self._blind_index_key = blind_index_key
        # Precomputed HMAC state (key already absorbed); ``copy()`` is cheaper than a new HMAC.
        self._blind_hmac = hmac.new(blind_index_key, digestmod=hashlib.sha256)
        # Per-instance cache (not a decorated method, which would keep every instance alive).
        self._org_cipher = functools.lru_cache(maxsize=_ORG_CIPHER_CACHE_SIZE)(self._derive_org_cipher)

    @classmethod
    def from_strings(cls, *, keks: str, blind_index_key: str) -> LocalKeyring:
        """Parse keys in the configuration format.

        Args:
            keks: ``"1:<key>,2:<key>"``: version, colon, URL-safe base64 of 32 bytes (padding
                optional). Entries are separated by commas and/or newlines (a ``*_FILE`` secret
                may hold one per line); surrounding whitespace is ignored.
            blind_index_key: URL-safe base64 of 32 bytes.

        Raises:
            KeyringError: on any malformed entry. The message gives the entry's position (and
                version when it parsed), never the key text.
        """
        parsed: dict[int, bytes] = {}
        entries = [entry.strip() for entry in re.split(r"[,\n]", keks) if entry.strip()]
        if not entries:
            raise KeyringError("no KEK configured (expected '<version>:<base64 key>')")
        for position, entry in enumerate(entries, start=1):
            version_text, colon, key_text = entry.partition(":")
            version_text = version_text.strip()
            if not colon or not _VERSION_RE.fullmatch(version_text) or int(version_text) < 1:
                raise KeyringError(f"KEK entry {position} is malformed (expected '<version>:<base64 key>')")
            version = int(version_text)
            if version in parsed:
                raise KeyringError(f"KEK version {version} is configured twice")
            parsed[version] = _decode_key(key_text.strip(), f"KEK version {version}")
        return cls(keks=parsed, blind_index_key=_decode_key(blind_index_key.strip(), "the blind-index key"))

    def __repr__(self) -> str:
        # Never show keys, not even in a debugger or a crash report.
        return f"<LocalKeyring versions={sorted(self._keks)} current={self._current}>"

    def current_version(self) -> int:
        """Return the newest KEK version; new wraps use it."""
        return self._current

    def versions(self) -> list[int]:
        """Return the configured KEK versions, oldest first."""
        return sorted(self._keks)

    def _derive_org_cipher(self, version: int, org_id: str) -> AESGCM:
        """Derive the organisation's KEK for ``version`` and return its AESGCM (cached by caller)."""
        master = self._keks.get(version)
        if master is None:
            raise KeyringError(f"KEK version {version} is not available")
        info = _ORG_KEK_INFO_PREFIX + _text_field("org_id", org_id)
        org_kek = HKDF(algorithm=hashes.SHA256(), length=KEK_BYTES, salt=None, info=info).derive(master)
        return AESGCM(org_kek)

    def wrap(self, *, org_id: str, dek: bytes, aad: bytes, version: int | None = None) -> tuple[int, bytes]:
        """Wrap ``dek`` under ``org_id``'s KEK; return ``(kek_version, wrapped)``.

        Args:
            org_id: the organisation that may unwrap.
            dek: the 32-byte DEK.
            aad: from :func:`wrap_aad` (same item and organisation).
            version: KEK version to use; defaults to the newest.

        Raises:
            KeyringError: ``version`` is not configured.
        """
        if len(dek) != DEK_BYTES:
            raise ValueError(f"a DEK must be {DEK_BYTES} bytes")
        kek_version = self._current if version is None else version
        cipher = self._org_cipher(kek_version, org_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, dek, _versioned_aad(aad, kek_version))
        return kek_version, b"".join((_WRAP_FORMAT_BYTE, nonce, sealed))

    def unwrap(self, *, org_id: str, kek_version: int, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap a DEK wrapped by :meth:`wrap`.

        Raises:
            KeyringError: ``kek_version`` is not configured (e.g. retired after rotation).
            CryptoIntegrityError: the wrap does not authenticate for this organisation, AAD and
                version, or is malformed.
        """
        cipher = self._org_cipher(kek_version, org_id)
        if len(wrapped) != WRAPPED_DEK_BYTES or wrapped[0] != WRAP_FORMAT_V1:
            raise CryptoIntegrityError("wrapped key is not in a supported format")
        try:
            return cipher.decrypt(
                wrapped[1:_WRAP_HEADER_BYTES], wrapped[_WRAP_HEADER_BYTES:], _versioned_aad(aad, kek_version)
            )
        except InvalidTag:
            raise CryptoIntegrityError("wrapped key failed authentication") from None

    def blind_index(self, *, namespace: str, value: str) -> str:
        """Return HMAC-SHA256(blind-index key, namespace, value) as 64 hex characters.

        Deterministic for exact lookup; unrelated across namespaces and keys. Normalise ``value``
        before calling. Changing the blind-index key means recomputing every stored index.
        """
        mac = self._blind_hmac.copy()
        mac.update(_length_prefixed(_BLIND_INDEX_DOMAIN, _text_field("namespace", namespace), value.encode("utf-8")))
        return mac.hexdigest()

    def is_development(self) -> bool:
        """Return True if a KEK or the blind-index key is one of the public development keys."""
        return hmac.compare_digest(self._blind_index_key, _DEVELOPMENT_BLIND_KEY_BYTES) or any(
            hmac.compare_digest(key, _DEVELOPMENT_KEK_BYTES) for key in self._keks.values()
        )


def _versioned_aad(aad: bytes, version: int) -> bytes:
    """The AAD actually used for a wrap: caller's AAD and KEK version, length-prefixed."""
    if not 0 < version < (1 << 32):
        raise KeyringError("KEK version out of range")
    return _length_prefixed(_WRAP_VERSION_AAD_DOMAIN, aad, version.to_bytes(4, "big"))


def _decode_key(text: str, label: str) -> bytes:
    """Decode URL-safe base64 of exactly 32 bytes; errors name ``label``, never the text."""
    if not _B64_KEY_RE.fullmatch(text):
        raise KeyringError(f"{label} is not URL-safe base64")
    try:
        # Padding is optional in the configuration; add what is missing, then decode strictly.
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{label} is not valid base64") from None
    if len(key) != KEK_BYTES:
        raise KeyringError(f"{label} must decode to {KEK_BYTES} bytes")
    return key


def rewrap(keyring: Keyring, *, org_id: str, kek_version: int, wrapped: bytes, aad: bytes) -> tuple[int, bytes]:
    """Rewrap a DEK under the keyring's newest KEK version, for key rotation.

    Content ciphertext is untouched: only the 61-byte wrap changes. A wrap already under the newest
    version is returned unchanged (so an interrupted rotation can simply be run again).

    Returns:
        ``(kek_version, wrapped)`` to store in place of the old pair.
    """
    current = keyring.current_version()
    if kek_version == current:
        return kek_version, wrapped
    dek = keyring.unwrap(org_id=org_id, kek_version=kek_version, wrapped=wrapped, aad=aad)
    return keyring.wrap(org_id=org_id, dek=dek, aad=aad, version=current)


def generate_kek_string(version: int) -> str:
    """Return a new configuration entry ``"<version>:<urlsafe-b64 of 32 random bytes>"``.

    For the operator command that adds a KEK version: append the result to ``LP_KEKS`` (comma
    separated), deploy, then rotate.
    """
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 10**9:
        raise ValueError("version must be a positive integer")
    return f"{version}:{base64.urlsafe_b64encode(os.urandom(KEK_BYTES)).decode('ascii')}"


def generate_blind_index_key_string() -> str:
    """Return a new blind-index key for ``LP_BLIND_INDEX_KEY`` (URL-safe base64 of 32 random bytes)."""
    return base64.urlsafe_b64encode(os.urandom(KEK_BYTES)).decode("ascii")


_settings_keyring: Keyring | None = None
_settings_lock = threading.Lock()


def keyring_from_settings() -> Keyring:
    """Return the process-wide keyring built from Django settings ``LP_KEKS`` and ``LP_BLIND_INDEX_KEY``.

    Both are strings in the :meth:`LocalKeyring.from_strings` format (settings read them from an
    environment variable or a ``*_FILE`` secret). The keyring is built once per process and
    cached, so its derived-key cache is shared; tests that change the settings call
    :func:`reset_keyring_cache`.

    Raises:
        KeyringError: a setting is missing or malformed.
    """
    global _settings_keyring
    keyring = _settings_keyring
    if keyring is not None:
        return keyring
    with _settings_lock:
        if _settings_keyring is None:
            from django.conf import settings  # lazy: this package must import without Django

            keks = getattr(settings, "LP_KEKS", None)
            blind_index_key = getattr(settings, "LP_BLIND_INDEX_KEY", None)
            if not isinstance(keks, str) or not keks.strip():
                raise KeyringError("setting LP_KEKS is not configured")
            if not isinstance(blind_index_key, str) or not blind_index_key.strip():
                raise KeyringError("setting LP_BLIND_INDEX_KEY is not configured")
            _settings_keyring = LocalKeyring.from_strings(keks=keks, blind_index_key=blind_index_key)
        return _settings_keyring


def reset_keyring_cache() -> None:
    """Forget the keyring built by :func:`keyring_from_settings` (for tests and settings changes)."""
    global _settings_keyring
    with _settings_lock:
        _settings_keyring = None
