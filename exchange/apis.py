"""HTTP API of the core: thin classes, one per operation; logic lives in services/selectors."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api_schema.pagination import Pagination
from exchange import selectors, services
from exchange.domain import NationalNumberError, normalise_national_number
from exchange.models import (
    CooperationAgreement,
    Level,
    Organisation,
    OrganisationKind,
    ParentRelation,
    Pupil,
    PupilParent,
    Role,
    SchoolKind,
)

ENROLMENT_ROLES: set[str] = {Role.ADMINISTRATION, Role.SCHOOL_DIRECTOR}


def _paginate(
    request: Request, view: APIView, queryset: Any, serializer_class: type[serializers.Serializer]
) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


class OrganisationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=OrganisationKind.choices)
    official_number = serializers.CharField()
    name = serializers.CharField()
    school_kind = serializers.ChoiceField(choices=[*SchoolKind.choices, ("", "-")])
    objection_window_days = serializers.IntegerField()


class MeApi(APIView):
    class MembershipSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        role = serializers.ChoiceField(choices=Role.choices)
        organisation = OrganisationOutputSerializer()

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        first_name = serializers.CharField()
        last_name = serializers.CharField()
        memberships = serializers.ListField(child=serializers.DictField())

    @extend_schema(operation_id="me_retrieve", responses={200: OutputSerializer}, summary="Who am I")
    def get(self, request: Request) -> Response:
        memberships = selectors.membership_list_for_user(user=request.user)
        user: Any = request.user
        return Response(
            {
                "username": user.get_username(),
                "first_name": user.first_name,
                "last_name": user.last_name,
                "memberships": self.MembershipSerializer(memberships, many=True).data,
            }
        )


class OrganisationListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=OrganisationKind.choices, required=False)

    @extend_schema(
        operation_id="organisations_list",
        parameters=[FilterSerializer],
        responses={200: OrganisationOutputSerializer(many=True)},
        summary="List organisations (public register data)",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.organisation_list()
        if kind := filters.validated_data.get("kind"):
            queryset = queryset.filter(kind=kind)
        return _paginate(request, self, queryset, OrganisationOutputSerializer)


class OrganisationDetailApi(APIView):
    @extend_schema(operation_id="organisations_retrieve", responses={200: OrganisationOutputSerializer})
    def get(self, request: Request, organisation_id: str) -> Response:
        organisation = selectors.organisation_list().filter(pk=organisation_id).first()
        if organisation is None:
            raise NotFound
        return Response(OrganisationOutputSerializer(organisation).data)


class AgreementOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    school = serializers.UUIDField(source="school_id")
    clb = serializers.UUIDField(source="clb_id")
    start = serializers.DateField()
    end = serializers.DateField(allow_null=True)


class AgreementListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        organisation = serializers.UUIDField(required=False, help_text="School or CLB")

    @extend_schema(
        operation_id="agreements_list",
        parameters=[FilterSerializer],
        responses={200: AgreementOutputSerializer(many=True)},
        summary="Cooperation agreements between schools and CLBs (S-0)",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = CooperationAgreement.objects.all()
        if organisation := filters.validated_data.get("organisation"):
            queryset = queryset.filter(school_id=organisation) | queryset.filter(clb_id=organisation)
        return _paginate(request, self, queryset.order_by("school_id", "-start"), AgreementOutputSerializer)


class AgreementCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        school = serializers.UUIDField()
        clb = serializers.UUIDField()
        start = serializers.DateField()
        end = serializers.DateField(required=False, allow_null=True)

    @extend_schema(
        operation_id="agreements_create",
        request=InputSerializer,
        responses={201: AgreementOutputSerializer},
        summary="Register a cooperation agreement (platform operators)",
        description="S-0: a school works with one CLB at a time; an overlapping agreement is refused with 400.",
    )
    def post(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied(_("Only platform operators register cooperation agreements."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        school = _organisation_or_400(data.validated_data["school"], "school")
        clb = _organisation_or_400(data.validated_data["clb"], "clb")
        agreement = services.agreement_create(
            school=school, clb=clb, start=data.validated_data["start"], end=data.validated_data.get("end")
        )
        return Response(AgreementOutputSerializer(agreement).data, status=status.HTTP_201_CREATED)


class AgreementEndApi(APIView):
    class InputSerializer(serializers.Serializer):
        end = serializers.DateField()

    @extend_schema(
        operation_id="agreements_end",
        request=InputSerializer,
        responses={200: AgreementOutputSerializer},
        summary="End a cooperation agreement (platform operators)",
    )
    def post(self, request: Request, agreement_id: str) -> Response:
        if not request.user.is_staff:
            raise PermissionDenied(_("Only platform operators end cooperation agreements."))
        agreement = CooperationAgreement.objects.filter(pk=agreement_id).first()
        if agreement is None:
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agreement = services.agreement_end(agreement=agreement, end=data.validated_data["end"])
        return Response(AgreementOutputSerializer(agreement).data)


def _organisation_or_400(organisation_id: Any, field: str) -> Organisation:
    organisation = Organisation.objects.filter(pk=organisation_id).first()
    if organisation is None:
        raise serializers.ValidationError({field: [_("No organisation with this id.")]})
    return organisation


class ParentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    relation = serializers.ChoiceField(choices=ParentRelation.choices)
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    email = serializers.CharField()
    has_account = serializers.BooleanField()


def _parent_data(parent: PupilParent) -> dict[str, Any]:
    identity = selectors.parent_identity(parent=parent)
    return {
        "id": parent.id,
        "relation": parent.relation,
        "first_name": identity.first_name,
        "last_name": identity.last_name,
        "email": identity.email,
        "has_account": parent.user_id is not None,
    }


class PupilOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    national_number = serializers.CharField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    birth_date = serializers.DateField()
    address = serializers.CharField()
    age = serializers.IntegerField()
    presumed_capable = serializers.BooleanField(help_text="CAP-1: presumed capable from 12, computed today.")


def _pupil_data(pupil: Pupil) -> dict[str, Any]:
    identity = selectors.pupil_identity(pupil=pupil)
    day = selectors.today()
    return {
        "id": pupil.id,
        "national_number": identity.national_number,
        "first_name": identity.first_name,
        "last_name": identity.last_name,
        "birth_date": identity.birth_date,
        "address": identity.address,
        "age": identity.age_on(day),
        "presumed_capable": identity.is_presumed_capable(day),
    }


class PupilListApi(APIView):
    @extend_schema(
        operation_id="pupils_list",
        responses={200: PupilOutputSerializer(many=True)},
        summary="Pupils your organisation has a relation with",
    )
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.pupil_list_for_user(user=request.user), request, view=self) or []
        return paginator.get_paginated_response(PupilOutputSerializer([_pupil_data(p) for p in page], many=True).data)


class PupilDetailApi(APIView):
    class OutputSerializer(PupilOutputSerializer):
        parents = ParentOutputSerializer(many=True)

    @extend_schema(operation_id="pupils_retrieve", responses={200: OutputSerializer})
    def get(self, request: Request, pupil_id: str) -> Response:
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
        if pupil is None:
            raise NotFound
        data = _pupil_data(pupil)
        data["parents"] = [_parent_data(parent) for parent in pupil.parents.all()]
        return Response(self.OutputSerializer(data).data)


class PupilParentCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        first_name = serializers.CharField(max_length=100)
        last_name = serializers.CharField(max_length=100)
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        relation = serializers.ChoiceField(choices=ParentRelation.choices, default=ParentRelation.PARENT)

    @extend_schema(
        operation_id="pupils_parents_create",
        request=InputSerializer,
        responses={201: ParentOutputSerializer},
        summary="Add a parent or guardian (school administration of a current school)",
    )
    def post(self, request: Request, pupil_id: str) -> Response:
        pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
        if pupil is None:
            raise NotFound
        current_schools = selectors.enrolments_current().filter(pupil=pupil).values("school_id")
        allowed = selectors.membership_list_for_user(user=request.user).filter(
            organisation_id__in=current_schools, role__in=ENROLMENT_ROLES
        )
        if not allowed.exists():
            raise PermissionDenied(_("Only the administration of a school where the pupil is enrolled adds parents."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parent = services.parent_add(pupil=pupil, **data.validated_data)
        return Response(ParentOutputSerializer(_parent_data(parent)).data, status=status.HTTP_201_CREATED)


class EnrolmentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    school = serializers.UUIDField(source="school_id")
    level = serializers.ChoiceField(choices=Level.choices)
    school_year = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField(allow_null=True)


class EnrolmentListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        pupil = serializers.UUIDField(required=False)
        school = serializers.UUIDField(required=False)

    @extend_schema(
        operation_id="enrolments_list",
        parameters=[FilterSerializer],
        responses={200: EnrolmentOutputSerializer(many=True)},
        summary="Enrolments of the pupils you may see (their school career, T-SCH-5)",
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = selectors.enrolment_list_for_user(user=request.user)
        if pupil := filters.validated_data.get("pupil"):
            queryset = queryset.filter(pupil_id=pupil)
        if school := filters.validated_data.get("school"):
            queryset = queryset.filter(school_id=school)
        return _paginate(request, self, queryset.order_by("-start", "id"), EnrolmentOutputSerializer)


class EnrolmentCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        school = serializers.UUIDField()
        national_number = serializers.CharField(max_length=20, help_text="Rijksregisternummer or bis number")
        first_name = serializers.CharField(max_length=100, required=False)
        last_name = serializers.CharField(max_length=100, required=False)
        birth_date = serializers.DateField(required=False)
        address = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
        level = serializers.ChoiceField(choices=Level.choices)
        start = serializers.DateField()
        end = serializers.DateField(required=False, allow_null=True)
        school_year = serializers.CharField(max_length=9, required=False, help_text="Defaults to the year of start")

    @extend_schema(
        operation_id="enrolments_create",
        request=InputSerializer,
        responses={201: EnrolmentOutputSerializer},
        summary="Enrol a pupil (school administration)",
        description=(
            "Enrols a pupil by national number. A pupil unknown to the platform is registered at the "
            "same time and then needs first_name, last_name and birth_date. At most one enrolment per "
            "pupil and level at a time: an open enrolment at another school that started earlier ends the "
            "day before (a school change, which plans the handovers); any other overlap is refused with 400."
        ),
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        school = _organisation_or_400(values["school"], "school")
        if not selectors.user_has_role(user=request.user, organisation=school, roles=ENROLMENT_ROLES):
            raise PermissionDenied(
                _("Only the administration of %(school)s registers its enrolments.") % {"school": school.name}
            )
        try:
            number = normalise_national_number(values["national_number"])
        except NationalNumberError as exc:
            raise serializers.ValidationError({"national_number": [str(exc)]}) from None
        with transaction.atomic():
            pupil = services.pupil_find_or_register(
                national_number=number,
                first_name=values.get("first_name"),
                last_name=values.get("last_name"),
                birth_date=values.get("birth_date"),
                address=values.get("address", ""),
            )
            enrolment = services.enrolment_register(
                pupil=pupil,
                school=school,
                level=values["level"],
                start=values["start"],
                end=values.get("end"),
                school_year=values.get("school_year"),
                registered_by=request.user,  # type: ignore[arg-type]
                ends_previous=True,
            )
        return Response(EnrolmentOutputSerializer(enrolment).data, status=status.HTTP_201_CREATED)


class EnrolmentEndApi(APIView):
    class InputSerializer(serializers.Serializer):
        end = serializers.DateField()

    @extend_schema(
        operation_id="enrolments_end",
        request=InputSerializer,
        responses={200: EnrolmentOutputSerializer},
        summary="End an enrolment (administration of that school)",
    )
    def post(self, request: Request, enrolment_id: str) -> Response:
        enrolment = selectors.enrolment_list_for_user(user=request.user).filter(pk=enrolment_id).first()
        if enrolment is None:
            raise NotFound
        if not selectors.user_has_role(user=request.user, organisation=enrolment.school, roles=ENROLMENT_ROLES):
            raise PermissionDenied(_("Only the administration of the school ends its enrolments."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        enrolment = services.enrolment_end(enrolment=enrolment, end=data.validated_data["end"])
        return Response(EnrolmentOutputSerializer(enrolment).data)
