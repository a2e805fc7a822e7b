"""NAFT trajectories (N-1..N-4): entry through the CLB, progress reported to the CLB only."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any, cast

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange import files
from exchange.domain import school_year_of
from exchange.models import (
    Category,
    ItemKind,
    Membership,
    Organisation,
    OrganisationKind,
    ProgressReport,
    Pupil,
    Role,
    StaffNotification,
    Trajectory,
    TrajectoryState,
)
from exchange.selectors import enrolments_current, pupil_identity, user_has_role
from exchange.uploads import SealedUpload
from permissions.selectors import is_involved

DECLINE_REASONS = ("no_capacity", "not_suitable", "pupil_declined", "other")
GOAL_PROGRESS = ("not_started", "behind", "on_track", "achieved")


def last_day_for(pupil: Pupil) -> date:
    """N-4: the end of the school year in which the pupil turns 25."""
    birth = pupil_identity(pupil=pupil).birth_date
    try:
        twenty_fifth = birth.replace(year=birth.year + 25)
    except ValueError:  # 29 February
        twenty_fifth = birth.replace(year=birth.year + 25, day=28)
    return date(int(school_year_of(twenty_fifth)[5:]), 8, 31)


def _notify(users: list[Any], organisation: Organisation, kind: str, pupil: Pupil, object_id: Any) -> None:
    StaffNotification.objects.bulk_create(
        [
            StaffNotification(user=u, organisation=organisation, kind=kind, pupil=pupil, object_id=object_id)
            for u in users
        ]
    )


def _involved_staff(trajectory: Trajectory) -> list[Any]:
    from permissions.models import Involvement

    return [
        i.user
        for i in Involvement.objects.filter(
            pupil=trajectory.pupil, clb=trajectory.clb, ended_at__isnull=True
        ).select_related("user")
    ]


@transaction.atomic
def trajectory_apply(
    *,
    pupil: Pupil,
    clb: Organisation,
    provider: Organisation,
    applied_by: Any,
    goals: list[str],
    referral: str,
    start: date,
    planned_end: date,
    school_agreed_on: date | None,
    pupil_agreed_on: date | None,
    parents_agreed_on: date | None,
    report_every_days: int = 14,
) -> Trajectory:
    """N-1: an involved CLB worker applies, with the agreement of school, pupil and parents recorded."""
    if provider.kind != OrganisationKind.NAFT:
        raise ValidationError({"provider": _("Choose a recognised NAFT provider.")})
    if clb.kind != OrganisationKind.CLB or not is_involved(user=applied_by, clb=clb, pupil=pupil):
        raise ValidationError(
            {"clb": _("A NAFT trajectory starts on the application of an involved CLB worker (N-1).")}
        )
    missing = [
        name
        for name, value in (
            ("school_agreed_on", school_agreed_on),
            ("pupil_agreed_on", pupil_agreed_on),
            ("parents_agreed_on", parents_agreed_on),
        )
        if value is None
    ]
    if missing:
        raise ValidationError(
            {
                name: _("N-1: a trajectory needs the agreement of the school, the pupil and the parents.")
                for name in missing
            }
        )
    enrolment = enrolments_current().filter(pupil=pupil).select_related("school").first()
    if enrolment is None:
        raise ValidationError({"pupil": _("The pupil has no current enrolment at a school.")})
    goals = [g.strip() for g in goals if g.strip()]
    if not goals:
        raise ValidationError({"goals": _("Agree on at least one goal.")})
    if planned_end < start:
        raise ValidationError({"planned_end": _("The end date lies before the start date.")})
    limit = last_day_for(pupil)
    if planned_end > limit:
        raise ValidationError(
            {
                "planned_end": _(
                    "N-4: a trajectory runs at most until %(d)s, the end of the school year the pupil turns 25."
                )
                % {"d": limit.isoformat()}
            }
        )
    if not 1 <= report_every_days <= 92:
        raise ValidationError({"report_every_days": _("Between 1 and 92 days.")})
    body = json.dumps({"referral": referral, "goals": goals}, ensure_ascii=False)
    item = files.item_create(
        pupil=pupil,
        holder=clb,
        category=Category.GUIDANCE,
        kind=ItemKind.RECORD,
        title=_("Aanmelding NAFT-traject"),
        body=body,
        author=applied_by,
    )
    agreed = cast(tuple[date, date, date], (school_agreed_on, pupil_agreed_on, parents_agreed_on))
    trajectory = Trajectory.objects.create(
        pupil=pupil,
        clb=clb,
        provider=provider,
        school=enrolment.school,
        applied_by=applied_by,
        referral_item=item,
        goal_count=len(goals),
        school_agreed_on=agreed[0],
        pupil_agreed_on=agreed[1],
        parents_agreed_on=agreed[2],
        start=start,
        planned_end=planned_end,
        report_every_days=report_every_days,
    )
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import Basis

    grants_create(
        specs=[
            GrantSpec(
                item=item,
                organisation=provider,
                basis=Basis.REFERRAL,
                rule="N-1",
                source_type="trajectory",
                source_id=trajectory.pk,
            )
        ],
        created_by=applied_by,
        purpose="NAFT referral",
    )
    coaches = [m.user for m in Membership.objects.filter(organisation=provider, role=Role.NAFT_COACH, active=True)]
    _notify(coaches, provider, "naft_application", pupil, trajectory.pk)
    return trajectory


@transaction.atomic
def trajectory_decide(
    *, trajectory: Trajectory, by: Any, accept: bool, coach: Any = None, reason: str = ""
) -> Trajectory:
    """The provider accepts (naming the coach) or declines with a reason."""
    locked = Trajectory.objects.select_for_update().get(pk=trajectory.pk)
    if not user_has_role(user=by, organisation=locked.provider, roles={Role.NAFT_COACH}):
        raise ValidationError({"provider": _("Only the NAFT provider decides on its applications.")})
    if locked.state != TrajectoryState.APPLIED:
        raise ValidationError({"state": _("This application has already been decided.")})
    if accept:
        coach = coach or by
        if not user_has_role(user=coach, organisation=locked.provider, roles={Role.NAFT_COACH}):
            raise ValidationError({"coach": _("The coach works for the provider.")})
        locked.state, locked.coach, locked.accepted_at = TrajectoryState.RUNNING, coach, timezone.now()
    else:
        if reason not in DECLINE_REASONS:
            raise ValidationError({"reason": _("Choose one of: %(r)s.") % {"r": ", ".join(DECLINE_REASONS)}})
        locked.state, locked.decline_reason = TrajectoryState.DECLINED, reason
    locked.save()
    _notify(
        _involved_staff(locked), locked.clb, "naft_accepted" if accept else "naft_declined", locked.pupil, locked.pk
    )
    return locked


@transaction.atomic
def progress_report(
    *,
    trajectory: Trajectory,
    by: Any,
    period_start: date,
    period_end: date,
    days_present: int,
    days_planned: int,
    goals: list[dict[str, Any]],
    actions: str,
    narrative: str,
    attachment: SealedUpload | None = None,
) -> ProgressReport:
    """N-2: the coach reports to the CLB staff involved only; the school never receives it directly."""
    locked = Trajectory.objects.select_for_update().get(pk=trajectory.pk)
    if locked.state != TrajectoryState.RUNNING:
        raise ValidationError(
            {"trajectory": _("Reports are made on a running trajectory; this one is %(s)s.") % {"s": locked.state}}
        )
    if not user_has_role(user=by, organisation=locked.provider, roles={Role.NAFT_COACH}):
        raise ValidationError({"trajectory": _("Only the provider's coaches report.")})
    if period_end < period_start:
        raise ValidationError({"period_end": _("The period ends before it starts.")})
    if days_present > days_planned:
        raise ValidationError({"days_present": _("More days present than planned.")})
    positions = {g.get("goal") for g in goals}
    if positions - set(range(1, locked.goal_count + 1)) or any(g.get("progress") not in GOAL_PROGRESS for g in goals):
        raise ValidationError(
            {
                "goals": _("Report goals 1..%(n)s with progress one of: %(p)s.")
                % {"n": locked.goal_count, "p": ", ".join(GOAL_PROGRESS)}
            }
        )
    body = json.dumps(
        {
            "days_present": days_present,
            "days_planned": days_planned,
            "goals": goals,
            "actions": actions,
            "narrative": narrative,
        },
        ensure_ascii=False,
    )
    item = files.item_create(
        pupil=locked.pupil,
        holder=locked.provider,
        category=Category.NAFT_PROGRESS,
        kind=ItemKind.RECORD,
        title=_("Voortgang %(a)s – %(b)s") % {"a": period_start.isoformat(), "b": period_end.isoformat()},
        body=body,
        upload=attachment,
        author=by,
        authored_on=period_end,
    )
    report = ProgressReport.objects.create(
        trajectory=locked,
        item=item,
        period_start=period_start,
        period_end=period_end,
        days_present=days_present,
        days_planned=days_planned,
        reported_by=by,
    )
    from permissions.grants import GrantSpec, grants_create
    from permissions.models import Basis

    grants_create(
        specs=[
            GrantSpec(
                item=item,
                organisation=locked.clb,
                basis=Basis.REFERRAL,
                rule="N-2",
                source_type="trajectory",
                source_id=locked.pk,
            )
        ],
        created_by=by,
        purpose="NAFT progress report",
    )
    locked.last_report_at = timezone.now()
    locked.overdue_notified_at = None
    locked.save(update_fields=["last_report_at", "overdue_notified_at"])
    _notify(_involved_staff(locked), locked.clb, "naft_report", locked.pupil, report.pk)
    return report


@transaction.atomic
def trajectory_end(*, trajectory: Trajectory, by: Any, round_table_on: date, summary: str) -> Trajectory:
    """N-4: the trajectory ends with a round table of pupil, parents, school and CLB."""
    locked = Trajectory.objects.select_for_update().get(pk=trajectory.pk)
    if locked.state != TrajectoryState.RUNNING:
        raise ValidationError({"state": _("Only a running trajectory can end.")})
    by_clb = is_involved(user=by, clb=locked.clb, pupil=locked.pupil)
    if not (by_clb or user_has_role(user=by, organisation=locked.provider, roles={Role.NAFT_COACH})):
        raise ValidationError({"trajectory": _("The involved CLB worker or the coach closes the trajectory.")})
    if not summary.strip():
        raise ValidationError({"summary": _("Record what the round table concluded (N-4).")})
    holder = locked.clb if by_clb else locked.provider
    item = files.item_create(
        pupil=locked.pupil,
        holder=holder,
        category=Category.GUIDANCE if by_clb else Category.NAFT_PROGRESS,
        kind=ItemKind.RECORD,
        title=_("Rondetafel einde NAFT-traject"),
        body=summary,
        author=by,
        authored_on=round_table_on,
    )
    locked.state, locked.ended_at, locked.round_table_on, locked.round_table_item = (
        TrajectoryState.ENDED,
        timezone.now(),
        round_table_on,
        item,
    )
    locked.save()
    return locked


def trajectories_overdue_notify(*, now: Any = None) -> int:
    """The CLB hears when a planned report is overdue (once per missed period)."""
    now = now or timezone.now()
    count = 0
    for trajectory in Trajectory.objects.filter(state=TrajectoryState.RUNNING).select_related("clb", "pupil"):
        since = trajectory.last_report_at or trajectory.accepted_at or trajectory.created_at
        due = since + timedelta(days=trajectory.report_every_days)
        if now <= due or (trajectory.overdue_notified_at and trajectory.overdue_notified_at >= due):
            continue
        with transaction.atomic():
            claimed = Trajectory.objects.filter(
                pk=trajectory.pk, overdue_notified_at=trajectory.overdue_notified_at
            ).update(overdue_notified_at=now)
            if claimed:
                _notify(
                    _involved_staff(trajectory), trajectory.clb, "naft_report_overdue", trajectory.pupil, trajectory.pk
                )
                count += 1
    return count
