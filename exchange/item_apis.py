"""HTTP API of pupil file items. Every lookup goes through ``permissions.access``."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from django.http import QueryDict, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from api_schema.pagination import Pagination
from exchange import files, selectors
from exchange.models import CATEGORIES_HELD_BY, Category, ItemKind, PupilItem
from exchange.uploads import SealedUpload
from permissions.access import Action, membership_may_write, memberships_showing, organisation_for_new_item
from permissions.api import PURPOSE_INVALID, PURPOSE_PARAMETER, ProtectedApi
from permissions.audit import EventSpec, audit_append_many
from permissions.models import AuditAction, AuditOutcome

FLAG_NAMES = (
    "health",
    "third_party_confidential",
    "about_others_only",
    "withheld_from_parents",
    "harmful_now",
    "for_judiciary",
)


class ItemMetadataSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    holder = serializers.UUIDField(source="holder_id")
    dossier = serializers.UUIDField(source="dossier_id", allow_null=True)
    category = serializers.ChoiceField(choices=Category.choices)
    kind = serializers.ChoiceField(choices=ItemKind.choices)
    title = serializers.CharField()
    health = serializers.BooleanField()
    third_party_confidential = serializers.BooleanField()
    about_others_only = serializers.BooleanField()
    withheld_from_parents = serializers.BooleanField()
    harmful_now = serializers.BooleanField()
    for_judiciary = serializers.BooleanField()
    report_type = serializers.CharField()
    report_valid_from = serializers.DateField(allow_null=True)
    report_valid_until = serializers.DateField(allow_null=True)
    current_version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class FileInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField()


class ItemDetailSerializer(ItemMetadataSerializer):
    version = serializers.IntegerField()
    authored_on = serializers.DateField()
    body = serializers.CharField(allow_null=True)
    file = FileInfoSerializer(allow_null=True)


def _metadata(item: PupilItem, title: str) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(item, name) for name in FLAG_NAMES}
    data.update(
        id=item.id,
        pupil_id=item.pupil_id,
        holder_id=item.holder_id,
        dossier_id=item.dossier_id,
        category=item.category,
        kind=item.kind,
        title=title,
        report_type=item.report_type,
        report_valid_from=item.report_valid_from,
        report_valid_until=item.report_valid_until,
        current_version=item.current_version,
        created_at=item.created_at,
    )
    return data


def _upload(request: Request) -> SealedUpload | None:
    upload = request.FILES.get("file")
    if upload is not None and not isinstance(upload, SealedUpload):
        raise serializers.ValidationError({"file": [_("Upload the file as multipart/form-data.")]})
    return upload


class VersionInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=files.MAX_TITLE_CHARS)
    body = serializers.CharField(
        required=False, allow_null=True, max_length=files.MAX_BODY_CHARS, trim_whitespace=False
    )
    file = serializers.FileField(
        required=False, help_text="PDF, PNG, JPEG, DOCX, ODT or plain text; checked on content"
    )
    authored_on = serializers.DateField(required=False)


def _audit_listed(request: Request, purpose: str, shown: list[tuple[Any, Any, str]]) -> None:
    """ACC-1: one READ event per (pupil, organisation, role) a list was shown through, so the pupil's access
    history names who saw their items listed."""
    audit_append_many(
        events=[
            EventSpec(
                action=AuditAction.READ,
                outcome=AuditOutcome.ALLOWED,
                actor_id=request.user.pk,
                organisation_id=organisation_id,
                role=role,
                pupil_id=pupil_id,
                purpose=purpose,
            )
            for pupil_id, organisation_id, role in shown
        ]
    )


class PupilItemListApi(ProtectedApi):
    """Lists the items of a pupil that your role may see (need to know); metadata and titles only."""

    @extend_schema(
        operation_id="pupils_items_list",
        parameters=[PURPOSE_PARAMETER],
        responses={
            200: ItemMetadataSerializer(many=True),
            400: OpenApiResponse(description=PURPOSE_INVALID.capitalize()),
        },
        summary="A pupil's items you may see (metadata only)",
    )
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        purpose = self.purpose() or "list"
        if selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id) is None:
            raise NotFound
        queryset = self.protected_items(pupil_id=pupil_id).select_related("holder")
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset.order_by("-created_at", "id"), request, view=self) or []
        memberships = list(selectors.membership_list_for_user(user=request.user))
        organisation_ids = {m.organisation_id for m in memberships}
        titles = files.item_titles(items=page, organisation_ids=organisation_ids, user=request.user)
        if page:
            _audit_listed(
                request,
                purpose,
                [
                    (pupil_id, membership.organisation_id, membership.role)
                    for membership in memberships_showing(memberships=memberships, items=page)
                ],
            )
        data = [_metadata(item, titles.get(item.id, "")) for item in page]
        return paginator.get_paginated_response(ItemMetadataSerializer(data, many=True).data)


class FeedCursorError(ValueError):
    pass


def feed_cursor(key: tuple[datetime, uuid.UUID]) -> str:
    """The opaque ``after`` value of a feed page: the last item's creation time and id."""
    return base64.urlsafe_b64encode(f"{key[0].isoformat()}|{key[1]}".encode()).decode().rstrip("=")


