"""Allowed upload types, recognised by content (magic bytes), never by the file name."""

from __future__ import annotations

import re
import unicodedata

import filetype

ALLOWED_TYPES = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.oasis.opendocument.text": "odt",
    "text/plain": "txt",
}


def sniff_content_type(head: bytes) -> str | None:
    """The MIME type of a file from its first bytes, or None when it is not an allowed type."""
    if not head:
        return "text/plain"
    kind = filetype.guess(head)
    if kind is not None:
        return kind.mime if kind.mime in ALLOWED_TYPES else None
    return "text/plain" if _looks_like_text(head) else None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed head is still text.
        if exc.start < len(head) - 3:
            return False
    return True


_UNSAFE = re.compile(r"[^\w.\- ]+")


def sanitise_file_name(name: str, content_type: str) -> str:
    """A safe download name: no path, no control or shell characters, the right extension."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = _UNSAFE.sub("_", stem).strip(" ._")[:100] or "document"
    return f"{stem}.{ALLOWED_TYPES.get(content_type, 'bin')}"
