"""Need-to-know services: involvement (ACC-4), teaching, the care team passing items on, shields."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange.models import Organisation, OrganisationKind, Pupil, PupilItem, Role
from exchange.selectors import pupil_has_relation, user_has_role
from permissions.audit import audit_append
from permissions.grants import GrantSpec, grants_create, grants_revoke
from permissions.models import AuditAction, AuditOutcome, Basis, Grant, Involvement, Shield, TeachingAssignment

CLB_STAFF: set[str] = {Role.CLB_WORKER, Role.CLB_MEDICAL, Role.CLB_DIRECTOR}


@transaction.atomic
def involvement_assign(*, pupil: Pupil, clb: Organisation, user: Any, assigned_by: Any) -> Involvement:
    """ACC-4: the CLB director makes a staff member involved in a pupil's guidance."""
    if clb.kind != OrganisationKind.CLB or not user_has_role(
        user=assigned_by, organisation=clb, roles={Role.CLB_DIRECTOR}
    ):
        raise ValidationError({"clb": _("Only the director of the CLB assigns involvement.")})
    if not user_has_role(user=user, organisation=clb, roles=CLB_STAFF):
        raise ValidationError({"user": _("This person is not on the staff of the CLB.")})
    if not pupil_has_relation(pupil=pupil, organisation=clb):
        raise ValidationError({"pupil": _("The CLB does not guide this pupil.")})
    existing = Involvement.objects.filter(pupil=pupil, clb=clb, user=user, ended_at__isnull=True).first()
    if existing is not None:
        return existing
    involvement = Involvement.objects.create(pupil=pupil, clb=clb, user=user, assigned_by=assigned_by)
    audit_append(
        action=AuditAction.GRANT,
        outcome=AuditOutcome.ALLOWED,
        actor=assigned_by,
        organisation_id=clb.id,
        role=Role.CLB_DIRECTOR,
        pupil_id=pupil.id,
        purpose="involvement",
        legal_basis="ACC-4",
    )
    return involvement


@transaction.atomic
def involvement_end(*, involvement: Involvement, ended_by: Any) -> Involvement:
    involvement.ended_at = timezone.now()
    involvement.save(update_fields=["ended_at"])
    audit_append(
        action=AuditAction.REVOKE,
        outcome=AuditOutcome.ALLOWED,
        actor=ended_by,
        organisation_id=involvement.clb_id,
        pupil_id=involvement.pupil_id,
        purpose="involvement",
        legal_basis="ACC-4",
    )
    return involvement


def teaching_assign(*, school: Organisation, teacher: Any, pupil: Pupil, assigned_by: Any) -> TeachingAssignment:
    """Record that a teacher teaches a pupil (school director or administration)."""
    if not user_has_role(user=assigned_by, organisation=school, roles={Role.SCHOOL_DIRECTOR, Role.ADMINISTRATION}):
        raise ValidationError({"school": _("Only the school's director or administration assigns teachers.")})
    if not user_has_role(user=teacher, organisation=school, roles={Role.TEACHER}):
        raise ValidationError({"teacher": _("This person is not a teacher at the school.")})
    if not pupil_has_relation(pupil=pupil, organisation=school):
        raise ValidationError({"pupil": _("The pupil is not enrolled at the school.")})
    assignment, _created = TeachingAssignment.objects.get_or_create(
        school=school, teacher=teacher, pupil=pupil, ended_at=None
    )
    return assignment


@transaction.atomic
def item_pass_to_teacher(*, item: PupilItem, school: Organisation, teacher: Any, passed_by: Any) -> Grant:
    """The care team passes an item it can read to a teacher who teaches the pupil (need to know)."""
    if not TeachingAssignment.objects.filter(
        school=school, teacher=teacher, pupil_id=item.pupil_id, ended_at__isnull=True
    ).exists():
        raise ValidationError({"teacher": _("This teacher does not teach the pupil.")})
    if not user_has_role(user=passed_by, organisation=school, roles={Role.CARE_TEAM}):
        raise ValidationError({"teacher": _("Only the care team passes items to teachers.")})
    grants_create(
        specs=[
            GrantSpec(
                item=item,
                organisation=school,
                user=teacher,
                basis=Basis.TEACHER_SHARE,
                rule="S-3",
                source_type="teacher_share",
            )
        ],
        created_by=passed_by,
        purpose="passed to teacher",
    )
    return Grant.objects.get(
        item=item, organisation=school, user=teacher, basis=Basis.TEACHER_SHARE, revoked_at__isnull=True
    )


def item_withdraw_from_teacher(*, item: PupilItem, teacher: Any, withdrawn_by: Any) -> int:
    return grants_revoke(
        grants=Grant.objects.filter(item=item, user=teacher, basis=Basis.TEACHER_SHARE),
        revoked_by=withdrawn_by,
        purpose="withdrawn from teacher",
    )


def item_shield(*, item: PupilItem, user: Any, recorded_by: Any) -> Shield:
    """ACC-4: on the capable pupil's request, shield an item from one involved staff member."""
    try:
        with transaction.atomic():
            shield = Shield.objects.create(item=item, user=user, recorded_by=recorded_by)
    except IntegrityError:
        return Shield.objects.get(item=item, user=user)
    audit_append(
        action=AuditAction.REVOKE,
        outcome=AuditOutcome.ALLOWED,
        actor=recorded_by,
        organisation_id=item.holder_id,
        pupil_id=item.pupil_id,
        item_id=item.id,
        purpose="shield",
        legal_basis="ACC-4",
    )
    return shield
