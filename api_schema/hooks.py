"""drf-spectacular post-processing: document the error shape on every operation."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error response has this shape.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "national_number: not a valid rijksregisternummer"},
                "fields": {
                    "type": "object",
                    "nullable": True,
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "fields"],
        }
    },
    "required": ["error"],
}

_DESCRIPTIONS = {
    "400": "Invalid input; `fields` names what is wrong.",
    "401": "Not authenticated.",
    "403": "Authenticated, but the role does not allow this operation.",
    "404": "Not found, or not visible to you (the two are indistinguishable).",
    "413": "The upload is larger than the configured limit.",
    "415": "Unsupported media type.",
}
# Codes a view declares itself with its own description (the item reads: 409, 503); the body is the same.
_DECLARED_ONLY = {"409", "503"}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            codes = ["401", "404"] if "{" in path else ["401"]
            if method in {"post", "put", "patch"}:
                codes = ["400", "403", *codes]
                if "{" not in path:
                    codes.append("404")
            for code in codes:
                operation.setdefault("responses", {}).setdefault(
                    code, {"description": _DESCRIPTIONS[code], "content": {"application/json": {"schema": ref}}}
                )
            # An error response a view declares itself (a GET refusing bad query parameters) has the same body.
            for code, response in operation.get("responses", {}).items():
                if (code in _DESCRIPTIONS or code in _DECLARED_ONLY) and not response.get("content"):
                    response["content"] = {"application/json": {"schema": ref}}
            operation["responses"] = dict(sorted(operation["responses"].items()))
    return result
