"""Automatic handover when a pupil changes school (T-CLB-1..T-CLB-6, T-SCH-1..T-SCH-5).

Planning happens in the enrolment's transaction and freezes the plan. Mandatory items are granted
once the handover is effective (at once, or on 1 September for next year's enrolment, T-CLB-5);
objectable items after the objection window, unless an objection arrived in time. Deadlines are
columns; ``handover_sweep`` claims due handovers with ``SKIP LOCKED`` and works in bulk. Every
step is a conditional state change under a row lock, so running it twice does nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from exchange.domain import school_year_of, school_year_start
from exchange.models import (
    Category,
    ClbDossier,
    CooperationAgreement,
    Enrolment,
    Handover,
    HandoverEvent,
    HandoverItem,
    HandoverKind,
    HandoverState,
    ItemVersion,
    Notice,
    Organisation,
    Outbox,
    PupilItem,
)
from permissions.bulk import insert_rows

logger = logging.getLogger(__name__)

# category → (mandatory, rule). Anything not listed never moves (T-SCH-4 for discipline, and
# school health data, NAFT reports held by a provider, ...).
CLB_PLAN: dict[str, tuple[bool, str]] = {
    Category.IDENTIFICATION: (True, "T-CLB-4"),
    Category.VACCINATION: (True, "T-CLB-4"),
    Category.MEDICAL: (True, "T-CLB-4"),
    Category.ATTENDANCE: (True, "T-CLB-4"),
    Category.REPORT: (True, "T-CLB-4"),
    Category.GUIDANCE: (False, "T-CLB-3"),
}
SCHOOL_PLAN: dict[str, tuple[bool, str]] = {
    Category.REPORT: (True, "T-SCH-2"),
    Category.IDENTIFICATION: (True, "T-SCH-5"),
    Category.ATTENDANCE: (True, "T-SCH-5"),
    Category.CAREER: (False, "T-SCH-3"),
}
NEVER_MOVES = "T-SCH-4"


def _brussels_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.get_current_timezone())


def effective_at_for(enrolment: Enrolment, now: datetime) -> datetime:
    """T-CLB-5: an enrolment for a later school year moves nothing before 1 September of that year."""
    current_year = school_year_of(timezone.localdate(now))
    if enrolment.school_year > current_year:
        return max(now, _brussels_midnight(school_year_start(enrolment.school_year)))
    return now


def objection_deadline_for(organisation: Organisation, notified: datetime) -> datetime:
    """T-CLB-2 / T-SCH-3: the window in calendar days after the notification, to the end of that day."""
    return _end_of_day(timezone.localdate(notified) + timedelta(days=organisation.objection_window_days))


def clb_of_school(school: Organisation, day: date) -> Organisation | None:
    """The CLB whose cooperation agreement with ``school`` is in force on ``day``."""
    agreements = CooperationAgreement.objects.filter(school=school, start__lte=day).select_related("clb")
    return next((a.clb for a in agreements.order_by("start", "id") if a.covers(day)), None)


def _events(rows: Iterable[tuple[Handover, str, str]], at: datetime) -> None:
    """Append (handover, state, note) rows to the handovers' histories."""
    insert_rows(
        HandoverEvent, ("handover", "at", "state", "note"), [(h.pk, at, state, note) for h, state, note in rows]
    )


def handover_plan_for_enrolment(*, enrolment: Enrolment) -> list[Handover]:
    """T-CLB-1 / T-SCH-1: plan the handovers a new enrolment triggers, frozen in this transaction."""
    return handover_plan_for_enrolments(enrolments=[enrolment])


@dataclass
class _Context:
    """What planning a batch needs, read with one query per kind of row (never per enrolment)."""

    enrolments_by_pupil: dict[Any, list[tuple[date, Any, Any]]]
    organisations: dict[Any, Organisation]
    dossier_clb: dict[Any, Any]
    agreements: dict[Any, list[CooperationAgreement]]

    def previous_school(self, enrolment: Enrolment) -> Organisation | None:
        """The school of the latest other enrolment that started no later than this one."""
        earlier = [
            (start, school_id)
            for start, pk, school_id in self.enrolments_by_pupil.get(enrolment.pupil_id, [])
            if start <= enrolment.start and pk != enrolment.pk and school_id != enrolment.school_id
        ]
        if not earlier:
            return None
        return self.organisations[max(earlier, key=lambda row: row[0])[1]]

    def clb_of(self, school_id: Any, day: date) -> Organisation | None:
        for agreement in self.agreements.get(school_id, []):
            if agreement.covers(day):
                return self.organisations[agreement.clb_id]
        return None


