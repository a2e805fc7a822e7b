"""API of need to know: involvement, teaching, passing items to teachers, shields, access logs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.http import StreamingHttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api_schema.pagination import Pagination
from exchange import files, selectors
from exchange.models import Organisation, OrganisationKind, Pupil, PupilItem, Role
from permissions import services
from permissions.access import Action
from permissions.api import ProtectedApi
from permissions.models import AuditEvent, Involvement
from permissions.policy import NEVER_SHOWN_TO_DATA_SUBJECT


class UsernameSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


def _user_or_400(username: str) -> Any:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise serializers.ValidationError({"username": [_("No active user with this username.")]})
    return user


def _pupil_or_404(request: Request, pupil_id: uuid.UUID) -> Pupil:
    pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
    if pupil is None:
        raise NotFound
    return pupil


def _organisation_with_role(request: Request, kind: str, roles: set[str], message: str) -> Organisation:
    membership = (
        selectors.membership_list_for_user(user=request.user).filter(organisation__kind=kind, role__in=roles).first()
    )
    if membership is None:
        raise PermissionDenied(message)
    return membership.organisation


class InvolvementOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    clb = serializers.UUIDField(source="clb_id")
    username = serializers.CharField(source="user.username")
    assigned_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class InvolvementAssignApi(APIView):
    """ACC-4: the CLB director makes a staff member involved in a pupil's guidance."""

    @extend_schema(
        operation_id="pupils_involvements_create",
        request=UsernameSerializer,
        responses={201: InvolvementOutputSerializer},
        summary="Make a CLB staff member involved with a pupil (CLB director)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil_or_404(request, pupil_id)
        clb = _organisation_with_role(
            request, OrganisationKind.CLB, {Role.CLB_DIRECTOR}, _("Only a CLB director assigns involvement.")
        )
        data = UsernameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        involvement = services.involvement_assign(
            pupil=pupil, clb=clb, user=_user_or_400(data.validated_data["username"]), assigned_by=request.user
        )
        return Response(InvolvementOutputSerializer(involvement).data, status=status.HTTP_201_CREATED)


class InvolvementEndApi(APIView):
    """Ends an involvement: from now on the staff member no longer reads the pupil's dossier."""

    @extend_schema(
        operation_id="involvements_end",
        request=None,
        responses={200: InvolvementOutputSerializer},
        summary="End an involvement (CLB director)",
    )
    def post(self, request: Request, involvement_id: uuid.UUID) -> Response:
        directed = selectors.organisation_ids_for_user(user=request.user, roles={Role.CLB_DIRECTOR})
        involvement = Involvement.objects.filter(pk=involvement_id, clb_id__in=directed, ended_at__isnull=True).first()
        if involvement is None:
            raise NotFound
        involvement = services.involvement_end(involvement=involvement, ended_by=request.user)
        return Response(InvolvementOutputSerializer(involvement).data)


class TeachingAssignApi(APIView):
    """Records that a teacher teaches a pupil at your school."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        pupil = serializers.UUIDField(source="pupil_id")
        school = serializers.UUIDField(source="school_id")
        username = serializers.CharField(source="teacher.username")

    @extend_schema(
        operation_id="pupils_teachers_create",
        request=UsernameSerializer,
        responses={201: OutputSerializer},
        summary="Record that a teacher teaches a pupil (school director or administration)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil_or_404(request, pupil_id)
        school = _organisation_with_role(
            request,
            OrganisationKind.SCHOOL,
            {Role.SCHOOL_DIRECTOR, Role.ADMINISTRATION},
            _("Only a school's director or administration assigns teachers."),
        )
        data = UsernameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = services.teaching_assign(
            school=school, teacher=_user_or_400(data.validated_data["username"]), pupil=pupil, assigned_by=request.user
        )
        return Response(self.OutputSerializer(assignment).data, status=status.HTTP_201_CREATED)


class ItemPassToTeacherApi(ProtectedApi):
    """The care team passes an item it can read to a teacher who teaches the pupil."""

    class OutputSerializer(serializers.Serializer):
        grant = serializers.UUIDField()
        item = serializers.UUIDField()
        username = serializers.CharField()

    @extend_schema(
        operation_id="items_teachers_create",
        request=UsernameSerializer,
        responses={201: OutputSerializer},
        summary="Pass an item to a teacher (care team)",
    )
    def post(self, request: Request, item_id: uuid.UUID) -> Response:
        access = self.protected_item(item_id, Action.READ)
        if access.membership.role != Role.CARE_TEAM:
            raise PermissionDenied(_("Only the care team passes items to teachers."))
        data = UsernameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        teacher = _user_or_400(data.validated_data["username"])
        grant = services.item_pass_to_teacher(
            item=access.item, school=access.organisation, teacher=teacher, passed_by=request.user
        )
        body = {"grant": grant.pk, "item": access.item.pk, "username": teacher.username}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)


class ItemWithdrawFromTeacherApi(ProtectedApi):
    """The care team withdraws an item it passed to a teacher."""

    class OutputSerializer(serializers.Serializer):
        revoked = serializers.IntegerField()

    @extend_schema(
        operation_id="items_teachers_withdraw",
        request=UsernameSerializer,
        responses={200: OutputSerializer},
        summary="Withdraw an item from a teacher (care team)",
    )
    def post(self, request: Request, item_id: uuid.UUID) -> Response:
        access = self.protected_item(item_id, Action.READ)
        if access.membership.role != Role.CARE_TEAM:
            raise PermissionDenied(_("Only the care team withdraws items from teachers."))
        data = UsernameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = services.item_withdraw_from_teacher(
            item=access.item, teacher=_user_or_400(data.validated_data["username"]), withdrawn_by=request.user
        )
        return Response({"revoked": revoked})


class ItemShieldApi(ProtectedApi):
    """ACC-4: on the capable pupil's request, shield an item from one involved staff member."""

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        item = serializers.UUIDField(source="item_id")
        username = serializers.CharField(source="user.username")

    @extend_schema(
        operation_id="items_shields_create",
        request=UsernameSerializer,
        responses={201: OutputSerializer},
        summary="Shield an item from a staff member at the pupil's request (CLB staff)",
    )
    def post(self, request: Request, item_id: uuid.UUID) -> Response:
        access = self.protected_item(item_id, Action.READ)
        if access.organisation.kind != OrganisationKind.CLB or access.organisation.pk != access.item.holder_id:
            raise PermissionDenied(_("Shields are recorded by the CLB that holds the item."))
        data = UsernameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        shield = services.item_shield(
            item=access.item, user=_user_or_400(data.validated_data["username"]), recorded_by=request.user
        )
        return Response(self.OutputSerializer(shield).data, status=status.HTTP_201_CREATED)


def _data_subject_pupil(request: Request, pupil_id: uuid.UUID) -> tuple[Pupil, bool]:
    """ACC-1: the capable pupil, or the parents of a pupil under 12. Returns (pupil, is_self)."""
    pupil = Pupil.objects.filter(pk=pupil_id).first()
    if pupil is None:
        raise NotFound
    is_self = pupil.user_id is not None and pupil.user_id == request.user.pk
    is_parent = request.user.pk is not None and pupil.parents.filter(user_id=request.user.pk).exists()
    if not (is_self or is_parent):
        raise NotFound
    capable = selectors.pupil_identity(pupil=pupil).is_presumed_capable(selectors.today())
    if is_parent and not is_self and capable:
        raise PermissionDenied(
            _("From 12 the pupil decides (ACC-1): this is shown to the pupil, or to you with their consent.")
        )
    if is_self and not capable:
        raise PermissionDenied(_("Under 12 the parents inspect the file (ACC-1)."))
    return pupil, is_self


class FileOverviewEntrySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    holder = serializers.CharField()
    category = serializers.CharField()
    kind = serializers.CharField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    through_trusted_person = serializers.BooleanField(
        help_text="ACC-3: shown to the minor only through a trusted person (harmful now)"
    )


class PupilFileOverviewApi(APIView):
    """ACC-1..3: what is in my file — the items, by holder and category, without their content."""

    @extend_schema(
        operation_id="pupils_file_overview_list",
        responses={200: FileOverviewEntrySerializer(many=True)},
        summary="What is in my file (the pupil, or the parents of a pupil under 12)",
        description=(
            "Lists the items held about the pupil with holder, category and title. Never listed (ACC-3): "
            "items marked third-party confidential, about others only or for the judiciary; for parents also "
            "items the pupil asked to withhold from them. Inspecting content goes through the holder (ACC-2)."
        ),
    )
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil, is_self = _data_subject_pupil(request, pupil_id)
        items = (
            PupilItem.objects.filter(pupil=pupil, shredded_at__isnull=True)
            .exclude(pk__in=_hidden_items(pupil, for_parent=not is_self))
            .select_related("holder")
            .order_by("-created_at", "id")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(items, request, view=self) or []
        titles = files.item_titles(items=page, organisation_ids={i.holder_id for i in page}, user=request.user)
        rows = [
            {
                "id": item.pk,
                "holder": item.holder.name,
                "category": item.category,
                "kind": item.kind,
                "title": "" if item.harmful_now else titles.get(item.pk, ""),
                "created_at": item.created_at,
                "through_trusted_person": item.harmful_now,
            }
            for item in page
        ]
        return paginator.get_paginated_response(FileOverviewEntrySerializer(rows, many=True).data)


class AccessLogEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    organisation = serializers.CharField(allow_null=True)
    role = serializers.CharField()
    action = serializers.CharField()
    purpose = serializers.CharField()
    legal_basis = serializers.CharField()
    outcome = serializers.CharField()


def _hidden_items(pupil: Pupil, *, for_parent: bool) -> Any:
    flags = Q()
    for flag in NEVER_SHOWN_TO_DATA_SUBJECT:
        flags |= Q(**{flag: True})
    if for_parent:
        flags |= Q(withheld_from_parents=True)
    return PupilItem.objects.filter(flags, pupil=pupil).values("pk")


class PupilAccessLogApi(APIView):
    """ACC-5: when, by which organisation and role, and why a pupil's file was consulted (ACC-1)."""

    @extend_schema(
        operation_id="pupils_access_log_list",
        responses={200: AccessLogEntrySerializer(many=True)},
        summary="Who consulted my file (the pupil, or the parents of a pupil under 12)",
        description=(
            "ACC-1: from 12 the capable pupil sees their own log; parents see it for a pupil under 12. "
            "Entries about items never shown to the data subject (ACC-3) are left out, and staff are "
            "named by organisation and role, not by person."
        ),
    )
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil, is_self = _data_subject_pupil(request, pupil_id)
        events = (
            AuditEvent.objects.filter(pupil_id=pupil.pk)
            .exclude(item_id__in=_hidden_items(pupil, for_parent=not is_self))
            .order_by("-sequence")
        )
        paginator = Pagination()
        page = paginator.paginate_queryset(events, request, view=self) or []
        names = dict(Organisation.objects.filter(pk__in={e.organisation_id for e in page}).values_list("pk", "name"))
        rows = [
            {
                "at": e.at,
                "organisation": names.get(e.organisation_id) if e.organisation_id else None,
                "role": e.role,
                "action": e.action,
                "purpose": e.purpose,
                "legal_basis": e.legal_basis,
                "outcome": e.outcome,
            }
            for e in page
        ]
        return paginator.get_paginated_response(AccessLogEntrySerializer(rows, many=True).data)


class AuditExportApi(APIView):
    """ACC-5: the data protection officer's full export of a pupil's audit events, as JSON lines."""

    @extend_schema(
        operation_id="audit_export",
        parameters=[OpenApiParameter("pupil", OpenApiTypes.UUID, required=True)],
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="JSON lines")},
        summary="Export a pupil's audit events (data protection officer)",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        memberships = selectors.membership_list_for_user(user=request.user).filter(role=Role.DPO)
        org_ids = [m.organisation_id for m in memberships]
        if not org_ids:
            raise PermissionDenied(_("Only a data protection officer exports the audit trail."))
        raw = request.query_params.get("pupil", "")
        try:
            pupil_id = uuid.UUID(raw)
        except ValueError:
            raise serializers.ValidationError({"pupil": [_("Give the pupil's id.")]}) from None
        held = PupilItem.objects.filter(pupil_id=pupil_id, holder_id__in=org_ids).values("pk")
        events = AuditEvent.objects.filter(
            Q(organisation_id__in=org_ids) | Q(item_id__in=held), pupil_id=pupil_id
        ).order_by("sequence")

        def lines() -> Iterator[bytes]:
            for event in events.iterator(chunk_size=2000):
                yield (
                    json.dumps(
                        {
                            "sequence": event.sequence,
                            "at": event.at.isoformat(),
                            "actor": event.actor_id,
                            "organisation": str(event.organisation_id) if event.organisation_id else None,
                            "role": event.role,
                            "pupil": str(event.pupil_id) if event.pupil_id else None,
                            "item": str(event.item_id) if event.item_id else None,
                            "action": event.action,
                            "purpose": event.purpose,
                            "legal_basis": event.legal_basis,
                            "outcome": event.outcome,
                            "hash": event.hash,
                        }
                    ).encode()
                    + b"\n"
                )

        response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="audit-{pupil_id}.jsonl"'
        return response
