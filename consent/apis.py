"""API of consent, capacity, shares and concern (S-1..S-5, CAP-1..CAP-3, V-1)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consent import services
from consent.models import (
    Actor,
    Concern,
    ConcernGround,
    ConcernRecipient,
    Consent,
    Purpose,
    RecordedVia,
    ScopeKind,
    Share,
)
from exchange import selectors
from exchange.models import Category, Organisation, OrganisationKind, Pupil, PupilItem, PupilParent, Role
from permissions.access import item_list_for_user

CLB_STAFF: set[str] = {Role.CLB_WORKER, Role.CLB_MEDICAL, Role.CLB_DIRECTOR}


def _pupil(request: Request, pupil_id: uuid.UUID) -> Pupil:
    pupil = selectors.pupil_get_for_user(user=request.user, pupil_id=pupil_id)
    if pupil is None:
        raise NotFound
    return pupil


def _own_organisation(request: Request, kinds: set[str], roles: set[str], message: str) -> Organisation:
    membership = (
        selectors.membership_list_for_user(user=request.user)
        .filter(organisation__kind__in=kinds, role__in=roles)
        .first()
    )
    if membership is None:
        raise PermissionDenied(message)
    return membership.organisation


def _readable_items(request: Request, pupil: Pupil, ids: list[uuid.UUID]) -> list[PupilItem]:
    found = list(item_list_for_user(user=request.user, pupil_id=pupil.pk).filter(pk__in=ids))
    if len(found) != len(set(ids)):
        raise serializers.ValidationError({"items": [_("One or more items do not exist or are not visible to you.")]})
    return found


def _organisation_or_400(organisation_id: uuid.UUID, field: str) -> Organisation:
    organisation = Organisation.objects.filter(pk=organisation_id).first()
    if organisation is None:
        raise serializers.ValidationError({field: [_("No organisation with this id.")]})
    return organisation


class CapacitySerializer(serializers.Serializer):
    capable = serializers.BooleanField()
    basis = serializers.CharField()
    age = serializers.IntegerField()


class PupilCapacityApi(APIView):
    """CAP-1/CAP-2: whether the pupil is capable today, and on what basis."""

    @extend_schema(operation_id="pupils_capacity_retrieve", responses={200: CapacitySerializer})
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        capacity = services.capacity_on(pupil=pupil, day=timezone.localdate())
        return Response(CapacitySerializer(capacity.__dict__).data)


class CapacityDecisionCreateApi(APIView):
    """CAP-2: a CLB staff member overrides the presumption, with a written motivation."""

    class InputSerializer(serializers.Serializer):
        capable = serializers.BooleanField()
        motivation = serializers.CharField(max_length=10_000)
        decided_on = serializers.DateField(required=False)

    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        capable = serializers.BooleanField()
        decided_on = serializers.DateField()
        motivation_item = serializers.UUIDField(source="motivation_item_id")

    @extend_schema(
        operation_id="pupils_capacity_decisions_create",
        request=InputSerializer,
        responses={201: OutputSerializer},
        summary="Override the capacity presumption (CLB staff)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        clb = _own_organisation(request, {OrganisationKind.CLB}, CLB_STAFF, _("Only CLB staff decide on capacity."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision = services.capacity_override(pupil=pupil, clb=clb, decided_by=request.user, **data.validated_data)
        return Response(self.OutputSerializer(decision).data, status=status.HTTP_201_CREATED)


class ConsentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    clb = serializers.UUIDField(source="clb_id")
    given_by = serializers.ChoiceField(choices=Actor.choices)
    given_by_parent = serializers.UUIDField(source="given_by_parent_id", allow_null=True)
    capacity_basis = serializers.CharField()
    recorded_via = serializers.ChoiceField(choices=RecordedVia.choices)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    recipient = serializers.UUIDField(source="recipient_id")
    recipient_role = serializers.CharField()
    scope_kind = serializers.ChoiceField(choices=ScopeKind.choices)
    scope_categories = serializers.ListField(child=serializers.CharField())
    valid_from = serializers.DateField()
    valid_until = serializers.DateField(allow_null=True)
    withdrawn_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class ConsentCreateApi(APIView):
    """S-1/S-2: record a consent (CLB staff), or give it online (the capable pupil or a parent)."""

    class InputSerializer(serializers.Serializer):
        given_by = serializers.ChoiceField(choices=Actor.choices)
        given_by_parent = serializers.UUIDField(required=False, help_text="The parent who consents (given_by=parent)")
        clb = serializers.UUIDField(required=False, help_text="The CLB asking; default: your CLB")
        recorded_via = serializers.ChoiceField(choices=RecordedVia.choices)
        purpose = serializers.ChoiceField(choices=Purpose.choices)
        recipient = serializers.UUIDField(help_text="The school")
        scope_kind = serializers.ChoiceField(choices=ScopeKind.choices)
        items = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=1000)
        categories = serializers.ListField(
            child=serializers.ChoiceField(choices=Category.choices), required=False, default=list
        )
        valid_from = serializers.DateField(required=False)
        valid_until = serializers.DateField(required=False, allow_null=True)

    @extend_schema(
        operation_id="pupils_consents_create",
        request=InputSerializer,
        responses={201: ConsentOutputSerializer},
        summary="Record a consent to share with a school",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("clb"):
            clb = _organisation_or_400(values["clb"], "clb")
        else:
            clb = _own_organisation(request, {OrganisationKind.CLB}, CLB_STAFF, _("Name the CLB that asks."))
        parent = None
        if values["given_by"] == Actor.PARENT:
            parent = PupilParent.objects.filter(pk=values.get("given_by_parent"), pupil=pupil).first()
            if parent is None:
                raise serializers.ValidationError(
                    {"given_by_parent": [_("Name one of the pupil's parents (their id).")]}
                )
        items = _readable_items(request, pupil, values["items"]) if values["items"] else []
        consent = services.consent_record(
            pupil=pupil,
            clb=clb,
            given_by=values["given_by"],
            parent=parent,
            recorded_by=request.user,
            recorded_via=values["recorded_via"],
            purpose=values["purpose"],
            recipient=_organisation_or_400(values["recipient"], "recipient"),
            scope_kind=values["scope_kind"],
            items=items,
            categories=values["categories"],
            valid_from=values.get("valid_from"),
            valid_until=values.get("valid_until"),
        )
        return Response(ConsentOutputSerializer(consent).data, status=status.HTTP_201_CREATED)


class ConsentListApi(APIView):
    """The consents about a pupil: for the CLB's staff, the pupil and the parents."""

    @extend_schema(operation_id="pupils_consents_list", responses={200: ConsentOutputSerializer(many=True)})
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_STAFF)
        consents = Consent.objects.filter(pupil=pupil)
        user_id = request.user.pk
        is_subject = user_id is not None and (
            pupil.user_id == user_id or pupil.parents.filter(user_id=user_id).exists()
        )
        if not is_subject:
            consents = consents.filter(clb_id__in=clbs)
        return Response(ConsentOutputSerializer(consents, many=True).data)