def _context(enrolments: list[Enrolment]) -> _Context:
    pupil_ids = {e.pupil_id for e in enrolments}
    by_pupil: dict[Any, list[tuple[date, Any, Any]]] = defaultdict(list)
    for pupil_id, start, pk, school_id in Enrolment.objects.filter(pupil_id__in=pupil_ids).values_list(
        "pupil_id", "start", "pk", "school_id"
    ):
        by_pupil[pupil_id].append((start, pk, school_id))
    dossier_clb = dict(ClbDossier.objects.filter(pupil_id__in=pupil_ids).values_list("pupil_id", "clb_id"))
    school_ids = {school_id for rows in by_pupil.values() for _start, _pk, school_id in rows}
    agreements: dict[Any, list[CooperationAgreement]] = defaultdict(list)
    for agreement in CooperationAgreement.objects.filter(school_id__in=school_ids).order_by("start", "id"):
        agreements[agreement.school_id].append(agreement)
    wanted = school_ids | set(dossier_clb.values()) | {a.clb_id for rows in agreements.values() for a in rows}
    organisations = {o.pk: o for o in Organisation.objects.filter(pk__in=wanted)}
    return _Context(
        enrolments_by_pupil=by_pupil,
        organisations=organisations,
        dossier_clb=dossier_clb,
        agreements=agreements,
    )


def _plan_rows(
    pairs: list[tuple[Any, Any, dict[str, tuple[bool, str]]]], day: date
) -> dict[tuple[Any, Any], list[tuple[Any, bool, str]]]:
    """The frozen plan (item id, mandatory, rule) of every (pupil, old holder) pair by its table."""
    tables = {(pupil_id, holder_id): table for pupil_id, holder_id, table in pairs}
    plans: dict[tuple[Any, Any], list[tuple[Any, bool, str]]] = {key: [] for key in tables}
    if not tables:
        return plans
    items = [
        (item_id, pupil_id, holder_id, category)
        for item_id, pupil_id, holder_id, category in PupilItem.objects.filter(
            pupil_id__in={p for p, _h in tables},
            holder_id__in={h for _p, h in tables},
            shredded_at__isnull=True,
        )
        .order_by("created_at", "id")
        .values_list("id", "pupil_id", "holder_id", "category")
        if (pupil_id, holder_id) in tables and category in tables[(pupil_id, holder_id)]
    ]
    # T-SCH-5: a school hands over absences of the current and the previous school year only.
    first_day = school_year_start(school_year_of(day)) - timedelta(days=365)
    first_day = date(first_day.year, 9, 1)
    school_attendance = [
        item_id
        for item_id, pupil_id, holder_id, category in items
        if category == Category.ATTENDANCE and tables[(pupil_id, holder_id)] is SCHOOL_PLAN
    ]
    recent = (
        set(
            ItemVersion.objects.filter(
                item_id__in=school_attendance, version=1, authored_on__gte=first_day
            ).values_list("item_id", flat=True)
        )
        if school_attendance
        else set()
    )
    for item_id, pupil_id, holder_id, category in items:
        table = tables[(pupil_id, holder_id)]
        if table is SCHOOL_PLAN and category == Category.ATTENDANCE and item_id not in recent:
            continue
        mandatory, rule = table[category]
        plans[(pupil_id, holder_id)].append((item_id, mandatory, rule))
    return plans


