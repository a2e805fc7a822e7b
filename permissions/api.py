"""The fail-closed base class of every API that touches pupil items."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from exchange.files import ItemRead, item_read, item_read_file
from exchange.models import PupilItem
from permissions.access import Access, FeedPage, item_feed_for_user, item_get_for_user, item_list_for_user
from permissions.models import AuditEvent

FORBIDDEN_OVERRIDES = ("get_queryset", "get_object")

PURPOSE_HEADER = "X-Purpose"
PURPOSE_MAX_LENGTH: int = AuditEvent._meta.get_field("purpose").max_length  # type: ignore[assignment]
# Declared on every operation that audits what it shows (``ProtectedApi.purpose``).
PURPOSE_PARAMETER = OpenApiParameter(
    name=PURPOSE_HEADER,
    type={"type": "string", "maxLength": PURPOSE_MAX_LENGTH},
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Why you consult the pupil's data (for example `preparing the MDO`). Kept with the audit event of this "
        "request and shown to the pupil and the parents in their access history (ACC-5). Printable text, at "
        f"most {PURPOSE_MAX_LENGTH} characters."
    ),
)
PURPOSE_INVALID = (
    f"the `{PURPOSE_HEADER}` header is longer than {PURPOSE_MAX_LENGTH} characters or holds control characters"
)


class ProtectedApi(APIView):
    """Pupil items are fetched only through ``protected_item`` / ``protected_read`` / ``protected_items``.

    A subclass that defines ``get_queryset`` or ``get_object`` is refused when the class is
    created: there is no way to reach a pupil item around ``permissions.access``. An audited
    bypass, if ever needed, must be named ``dangerously_*`` so it stands out in review.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in FORBIDDEN_OVERRIDES:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} defines {name}(): pupil items are reached only through "
                    "ProtectedApi.protected_item / protected_items (permissions.access)."
                )

    def purpose(self) -> str:
        """The purpose stated by the client (``X-Purpose`` header), kept in the audit trail as given (ACC-5):
        a purpose that is too long or holds control characters is refused (400), never cut or cleaned."""
        purpose = str(self.request.headers.get(PURPOSE_HEADER, ""))
        if len(purpose) > PURPOSE_MAX_LENGTH:
            raise ValidationError({PURPOSE_HEADER: [f"at most {PURPOSE_MAX_LENGTH} characters, got {len(purpose)}"]})
        if any(unicodedata.category(char) == "Cc" for char in purpose):
            raise ValidationError({PURPOSE_HEADER: ["printable text only: no control characters"]})
        return purpose

    def protected_item(self, item_id: Any, action: str) -> Access:
        return item_get_for_user(user=self.request.user, item_id=item_id, action=action, purpose=self.purpose())

    def protected_read(
        self, item_id: Any, *, version: int | None = None, present: Callable[[ItemRead], Any] | None = None
    ) -> ItemRead:
        """Read one item (``exchange.files.item_read``): decided, audited, decrypted and ``present``-ed (no
        statements there); returns once the audit event has committed."""
        return item_read(
            user=self.request.user, item_id=item_id, version=version, purpose=self.purpose(), present=present
        )

    def protected_read_file(self, item_id: Any, *, version: int | None = None) -> tuple[ItemRead, Iterator[bytes]]:
        """``protected_read`` and the version's file as a decrypted stream."""
        return item_read_file(user=self.request.user, item_id=item_id, version=version, purpose=self.purpose())

    def protected_items(self, pupil_id: uuid.UUID | None = None) -> QuerySet[PupilItem]:
        return item_list_for_user(user=self.request.user, pupil_id=pupil_id)

    def protected_feed(self, *, after: tuple[datetime, uuid.UUID] | None, limit: int) -> FeedPage:
        return item_feed_for_user(user=self.request.user, after=after, limit=limit)
