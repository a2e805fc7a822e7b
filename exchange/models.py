"""Organisations, people, pupils and enrolments: the core the exchange stands on.

Business rules live in ``services.py``; models carry fields, database constraints and
``clean()`` for single-row validation, which the services call through ``full_clean()``.
"""

from __future__ import annotations

import uuid
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from exchange.domain import (
    CAPACITY_PRESUMPTION_AGE,
    age_on,
    school_year_of,
    school_year_pattern,
)


class OrganisationKind(models.TextChoices):
    SCHOOL = "school", _("School")
    CLB = "clb", _("CLB")
    NAFT = "naft", _("NAFT-aanbieder")


class SchoolKind(models.TextChoices):
    BASIS = "basis", _("Basisonderwijs")
    SECUNDAIR = "secundair", _("Secundair onderwijs")
    CDO = "cdo", _("Centrum voor deeltijds onderwijs")
    BUITENGEWOON = "buitengewoon", _("Buitengewoon onderwijs")


class Level(models.TextChoices):
    BASIS = "basis", _("Basisonderwijs")
    SECUNDAIR = "secundair", _("Secundair onderwijs")


# Which enrolment levels a school of each kind can hold.
LEVELS_BY_SCHOOL_KIND: dict[str, frozenset[str]] = {
    SchoolKind.BASIS: frozenset({Level.BASIS}),
    SchoolKind.SECUNDAIR: frozenset({Level.SECUNDAIR}),
    SchoolKind.CDO: frozenset({Level.SECUNDAIR}),
    SchoolKind.BUITENGEWOON: frozenset({Level.BASIS, Level.SECUNDAIR}),
}


class Role(models.TextChoices):
    SCHOOL_DIRECTOR = "school_director", _("Directeur")
    CARE_TEAM = "care_team", _("Zorgteam (zorgcoördinator, leerlingenbegeleider)")
    TEACHER = "teacher", _("Leraar")
    ADMINISTRATION = "administration", _("Administratie")
    CLB_DIRECTOR = "clb_director", _("CLB-directeur")
    CLB_WORKER = "clb_worker", _("CLB-medewerker")
    CLB_MEDICAL = "clb_medical", _("CLB-arts of -verpleegkundige")
    NAFT_COACH = "naft_coach", _("NAFT-coach")


ROLES_BY_ORGANISATION_KIND: dict[str, frozenset[str]] = {
    OrganisationKind.SCHOOL: frozenset({Role.SCHOOL_DIRECTOR, Role.CARE_TEAM, Role.TEACHER, Role.ADMINISTRATION}),
    OrganisationKind.CLB: frozenset({Role.CLB_DIRECTOR, Role.CLB_WORKER, Role.CLB_MEDICAL}),
    OrganisationKind.NAFT: frozenset({Role.NAFT_COACH}),
}


