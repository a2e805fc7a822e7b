"""Write side of the core: every change to organisations, pupils and enrolments goes here."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange.domain import (
    NationalNumberError,
    birth_date_matches_national_number,
    normalise_national_number,
    school_year_of,
)
from exchange.identity import (
    ParentIdentity,
    PupilIdentity,
    identity_seal,
    national_number_index,
    parent_identity_seal,
)
from exchange.models import (
    CooperationAgreement,
    Enrolment,
    Membership,
    Organisation,
    ParentRelation,
    Pupil,
    PupilParent,
)
from exchange.selectors import pupil_identity


def _overlaps(*, start: date, end: date | None) -> Q:
    """Rows whose [start, end] range meets [start, end]; a null end means open."""
    condition = Q(end__isnull=True) | Q(end__gte=start)
    if end is not None:
        condition &= Q(start__lte=end)
    return condition


def organisation_create(*, kind: str, official_number: str, name: str, school_kind: str = "") -> Organisation:
    organisation = Organisation(kind=kind, official_number=official_number, name=name, school_kind=school_kind)
    organisation.full_clean()
    organisation.save()
    return organisation


@transaction.atomic
def agreement_create(
    *, school: Organisation, clb: Organisation, start: date, end: date | None = None
) -> CooperationAgreement:
    """S-0: start a cooperation agreement; refused when it overlaps another one of the school."""
    agreement = CooperationAgreement(school=school, clb=clb, start=start, end=end)
    agreement.full_clean(validate_constraints=False)
    # Lock the school so that two concurrent agreements cannot both pass the overlap check.
    Organisation.objects.select_for_update().filter(pk=school.pk).first()
    clash = CooperationAgreement.objects.filter(_overlaps(start=start, end=end), school=school).first()
    if clash is not None:
        raise ValidationError(
            {
                "start": _(
                    "S-0: %(school)s already works with %(clb)s from %(start)s%(until)s; "
                    "a school works with one CLB at a time. End that agreement first."
                )
                % {
                    "school": school.name,
                    "clb": clash.clb.name,
                    "start": clash.start.isoformat(),
                    "until": f" until {clash.end.isoformat()}" if clash.end else "",
                }
            }
        )
    agreement.save()
    return agreement


@transaction.atomic
def agreement_end(*, agreement: CooperationAgreement, end: date) -> CooperationAgreement:
    agreement.end = end
    agreement.full_clean(validate_constraints=False)
    agreement.save(update_fields=["end"])
    return agreement


@transaction.atomic
def membership_grant(*, user: User, organisation: Organisation, role: str) -> Membership:
    """Give a user a role in an organisation; the role group (guardian projection) follows."""
    membership, _created = Membership.objects.get_or_create(
        user=user, organisation=organisation, role=role, defaults={"active": True}
    )
    if not membership.active:
        membership.active = True
        membership.save(update_fields=["active"])
    membership.full_clean()
    from permissions.grants import membership_groups_sync

    membership_groups_sync(user=user)
    return membership


def membership_revoke(*, membership: Membership) -> Membership:
    membership.active = False
    membership.save(update_fields=["active"])
    from permissions.grants import membership_groups_sync

    membership_groups_sync(user=membership.user)
    return membership


def pupil_register(
    *,
    national_number: str,
    first_name: str,
    last_name: str,
    birth_date: date,
    address: str = "",
) -> Pupil:
    """Register a pupil; the national number must be a valid rijksregisternummer or bis number.

    The identity is stored only encrypted (``exchange.identity``), findable by a blind index.
    """
    try:
        number = normalise_national_number(national_number)
    except NationalNumberError as exc:
        raise ValidationError({"national_number": str(exc)}) from None
    if not birth_date_matches_national_number(number, birth_date):
        raise ValidationError({"birth_date": _("The birth date does not match the national number.")})
    if not first_name.strip() or not last_name.strip():
        raise ValidationError({"first_name": _("First and last name are required.")})
    index = national_number_index(number)
    if Pupil.objects.filter(national_number_index=index).exists():
        raise ValidationError({"national_number": _("A pupil with this national number is already registered.")})
    pupil = Pupil(id=uuid.uuid4(), national_number_index=index)
    identity = PupilIdentity(
        national_number=number,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        birth_date=birth_date,
        address=address.strip(),
    )
    sealed = identity_seal(pupil_id=pupil.id, identity=identity)
    pupil.identity_ciphertext = sealed.ciphertext
    pupil.identity_wrapped_dek = sealed.wrapped_dek
    pupil.identity_kek_version = sealed.kek_version
    try:
        with transaction.atomic():
            pupil.save(force_insert=True)
    except IntegrityError:
        raise ValidationError(
            {"national_number": _("A pupil with this national number is already registered.")}
        ) from None
    return pupil


def parent_add(
    *,
    pupil: Pupil,
    first_name: str,
    last_name: str,
    email: str = "",
    relation: str = ParentRelation.PARENT,
    user: User | None = None,
) -> PupilParent:
    """Link a parent or guardian to a pupil; names and e-mail are stored encrypted."""
    if not first_name.strip() or not last_name.strip():
        raise ValidationError({"first_name": _("First and last name are required.")})
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError({"email": _("Enter a valid e-mail address.")}) from None
    parent = PupilParent(id=uuid.uuid4(), pupil=pupil, relation=relation, user=user)
    sealed = parent_identity_seal(
        parent_id=parent.id,
        identity=ParentIdentity(first_name=first_name.strip(), last_name=last_name.strip(), email=email.strip()),
    )
    parent.identity_ciphertext = sealed.ciphertext
    parent.identity_wrapped_dek = sealed.wrapped_dek
    parent.identity_kek_version = sealed.kek_version
    parent.full_clean(validate_constraints=False)
    parent.save(force_insert=True)
    return parent


@transaction.atomic
def enrolment_register(
    *,
    pupil: Pupil,
    school: Organisation,
    level: str,
    start: date,
    end: date | None = None,
    school_year: str | None = None,
    registered_by: User | None = None,
    ends_previous: bool = False,
    plan_handovers: bool = True,
) -> Enrolment:
    """Enrol a pupil at a school; at most one enrolment per pupil and level at a time.

    With ``ends_previous`` (a school change registered by the new school), an open enrolment at
    another school that started earlier ends the day before this one starts. The handovers the
    change triggers are planned in the same transaction (T-CLB-1, T-SCH-1); a bulk import passes
    ``plan_handovers=False`` and plans its batch with ``handover_plan_for_enrolments`` before the
    batch's transaction commits.
    """
    enrolment = Enrolment(
        pupil=pupil,
        school=school,
        level=level,
        start=start,
        end=end,
        school_year=school_year or school_year_of(start),
        created_by=registered_by,
    )
    enrolment.full_clean(validate_constraints=False)
    # Lock the pupil row: two schools registering the same pupil at once must not both pass.
    Pupil.objects.select_for_update().filter(pk=pupil.pk).first()
    clash = (
        Enrolment.objects.filter(_overlaps(start=start, end=end), pupil=pupil, level=level)
        .select_related("school")
        .first()
    )
    if (
        clash is not None
        and ends_previous
        and clash.end is None
        and clash.school_id != school.pk
        and clash.start < start
    ):
        clash.end = start - timedelta(days=1)
        clash.save(update_fields=["end"])
        clash = (
            Enrolment.objects.filter(_overlaps(start=start, end=end), pupil=pupil, level=level)
            .select_related("school")
            .first()
        )
    if clash is not None:
        raise ValidationError(
            {
                "start": _(
                    "The pupil is already enrolled in %(level)s at %(school)s from %(start)s%(until)s; "
                    "end that enrolment before this one starts."
                )
                % {
                    "level": level,
                    "school": clash.school.name,
                    "start": clash.start.isoformat(),
                    "until": f" until {clash.end.isoformat()}" if clash.end else "",
                }
            }
        )
    enrolment.save()
    from exchange.handover import handover_plan_for_enrolment
    from permissions.grants import enrolment_grants_sync

    enrolment_grants_sync(pupil_id=pupil.pk, created_by=registered_by)
    if plan_handovers:
        handover_plan_for_enrolment(enrolment=enrolment)
    return enrolment


@transaction.atomic
def enrolment_end(*, enrolment: Enrolment, end: date) -> Enrolment:
    enrolment.end = end
    enrolment.full_clean(validate_constraints=False)
    # A later enrolment at the same level may exist only if this one ends before it.
    later = Enrolment.objects.filter(pupil=enrolment.pupil, level=enrolment.level, start__lte=end).exclude(
        pk=enrolment.pk
    )
    if later.filter(start__gte=enrolment.start).exists():
        raise ValidationError({"end": _("The end date overlaps a later enrolment of the pupil.")})
    enrolment.save(update_fields=["end"])
    from permissions.models import Grant

    # The school keeps reading the pupil's verslagen until the enrolment's last day (T-SCH-2).
    Grant.objects.filter(source_type="enrolment", source_id=enrolment.pk, revoked_at__isnull=True).update(
        valid_until=datetime.combine(end, datetime.max.time(), tzinfo=timezone.get_current_timezone())
    )
    return enrolment


def pupil_find_or_register(
    *,
    national_number: str,
    first_name: str | None,
    last_name: str | None,
    birth_date: date | None,
    address: str = "",
) -> Pupil:
    """The pupil with this national number, or a newly registered one.

    For a known pupil a given birth date must match; the names an enrolling school types are not
    compared (spelling varies) and never overwrite the registered identity.
    """
    number = normalise_national_number(national_number)
    pupil = Pupil.objects.filter(national_number_index=national_number_index(number)).first()
    if pupil is not None:
        if birth_date is not None and pupil_identity(pupil=pupil).birth_date != birth_date:
            raise ValidationError({"birth_date": _("The birth date does not match the registered pupil.")})
        return pupil
    missing = [
        name
        for name, value in (("first_name", first_name), ("last_name", last_name), ("birth_date", birth_date))
        if not value
    ]
    if missing:
        raise ValidationError(
            {name: _("Required for a pupil who is not yet registered on the platform.") for name in missing}
        )
    assert first_name is not None and last_name is not None and birth_date is not None  # noqa: S101
    return pupil_register(
        national_number=number, first_name=first_name, last_name=last_name, birth_date=birth_date, address=address
    )
