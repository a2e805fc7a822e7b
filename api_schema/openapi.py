"""Schema class: component names for nested ``InputSerializer``/``OutputSerializer`` classes.

The styleguide nests serializers inside each API class, so their bare names collide; the
component takes the API's name instead (``EnrolmentCreateApi.InputSerializer`` → ``EnrolmentCreateInput``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as BaseAutoSchema


class AutoSchema(BaseAutoSchema):
    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        cls = serializer.__class__
        parts = cls.__qualname__.split(".")
        if len(parts) > 1:
            outer = parts[-2].removesuffix("Api")
            inner = parts[-1].removesuffix("Serializer")
            return f"{outer}{inner}"
        name: str = super().get_serializer_name(serializer, direction)  # type: ignore[arg-type]
        return name
