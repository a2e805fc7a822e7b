"""The fail-closed base class of every API that touches pupil items."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from rest_framework.views import APIView

from exchange.files import ItemRead, item_read, item_read_file
from exchange.models import PupilItem
from permissions.access import Access, FeedPage, item_feed_for_user, item_get_for_user, item_list_for_user

FORBIDDEN_OVERRIDES = ("get_queryset", "get_object")


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
        """The purpose stated by the client (``X-Purpose`` header), kept in the audit trail."""
        return str(self.request.headers.get("X-Purpose", ""))[:100]

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