class ConsentWithdrawApi(APIView):
    """S-4: withdrawing ends the school's access from this moment; what was read stays in the log."""

    class InputSerializer(serializers.Serializer):
        via = serializers.ChoiceField(choices=RecordedVia.choices)

    @extend_schema(
        operation_id="consents_withdraw",
        request=InputSerializer,
        responses={200: ConsentOutputSerializer},
        summary="Withdraw a consent (the person online, or CLB staff recording it)",
    )
    def post(self, request: Request, consent_id: uuid.UUID) -> Response:
        consent = Consent.objects.filter(pk=consent_id).select_related("pupil", "given_by_parent").first()
        if consent is None:
            raise NotFound
        user_id = request.user.pk
        may = (
            consent.pupil.user_id == user_id
            or (consent.given_by_parent is not None and consent.given_by_parent.user_id == user_id)
            or selectors.membership_list_for_user(user=request.user)
            .filter(organisation_id=consent.clb_id, role__in=CLB_STAFF)
            .exists()
        )
        if not may:
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        consent = services.consent_withdraw(consent=consent, withdrawn_by=request.user, via=data.validated_data["via"])
        return Response(ConsentOutputSerializer(consent).data)


class ShareOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    consent = serializers.UUIDField(source="consent_id")
    clb = serializers.UUIDField(source="clb_id")
    school = serializers.UUIDField(source="school_id")
    kind = serializers.CharField()
    items = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_items(self, obj: Share) -> list[str]:
        return [str(pk) for pk in obj.items.values_list("pk", flat=True)]


