"""Read side of the core. Pupil identity is read only through ``pupil_identity``."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from exchange.identity import (
    ParentIdentity,
    PupilIdentity,
    SealedIdentity,
    identity_open,
    parent_identity_open,
)
from exchange.models import (
    CooperationAgreement,
    Enrolment,
    Membership,
    Organisation,
    OrganisationKind,
    Pupil,
    PupilItem,
    PupilParent,
    Role,
)

AnyUser = User | AnonymousUser


def today() -> date:
    return timezone.localdate()


def pupil_identity(*, pupil: Pupil) -> PupilIdentity:
    """The pupil's decrypted identification data, cached on the instance for this request."""
    cached: PupilIdentity | None = getattr(pupil, "_identity", None)
    if cached is None:
        cached = identity_open(
            pupil_id=pupil.id,
            sealed=SealedIdentity(
                ciphertext=bytes(pupil.identity_ciphertext),
                wrapped_dek=bytes(pupil.identity_wrapped_dek),
                kek_version=pupil.identity_kek_version,
            ),
        )
        pupil._identity = cached  # type: ignore[attr-defined]
    return cached


def parent_identity(*, parent: PupilParent) -> ParentIdentity:
    """A parent's decrypted names and e-mail address."""
    return parent_identity_open(
        parent_id=parent.id,
        sealed=SealedIdentity(
            ciphertext=bytes(parent.identity_ciphertext),
            wrapped_dek=bytes(parent.identity_wrapped_dek),
            kek_version=parent.identity_kek_version,
        ),
    )


def membership_list_for_user(*, user: AnyUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.filter(user=user, active=True).select_related("organisation")


def organisation_ids_for_user(*, user: AnyUser, roles: set[str] | None = None) -> Any:
    memberships = membership_list_for_user(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("organisation_id")


def user_has_role(*, user: AnyUser, organisation: Organisation, roles: set[str]) -> bool:
    return membership_list_for_user(user=user).filter(organisation=organisation, role__in=roles).exists()


def agreement_active_for_school(*, school: Organisation, day: date | None = None) -> CooperationAgreement | None:
    """S-0: the CLB agreement of ``school`` in force on ``day``."""
    day = day or today()
    return (
        CooperationAgreement.objects.filter(Q(end__isnull=True) | Q(end__gte=day), school=school, start__lte=day)
        .select_related("clb")
        .first()
    )


def enrolments_current(*, day: date | None = None) -> QuerySet[Enrolment]:
    """Enrolments in force on ``day`` or starting later (a registered future enrolment is a relation)."""
    day = day or today()
    return Enrolment.objects.filter(Q(end__isnull=True) | Q(end__gte=day))


def pupil_list_for_user(*, user: AnyUser, day: date | None = None) -> QuerySet[Pupil]:
    """Pupils the user's organisations have a relation with (S-0), or the user's own children/self.

    - school staff: pupils with a current enrolment at their school;
    - CLB staff: pupils enrolled at a school with an agreement with their CLB in force;
    - a parent: their children; a pupil: themselves.
    Access to the pupil's file items is decided elsewhere (permissions); this is the
    identification data that every relation needs.
    """
    if not user.is_authenticated:
        return Pupil.objects.none()
    day = day or today()
    school_ids = organisation_ids_for_user(
        user=user, roles={Role.SCHOOL_DIRECTOR, Role.CARE_TEAM, Role.TEACHER, Role.ADMINISTRATION}
    )
    clb_ids = organisation_ids_for_user(user=user, roles={Role.CLB_DIRECTOR, Role.CLB_WORKER, Role.CLB_MEDICAL})
    current = enrolments_current(day=day)
    at_own_school = current.filter(pupil=OuterRef("pk"), school_id__in=school_ids)
    agreements = CooperationAgreement.objects.filter(
        Q(end__isnull=True) | Q(end__gte=day), start__lte=day, clb_id__in=clb_ids
    ).values("school_id")
    at_served_school = current.filter(pupil=OuterRef("pk"), school_id__in=agreements)
    own_child = PupilParent.objects.filter(pupil=OuterRef("pk"), user=user)
    # An organisation that holds items about the pupil (a NAFT provider's trajectory, a former
    # CLB keeping retained items, T-CLB-3) keeps that relation.
    all_orgs = organisation_ids_for_user(user=user)
    holds_items = PupilItem.objects.filter(pupil=OuterRef("pk"), holder_id__in=all_orgs, shredded_at__isnull=True)
    return Pupil.objects.filter(
        Exists(at_own_school) | Exists(at_served_school) | Exists(own_child) | Exists(holds_items) | Q(user=user)
    ).order_by("created_at")


def pupil_get_for_user(*, user: AnyUser, pupil_id: Any) -> Pupil | None:
    return pupil_list_for_user(user=user).filter(pk=pupil_id).first()


def enrolment_list_for_user(*, user: AnyUser) -> QuerySet[Enrolment]:
    """Enrolments of the pupils the user may see, at any school (the school career follows the pupil)."""
    return Enrolment.objects.filter(pupil__in=pupil_list_for_user(user=user).values("pk")).select_related("school")


def organisation_list() -> QuerySet[Organisation]:
    """Organisations are public register data: name, kind, official number."""
    return Organisation.objects.all()


def organisation_is_school(organisation: Organisation) -> bool:
    return organisation.kind == OrganisationKind.SCHOOL


def pupil_has_relation(*, pupil: Pupil, organisation: Organisation, day: date | None = None) -> bool:
    """S-0: whether ``organisation`` has a relation with the pupil that lets it hold items about them."""
    day = day or today()
    current = enrolments_current(day=day).filter(pupil=pupil)
    if organisation.kind == OrganisationKind.SCHOOL:
        return current.filter(school=organisation).exists()
    if organisation.kind == OrganisationKind.CLB:
        served = CooperationAgreement.objects.filter(
            Q(end__isnull=True) | Q(end__gte=day), start__lte=day, clb=organisation
        ).values("school_id")
        return current.filter(school_id__in=served).exists() or pupil_dossier_held_by(pupil=pupil, clb=organisation)
    # NAFT providers relate to a pupil through a trajectory (NAFT issue); none exist yet.
    return False


def pupil_dossier_held_by(*, pupil: Pupil, clb: Organisation) -> bool:
    from exchange.models import ClbDossier

    return ClbDossier.objects.filter(pupil=pupil, clb=clb).exists()