def _notices_for(handovers: list[Handover], day: date) -> list[Notice]:
    """T-CLB-2: the capable pupil in CLB matters (CAP-1, CAP-2), otherwise the parents (CAP-3); for
    school data the adult pupil, otherwise the parents."""
    from consent.models import CapacityDecision
    from consent.services import ADULT_AGE
    from exchange.models import PupilParent
    from exchange.selectors import pupil_identity

    pupil_ids = {h.pupil_id for h in handovers}
    overrides: dict[Any, bool] = {}
    for pupil_id, capable in (
        CapacityDecision.objects.filter(pupil_id__in=pupil_ids, decided_on__lte=day)
        .order_by("pupil_id", "-decided_on", "-created_at")
        .values_list("pupil_id", "capable")
    ):
        overrides.setdefault(pupil_id, capable)
    parents: dict[Any, list[Any]] = defaultdict(list)
    for parent in PupilParent.objects.filter(pupil_id__in=pupil_ids).only("id", "pupil_id", "user_id").order_by("id"):
        parents[parent.pupil_id].append(parent)
    notices = []
    for handover in handovers:
        identity = pupil_identity(pupil=handover.pupil)
        if handover.kind == HandoverKind.CLB:
            decides = overrides.get(handover.pupil_id, identity.is_presumed_capable(day))
        else:
            decides = identity.age_on(day) >= ADULT_AGE
        if decides:
            notices.append(Notice(handover=handover, addressee_id=handover.pupil.user_id, to_pupil=True))
        else:
            notices += [Notice(handover=handover, addressee_id=p.user_id, parent=p) for p in parents[handover.pupil_id]]
    return notices


@transaction.atomic
def handover_plan_for_enrolments(*, enrolments: list[Enrolment]) -> list[Handover]:
    """T-CLB-1 / T-SCH-1 for a batch of saved enrolments: plan, freeze, notify, audit, in bulk.

    The same rules as one by one (``handover_plan_for_enrolment`` calls this with one enrolment);
    reads and writes are set-based, so a September wave costs a few statements per batch.
    """
    from permissions.audit import EventSpec, audit_append_many
    from permissions.models import AuditAction, AuditOutcome

    if not enrolments:
        return []
    now = timezone.now()
    day = timezone.localdate(now)
    context = _context(enrolments)
    # (enrolment, kind, from, to, effective, table) per handover to plan
    wanted: list[tuple[Enrolment, str, Organisation, Organisation, datetime, dict[str, tuple[bool, str]]]] = []
    for enrolment in enrolments:
        effective = effective_at_for(enrolment, now)
        old_school = context.previous_school(enrolment)
        if old_school is not None:
            wanted.append((enrolment, HandoverKind.SCHOOL, old_school, enrolment.school, effective, SCHOOL_PLAN))
        dossier_clb = context.dossier_clb.get(enrolment.pupil_id)
        old_clb: Organisation | None
        if dossier_clb is not None:
            old_clb = context.organisations[dossier_clb]
        else:
            old_clb = context.clb_of(old_school.pk, day) if old_school is not None else None
        new_clb = context.clb_of(enrolment.school_id, timezone.localdate(effective))
        if old_clb is not None and new_clb is not None and old_clb.pk != new_clb.pk:
            wanted.append((enrolment, HandoverKind.CLB, old_clb, new_clb, effective, CLB_PLAN))
    if not wanted:
        return []
    plans = _plan_rows([(e.pupil_id, from_org.pk, table) for e, _k, from_org, _t, _e, table in wanted], day)
    handovers: list[Handover] = []
    rows: list[tuple[Any, Any, bool, str]] = []
    events: list[tuple[Any, datetime, str, str]] = []
    outbox: list[tuple[str, Any, datetime]] = []
    audit: list[EventSpec] = []
    for enrolment, kind, from_org, to_org, effective, _table in wanted:
        handover = Handover(
            pupil=enrolment.pupil,
            enrolment=enrolment,
            kind=kind,
            from_organisation=from_org,
            to_organisation=to_org,
            planned_at=now,
            effective_at=effective,
            objection_deadline=max(objection_deadline_for(from_org, now), effective),
        )
        handovers.append(handover)
        plan = plans[(enrolment.pupil_id, from_org.pk)]
        rows += [(handover.pk, item_id, m, rule) for item_id, m, rule in plan]
        note = _("%(n)s items planned; objection possible until %(d)s") % {
            "n": len(plan),
            "d": timezone.localtime(handover.objection_deadline).strftime("%d/%m/%Y %H:%M"),
        }
        events.append((handover.pk, now, HandoverState.PLANNED, note))
        outbox.append(("handover.notify", handover.pk, now))
        audit.append(
            EventSpec(
                action=AuditAction.TRANSFER,
                outcome=AuditOutcome.ALLOWED,
                organisation_id=from_org.pk,
                pupil_id=enrolment.pupil_id,
                purpose=f"{kind} handover planned to {to_org.name}",
                legal_basis="T-CLB-1" if kind == HandoverKind.CLB else "T-SCH-1",
            )
        )
    Handover.objects.bulk_create(handovers, batch_size=1000)
    insert_rows(HandoverItem, ("handover", "item", "mandatory", "rule"), rows)
    insert_rows(HandoverEvent, ("handover", "at", "state", "note"), events)
    Notice.objects.bulk_create(_notices_for(handovers, day), batch_size=2000)
    insert_rows(Outbox, ("topic", "object_id", "created_at"), outbox)
    audit_append_many(events=audit)
    # The notices go out after commit, NOTIFY_CHUNK handovers per task; the outbox rows let the
    # sweeper re-send what a lost message left behind. Nothing else needs a message: the sweeper
    # moves each handover when its deadline column says so.
    ids = [str(h.pk) for h in handovers]
    transaction.on_commit(lambda: notify_enqueue(ids))
    # Effective now: the mandatory part moves at once, in this transaction (T-CLB-4, T-SCH-2).
    due = [h for h in handovers if h.effective_at <= now]
    if due:
        _advance(due, now)
    return handovers