def feed_key(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The key of a cursor made by ``feed_cursor``; ``FeedCursorError`` for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _sep, pk = text.partition("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError(at)
        return moment, uuid.UUID(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise FeedCursorError(cursor) from None


class ItemFeedSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page, or null after the last one")
    results = ItemMetadataSerializer(many=True)


class ItemFeedApi(ProtectedApi):
    """The items you may see across all your pupils, newest first (need to know); metadata and titles only.

    A care coordinator's or CLB worker's inbox: what was added to the files of the pupils they work with. Pages
    follow each other with the ``next`` link (``after`` is opaque); a page costs the same however far in.
    """

    class QuerySerializer(serializers.Serializer):
        after = serializers.CharField(required=False, max_length=200, help_text="The cursor of the `next` link")
        limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)

    @extend_schema(
        operation_id="items_feed",
        parameters=[QuerySerializer, PURPOSE_PARAMETER],
        responses={
            200: ItemFeedSerializer,
            400: OpenApiResponse(
                description=f"`after` is not a cursor of this list, `limit` is not 1 to 200, or {PURPOSE_INVALID}."
            ),
        },
        summary="Items you may see across your pupils, newest first (metadata only)",
    )
    def get(self, request: Request) -> Response:
        purpose = self.purpose() or "feed"
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = None
        if "after" in query.validated_data:
            try:
                after = feed_key(query.validated_data["after"])
            except FeedCursorError:
                raise serializers.ValidationError(
                    {"after": [_("Not a cursor of this list: follow the `next` link of the previous page.")]}
                ) from None
        limit = query.validated_data["limit"]
        page = self.protected_feed(after=after, limit=limit)
        # Each item is decrypted with the key of the organisation it is shown through (its grant wrapped one).
        organisation_ids = {organisation_id for organisation_id, _role in page.through.values()}
        titles = files.item_titles(items=page.items, organisation_ids=organisation_ids, user=request.user)
        _audit_listed(
            request,
            purpose,
            list(dict.fromkeys((item.pupil_id, *page.through[item.pk]) for item in page.items)),
        )
        next_url = None
        if page.next_key is not None:
            params = QueryDict(mutable=True)
            params.update({"after": feed_cursor(page.next_key), "limit": str(limit)})
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        data = [_metadata(item, titles.get(item.id, "")) for item in page.items]
        return Response({"next": next_url, "results": ItemMetadataSerializer(data, many=True).data})


class PupilItemCreateApi(ProtectedApi):
    """Stores a new item, encrypted with its own key, held by your organisation."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class InputSerializer(VersionInputSerializer):
        holder = serializers.UUIDField(
            required=False, help_text="Your organisation holding the item; needed if you belong to several"
        )
        category = serializers.ChoiceField(choices=Category.choices)
        kind = serializers.ChoiceField(choices=ItemKind.choices)
        health = serializers.BooleanField(default=False)
        third_party_confidential = serializers.BooleanField(default=False)
        about_others_only = serializers.BooleanField(default=False)
        withheld_from_parents = serializers.BooleanField(default=False)
        harmful_now = serializers.BooleanField(default=False)
        for_judiciary = serializers.BooleanField(default=False)
        report_type = serializers.CharField(required=False, allow_blank=True, default="", max_length=40)
        report_valid_from = serializers.DateField(required=False, allow_null=True)
        report_valid_until = serializers.DateField(required=False, allow_null=True)

    @extend_schema(
        operation_id="pupils_items_create",
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        responses={201: ItemMetadataSerializer},
        summary="Store an item in a pupil's file (encrypted with its own key)",
    )
    def post(self, request: Request, pupil_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            membership = organisation_for_new_item(user=request.user, holder_id=values.get("holder"))
        except NotFound:
            raise serializers.ValidationError({"holder": [_("Name one of your organisations as holder.")]}) from None
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
        if pupil is None or not selectors.pupil_has_relation(pupil=pupil, organisation=membership.organisation):
            raise NotFound
        rule = membership_may_write(
            user=request.user, membership=membership, category=values["category"], pupil_id=pupil.id
        )
        if rule is None and values["category"] in CATEGORIES_HELD_BY[membership.organisation.kind]:
            raise PermissionDenied(
                _("Your role may not write %(category)s items for this pupil (need to know).")
                % {"category": values["category"]}
            )
        item = files.item_create(
            item_rule=rule or "",
            pupil=pupil,
            holder=membership.organisation,
            category=values["category"],
            kind=values["kind"],
            title=values["title"],
            body=values.get("body"),
            upload=_upload(request),
            authored_on=values.get("authored_on"),
            author=request.user,
            flags={name: values[name] for name in FLAG_NAMES},
            report_type=values.get("report_type", ""),
            report_valid_from=values.get("report_valid_from"),
            report_valid_until=values.get("report_valid_until"),
        )
        return Response(ItemMetadataSerializer(_metadata(item, values["title"])).data, status=status.HTTP_201_CREATED)


VERSION_PARAMETER = OpenApiParameter("version", OpenApiTypes.INT, required=False, description="Default: current")


def _version_param(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise serializers.ValidationError({"version": [_("A version is a positive whole number.")]})
    return int(raw)


# A read answers 400 for a version that does not exist, 409 when a ciphertext fails authentication, and 503
# when its audit event could not be recorded (nothing of the item is returned then).
READ_ERRORS: dict[int, OpenApiResponse] = {
    code: OpenApiResponse(description=description)
    for code, description in (
        (400, f"No version of that number, or {PURPOSE_INVALID}."),
        (409, "A stored ciphertext failed its integrity check: nothing of it is shown, the failure is recorded."),
        (503, "The read could not be recorded in the audit trail, so nothing of it is shown. Try again later."),
    )
}


def _detail(read: files.ItemRead) -> Any:
    """The body of ``GET /api/v1/items/<id>``: the item's metadata and its decrypted version."""
    decrypted = read.decrypted
    data = _metadata(read.access.item, decrypted.title)
    data.update(
        version=decrypted.version.version,
        authored_on=decrypted.version.authored_on,
        body=decrypted.body,
        file=decrypted.file.__dict__ if decrypted.file else None,
    )
    return ItemDetailSerializer(data).data


class ItemDetailApi(ProtectedApi):
    """Reads one item, decrypted with your organisation's wrapped key. Every read is audited."""

    @extend_schema(
        operation_id="items_retrieve",
        parameters=[VERSION_PARAMETER, PURPOSE_PARAMETER],
        responses={200: ItemDetailSerializer, **READ_ERRORS},
        summary="Read an item (decrypted for your organisation)",
    )
    def get(self, request: Request, item_id: str) -> Response:
        # Serialized while the read's audit event commits (item_read's ``present``), returned once it has.
        return Response(self.protected_read(item_id, version=_version_param(request), present=_detail).presented)


class ItemFileApi(ProtectedApi):
    """Streams an item's file, decrypted on the fly. Every read is audited."""

    @extend_schema(
        operation_id="items_file_retrieve",
        parameters=[VERSION_PARAMETER, PURPOSE_PARAMETER],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file"),
            **READ_ERRORS,
        },
        summary="Download an item's file (streamed, decrypted on the fly)",
    )
    def get(self, request: Request, item_id: str) -> StreamingHttpResponse:
        read, stream = self.protected_read_file(item_id, version=_version_param(request))
        decrypted = read.decrypted
        assert decrypted.file is not None  # noqa: S101 - item_read_file raises NotFound otherwise
        response = StreamingHttpResponse(stream, content_type=decrypted.file.content_type)
        response["Content-Length"] = str(decrypted.file.size)
        response["Content-Disposition"] = content_disposition_header(True, decrypted.file.name) or "attachment"
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "no-store"
        return response


class ItemVersionCreateApi(ProtectedApi):
    """Adds a version to an item; earlier versions are kept unchanged."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        operation_id="items_versions_create",
        parameters=[PURPOSE_PARAMETER],
        request={"multipart/form-data": VersionInputSerializer, "application/json": VersionInputSerializer},
        responses={201: ItemMetadataSerializer},
        summary="Add a version (earlier versions are kept)",
    )
    def post(self, request: Request, item_id: str) -> Response:
        access = self.protected_item(item_id, Action.WRITE)
        data = VersionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        files.item_add_version(
            item=access.item,
            title=values["title"],
            body=values.get("body"),
            upload=_upload(request),
            authored_on=values.get("authored_on"),
            author=request.user,
        )
        return Response(
            ItemMetadataSerializer(_metadata(access.item, values["title"])).data, status=status.HTTP_201_CREATED
        )


class ItemShredApi(ProtectedApi):
    """Crypto-shreds an item: every wrapped key and the stored file are destroyed."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.ChoiceField(choices=[(r, r) for r in files.SHRED_REASONS])

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        shredded_at = serializers.DateTimeField()
        shred_reason = serializers.CharField()

    @extend_schema(
        operation_id="items_shred",
        parameters=[PURPOSE_PARAMETER],
        request=InputSerializer,
        responses={200: OutputSerializer},
        summary="Crypto-shred an item (director of the holding organisation)",
        description="Destroys every wrapped key of every version and the stored file; cannot be undone.",
    )
    def post(self, request: Request, item_id: str) -> Response:
        access = self.protected_item(item_id, Action.SHRED)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = files.item_shred(item=access.item, by=request.user, reason=data.validated_data["reason"])
        return Response(self.OutputSerializer(item).data)
