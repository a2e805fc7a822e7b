"""Consent, capacity, shares, objections and concerns. Every change is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from consent.models import (
    Actor,
    CapacityBasis,
    CapacityDecision,
    Concern,
    Consent,
    Objection,
    ScopeKind,
    Share,
    TransferKind,
)
from exchange import files
from exchange.domain import age_on
from exchange.models import (
    Category,
    ClbDossier,
    CooperationAgreement,
    ItemKind,
    Membership,
    Organisation,
    OrganisationKind,
    Pupil,
    PupilItem,
    PupilParent,
    Role,
)
from exchange.selectors import enrolments_current, pupil_has_relation, pupil_identity, user_has_role
from exchange.uploads import SealedUpload
from permissions.audit import audit_append
from permissions.grants import GrantSpec, grants_create, grants_revoke
from permissions.models import AuditAction, AuditOutcome, Basis, Grant
from permissions.policy import CLB_NON_HEALTH
from permissions.selectors import is_involved

CLB_STAFF: set[str] = {Role.CLB_WORKER, Role.CLB_MEDICAL, Role.CLB_DIRECTOR}
ADULT_AGE = 18


@dataclass(frozen=True)
class Capacity:
    capable: bool
    basis: str
    age: int


def capacity_on(*, pupil: Pupil, day: date) -> Capacity:
    """CAP-1 and CAP-2: the latest CLB override in force on ``day``, else the presumption from 12."""
    age = age_on(pupil_identity(pupil=pupil).birth_date, day)
    override = CapacityDecision.objects.filter(pupil=pupil, decided_on__lte=day).first()
    if override is not None:
        basis = CapacityBasis.OVERRIDE_CAPABLE if override.capable else CapacityBasis.OVERRIDE_NOT_CAPABLE
        return Capacity(capable=override.capable, basis=basis, age=age)
    capable = pupil_identity(pupil=pupil).is_presumed_capable(day)
    basis = CapacityBasis.PRESUMED_CAPABLE if capable else CapacityBasis.PRESUMED_NOT_CAPABLE
    return Capacity(capable=capable, basis=basis, age=age)


@transaction.atomic
def capacity_override(
    *, pupil: Pupil, clb: Organisation, capable: bool, motivation: str, decided_by: Any, decided_on: date | None = None
) -> CapacityDecision:
    """CAP-2: override the presumption either way, with a written motivation kept in the dossier."""
    if not user_has_role(user=decided_by, organisation=clb, roles=CLB_STAFF):
        raise ValidationError({"clb": _("Only CLB staff decide on capacity.")})
    if not pupil_has_relation(pupil=pupil, organisation=clb):
        raise ValidationError({"pupil": _("The CLB does not guide this pupil.")})
    if not motivation.strip():
        raise ValidationError({"motivation": _("A capacity decision needs a written motivation (CAP-2).")})
    decided_on = decided_on or timezone.localdate()
    item = files.item_create(
        pupil=pupil,
        holder=clb,
        category=Category.GUIDANCE,
        kind=ItemKind.NOTE,
        title=_("Beslissing over bekwaamheid"),
        body=motivation,
        author=decided_by,
        authored_on=decided_on,
    )
    decision = CapacityDecision.objects.create(
        pupil=pupil, clb=clb, capable=capable, motivation_item=item, decided_by=decided_by, decided_on=decided_on
    )
    audit_append(
        action=AuditAction.CONSENT,
        outcome=AuditOutcome.ALLOWED,
        actor=decided_by,
        organisation_id=clb.id,
        pupil_id=pupil.id,
        purpose="capacity override",
        legal_basis="CAP-2",
    )
    return decision


def _decider_check(*, pupil: Pupil, actor: str, parent: PupilParent | None, day: date, clb_matter: bool) -> str:
    """CAP-3: who decides. Returns the capacity basis recorded with the act, or raises with the reason."""
    if actor == Actor.PARENT and (parent is None or parent.pupil_id != pupil.pk):
        raise ValidationError({"parent": _("Name one of the pupil's parents or guardians.")})
    capacity = capacity_on(pupil=pupil, day=day)
    # The messages name the capacity basis, never the pupil: error texts carry no pupil data.
    if clb_matter:
        if capacity.capable and actor == Actor.PARENT:
            raise ValidationError(
                {
                    "given_by": _(
                        "The pupil is capable (%(basis)s): in CLB matters the capable pupil decides "
                        "about data about them, not the parents (CAP-3)."
                    )
                    % {"basis": capacity.basis}
                }
            )
        if not capacity.capable and actor == Actor.PUPIL:
            raise ValidationError(
                {
                    "given_by": _("The pupil is not capable (%(basis)s): the parents decide (CAP-3).")
                    % {"basis": capacity.basis}
                }
            )
    else:
        adult = capacity.age >= ADULT_AGE
        if actor == Actor.PUPIL and not adult:
            raise ValidationError(
                {"given_by": _("In school matters the parents decide until the pupil is 18 (CAP-3).")}
            )
        if actor == Actor.PARENT and adult:
            raise ValidationError({"given_by": _("The pupil is an adult and decides in school matters (CAP-3).")})
    return capacity.basis


@transaction.atomic
def consent_record(
    *,
    pupil: Pupil,
    clb: Organisation,
    given_by: str,
    parent: PupilParent | None,
    recorded_by: Any,
    recorded_via: str,
    purpose: str,
    recipient: Organisation,
    scope_kind: str,
    items: list[PupilItem] | None = None,
    categories: list[str] | None = None,
    valid_from: date | None = None,
    valid_until: date | None = None,
) -> Consent:
    """S-1/S-2: record a consent for a CLB to share with a school."""
    today = timezone.localdate()
    valid_from = valid_from or today
    if not user_has_role(user=recorded_by, organisation=clb, roles=CLB_STAFF) and not (
        recorded_via == "online" and _is_data_subject(recorded_by, pupil, given_by, parent)
    ):
        raise ValidationError({"clb": _("A consent is recorded by the CLB's staff, or given online by the person.")})
    if recipient.kind != OrganisationKind.SCHOOL:
        raise ValidationError({"recipient": _("A CLB shares with a school; other recipients need another ground.")})
    if valid_until is not None and valid_until < valid_from:
        raise ValidationError({"valid_until": _("The end date lies before the start date.")})
    basis = _decider_check(pupil=pupil, actor=given_by, parent=parent, day=today, clb_matter=True)
    items = items or []
    categories = sorted(set(categories or []))
    if scope_kind == ScopeKind.ITEMS and not items:
        raise ValidationError({"items": _("Name the items the consent covers.")})
    if scope_kind == ScopeKind.CATEGORIES:
        wrong = [c for c in categories if c not in CLB_NON_HEALTH]
        if not categories or wrong:
            raise ValidationError(
                {
                    "categories": _("Choose among: %(c)s (health data are never shared with a school).")
                    % {"c": ", ".join(sorted(CLB_NON_HEALTH))}
                }
            )
    for item in items:
        if item.pupil_id != pupil.pk or item.holder_id != clb.pk or item.is_shredded:
            raise ValidationError({"items": _("Every item must be a current item of this pupil held by the CLB.")})
        if item.health:
            raise ValidationError({"items": _("Health data are never shared with a school.")})
    consent = Consent.objects.create(
        pupil=pupil,
        clb=clb,
        given_by=given_by,
        given_by_parent=parent if given_by == Actor.PARENT else None,
        capacity_basis=basis,
        recorded_by=recorded_by,
        recorded_via=recorded_via,
        purpose=purpose,
        recipient=recipient,
        scope_kind=scope_kind,
        scope_categories=categories,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    if items:
        consent.scope_items.set(items)
    audit_append(
        action=AuditAction.CONSENT,
        outcome=AuditOutcome.ALLOWED,
        actor=recorded_by,
        organisation_id=clb.id,
        pupil_id=pupil.id,
        purpose=f"consent given ({purpose})",
        legal_basis="S-1",
    )
    return consent


def _is_data_subject(user: Any, pupil: Pupil, given_by: str, parent: PupilParent | None) -> bool:
    if given_by == Actor.PUPIL:
        return pupil.user_id is not None and pupil.user_id == user.pk
    return parent is not None and parent.user_id is not None and parent.user_id == user.pk


def consent_problem(*, consent: Consent, day: date) -> str | None:
    """Why a consent does not allow sharing on ``day``, or None when it does."""
    if consent.withdrawn_at is not None:
        withdrawn = timezone.localtime(consent.withdrawn_at).date()
        return _("the consent was withdrawn on %(d)s") % {"d": withdrawn.isoformat()}
    if consent.valid_from > day:
        return _("the consent applies from %(d)s") % {"d": consent.valid_from.isoformat()}
    if consent.valid_until is not None and consent.valid_until < day:
        return _("the consent expired on %(d)s") % {"d": consent.valid_until.isoformat()}
    return None


@transaction.atomic
def consent_withdraw(*, consent: Consent, withdrawn_by: Any, via: str) -> Consent:
    """S-4: withdrawal ends the school's access from this moment; history and access log stay."""
    locked = Consent.objects.select_for_update().get(pk=consent.pk)
    if locked.withdrawn_at is not None:
        return locked
    locked.withdrawn_at = timezone.now()
    locked.withdrawn_by = withdrawn_by
    locked.withdrawal_via = via
    locked.save(update_fields=["withdrawn_at", "withdrawn_by", "withdrawal_via"])
    grants_revoke(
        grants=Grant.objects.filter(source_type="consent", source_id=locked.pk),
        revoked_by=withdrawn_by,
        purpose="consent withdrawn",
    )
    audit_append(
        action=AuditAction.CONSENT,
        outcome=AuditOutcome.ALLOWED,
        actor=withdrawn_by,
        organisation_id=locked.clb_id,
        pupil_id=locked.pupil_id,
        purpose="consent withdrawn",
        legal_basis="S-4",
    )
    return locked