def _advance(handovers: list[Handover], now: datetime) -> int:
    """Move claimed handovers as far as they are due, with one ``grants_create`` for all of it.

    A PLANNED handover (effective by now) gets its never-objectable items (T-CLB-4, T-SCH-2,
    T-SCH-5) and its dossier follows (T-CLB-6). A handover whose objection window has closed too
    (already WAITING, or PLANNED with the deadline past, as next year's enrolments are on
    1 September) moves its objectable items unless an objection arrived in time (T-CLB-3,
    T-SCH-3); with an objection, its letter goes along with the mandatory items (T-CLB-4).
    Returns the number of handovers executed.
    """
    from consent.models import Objection
    from permissions.grants import GrantSpec, ItemRef, grants_create
    from permissions.models import Basis

    planned = [h for h in handovers if h.state == HandoverState.PLANNED]
    closing = [h for h in handovers if h.objection_deadline <= now]
    objections = {
        (o.handover_id, o.transfer_kind): o
        for o in Objection.objects.filter(handover_id__in=[h.pk for h in closing]).select_related("letter_item")
    }
    moving = [h for h in closing if (h.pk, h.kind) not in objections]
    kept = [h for h in closing if (h.pk, h.kind) in objections]
    by_id = {h.pk: h for h in handovers}
    wanted = {(h.pk, True) for h in planned} | {(h.pk, False) for h in moving}
    rows = HandoverItem.objects.filter(
        handover_id__in={handover_id for handover_id, _mandatory in wanted}, item__shredded_at__isnull=True
    ).values_list(
        "handover_id",
        "mandatory",
        "rule",
        "item_id",
        "item__pupil_id",
        "item__holder_id",
        "item__category",
        "item__health",
        "item__created_at",
    )
    specs = [
        GrantSpec(
            item=ItemRef(item_id, pupil_id, holder_id, category, health, created_at),
            organisation=by_id[handover_id].to_organisation,
            basis=Basis.MANDATORY_TRANSFER if mandatory else Basis.HANDOVER,
            rule=rule,
            source_type="handover",
            source_id=handover_id,
        )
        for handover_id, mandatory, rule, item_id, pupil_id, holder_id, category, health, created_at in rows
        if (handover_id, mandatory) in wanted
    ]
    for handover in kept:
        letter = objections[(handover.pk, handover.kind)].letter_item
        if letter is not None:
            specs.append(
                GrantSpec(
                    item=letter,
                    organisation=handover.to_organisation,
                    basis=Basis.MANDATORY_TRANSFER,
                    rule="T-CLB-4",
                    source_type="handover",
                    source_id=handover.pk,
                )
            )
    grants_create(specs=specs, purpose="handover")
    moving_dossiers: dict[Any, list[Any]] = defaultdict(list)
    for handover in planned:
        if handover.kind == HandoverKind.CLB:
            moving_dossiers[handover.to_organisation_id].append(handover.pupil_id)
    for clb_id, pupil_ids in moving_dossiers.items():
        ClbDossier.objects.filter(pupil_id__in=pupil_ids).update(clb_id=clb_id)
    closing_ids = {h.pk for h in closing}
    waiting = [h.pk for h in planned if h.pk not in closing_ids]
    open_states = [HandoverState.PLANNED, HandoverState.WAITING]
    granted_at = Coalesce(F("mandatory_granted_at"), Value(now))
    if waiting:
        Handover.objects.filter(pk__in=waiting, state=HandoverState.PLANNED).update(
            state=HandoverState.WAITING, mandatory_granted_at=now
        )
    for state, group in ((HandoverState.EXECUTED, moving), (HandoverState.EXECUTED_WITH_OBJECTION, kept)):
        if group:
            Handover.objects.filter(pk__in=[h.pk for h in group], state__in=open_states).update(
                state=state, mandatory_granted_at=granted_at, executed_at=now
            )
    _events(
        [(h, HandoverState.WAITING, _("mandatory items granted")) for h in planned]
        + [(h, HandoverState.EXECUTED, "") for h in moving]
        + [(h, HandoverState.EXECUTED_WITH_OBJECTION, _("objectable items kept")) for h in kept],
        now,
    )
    return len(closing)


