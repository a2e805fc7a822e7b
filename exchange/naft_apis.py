"""API of NAFT trajectories and staff notifications (N-1..N-4)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
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

from exchange import naft, selectors
from exchange.models import Organisation, OrganisationKind, Role, StaffNotification, Trajectory, TrajectoryState
from exchange.uploads import SealedUpload

CLB_STAFF: set[str] = {Role.CLB_WORKER, Role.CLB_MEDICAL, Role.CLB_DIRECTOR}


class TrajectoryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    clb = serializers.UUIDField(source="clb_id")
    provider = serializers.UUIDField(source="provider_id")
    school = serializers.UUIDField(source="school_id")
    state = serializers.ChoiceField(choices=TrajectoryState.choices)
    coach = serializers.CharField(source="coach.username", allow_null=True, default=None)
    referral_item = serializers.UUIDField(source="referral_item_id")
    goal_count = serializers.IntegerField()
    start = serializers.DateField()
    planned_end = serializers.DateField()
    report_every_days = serializers.IntegerField()
    decline_reason = serializers.CharField()
    round_table_on = serializers.DateField(allow_null=True)
    last_report_at = serializers.DateTimeField(allow_null=True)


def _visible(request: Request) -> Any:
    """CLB staff see their CLB's trajectories; a NAFT coach only their provider's (N-2)."""
    clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_STAFF)
    providers = selectors.organisation_ids_for_user(user=request.user, roles={Role.NAFT_COACH})
    return Trajectory.objects.filter(Q(clb_id__in=clbs) | Q(provider_id__in=providers)).select_related("coach")


def _trajectory(request: Request, trajectory_id: uuid.UUID) -> Trajectory:
    found = _visible(request).filter(pk=trajectory_id).first()
    if found is None:
        raise NotFound
    return found


class TrajectoryApplyApi(APIView):
    """N-1: an involved CLB worker applies for a trajectory at a NAFT provider."""

    class InputSerializer(serializers.Serializer):
        provider = serializers.UUIDField()
        goals = serializers.ListField(child=serializers.CharField(max_length=500), min_length=1, max_length=10)
        referral = serializers.CharField(max_length=20_000, help_text="The referral summary the CLB writes")
        start = serializers.DateField()
        planned_end = serializers.DateField()
        school_agreed_on = serializers.DateField(required=False, allow_null=True)
        pupil_agreed_on = serializers.DateField(required=False, allow_null=True)
        parents_agreed_on = serializers.DateField(required=False, allow_null=True)
        report_every_days = serializers.IntegerField(default=14)

    @extend_schema(
        operation_id="pupils_trajectories_create",
        request=InputSerializer,
        responses={201: TrajectoryOutputSerializer},
        summary="Apply for a NAFT trajectory (involved CLB worker)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
        if pupil is None:
            raise NotFound
        membership = (
            selectors.membership_list_for_user(user=request.user)
            .filter(organisation__kind=OrganisationKind.CLB, role__in=CLB_STAFF)
            .first()
        )
        if membership is None:
            raise PermissionDenied(_("A NAFT trajectory is applied for by the CLB (N-1)."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        provider = Organisation.objects.filter(pk=values.pop("provider")).first()
        if provider is None:
            raise serializers.ValidationError({"provider": [_("No organisation with this id.")]})
        trajectory = naft.trajectory_apply(
            pupil=pupil,
            clb=membership.organisation,
            provider=provider,
            applied_by=request.user,
            school_agreed_on=values.pop("school_agreed_on", None),
            pupil_agreed_on=values.pop("pupil_agreed_on", None),
            parents_agreed_on=values.pop("parents_agreed_on", None),
            **values,
        )
        return Response(TrajectoryOutputSerializer(trajectory).data, status=status.HTTP_201_CREATED)


class TrajectoryListApi(APIView):
    """Trajectories of your CLB, or of your NAFT provider only."""

    @extend_schema(operation_id="trajectories_list", responses={200: TrajectoryOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(TrajectoryOutputSerializer(_visible(request).order_by("-created_at"), many=True).data)


class TrajectoryDetailApi(APIView):
    """One trajectory (its CLB's staff and its provider's coaches)."""

    @extend_schema(operation_id="trajectories_retrieve", responses={200: TrajectoryOutputSerializer})
    def get(self, request: Request, trajectory_id: uuid.UUID) -> Response:
        return Response(TrajectoryOutputSerializer(_trajectory(request, trajectory_id)).data)


class TrajectoryDecideApi(APIView):
    """The NAFT provider accepts (naming the coach) or declines with a reason."""

    class InputSerializer(serializers.Serializer):
        accept = serializers.BooleanField()
        coach = serializers.CharField(required=False, help_text="Username of the coach; default: you")
        reason = serializers.ChoiceField(choices=[(r, r) for r in naft.DECLINE_REASONS], required=False)

    @extend_schema(
        operation_id="trajectories_decide",
        request=InputSerializer,
        responses={200: TrajectoryOutputSerializer},
        summary="Accept or decline an application (NAFT provider)",
    )
    def post(self, request: Request, trajectory_id: uuid.UUID) -> Response:
        trajectory = _trajectory(request, trajectory_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        coach = None
        if values.get("coach"):
            coach = get_user_model().objects.filter(username=values["coach"]).first()
            if coach is None:
                raise serializers.ValidationError({"coach": [_("No user with this username.")]})
        trajectory = naft.trajectory_decide(
            trajectory=trajectory,
            by=request.user,
            accept=values["accept"],
            coach=coach,
            reason=values.get("reason", ""),
        )
        return Response(TrajectoryOutputSerializer(trajectory).data)


class ProgressReportCreateApi(APIView):
    """N-2: the coach reports per period to the CLB staff involved only."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    class GoalSerializer(serializers.Serializer):
        goal = serializers.IntegerField(min_value=1)
        progress = serializers.ChoiceField(choices=[(p, p) for p in naft.GOAL_PROGRESS])
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    class InputSerializer(serializers.Serializer):
        period_start = serializers.DateField()
        period_end = serializers.DateField()
        days_present = serializers.IntegerField(min_value=0, max_value=366)
        days_planned = serializers.IntegerField(min_value=0, max_value=366)
        goals = serializers.ListField(child=serializers.DictField(), min_length=1)
        actions = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
        narrative = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        item = serializers.UUIDField(source="item_id")
        period_start = serializers.DateField()
        period_end = serializers.DateField()
        days_present = serializers.IntegerField()
        days_planned = serializers.IntegerField()

    @extend_schema(
        operation_id="trajectories_reports_create",
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Report progress to the CLB (NAFT coach)",
    )
    def post(self, request: Request, trajectory_id: uuid.UUID) -> Response:
        trajectory = _trajectory(request, trajectory_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        goals = []
        for goal in values.pop("goals"):
            checked = self.GoalSerializer(data=goal)
            if not checked.is_valid():
                raise serializers.ValidationError({"goals": [str(checked.errors)]})
            goals.append(dict(checked.validated_data))
        attachment = request.FILES.get("attachment")
        if attachment is not None and not isinstance(attachment, SealedUpload):
            raise serializers.ValidationError({"attachment": [_("Upload the attachment as multipart/form-data.")]})
        report = naft.progress_report(
            trajectory=trajectory, by=request.user, goals=goals, attachment=attachment, **values
        )
        return Response(self.OutputSerializer(report).data, status=status.HTTP_201_CREATED)


class TrajectoryEndApi(APIView):
    """N-4: close the trajectory with the round table's conclusions."""

    class InputSerializer(serializers.Serializer):
        round_table_on = serializers.DateField()
        summary = serializers.CharField(max_length=20_000)

    @extend_schema(
        operation_id="trajectories_end",
        request=InputSerializer,
        responses={200: TrajectoryOutputSerializer},
        summary="End a trajectory after the round table",
    )
    def post(self, request: Request, trajectory_id: uuid.UUID) -> Response:
        trajectory = _trajectory(request, trajectory_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        trajectory = naft.trajectory_end(trajectory=trajectory, by=request.user, **data.validated_data)
        return Response(TrajectoryOutputSerializer(trajectory).data)


class NotificationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    organisation = serializers.UUIDField(source="organisation_id")
    pupil = serializers.UUIDField(source="pupil_id", allow_null=True)
    object_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)


class NotificationListApi(APIView):
    """Your notifications (a NAFT report arrived, a report is overdue, a begeleidingsdossier opened, ...)."""

    @extend_schema(operation_id="notifications_list", responses={200: NotificationOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        notifications = StaffNotification.objects.filter(user_id=request.user.pk or 0)[:200]
        return Response(NotificationOutputSerializer(notifications, many=True).data)


class NotificationReadApi(APIView):
    """Mark a notification as read."""

    @extend_schema(operation_id="notifications_read", request=None, responses={200: NotificationOutputSerializer})
    def post(self, request: Request, notification_id: uuid.UUID) -> Response:
        notification = StaffNotification.objects.filter(pk=notification_id, user_id=request.user.pk or 0).first()
        if notification is None:
            raise NotFound
        if notification.read_at is None:
            notification.read_at = timezone.now()
            notification.save(update_fields=["read_at"])
        return Response(NotificationOutputSerializer(notification).data)
