"""API of the absence register and the begeleidingsdossier (A-1..A-3, T-SCH-5)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from django.db.models import Count, Q
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange import absences, selectors
from exchange.domain import school_year_of
from exchange.models import (
    Absence,
    AbsenceCode,
    AttendanceCase,
    CooperationAgreement,
    HalfDay,
    Organisation,
    OrganisationKind,
    Pupil,
    Role,
)

SCHOOL_ROLES: set[str] = {Role.ADMINISTRATION, Role.CARE_TEAM, Role.SCHOOL_DIRECTOR}
CLB_ROLES: set[str] = {Role.CLB_WORKER, Role.CLB_DIRECTOR}


class AbsenceOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    school = serializers.UUIDField(source="school_id")
    day = serializers.DateField()
    half = serializers.ChoiceField(choices=HalfDay.choices)
    code = serializers.ChoiceField(choices=AbsenceCode.choices)
    school_year = serializers.CharField()
    case = serializers.UUIDField(source="case_id", allow_null=True)
    corrections = serializers.SerializerMethodField()

    def get_corrections(self, obj: Absence) -> list[dict[str, Any]]:
        return [
            {"old_code": c.old_code, "new_code": c.new_code, "changed_at": c.changed_at.isoformat()}
            for c in obj.changes.all()
        ]


def _school_of(request: Request, school_id: Any, roles: set[str]) -> Organisation:
    memberships = selectors.membership_list_for_user(user=request.user).filter(
        organisation__kind=OrganisationKind.SCHOOL, role__in=roles
    )
    if school_id:
        memberships = memberships.filter(organisation_id=school_id)
    membership = memberships.first()
    if membership is None:
        raise PermissionDenied(_("Only the school's staff work with its absence register."))
    return membership.organisation


class AbsenceCreateApi(APIView):
    """A-1: register a half day of absence (school administration)."""

    class InputSerializer(serializers.Serializer):
        pupil = serializers.UUIDField()
        school = serializers.UUIDField(required=False)
        day = serializers.DateField()
        half = serializers.ChoiceField(choices=HalfDay.choices)
        code = serializers.ChoiceField(choices=AbsenceCode.choices)

    @extend_schema(
        operation_id="absences_create",
        request=InputSerializer,
        responses={201: AbsenceOutputSerializer},
        summary="Register a half day of absence (school administration)",
        description="At the fifth B half day of a school year, counted across schools, a begeleidingsdossier opens.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        school = _school_of(request, values.get("school"), absences.RECORDING_ROLES)
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=values["pupil"])
        if pupil is None:
            raise serializers.ValidationError({"pupil": [_("No pupil with this id at your school.")]})
        absence = absences.absence_record(
            pupil=pupil,
            school=school,
            day=values["day"],
            half=values["half"],
            code=values["code"],
            recorded_by=request.user,
        )
        return Response(AbsenceOutputSerializer(absence).data, status=status.HTTP_201_CREATED)


class AbsenceCorrectApi(APIView):
    """Correct a registered code; the history is kept and an open dossier stays open."""

    class InputSerializer(serializers.Serializer):
        code = serializers.ChoiceField(choices=AbsenceCode.choices)

    @extend_schema(
        operation_id="absences_correct",
        request=InputSerializer,
        responses={200: AbsenceOutputSerializer},
        summary="Correct an absence code (school administration)",
    )
    def post(self, request: Request, absence_id: uuid.UUID) -> Response:
        schools = selectors.organisation_ids_for_user(user=request.user, roles=absences.RECORDING_ROLES)
        absence = Absence.objects.filter(pk=absence_id, school_id__in=schools).first()
        if absence is None:
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        absence = absences.absence_correct(absence=absence, code=data.validated_data["code"], by=request.user)
        return Response(AbsenceOutputSerializer(absence).data)


class PupilAbsenceListApi(APIView):
    """T-SCH-5: a pupil's absences of this and last school year, at every school, for the current school and CLB."""

    @extend_schema(operation_id="pupils_absences_list", responses={200: AbsenceOutputSerializer(many=True)})
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
        if pupil is None:
            raise NotFound
        schools = selectors.organisation_ids_for_user(user=request.user, roles=SCHOOL_ROLES)
        clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_ROLES)
        current = selectors.enrolments_current().filter(pupil=pupil)
        allowed = (
            current.filter(school_id__in=schools).exists()
            or AttendanceCase.objects.filter(pupil=pupil, clb_id__in=clbs).exists()
            or current.filter(
                school_id__in=CooperationAgreement.objects.filter(clb_id__in=clbs).values("school_id")
            ).exists()
        )
        if not allowed:
            raise NotFound
        since = absences.absences_visible_window(selectors.today())
        rows = Absence.objects.filter(pupil=pupil, day__gte=since).prefetch_related("changes")
        return Response(AbsenceOutputSerializer(rows, many=True).data)