@dataclass
class SweepResult:
    mandatory: int = 0
    executed: int = 0
    resent: int = 0


def handover_sweep(
    *, batch_size: int = 500, now: datetime | None = None, max_batches: int | None = None
) -> SweepResult:
    """Claim due handovers (SKIP LOCKED), move them in bulk, batch by batch; safe to run concurrently.

    First the handovers that became effective (each moved as far as it is due: a handover whose
    objection window closed as well executes in the same pass), then those whose window closed.
    """
    now = now or timezone.now()
    result = SweepResult()
    batches = 0
    claims = (
        (Q(state=HandoverState.PLANNED, effective_at__lte=now), ("effective_at", "id")),
        (
            Q(state=HandoverState.WAITING, objection_deadline__lte=now, effective_at__lte=now),
            ("objection_deadline", "id"),
        ),
    )
    for condition, order in claims:
        while max_batches is None or batches < max_batches:
            with transaction.atomic():
                due = list(
                    Handover.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(condition)
                    .select_related("to_organisation")
                    .order_by(*order)[:batch_size]
                )
                if not due:
                    break
                result.mandatory += sum(h.state == HandoverState.PLANNED for h in due)
                result.executed += _advance(due, now)
            batches += 1
    result.resent = outbox_resend(older_than=timedelta(minutes=5), now=now)
    return result


def handover_advance(*, handover_id: Any, now: datetime | None = None) -> str | None:
    """Move one handover as far as it is due (the on-commit task); a no-op when nothing is due."""
    now = now or timezone.now()
    with transaction.atomic():
        handover = (
            Handover.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("to_organisation")
            .filter(pk=handover_id)
            .first()
        )
        if handover is None:
            return None
        due = (handover.state == HandoverState.PLANNED and handover.effective_at <= now) or (
            handover.state == HandoverState.WAITING and handover.objection_deadline <= now
        )
        if due:
            _advance([handover], now)
        Outbox.objects.filter(topic="handover.advance", object_id=handover.pk, processed_at__isnull=True).update(
            processed_at=now
        )
        return Handover.objects.values_list("state", flat=True).get(pk=handover.pk)


def notice_text(notice: Notice) -> dict[str, Any]:
    """What the family is told: what moves, to whom, what they can object to and until when."""
    handover = notice.handover
    plan = list(handover.plan.select_related("item"))
    counts: dict[tuple[str, bool], int] = defaultdict(int)
    for row in plan:
        counts[(row.item.category, row.mandatory)] += 1
    return {
        "to": handover.to_organisation.name,
        "from": handover.from_organisation.name,
        "kind": handover.kind,
        "always_moves": sorted(f"{cat} ({n})" for (cat, mandatory), n in counts.items() if mandatory),
        "moves_unless_you_object": sorted(f"{cat} ({n})" for (cat, mandatory), n in counts.items() if not mandatory),
        "objection_deadline": handover.objection_deadline,
        "effective_at": handover.effective_at,
    }


