"""Encryption at rest for pupil files: envelope encryption with per-item keys and per-organisation wraps.

Design
======

* Every item version (a CLB dossier entry, medical data, a report, an uploaded file) gets its own
  random 256-bit data-encryption key (DEK, :func:`new_dek`).
* Content is sealed with AES-256-GCM (:func:`encrypt`, or :func:`encrypt_stream` for large files)
  with associated data from :func:`item_aad`, which binds the ciphertext to the item id, version,
  category and purpose. A ciphertext copied to another row, version or category does not decrypt.
* The DEK is stored only *wrapped*: once per organisation that may read the item, under that
  organisation's key-encryption key (KEK), with associated data from :func:`wrap_aad` binding the
  item id and organisation id (the keyring also binds the KEK version). An organisation without a
  wrap has no key: **crypto follows the grants** (ARCHITECTURE). Granting adds a wrap, revoking
  deletes it, and crypto-shredding an item is deleting every wrap.
* KEKs come from a versioned :class:`Keyring` (a small protocol a KMS or Vault backend can
  implement); :class:`LocalKeyring` derives per-organisation KEKs from versioned master keys held
  in settings (env var or ``*_FILE`` secret). Rotation (:func:`rewrap`) rewraps DEKs under the
  newest KEK version without touching content.
* Exact-match lookup of identifying values (e.g. a national register number) uses
  :meth:`Keyring.blind_index`, an HMAC under a key separate from the KEKs.
* Nothing logs, and no exception message carries key material or plaintext. Every authentication
  failure is one generic :class:`CryptoIntegrityError`.

Why the ``cryptography`` AEAD primitives and not a Django encrypted-field package
==================================================================================

The common packages (django-cryptography, django-fernet-fields, django-encrypted-model-fields,
django-pgcrypto-fields) do not fit:

* they are unmaintained, or only sporadically maintained, which is not acceptable for the code
  that protects medical and CLB data;
* they have no associated data: the ciphertext is not bound to its row, so a ciphertext copied
  from one pupil's row into another's (by a bug, a bad migration or a malicious database user)
  still decrypts, silently, as the wrong pupil's data;
* they encrypt every field with one global key (sometimes with a key list for rotation, which
  then re-encrypts all content), so there is no per-item key, no per-organisation wrap, no
  way to make access cryptographic (crypto follows the grants) and no crypto-shredding of a
  single item;
* Fernet (AES-128-CBC + HMAC) has no streaming mode, so large files would be held whole in memory.

Writing on the AEAD primitives of ``cryptography`` (maintained by the PyCA, backed by OpenSSL,
with hardware AES-GCM) keeps the code small and auditable, and gives us exactly the formats
documented in :mod:`exchange.crypto.aead` and :mod:`exchange.crypto.keyring`.
"""

from .aead import (
    DEK_BYTES,
    CryptoIntegrityError,
    decrypt,
    decrypt_stream,
    encrypt,
    encrypt_stream,
    item_aad,
    new_dek,
    stream_ciphertext_size,
)
from .keyring import (
    DEVELOPMENT_BLIND_INDEX_KEY,
    DEVELOPMENT_KEKS,
    Keyring,
    KeyringError,
    LocalKeyring,
    generate_blind_index_key_string,
    generate_kek_string,
    keyring_from_settings,
    reset_keyring_cache,
    rewrap,
    wrap_aad,
)

__all__ = [
    "DEK_BYTES",
    "DEVELOPMENT_BLIND_INDEX_KEY",
    "DEVELOPMENT_KEKS",
    "CryptoIntegrityError",
    "Keyring",
    "KeyringError",
    "LocalKeyring",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "generate_blind_index_key_string",
    "generate_kek_string",
    "item_aad",
    "keyring_from_settings",
    "new_dek",
    "reset_keyring_cache",
    "rewrap",
    "stream_ciphertext_size",
    "wrap_aad",
]
