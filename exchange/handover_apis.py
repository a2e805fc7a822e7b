"""API of handovers: incoming/outgoing lists, notices to families, objections, transferred reports."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api_schema.pagination import Pagination
from consent.models import Actor, Objection, RecordedVia
from exchange import files, handover, selectors
from exchange.models import Category, Handover, HandoverKind, HandoverState, Notice, PupilParent, Role
from exchange.uploads import SealedUpload
from permissions.access import item_list_for_user
from permissions.api import ProtectedApi

STAFF_ROLES: set[str] = {
    Role.SCHOOL_DIRECTOR,
    Role.CARE_TEAM,
    Role.ADMINISTRATION,
    Role.CLB_DIRECTOR,
    Role.CLB_WORKER,
    Role.CLB_MEDICAL,
}


class HandoverOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    kind = serializers.ChoiceField(choices=HandoverKind.choices)
    from_organisation = serializers.UUIDField(source="from_organisation_id")
    to_organisation = serializers.UUIDField(source="to_organisation_id")
    state = serializers.ChoiceField(choices=HandoverState.choices)
    planned_at = serializers.DateTimeField()
    effective_at = serializers.DateTimeField()
    objection_deadline = serializers.DateTimeField()
    executed_at = serializers.DateTimeField(allow_null=True)
    mandatory_items = serializers.IntegerField()
    objectable_items = serializers.IntegerField()


class HandoverEventSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    state = serializers.CharField()
    note = serializers.CharField()


def _rows(handovers: list[Handover]) -> list[dict[str, Any]]:
    summary = handover.plan_summary(handovers)
    rows = []
    for h in handovers:
        counts = summary.get(h.pk, {"mandatory": 0, "objectable": 0})
        rows.append(
            {
                "id": h.pk,
                "pupil_id": h.pupil_id,
                "kind": h.kind,
                "from_organisation_id": h.from_organisation_id,
                "to_organisation_id": h.to_organisation_id,
                "state": h.state,
                "planned_at": h.planned_at,
                "effective_at": h.effective_at,
                "objection_deadline": h.objection_deadline,
                "executed_at": h.executed_at,
                "mandatory_items": counts["mandatory"],
                "objectable_items": counts["objectable"],
            }
        )
    return rows


def _staff_org_ids(request: Request) -> Any:
    return selectors.organisation_ids_for_user(user=request.user, roles=STAFF_ROLES)


class HandoverListApi(APIView):
    """Incoming and outgoing handovers of your organisation, with their state."""

    class FilterSerializer(serializers.Serializer):
        direction = serializers.ChoiceField(
            choices=[("incoming", "incoming"), ("outgoing", "outgoing")], required=False
        )
        state = serializers.ChoiceField(choices=HandoverState.choices, required=False)
        pupil = serializers.UUIDField(required=False)

    @extend_schema(
        operation_id="handovers_list",
        parameters=[FilterSerializer],
        responses={200: HandoverOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        orgs = _staff_org_ids(request)
        if values.get("direction") == "incoming":
            queryset = Handover.objects.filter(to_organisation_id__in=orgs)
        elif values.get("direction") == "outgoing":
            queryset = Handover.objects.filter(from_organisation_id__in=orgs)
        else:
            queryset = Handover.objects.filter(Q(to_organisation_id__in=orgs) | Q(from_organisation_id__in=orgs))
        if values.get("state"):
            queryset = queryset.filter(state=values["state"])
        if values.get("pupil"):
            queryset = queryset.filter(pupil_id=values["pupil"])
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset.order_by("-planned_at", "id"), request, view=self) or []
        return paginator.get_paginated_response(HandoverOutputSerializer(_rows(page), many=True).data)


class HandoverDetailApi(APIView):
    """One handover with its history (for the staff of both organisations)."""

    class OutputSerializer(HandoverOutputSerializer):
        history = HandoverEventSerializer(many=True)
        objection = serializers.DictField(allow_null=True)

    @extend_schema(operation_id="handovers_retrieve", responses={200: OutputSerializer})
    def get(self, request: Request, handover_id: uuid.UUID) -> Response:
        orgs = _staff_org_ids(request)
        found = Handover.objects.filter(
            Q(to_organisation_id__in=orgs) | Q(from_organisation_id__in=orgs), pk=handover_id
        ).first()
        if found is None:
            raise NotFound
        data = _rows([found])[0]
        data["history"] = list(found.history.values("at", "state", "note"))
        objection = Objection.objects.filter(handover_id=found.pk, transfer_kind=found.kind).first()
        data["objection"] = (
            {
                "received_at": objection.received_at,
                "objected_by": objection.objected_by,
                "basis": objection.capacity_basis,
            }
            if objection
            else None
        )
        return Response(self.OutputSerializer(data).data)


class NoticeOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    handover = serializers.UUIDField()
    pupil = serializers.UUIDField()
    kind = serializers.CharField()
    to = serializers.CharField()
    from_ = serializers.CharField()
    always_moves = serializers.ListField(child=serializers.CharField())
    moves_unless_you_object = serializers.ListField(child=serializers.CharField())
    objection_deadline = serializers.DateTimeField()
    effective_at = serializers.DateTimeField()
    can_object = serializers.BooleanField()

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["from"] = data.pop("from_")
        return data


class NoticeListApi(APIView):
    """T-CLB-2: the notices of planned transfers addressed to you (the capable pupil or a parent)."""

    @extend_schema(operation_id="notices_list", responses={200: NoticeOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        notices = Notice.objects.filter(addressee_id=request.user.pk).select_related(
            "handover__to_organisation", "handover__from_organisation"
        )
        now = timezone.now()
        rows = []
        for notice in notices.order_by("-created_at"):
            text = handover.notice_text(notice)
            rows.append(
                {
                    "id": notice.pk,
                    "handover": notice.handover_id,
                    "pupil": notice.handover.pupil_id,
                    "kind": text["kind"],
                    "to": text["to"],
                    "from_": text["from"],
                    "always_moves": text["always_moves"],
                    "moves_unless_you_object": text["moves_unless_you_object"],
                    "objection_deadline": text["objection_deadline"],
                    "effective_at": text["effective_at"],
                    "can_object": notice.handover.state in (HandoverState.PLANNED, HandoverState.WAITING)
                    and now <= notice.handover.objection_deadline,
                }
            )
        return Response(NoticeOutputSerializer(rows, many=True).data)


class ObjectionCreateApi(APIView):
    """Verzet (T-CLB-2, T-SCH-3): online by the person who decides, or recorded by the old organisation."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    class InputSerializer(serializers.Serializer):
        objected_by = serializers.ChoiceField(choices=Actor.choices)
        objecting_parent = serializers.UUIDField(required=False, help_text="The parent who objects")
        received_via = serializers.ChoiceField(choices=RecordedVia.choices)
        letter = serializers.FileField(required=False, help_text="Scanned letter (PDF, PNG, JPEG)")

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        handover = serializers.UUIDField(source="handover_id")
        objected_by = serializers.CharField()
        capacity_basis = serializers.CharField()
        received_at = serializers.DateTimeField()
        window_closed_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="handovers_objections_create",
        request={"multipart/form-data": InputSerializer, "application/json": InputSerializer},
        responses={201: OutputSerializer},
        summary="Object to a planned transfer",
        description="Refused with 400 and the closing date once the window has closed.",
    )
    def post(self, request: Request, handover_id: uuid.UUID) -> Response:
        from consent.services import objection_record

        found = Handover.objects.filter(pk=handover_id).select_related("pupil", "from_organisation").first()
        if found is None:
            raise NotFound
        user_id = request.user.pk or 0
        is_staff = (
            selectors.membership_list_for_user(user=request.user)
            .filter(organisation=found.from_organisation, role__in=STAFF_ROLES)
            .exists()
        )
        is_family = found.pupil.user_id == user_id or found.pupil.parents.filter(user_id=user_id).exists()
        if not (is_staff or is_family):
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        parent = None
        if values["objected_by"] == Actor.PARENT:
            parent = PupilParent.objects.filter(pk=values.get("objecting_parent"), pupil=found.pupil).first()
            if parent is None and not is_staff:
                parent = PupilParent.objects.filter(pupil=found.pupil, user_id=user_id).first()
            if parent is None:
                raise serializers.ValidationError({"objecting_parent": [_("Name the parent who objects.")]})
        if is_family and not is_staff:
            own = (values["objected_by"] == Actor.PUPIL and found.pupil.user_id == user_id) or (
                parent is not None and parent.user_id == user_id
            )
            if not own or values["received_via"] != RecordedVia.ONLINE:
                raise PermissionDenied(_("Online you object in your own name (received_via=online)."))
        letter = request.FILES.get("letter")
        if letter is not None and not isinstance(letter, SealedUpload):
            raise serializers.ValidationError({"letter": [_("Upload the letter as multipart/form-data.")]})
        receiver = request.user
        if not is_staff:
            # An online objection is received by the organisation the data would leave.
            member = found.from_organisation.memberships.filter(active=True).order_by("created_at").first()
            if member is None:
                raise PermissionDenied(_("The organisation cannot receive objections online yet."))
            receiver = member.user
        with transaction.atomic():
            # Lock the handover: the sweeper skips it while an objection is being recorded.
            locked = Handover.objects.select_for_update().get(pk=found.pk)
            if locked.state not in (HandoverState.PLANNED, HandoverState.WAITING):
                raise serializers.ValidationError({"handover": [_("This transfer has already been carried out.")]})
            objection = objection_record(
                pupil=found.pupil,
                transfer_kind=found.kind,
                handover_id=found.pk,
                organisation=found.from_organisation,
                window_closes_at=locked.objection_deadline,
                objected_by=values["objected_by"],
                parent=parent,
                received_at=timezone.now(),
                received_via=values["received_via"],
                received_by=receiver,
                letter=letter,
            )
        return Response(self.OutputSerializer(objection).data, status=status.HTTP_201_CREATED)


class TransferredReportSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    report_type = serializers.CharField()
    report_valid_from = serializers.DateField(allow_null=True)
    report_valid_until = serializers.DateField(allow_null=True)
    holder = serializers.UUIDField()
    title = serializers.CharField()


class TransferredReportsApi(ProtectedApi):
    """T-SCH-2: the new school's care coordinator gets every verslag of a newly enrolled pupil at once."""

    @extend_schema(
        operation_id="pupils_transferred_reports",
        request=None,
        responses={200: TransferredReportSerializer(many=True)},
        summary="Request the transferred reports of a newly enrolled pupil (care team)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        schools = selectors.organisation_ids_for_user(user=request.user, roles={Role.CARE_TEAM})
        enrolled = selectors.enrolments_current().filter(pupil_id=pupil_id, school_id__in=schools)
        if not enrolled.exists():
            raise NotFound
        for pending in Handover.objects.filter(
            pupil_id=pupil_id, to_organisation_id__in=schools, state=HandoverState.PLANNED
        ).values_list("pk", flat=True):
            handover.handover_advance(handover_id=pending)
        reports = list(
            item_list_for_user(user=request.user, pupil_id=pupil_id)
            .filter(category=Category.REPORT)
            .order_by("-created_at")
        )
        org_ids = set(schools.values_list("organisation_id", flat=True))
        titles = files.item_titles(items=reports, organisation_ids=org_ids, user=request.user)
        rows = [
            {
                "id": item.pk,
                "kind": item.kind,
                "report_type": item.report_type,
                "report_valid_from": item.report_valid_from,
                "report_valid_until": item.report_valid_until,
                "holder": item.holder_id,
                "title": titles.get(item.pk, ""),
            }
            for item in reports
        ]
        return Response(TransferredReportSerializer(rows, many=True).data)