def handover_notify(*, handover_id: Any) -> int:
    """Send the notices of a handover by e-mail (once each); the notices are readable in the API already."""
    sent = 0
    notices = Notice.objects.filter(handover_id=handover_id, emailed_at__isnull=True).select_related(
        "handover__to_organisation", "handover__from_organisation", "addressee"
    )
    for notice in notices:
        email = notice.addressee.email if notice.addressee else ""
        if not email and notice.parent is not None:
            from exchange.selectors import parent_identity

            email = parent_identity(parent=notice.parent).email
        if not email:
            continue
        text = notice_text(notice)
        with transaction.atomic():
            claimed = Notice.objects.filter(pk=notice.pk, emailed_at__isnull=True).update(emailed_at=timezone.now())
            if not claimed:
                continue
            # The e-mail names organisations and categories only: no content of the file.
            send_mail(
                subject=_("Overdracht van gegevens naar %(to)s") % {"to": text["to"]},
                message=_(
                    "De gegevens gaan van %(from)s naar %(to)s.\n"
                    "Altijd: %(always)s.\nTenzij u schriftelijk verzet aantekent vóór %(deadline)s: %(objectable)s.\n"
                    "Lees het bericht en teken verzet aan in leerlingenpaspoort."
                )
                % {
                    "from": text["from"],
                    "to": text["to"],
                    "always": ", ".join(text["always_moves"]) or "-",
                    "objectable": ", ".join(text["moves_unless_you_object"]) or "-",
                    "deadline": timezone.localtime(text["objection_deadline"]).strftime("%d/%m/%Y %H:%M"),
                },
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=[email],
            )
        sent += 1
    Outbox.objects.filter(topic="handover.notify", object_id=handover_id, processed_at__isnull=True).update(
        processed_at=timezone.now()
    )
    return sent


NOTIFY_CHUNK = 100

# The tables a wave of planning fills: their statistics must know it before the sweep runs.
WAVE_TABLES = (Handover, HandoverItem, HandoverEvent, Notice, Outbox)


def handover_tables_analyze() -> None:
    """Refresh the planner statistics of the handover tables after a bulk import (PostgreSQL).

    Autovacuum does this within minutes; a sweep started right after a large import would
    otherwise plan its queries for the nearly empty tables of before the import.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        names = ", ".join(connection.ops.quote_name(model._meta.db_table) for model in WAVE_TABLES)
        cursor.execute(f"ANALYZE {names}")


def notify_enqueue(handover_ids: list[str]) -> None:
    """Publish the notice tasks of these handovers, NOTIFY_CHUNK ids per message (ids only)."""
    from exchange.tasks import handover_notify_many

    for first in range(0, len(handover_ids), NOTIFY_CHUNK):
        handover_notify_many.delay(handover_ids[first : first + NOTIFY_CHUNK])


def outbox_resend(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Re-enqueue outbox messages a lost broker message left unprocessed (tasks are idempotent)."""
    from exchange.tasks import handover_advance as advance_task

    now = now or timezone.now()
    pending = list(
        Outbox.objects.filter(processed_at__isnull=True, created_at__lte=now - older_than).values_list(
            "topic", "object_id"
        )[:1000]
    )
    notify_enqueue([str(object_id) for topic, object_id in pending if topic == "handover.notify"])
    for topic, object_id in pending:
        if topic == "handover.advance":  # rows written before planning stopped sending these
            advance_task.delay(str(object_id))
    return len(pending)


def handovers_cancel_for_enrolment(*, enrolment: Enrolment) -> int:
    """An enrolment withdrawn before its handovers executed cancels what did not move yet."""
    now = timezone.now()
    handovers = list(
        Handover.objects.select_for_update().filter(
            enrolment=enrolment, state__in=[HandoverState.PLANNED, HandoverState.WAITING]
        )
    )
    Handover.objects.filter(pk__in=[h.pk for h in handovers]).update(state=HandoverState.CANCELLED, cancelled_at=now)
    _events(((h, HandoverState.CANCELLED, "") for h in handovers), now)
    return len(handovers)


def plan_summary(handovers: Iterable[Handover]) -> dict[Any, dict[str, int]]:
    summary: dict[Any, dict[str, int]] = defaultdict(lambda: {"mandatory": 0, "objectable": 0})
    for row in HandoverItem.objects.filter(handover__in=list(handovers)).values_list("handover_id", "mandatory"):
        summary[row[0]]["mandatory" if row[1] else "objectable"] += 1
    return summary