class AbsenceOverviewApi(APIView):
    """The care team's overview: pupils by B half days this school year, those at the threshold first."""

    class RowSerializer(serializers.Serializer):
        pupil = serializers.UUIDField()
        first_name = serializers.CharField()
        last_name = serializers.CharField()
        b_half_days = serializers.IntegerField()
        z_half_days = serializers.IntegerField()
        at_threshold = serializers.BooleanField()
        case = serializers.UUIDField(allow_null=True)

    @extend_schema(operation_id="absences_overview", responses={200: RowSerializer(many=True)})
    def get(self, request: Request) -> Response:
        school = _school_of(request, request.query_params.get("school"), {Role.CARE_TEAM, Role.SCHOOL_DIRECTOR})
        year = school_year_of(selectors.today())
        pupils = list(
            Pupil.objects.filter(pk__in=selectors.enrolments_current().filter(school=school).values("pupil_id"))
        )
        counts: dict[Any, dict[str, int]] = defaultdict(lambda: {"B": 0, "Z": 0})
        for row in (
            Absence.objects.filter(pupil__in=pupils, school_year=year, code__in=["B", "Z"])
            .values("pupil_id", "code")
            .annotate(n=Count("id"))
        ):
            counts[row["pupil_id"]][row["code"]] = row["n"]
        cases = dict(AttendanceCase.objects.filter(pupil__in=pupils, school_year=year).values_list("pupil_id", "pk"))
        limit = absences.thresholds()["B"]
        rows: list[dict[str, Any]] = []
        for pupil in pupils:
            identity = selectors.pupil_identity(pupil=pupil)
            b = counts[pupil.pk]["B"]
            rows.append(
                {
                    "pupil": pupil.pk,
                    "first_name": identity.first_name,
                    "last_name": identity.last_name,
                    "b_half_days": b,
                    "z_half_days": counts[pupil.pk]["Z"],
                    "at_threshold": limit > 0 and b >= limit,
                    "case": cases.get(pupil.pk),
                }
            )
        rows.sort(key=_overview_order)
        return Response(self.RowSerializer(rows, many=True).data)


def _overview_order(row: dict[str, Any]) -> tuple[bool, int, str]:
    return (not row["at_threshold"], -row["b_half_days"], row["last_name"])


class AttendanceCaseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    school_year = serializers.CharField()
    clb = serializers.UUIDField(source="clb_id")
    school = serializers.UUIDField(source="school_id")
    item = serializers.UUIDField(source="item_id")
    opened_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)
    b_half_days = serializers.IntegerField()
    steps = serializers.ListField(child=serializers.UUIDField())


class AttendanceCaseListApi(APIView):
    """The open begeleidingsdossiers of your CLB's schools, or of your school (care team)."""

    @extend_schema(operation_id="attendance_cases_list", responses={200: AttendanceCaseSerializer(many=True)})
    def get(self, request: Request) -> Response:
        clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_ROLES)
        schools = selectors.organisation_ids_for_user(user=request.user, roles={Role.CARE_TEAM})
        cases = (
            AttendanceCase.objects.filter(Q(clb_id__in=clbs) | Q(school_id__in=schools), closed_at__isnull=True)
            .annotate(b=Count("absences", filter=Q(absences__code="B")))
            .prefetch_related("steps")
            .order_by("-opened_at")
        )
        rows = [
            {
                **{
                    f: getattr(c, f)
                    for f in (
                        "id",
                        "pupil_id",
                        "school_year",
                        "clb_id",
                        "school_id",
                        "item_id",
                        "opened_at",
                        "closed_at",
                    )
                },
                "b_half_days": c.b,
                "steps": [s.item_id for s in c.steps.all()],
            }
            for c in cases
        ]
        return Response(AttendanceCaseSerializer(rows, many=True).data)


class AttendanceStepCreateApi(APIView):
    """Record a step school or CLB took in the begeleidingsdossier."""

    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(max_length=10_000)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        item = serializers.UUIDField(source="item_id")
        organisation = serializers.UUIDField(source="organisation_id")

    @extend_schema(
        operation_id="attendance_cases_steps_create",
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Record a step (school care team or CLB)",
    )
    def post(self, request: Request, case_id: uuid.UUID) -> Response:
        clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_ROLES)
        schools = selectors.organisation_ids_for_user(user=request.user, roles=SCHOOL_ROLES - {Role.ADMINISTRATION})
        case = AttendanceCase.objects.filter(Q(clb_id__in=clbs) | Q(school_id__in=schools), pk=case_id).first()
        if case is None:
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step = absences.attendance_step_add(case=case, by=request.user, text=data.validated_data["text"])
        return Response(self.OutputSerializer(step).data, status=status.HTTP_201_CREATED)
