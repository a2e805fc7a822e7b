"""One JSON shape for every error: ``{"error": {"code", "message", "fields"}}``.

A service raises Django's ``ValidationError``; the API answers 400 with the message and the
offending fields. "Not allowed" and "does not exist" share one 404 body.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

NOT_FOUND_BODY = {"error": {"code": "not_found", "message": "Not found.", "fields": None}}


def error_body(*, code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields}}


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, list | tuple):
        return [str(part) for item in detail for part in _flatten(item)]
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    return [str(detail)]


def _fields_from_drf(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def _fields_from_django(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if key == "__all__" else key): [str(m) for m in messages]
            for key, messages in exc.message_dict.items()
        }
    return {"non_field_errors": [str(m) for m in exc.messages]}


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {msgs[0]}" if name != "non_field_errors" else msgs[0] for name, msgs in fields.items() if msgs]
    return "; ".join(parts) or _("Invalid input.")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the one error shape."""
    if isinstance(exc, DjangoValidationError):
        fields = _fields_from_django(exc)
        return Response(error_body(code="invalid", message=_summary(fields), fields=fields), status=400)
    if isinstance(exc, Http404 | exceptions.NotFound):
        return Response(NOT_FOUND_BODY, status=status.HTTP_404_NOT_FOUND)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _fields_from_drf(exc.detail)
        response.data = error_body(code="invalid", message=_summary(fields), fields=fields)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code=code, message=" ".join(_flatten(exc.detail)))
    return response
