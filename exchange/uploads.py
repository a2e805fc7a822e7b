"""Uploads that never put plaintext on disk, with the size limit enforced while streaming.

Django normally spools large uploads to a plaintext temporary file. ``SealingUploadHandler``
replaces that: each chunk is sealed with AES-256-GCM under an ephemeral key that lives only in
this process's memory, and written to a temporary file; the content type is sniffed from the
first bytes (never from the name). Once the view knows the item id, version and category, the
service re-encrypts the stream under the item's DEK with the proper associated data
(``SealedUpload.chunks``). The temporary file is deleted when the request ends.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import APIException

HEAD_BYTES = 64 * 1024
_LENGTH_BYTES = 4


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(_("The file is larger than the limit of %(mb)s MB.") % {"mb": f"{limit / (1024 * 1024):g}"})


class SealedUpload(UploadedFile):
    """An uploaded file held only as ephemeral-key ciphertext in a temporary file."""

    def __init__(self, *, name: str, content_type: str | None, charset: str | None) -> None:
        self._temp: IO[bytes] = tempfile.NamedTemporaryFile(prefix="lp-upload-", suffix=".sealed")  # noqa: SIM115
        super().__init__(file=self._temp, name=name, content_type=content_type, size=0, charset=charset)
        self._cipher = AESGCM(AESGCM.generate_key(bit_length=256))
        self._counter = 0
        self.head = b""

    def seal(self, data: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        nonce = self._counter.to_bytes(12, "big")
        self._counter += 1
        sealed = self._cipher.encrypt(nonce, data, None)
        self._temp.write(len(sealed).to_bytes(_LENGTH_BYTES, "big") + sealed)
        self.size = (self.size or 0) + len(data)

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The plaintext, chunk by chunk, decrypted on the fly from the temporary file."""
        self._temp.flush()
        with open(self._temp.name, "rb") as reader:
            counter = 0
            while prefix := reader.read(_LENGTH_BYTES):
                sealed = reader.read(int.from_bytes(prefix, "big"))
                yield self._cipher.decrypt(counter.to_bytes(12, "big"), sealed, None)
                counter += 1

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._temp.close()


class SealingUploadHandler(FileUploadHandler):
    """Seals every uploaded chunk at once and stops the upload as soon as it passes the limit."""

    def __init__(self, request: Any = None) -> None:
        super().__init__(request)
        self.limit: int = settings.LP_MAX_UPLOAD_BYTES
        self.upload: SealedUpload | None = None

    def handle_raw_input(
        self, input_data: Any, META: dict[str, Any], content_length: int, boundary: str, encoding: str | None = None
    ) -> None:
        # A declared length far above the limit is refused before reading the body.
        if content_length and content_length > self.limit + 1024 * 1024:
            raise UploadTooLarge(self.limit)

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.upload = SealedUpload(name=self.file_name or "", content_type=self.content_type, charset=self.charset)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self.upload is not None  # noqa: S101 - new_file always runs first
        if (self.upload.size or 0) + len(raw_data) > self.limit:
            self.upload.close()
            raise UploadTooLarge(self.limit)
        self.upload.seal(raw_data)
        return None

    @staticmethod
    def upload_flush(upload: SealedUpload) -> None:
        upload._temp.flush()

    def file_complete(self, file_size: int) -> SealedUpload | None:
        upload = self.upload
        if upload is not None:
            self.upload_flush(upload)
        return upload