@transaction.atomic
def share_create(
    *,
    pupil: Pupil,
    clb: Organisation,
    school: Organisation,
    consent: Consent,
    created_by: Any,
    summary_title: str = "",
    summary_body: str = "",
    items: list[PupilItem] | None = None,
) -> Share:
    """S-1..S-3: share a summary written for the school, or selected items, under a valid consent."""
    items = items or []
    if not is_involved(user=created_by, clb=clb, pupil=pupil):
        raise ValidationError({"clb": _("Only CLB staff involved with the pupil share with a school (ACC-4).")})
    if school.kind != OrganisationKind.SCHOOL or not enrolments_current().filter(pupil=pupil, school=school).exists():
        raise ValidationError(
            {"school": _("The pupil is not enrolled at this school: a CLB shares only with it (S-0).")}
        )
    locked = Consent.objects.select_for_update().get(pk=consent.pk)
    if locked.pupil_id != pupil.pk or locked.clb_id != clb.pk:
        raise ValidationError({"consent": _("This consent is not about this pupil and CLB.")})
    problem = consent_problem(consent=locked, day=timezone.localdate())
    if problem:
        raise ValidationError({"consent": _("No valid consent: %(p)s (S-1).") % {"p": problem}})
    if locked.recipient_id != school.pk:
        raise ValidationError({"school": _("The consent names another school as recipient.")})
    summary = bool(summary_title.strip() or summary_body.strip())
    if summary == bool(items):
        raise ValidationError({"items": _("Share either a summary written for the school or selected items.")})
    dossier = ClbDossier.objects.filter(pupil=pupil).first()
    if summary:
        if locked.scope_kind != ScopeKind.SUMMARY:
            raise ValidationError({"consent": _("The consent does not cover a summary.")})
        item = files.item_create(
            pupil=pupil,
            holder=clb,
            category=Category.GUIDANCE,
            kind=ItemKind.NOTE,
            title=summary_title or _("Samenvatting voor de school"),
            body=summary_body,
            author=created_by,
        )
        items = [item]
        dossier = item.dossier
    else:
        allowed_ids = set(locked.scope_items.values_list("pk", flat=True))
        for item in items:
            covered = (locked.scope_kind == ScopeKind.ITEMS and item.pk in allowed_ids) or (
                locked.scope_kind == ScopeKind.CATEGORIES and item.category in locked.scope_categories
            )
            if not covered:
                raise ValidationError({"items": _("An item is not covered by the consent.")})
            if item.pupil_id != pupil.pk or item.holder_id != clb.pk or item.is_shredded or item.health:
                raise ValidationError({"items": _("Only current, non-health items of this pupil held by the CLB.")})
        # S-3: a selection must leave out part of what could be shared at all (the non-health items).
        dossier_items = PupilItem.objects.filter(dossier=dossier, shredded_at__isnull=True, health=False).count()
        if dossier is not None and len(items) > 1 and len({i.pk for i in items}) >= dossier_items:
            raise ValidationError({"items": _("A share is a selection, never the whole dossier (S-3).")})
    if dossier is None:
        raise ValidationError({"pupil": _("The pupil has no CLB dossier.")})
    share = Share.objects.create(
        pupil=pupil,
        dossier=dossier,
        consent=locked,
        clb=clb,
        school=school,
        kind="summary" if summary else "items",
        created_by=created_by,
    )
    share.items.set(items)
    grants_create(
        specs=[
            GrantSpec(
                item=i, organisation=school, basis=Basis.CONSENT, rule="S-1", source_type="consent", source_id=locked.pk
            )
            for i in items
        ],
        created_by=created_by,
        purpose="share",
    )
    audit_append(
        action=AuditAction.SHARE,
        outcome=AuditOutcome.ALLOWED,
        actor=created_by,
        organisation_id=clb.id,
        pupil_id=pupil.id,
        purpose=f"data communicated to {school.name}",
        legal_basis="S-2",
    )
    return share


