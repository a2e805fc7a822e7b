"""Absence register and the begeleidingsdossier (A-1..A-3, T-SCH-5)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange import files
from exchange.domain import school_year_of, school_year_start
from exchange.handover import clb_of_school
from exchange.models import (
    Absence,
    AbsenceChange,
    AbsenceCode,
    AttendanceCase,
    AttendanceStep,
    Category,
    Enrolment,
    ItemKind,
    Membership,
    Organisation,
    Pupil,
    Role,
    StaffNotification,
)

RECORDING_ROLES: set[str] = {Role.ADMINISTRATION, Role.SCHOOL_DIRECTOR}


def thresholds() -> dict[str, int]:
    """A-3: configurable thresholds per code; 0 switches one off (the Z threshold by default)."""
    return {AbsenceCode.B: settings.LP_ABSENCE_B_THRESHOLD, AbsenceCode.Z: settings.LP_ABSENCE_Z_THRESHOLD}


def count_half_days(*, pupil: Pupil, school_year: str, code: str) -> int:
    """A-2: counted across every school the pupil attended that school year."""
    return Absence.objects.filter(pupil=pupil, school_year=school_year, code=code).count()


def _enrolled_on(pupil: Pupil, school: Organisation, day: date) -> bool:
    return Enrolment.objects.filter(
        Q(end__isnull=True) | Q(end__gte=day), pupil=pupil, school=school, start__lte=day
    ).exists()


@transaction.atomic
def absence_record(*, pupil: Pupil, school: Organisation, day: date, half: str, code: str, recorded_by: Any) -> Absence:
    """A-1: the school registers a half day of absence; one per pupil per half day."""
    if not Membership.objects.filter(
        user=recorded_by, organisation=school, role__in=RECORDING_ROLES, active=True
    ).exists():
        raise ValidationError({"school": _("Absences are registered by the school's administration.")})
    if day > timezone.localdate():
        raise ValidationError({"day": _("An absence cannot be registered for a day in the future.")})
    if not _enrolled_on(pupil, school, day):
        raise ValidationError(
            {"day": _("The pupil was not enrolled at this school on %(d)s.") % {"d": day.isoformat()}}
        )
    existing = Absence.objects.filter(pupil=pupil, day=day, half=half).first()
    if existing is not None:
        raise ValidationError(
            {"half": _("This half day is already registered (code %(c)s); correct it instead.") % {"c": existing.code}}
        )
    try:
        with transaction.atomic():
            absence = Absence.objects.create(
                pupil=pupil,
                school=school,
                day=day,
                half=half,
                code=code,
                school_year=school_year_of(day),
                recorded_by=recorded_by,
            )
    except IntegrityError:
        raise ValidationError({"half": _("This half day is already registered; correct it instead.")}) from None
    _apply_thresholds(absence, by=recorded_by)
    absence.refresh_from_db(fields=["case"])
    return absence


@transaction.atomic
def absence_correct(*, absence: Absence, code: str, by: Any) -> Absence:
    """A correction keeps its history; a dossier once opened stays open (A-2)."""
    locked = Absence.objects.select_for_update().get(pk=absence.pk)
    if not Membership.objects.filter(
        user=by, organisation=locked.school, role__in=RECORDING_ROLES, active=True
    ).exists():
        raise ValidationError({"school": _("Only the school that registered the absence corrects it.")})
    if locked.code == code:
        raise ValidationError({"code": _("The absence already has code %(c)s.") % {"c": code}})
    AbsenceChange.objects.create(absence=locked, old_code=locked.code, new_code=code, changed_by=by)
    locked.code = code
    locked.save(update_fields=["code"])
    _apply_thresholds(locked, by=by)
    locked.refresh_from_db(fields=["case"])
    return locked


def _apply_thresholds(absence: Absence, *, by: Any) -> None:
    case = AttendanceCase.objects.filter(pupil=absence.pupil, school_year=absence.school_year).first()
    if case is not None:
        if absence.code == AbsenceCode.B and absence.case_id is None:
            Absence.objects.filter(pk=absence.pk).update(case=case)  # each later B code joins the dossier
        return
    reached = [
        code
        for code, limit in thresholds().items()
        if limit > 0 and count_half_days(pupil=absence.pupil, school_year=absence.school_year, code=code) >= limit
    ]
    if reached:
        _open_case(absence, by=by, reached=reached)


def _open_case(absence: Absence, *, by: Any, reached: list[str]) -> AttendanceCase | None:
    clb = clb_of_school(absence.school, absence.day)
    if clb is None:
        return None
    now = timezone.now()
    body = json.dumps(
        {
            "school_year": absence.school_year,
            "opened_on": timezone.localdate().isoformat(),
            "reached": reached,
            "thresholds": thresholds(),
        }
    )
    item = files.item_create(
        pupil=absence.pupil,
        holder=clb,
        category=Category.ATTENDANCE,
        kind=ItemKind.RECORD,
        title=_("Begeleidingsdossier problematische afwezigheden %(y)s") % {"y": absence.school_year},
        body=body,
        author=by,
    )
    case = AttendanceCase.objects.create(
        pupil=absence.pupil, school_year=absence.school_year, clb=clb, school=absence.school, item=item, opened_at=now
    )
    Absence.objects.filter(pupil=absence.pupil, school_year=absence.school_year, code=AbsenceCode.B).update(case=case)
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import Basis

    grants_create(
        specs=[
            GrantSpec(
                item=item,
                organisation=absence.school,
                basis=Basis.ATTENDANCE_CASE,
                rule="A-2",
                source_type="attendance_case",
                source_id=case.pk,
            )
        ],
        created_by=by,
        purpose="begeleidingsdossier",
    )
    recipients = Membership.objects.filter(
        Q(organisation=absence.school, role=Role.CARE_TEAM) | Q(organisation=clb, role=Role.CLB_DIRECTOR),
        active=True,
    ).select_related("organisation")
    from permissions.models import Involvement

    involved = Involvement.objects.filter(pupil=absence.pupil, clb=clb, ended_at__isnull=True)
    StaffNotification.objects.bulk_create(
        [
            StaffNotification(
                user_id=m.user_id,
                organisation=m.organisation,
                kind="attendance_case_opened",
                pupil=absence.pupil,
                object_id=case.pk,
            )
            for m in recipients
        ]
        + [
            StaffNotification(
                user_id=i.user_id,
                organisation=clb,
                kind="attendance_case_opened",
                pupil=absence.pupil,
                object_id=case.pk,
            )
            for i in involved
        ]
    )
    return case


@transaction.atomic
def attendance_step_add(*, case: AttendanceCase, by: Any, text: str) -> AttendanceStep:
    """Record a step school or CLB took; both read it (A-2)."""
    membership = (
        Membership.objects.filter(
            Q(organisation=case.school, role__in={Role.CARE_TEAM, Role.ADMINISTRATION, Role.SCHOOL_DIRECTOR})
            | Q(organisation=case.clb, role__in={Role.CLB_WORKER, Role.CLB_DIRECTOR}),
            user=by,
            active=True,
        )
        .select_related("organisation")
        .first()
    )
    if membership is None:
        raise ValidationError({"case": _("Steps are recorded by the school's care team or the CLB.")})
    if not text.strip():
        raise ValidationError({"text": _("Describe the step taken.")})
    organisation = membership.organisation
    item = files.item_create(
        pupil=case.pupil,
        holder=organisation,
        category=Category.ATTENDANCE,
        kind=ItemKind.NOTE,
        title=_("Stap in het begeleidingsdossier"),
        body=text,
        author=by,
    )
    other = case.clb if organisation.pk == case.school_id else case.school
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import Basis

    grants_create(
        specs=[
            GrantSpec(
                item=item,
                organisation=other,
                basis=Basis.ATTENDANCE_CASE,
                rule="A-2",
                source_type="attendance_case",
                source_id=case.pk,
            )
        ],
        created_by=by,
    )
    return AttendanceStep.objects.create(case=case, item=item, organisation=organisation)


def absences_visible_window(day: date) -> date:
    """T-SCH-5: absences of the current and the previous school year."""
    start = school_year_start(school_year_of(day))
    return start.replace(year=start.year - 1)