class ShareCreateApi(APIView):
    """S-1..S-3: the involved CLB worker shares a summary or selected items with the pupil's school."""

    class InputSerializer(serializers.Serializer):
        consent = serializers.UUIDField()
        school = serializers.UUIDField()
        summary_title = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)
        summary_body = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
        items = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=1000)

    @extend_schema(
        operation_id="pupils_shares_create",
        request=InputSerializer,
        responses={201: ShareOutputSerializer},
        summary="Share with the school under a consent (involved CLB staff)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        clb = _own_organisation(request, {OrganisationKind.CLB}, CLB_STAFF, _("Only CLB staff share with schools."))
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        consent = Consent.objects.filter(pk=values["consent"], pupil=pupil).first()
        if consent is None:
            raise serializers.ValidationError({"consent": [_("No consent with this id for this pupil.")]})
        share = services.share_create(
            pupil=pupil,
            clb=clb,
            school=_organisation_or_400(values["school"], "school"),
            consent=consent,
            created_by=request.user,
            summary_title=values["summary_title"],
            summary_body=values["summary_body"],
            items=_readable_items(request, pupil, values["items"]) if values["items"] else [],
        )
        return Response(ShareOutputSerializer(share).data, status=status.HTTP_201_CREATED)


class ShareListApi(APIView):
    """S-2: "data communicated to the school" — for the CLB's staff and the receiving school's care team."""

    @extend_schema(operation_id="pupils_shares_list", responses={200: ShareOutputSerializer(many=True)})
    def get(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        clbs = selectors.organisation_ids_for_user(user=request.user, roles=CLB_STAFF)
        schools = selectors.organisation_ids_for_user(user=request.user, roles={Role.CARE_TEAM})
        shares = Share.objects.filter(pupil=pupil).filter(clb_id__in=clbs) | Share.objects.filter(
            pupil=pupil, school_id__in=schools, consent__withdrawn_at__isnull=True
        )
        return Response(ShareOutputSerializer(shares.distinct(), many=True).data)


class ConcernOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    pupil = serializers.UUIDField(source="pupil_id")
    organisation = serializers.UUIDField(source="organisation_id")
    reviewing_clb = serializers.UUIDField(source="reviewing_clb_id")
    ground = serializers.ChoiceField(choices=ConcernGround.choices)
    recipient = serializers.ChoiceField(choices=ConcernRecipient.choices)
    justification_item = serializers.UUIDField(source="justification_item_id")
    disclosed_at = serializers.DateTimeField()
    reviewed_at = serializers.DateTimeField(allow_null=True)
    review_outcome = serializers.CharField()


class ConcernCreateApi(APIView):
    """V-1: disclose without consent to a mandated body — a professional's decision, reviewed later."""

    class InputSerializer(serializers.Serializer):
        ground = serializers.ChoiceField(choices=ConcernGround.choices)
        recipient = serializers.ChoiceField(choices=ConcernRecipient.choices)
        justification = serializers.CharField(max_length=20_000)
        items = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=1000)

    @extend_schema(
        operation_id="pupils_concerns_create",
        request=InputSerializer,
        responses={201: ConcernOutputSerializer},
        summary="Record a disclosure on concern (CLB or NAFT professional)",
    )
    def post(self, request: Request, pupil_id: uuid.UUID) -> Response:
        pupil = _pupil(request, pupil_id)
        organisation = _own_organisation(
            request,
            {OrganisationKind.CLB, OrganisationKind.NAFT},
            CLB_STAFF | {Role.NAFT_COACH},
            _("Only a CLB or NAFT professional discloses on concern (V-1)."),
        )
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        concern = services.concern_disclose(
            pupil=pupil,
            organisation=organisation,
            professional=request.user,
            ground=values["ground"],
            recipient=values["recipient"],
            justification=values["justification"],
            items=_readable_items(request, pupil, values["items"]) if values["items"] else [],
        )
        return Response(ConcernOutputSerializer(concern).data, status=status.HTTP_201_CREATED)


class ConcernQueueApi(APIView):
    """V-1: the CLB director's review queue of disclosures."""

    @extend_schema(operation_id="concerns_list", responses={200: ConcernOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        directed = selectors.organisation_ids_for_user(user=request.user, roles={Role.CLB_DIRECTOR})
        concerns = Concern.objects.filter(reviewing_clb_id__in=directed).order_by("reviewed_at", "-disclosed_at")
        return Response(ConcernOutputSerializer(concerns, many=True).data)


class ConcernReviewApi(APIView):
    """V-1: the CLB director reviews a disclosure."""

    class InputSerializer(serializers.Serializer):
        outcome = serializers.ChoiceField(choices=[("justified", "justified"), ("questioned", "questioned")])

    @extend_schema(
        operation_id="concerns_review",
        request=InputSerializer,
        responses={200: ConcernOutputSerializer},
        summary="Review a disclosure (CLB director)",
    )
    def post(self, request: Request, concern_id: uuid.UUID) -> Response:
        directed = selectors.organisation_ids_for_user(user=request.user, roles={Role.CLB_DIRECTOR})
        concern = Concern.objects.filter(pk=concern_id, reviewing_clb_id__in=directed).first()
        if concern is None:
            raise NotFound
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        concern = services.concern_review(
            concern=concern, reviewer=request.user, outcome=data.validated_data["outcome"]
        )
        return Response(ConcernOutputSerializer(concern).data)