class Organisation(models.Model):
    """A school, a CLB or a NAFT provider, identified by its official number."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=10, choices=OrganisationKind.choices)
    official_number = models.CharField(
        max_length=20, help_text=_("Instellingsnummer (school), CLB-nummer or the provider's recognition number.")
    )
    name = models.CharField(max_length=200)
    school_kind = models.CharField(max_length=20, choices=SchoolKind.choices, blank=True, default="")
    objection_window_days = models.PositiveSmallIntegerField(
        default=10,
        help_text=_("Days to object to a transfer (T-CLB-2 for a CLB, T-SCH-3 for a school). Default 10."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "official_number"], name="organisation_unique_number_per_kind"),
            models.CheckConstraint(
                condition=(Q(kind=OrganisationKind.SCHOOL) & ~Q(school_kind=""))
                | (~Q(kind=OrganisationKind.SCHOOL) & Q(school_kind="")),
                name="organisation_school_kind_only_for_schools",
            ),
            models.CheckConstraint(
                condition=Q(objection_window_days__gte=1) & Q(objection_window_days__lte=90),
                name="organisation_objection_window_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} {self.official_number})"

    def clean(self) -> None:
        if self.kind == OrganisationKind.SCHOOL and not self.school_kind:
            raise ValidationError({"school_kind": _("A school needs its kind (basis, secundair, cdo, buitengewoon).")})
        if self.kind != OrganisationKind.SCHOOL and self.school_kind:
            raise ValidationError({"school_kind": _("Only a school has a school kind.")})
        if not self.official_number.isdigit():
            raise ValidationError({"official_number": _("The official number consists of digits only.")})


class CooperationAgreement(models.Model):
    """S-0: a school works with one CLB at a time, from ``start`` until ``end`` (inclusive)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="clb_agreements")
    clb = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="school_agreements")
    start = models.DateField()
    end = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["school", "-start"]
        constraints = [
            # S-0: at most one open-ended agreement per school; overlaps of dated ones are
            # refused by the service under a lock on the school row.
            models.UniqueConstraint(
                fields=["school"], condition=Q(end__isnull=True), name="agreement_one_open_per_school"
            ),
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gte=F("start")), name="agreement_end_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.school.name} ↔ {self.clb.name} from {self.start}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.school_id and self.school.kind != OrganisationKind.SCHOOL:
            errors["school"] = str(_("The first party of a cooperation agreement must be a school."))
        if self.clb_id and self.clb.kind != OrganisationKind.CLB:
            errors["clb"] = str(_("A school's cooperation agreement is with a CLB."))
        if self.end is not None and self.start and self.end < self.start:
            errors["end"] = str(_("The end date lies before the start date."))
        if errors:
            raise ValidationError(errors)

    def is_active_on(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


class Membership(models.Model):
    """A staff user's role in one organisation. A user may hold several memberships."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation", "role"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation", "role"], name="membership_unique_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} – {self.get_role_display()} @ {self.organisation.name}"

    def clean(self) -> None:
        if self.organisation_id and self.role not in ROLES_BY_ORGANISATION_KIND[self.organisation.kind]:
            raise ValidationError(
                {
                    "role": _("Role %(role)s does not exist in a %(kind)s.")
                    % {"role": self.role, "kind": self.organisation.kind}
                }
            )


class Pupil(models.Model):
    """A pupil. Identity fields are reached through ``exchange.selectors.pupil_identity``.

    Capacity (CAP-1) is computed from the birth date on the day of a decision, never stored.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    national_number = models.CharField(max_length=11, unique=True)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    birth_date = models.DateField()
    address = models.CharField(max_length=300, blank=True, default="")
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="pupil"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Pupil {self.id}"

    def age_on(self, day: date) -> int:
        return age_on(self.birth_date, day)

    def is_presumed_capable(self, day: date) -> bool:
        """CAP-1: presumed capable from 12 on the day of the decision."""
        return self.age_on(day) >= CAPACITY_PRESUMPTION_AGE


class ParentRelation(models.TextChoices):
    PARENT = "parent", _("Ouder")
    GUARDIAN = "guardian", _("Voogd")
    FOSTER = "foster", _("Pleegouder")


class PupilParent(models.Model):
    """A parent or guardian of a pupil; ``user`` is set when they have an account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.CASCADE, related_name="parents")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    relation = models.CharField(max_length=10, choices=ParentRelation.choices, default=ParentRelation.PARENT)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["pupil", "user"], condition=Q(user__isnull=False), name="parent_unique_user_per_pupil"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_relation_display()} of pupil {self.pupil_id}"


class Enrolment(models.Model):
    """A pupil's enrolment at a school, from ``start`` to ``end`` (inclusive, open when null)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="enrolments")
    school = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="enrolments")
    level = models.CharField(max_length=10, choices=Level.choices)
    school_year = models.CharField(max_length=9, help_text=_("e.g. 2026-2027"))
    start = models.DateField()
    end = models.DateField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(
                fields=["pupil", "level"], condition=Q(end__isnull=True), name="enrolment_one_open_per_pupil_level"
            ),
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gte=F("start")), name="enrolment_end_after_start"
            ),
        ]
        indexes = [models.Index(fields=["school", "end"], name="enrolment_school_end_idx")]

    def __str__(self) -> str:
        return f"Enrolment of {self.pupil_id} at {self.school_id} ({self.school_year})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.school_id:
            if self.school.kind != OrganisationKind.SCHOOL:
                errors["school"] = str(_("A pupil can only be enrolled at a school."))
            elif self.level and self.level not in LEVELS_BY_SCHOOL_KIND[self.school.school_kind]:
                errors["level"] = str(
                    _("A %(kind)s school does not offer level %(level)s.")
                    % {"kind": self.school.school_kind, "level": self.level}
                )
        if self.school_year and not school_year_pattern.fullmatch(self.school_year):
            errors["school_year"] = str(_("A school year is written as 2026-2027."))
        elif self.school_year and self.start and school_year_of(self.start) != self.school_year:
            errors["start"] = str(
                _("The start date %(start)s does not fall in school year %(year)s.")
                % {"start": self.start.isoformat(), "year": self.school_year}
            )
        if self.end is not None and self.start and self.end < self.start:
            errors["end"] = str(_("The end date lies before the start date."))
        if errors:
            raise ValidationError(errors)


# django-guardian object permissions with direct foreign keys (not the generic
# content-type/object_pk tables): joins stay indexed and a deleted row takes its permissions with it.
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase  # noqa: E402


class PupilUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Pupil, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class PupilGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Pupil, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False