def window_deadline_text(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%d/%m/%Y %H:%M")


@transaction.atomic
def objection_record(
    *,
    pupil: Pupil,
    transfer_kind: str,
    handover_id: Any,
    organisation: Organisation,
    window_closes_at: datetime,
    objected_by: str,
    parent: PupilParent | None,
    received_at: datetime,
    received_via: str,
    received_by: Any,
    letter: SealedUpload | None = None,
) -> Objection:
    """T-CLB-2 / T-SCH-3: record verzet received by the old organisation; refused after the window."""
    if received_at > window_closes_at:
        raise ValidationError(
            {
                "received_at": _("The objection window closed on %(d)s (Brussels time); this objection is too late.")
                % {"d": window_deadline_text(window_closes_at)}
            }
        )
    if received_at > timezone.now():
        raise ValidationError({"received_at": _("An objection cannot be received in the future.")})
    if not Membership.objects.filter(user=received_by, organisation=organisation, active=True).exists():
        raise ValidationError({"organisation": _("Objections are received by the organisation the data leave.")})
    basis = _decider_check(
        pupil=pupil,
        actor=objected_by,
        parent=parent,
        day=timezone.localdate(received_at),
        clb_matter=transfer_kind == TransferKind.CLB,
    )
    if Objection.objects.filter(handover_id=handover_id, transfer_kind=transfer_kind).exists():
        raise ValidationError({"handover": _("An objection against this transfer is already recorded.")})
    letter_item = None
    if letter is not None:
        letter_item = files.item_create(
            pupil=pupil,
            holder=organisation,
            category=Category.GUIDANCE if organisation.kind == OrganisationKind.CLB else Category.CAREER,
            kind=ItemKind.DOCUMENT,
            title=_("Brief verzet tegen overdracht"),
            upload=letter,
            author=received_by,
        )
    objection = Objection.objects.create(
        pupil=pupil,
        transfer_kind=transfer_kind,
        handover_id=handover_id,
        organisation=organisation,
        objected_by=objected_by,
        objected_by_parent=parent if objected_by == Actor.PARENT else None,
        capacity_basis=basis,
        received_at=received_at,
        received_via=received_via,
        received_by=received_by,
        window_closed_at=window_closes_at,
        letter_item=letter_item,
    )
    audit_append(
        action=AuditAction.CONSENT,
        outcome=AuditOutcome.ALLOWED,
        actor=received_by,
        organisation_id=organisation.id,
        pupil_id=pupil.id,
        purpose="objection recorded",
        legal_basis="T-CLB-2" if transfer_kind == TransferKind.CLB else "T-SCH-3",
    )
    return objection


def _reviewing_clb(pupil: Pupil, organisation: Organisation) -> Organisation:
    if organisation.kind == OrganisationKind.CLB:
        return organisation
    school_ids = enrolments_current().filter(pupil=pupil).values("school_id")
    today = timezone.localdate()
    agreement = (
        CooperationAgreement.objects.filter(school_id__in=school_ids, start__lte=today)
        .exclude(end__lt=today)
        .select_related("clb")
        .first()
    )
    if agreement is None:
        raise ValidationError({"pupil": _("No CLB guides this pupil to review the disclosure.")})
    return agreement.clb


@transaction.atomic
def concern_disclose(
    *,
    pupil: Pupil,
    organisation: Organisation,
    professional: Any,
    ground: str,
    recipient: str,
    justification: str,
    items: list[PupilItem] | None = None,
) -> Concern:
    """V-1: a professional's decision to disclose without consent to a mandated body; never automatic."""
    roles = CLB_STAFF if organisation.kind == OrganisationKind.CLB else {Role.NAFT_COACH}
    if organisation.kind not in (OrganisationKind.CLB, OrganisationKind.NAFT) or not user_has_role(
        user=professional, organisation=organisation, roles=roles
    ):
        raise ValidationError({"organisation": _("Only a CLB or NAFT professional discloses on concern (V-1).")})
    if not pupil_has_relation(pupil=pupil, organisation=organisation):
        raise ValidationError({"pupil": _("Your organisation has no relation with this pupil.")})
    if len(justification.strip()) < 20:
        raise ValidationError({"justification": _("Write out the justification (at least 20 characters) (V-1).")})
    items = items or []
    for item in items:
        if item.pupil_id != pupil.pk or item.holder_id != organisation.pk or item.is_shredded:
            raise ValidationError({"items": _("Only current items of this pupil held by your organisation.")})
    reviewing = _reviewing_clb(pupil, organisation)
    record = files.item_create(
        pupil=pupil,
        holder=organisation,
        category=Category.GUIDANCE if organisation.kind == OrganisationKind.CLB else Category.NAFT_PROGRESS,
        kind=ItemKind.NOTE,
        title=_("Melding bij verontrusting"),
        body=justification,
        author=professional,
        flags={"for_judiciary": True},
    )
    concern = Concern.objects.create(
        pupil=pupil,
        organisation=organisation,
        reviewing_clb=reviewing,
        professional=professional,
        ground=ground,
        recipient=recipient,
        justification_item=record,
    )
    concern.disclosed_items.set(items)
    for item in [record, *items]:
        audit_append(
            action=AuditAction.SHARE,
            outcome=AuditOutcome.ALLOWED,
            actor=professional,
            organisation_id=organisation.id,
            pupil_id=pupil.id,
            item_id=item.id,
            purpose=f"concern ({ground}) to {recipient}",
            legal_basis="V-1",
        )
    return concern


@transaction.atomic
def concern_review(*, concern: Concern, reviewer: Any, outcome: str) -> Concern:
    """V-1: the CLB director reviews every disclosure."""
    if not user_has_role(user=reviewer, organisation=concern.reviewing_clb, roles={Role.CLB_DIRECTOR}):
        raise ValidationError({"reviewer": _("Disclosures are reviewed by the director of the CLB.")})
    if outcome not in ("justified", "questioned"):
        raise ValidationError({"outcome": _("Choose justified or questioned.")})
    locked = Concern.objects.select_for_update().get(pk=concern.pk)
    if locked.reviewed_at is not None:
        raise ValidationError({"concern": _("This disclosure has already been reviewed.")})
    locked.reviewed_at = timezone.now()
    locked.reviewed_by = reviewer
    locked.review_outcome = outcome
    locked.save(update_fields=["reviewed_at", "reviewed_by", "review_outcome"])
    audit_append(
        action=AuditAction.CONSENT,
        outcome=AuditOutcome.ALLOWED,
        actor=reviewer,
        organisation_id=locked.reviewing_clb_id,
        pupil_id=locked.pupil_id,
        purpose=f"concern reviewed: {outcome}",
        legal_basis="V-1",
    )
    return locked
