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
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from exchange.domain import school_year_of, school_year_pattern


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
    DPO = "dpo", _("Functionaris voor gegevensbescherming")


ROLES_BY_ORGANISATION_KIND: dict[str, frozenset[str]] = {
    OrganisationKind.SCHOOL: frozenset(
        {Role.SCHOOL_DIRECTOR, Role.CARE_TEAM, Role.TEACHER, Role.ADMINISTRATION, Role.DPO}
    ),
    OrganisationKind.CLB: frozenset({Role.CLB_DIRECTOR, Role.CLB_WORKER, Role.CLB_MEDICAL, Role.DPO}),
    OrganisationKind.NAFT: frozenset({Role.NAFT_COACH, Role.DPO}),
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

    def covers(self, day: date) -> bool:
        """The agreement is in force on ``day`` (start and end inclusive; no end means open)."""
        return self.start <= day and (self.end is None or self.end >= day)

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
            # Roles are codes: the audit event a decision writes in SQL quotes them without escaping
            # (permissions.access._audited_decision_statement).
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_known"),
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
    """A pupil. Identity (names, national number, birth date, address) is stored only encrypted.

    ``identity_ciphertext`` is AES-256-GCM under a per-pupil DEK, bound to the pupil id; the DEK is
    wrapped under the platform identity KEK (``exchange.identity``). ``national_number_index`` is an
    HMAC blind index for exact lookup. Read and write identity only through
    ``exchange.identity``; capacity (CAP-1) is computed from the decrypted birth date on the day of
    a decision, never stored.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    national_number_index = models.CharField(max_length=64, unique=True)
    identity_ciphertext = models.BinaryField()
    identity_wrapped_dek = models.BinaryField()
    identity_kek_version = models.PositiveIntegerField()
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="pupil"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Pupil {self.id}"


class ParentRelation(models.TextChoices):
    PARENT = "parent", _("Ouder")
    GUARDIAN = "guardian", _("Voogd")
    FOSTER = "foster", _("Pleegouder")


class PupilParent(models.Model):
    """A parent or guardian of a pupil; ``user`` is set when they have an account.

    Read the names through ``exchange.selectors.parent_identity``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.CASCADE, related_name="parents")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    relation = models.CharField(max_length=10, choices=ParentRelation.choices, default=ParentRelation.PARENT)
    # Names and e-mail address, encrypted like the pupil's identity (exchange.identity).
    identity_ciphertext = models.BinaryField()
    identity_wrapped_dek = models.BinaryField()
    identity_kek_version = models.PositiveIntegerField()
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


class PupilUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Pupil, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class PupilGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Pupil, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


class Category(models.TextChoices):
    """DOMAIN.md data categories: the category decides how an item moves."""

    IDENTIFICATION = "identification", _("Identificatie")
    VACCINATION = "vaccination", _("Vaccinatie")
    MEDICAL = "medical", _("Medisch")
    ATTENDANCE = "attendance", _("Leerplicht en afwezigheden")
    REPORT = "report", _("Verslag")
    GUIDANCE = "guidance", _("Begeleiding")
    CAREER = "career", _("Onderwijsloopbaan")
    DISCIPLINE = "discipline", _("Tucht")
    SCHOOL_HEALTH = "school_health", _("Gezondheid (school)")
    NAFT_PROGRESS = "naft_progress", _("NAFT-voortgang")


# Which kind of organisation holds items of a category (DOMAIN.md, "Data categories").
HOLDERS_BY_CATEGORY: dict[str, frozenset[str]] = {
    Category.IDENTIFICATION: frozenset({OrganisationKind.CLB, OrganisationKind.SCHOOL}),
    Category.VACCINATION: frozenset({OrganisationKind.CLB}),
    Category.MEDICAL: frozenset({OrganisationKind.CLB}),
    Category.ATTENDANCE: frozenset({OrganisationKind.CLB, OrganisationKind.SCHOOL}),
    Category.REPORT: frozenset({OrganisationKind.CLB, OrganisationKind.SCHOOL}),
    Category.GUIDANCE: frozenset({OrganisationKind.CLB}),
    Category.CAREER: frozenset({OrganisationKind.SCHOOL}),
    Category.DISCIPLINE: frozenset({OrganisationKind.SCHOOL}),
    Category.SCHOOL_HEALTH: frozenset({OrganisationKind.SCHOOL}),
    Category.NAFT_PROGRESS: frozenset({OrganisationKind.NAFT}),
}
HEALTH_CATEGORIES = frozenset({Category.VACCINATION, Category.MEDICAL, Category.SCHOOL_HEALTH})


class ItemKind(models.TextChoices):
    VERSLAG = "verslag", _("Verslag")
    GEMOTIVEERD_VERSLAG = "gemotiveerd_verslag", _("Gemotiveerd verslag")
    NOTE = "note", _("Notitie")
    DOCUMENT = "document", _("Document")
    RECORD = "record", _("Gestructureerd gegeven")


REPORT_KINDS = frozenset({ItemKind.VERSLAG, ItemKind.GEMOTIVEERD_VERSLAG})


class ClbDossier(models.Model):
    """T-CLB-6: the one multidisciplinary dossier (MDD) of a pupil; it follows the pupil to a new CLB."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.OneToOneField(Pupil, on_delete=models.PROTECT, related_name="clb_dossier")
    clb = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="clb_dossiers")
    opened_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"MDD of pupil {self.pupil_id}"


class PupilItem(models.Model):
    """One stored item of a pupil's file. Its content lives in encrypted ``ItemVersion`` rows.

    Metadata here (category, kind, flags, dates) are not pupil content; the title, body, file and
    file name are, and are encrypted per version.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="items")
    holder = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="held_items")
    dossier = models.ForeignKey(ClbDossier, null=True, blank=True, on_delete=models.PROTECT, related_name="items")
    category = models.CharField(max_length=20, choices=Category.choices)
    kind = models.CharField(max_length=20, choices=ItemKind.choices)
    health = models.BooleanField(default=False)
    third_party_confidential = models.BooleanField(default=False)
    about_others_only = models.BooleanField(default=False)
    withheld_from_parents = models.BooleanField(default=False)
    harmful_now = models.BooleanField(default=False)
    for_judiciary = models.BooleanField(default=False)
    report_type = models.CharField(
        max_length=40, blank=True, default="", help_text=_("For a (gemotiveerd) verslag: its type, e.g. type 9.")
    )
    report_valid_from = models.DateField(null=True, blank=True)
    report_valid_until = models.DateField(null=True, blank=True)
    current_version = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    shredded_at = models.DateTimeField(null=True, blank=True)
    shredded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    shred_reason = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["pupil", "holder"], name="item_pupil_holder_idx"),
            models.Index(fields=["holder", "category"], name="item_holder_category_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(category__in=sorted(HEALTH_CATEGORIES)) | Q(health=True),
                name="item_health_categories_are_flagged",
            ),
            models.CheckConstraint(
                condition=Q(report_valid_until__isnull=True)
                | Q(report_valid_from__isnull=True)
                | Q(report_valid_until__gte=F("report_valid_from")),
                name="item_report_dates_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category} item {self.id}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.holder_id and self.holder.kind not in HOLDERS_BY_CATEGORY.get(self.category, frozenset()):
            errors["category"] = str(
                _("A %(kind)s does not hold %(category)s items.")
                % {"kind": self.holder.kind, "category": self.category}
            )
        if self.kind in REPORT_KINDS and self.category != Category.REPORT:
            errors["kind"] = str(_("A verslag or gemotiveerd verslag has category 'report'."))
        if self.category == Category.REPORT and self.kind not in REPORT_KINDS:
            errors["kind"] = str(_("A report item is a verslag or a gemotiveerd verslag."))
        if self.kind in REPORT_KINDS and not self.report_type:
            errors["report_type"] = str(_("A verslag records its type."))
        if self.kind in REPORT_KINDS and not self.report_valid_from:
            errors["report_valid_from"] = str(_("A verslag records the date from which it applies."))
        if self.report_valid_from and self.report_valid_until and self.report_valid_until < self.report_valid_from:
            errors["report_valid_until"] = str(_("The end date lies before the start date."))
        if errors:
            raise ValidationError(errors)

    @property
    def is_shredded(self) -> bool:
        return self.shredded_at is not None


class ItemVersion(models.Model):
    """One immutable version of an item: ciphertexts only, under this version's own DEK."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey(PupilItem, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    title_ciphertext = models.BinaryField()
    body_ciphertext = models.BinaryField(null=True, blank=True)
    file_blob = models.CharField(
        max_length=200, blank=True, default="", help_text=_("Storage name of the encrypted file")
    )
    file_name_ciphertext = models.BinaryField(null=True, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    file_content_type = models.CharField(max_length=100, blank=True, default="")
    authored_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    authored_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # By the item's id, not "item": that follows PupilItem's ordering and joined the item table into every
        # query of versions, even unordered ones (.first(), values_list), which turned a batch's IN list into a
        # scan of the whole versions table (the September wave, docs/performance.md).
        ordering = ["item_id", "version"]
        constraints = [
            models.UniqueConstraint(fields=["item", "version"], name="item_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="item_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} v{self.version}"


class WrappedKey(models.Model):
    """A version's DEK wrapped under one organisation's KEK. No row, no decryption."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the unique (item_version, organisation) leads with it.
    item_version = models.ForeignKey(ItemVersion, on_delete=models.CASCADE, related_name="wrapped_keys", db_index=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="wrapped_keys")
    kek_version = models.PositiveIntegerField()
    wrapped_dek = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item_version", "organisation"], name="wrapped_key_unique_per_org"),
        ]
        indexes = [models.Index(fields=["kek_version", "id"], name="wrapped_key_rotation_idx")]

    def __str__(self) -> str:
        return f"wrap of {self.item_version_id} for {self.organisation_id} (KEK v{self.kek_version})"


class IntegrityFailure(models.Model):
    """A ciphertext or wrap that failed authentication: refused, never returned, and recorded here."""

    id = models.BigAutoField(primary_key=True)
    item_version = models.ForeignKey(ItemVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    pupil = models.ForeignKey(Pupil, null=True, on_delete=models.SET_NULL, related_name="+")
    organisation = models.ForeignKey(Organisation, null=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    part = models.CharField(max_length=20, help_text=_("wrap, title, body, file, file_name or identity"))
    detected_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"integrity failure ({self.part}) at {self.detected_at}"


class PupilItemUserObjectPermission(UserObjectPermissionBase):
    # Indexes: the unique (user, permission, content_object) serves lookups by user, and there is
    # one permission only; so neither foreign key needs an index of its own (fewer writes per grant).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False)
    permission = models.ForeignKey("auth.Permission", on_delete=models.CASCADE, db_index=False)
    content_object = models.ForeignKey(PupilItem, on_delete=models.CASCADE)

    class Meta(UserObjectPermissionBase.Meta):
        abstract = False


class PupilItemGroupObjectPermission(GroupObjectPermissionBase):
    # As above: the unique (group, permission, content_object) leads with the group.
    group = models.ForeignKey("auth.Group", on_delete=models.CASCADE, db_index=False)
    permission = models.ForeignKey("auth.Permission", on_delete=models.CASCADE, db_index=False)
    content_object = models.ForeignKey(PupilItem, on_delete=models.CASCADE)

    class Meta(GroupObjectPermissionBase.Meta):
        abstract = False


CATEGORIES_HELD_BY: dict[str, frozenset[str]] = {
    kind: frozenset(category for category, kinds in HOLDERS_BY_CATEGORY.items() if kind in kinds)
    for kind in OrganisationKind.values
}


class HandoverKind(models.TextChoices):
    CLB = "clb", _("CLB → CLB (BVR 1 juni 2018, art. 27)")
    SCHOOL = "school", _("School → school")


class HandoverState(models.TextChoices):
    PLANNED = "planned", _("Gepland")
    WAITING = "waiting", _("Wacht op verzet")
    EXECUTED = "executed", _("Uitgevoerd")
    EXECUTED_WITH_OBJECTION = "executed_with_objection", _("Uitgevoerd met verzet")
    CANCELLED = "cancelled", _("Geannuleerd")


class Handover(models.Model):
    """What moves from the old organisation to the new one when a pupil changes school.

    The plan (``HandoverItem`` rows) is frozen when made: what the family is told is what moves.
    ``effective_at`` (T-CLB-5: not before 1 September for next year's enrolment) and
    ``objection_deadline`` (T-CLB-2 / T-SCH-3) are columns a periodic sweeper scans.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="handovers")
    enrolment = models.ForeignKey(Enrolment, on_delete=models.PROTECT, related_name="handovers")
    kind = models.CharField(max_length=10, choices=HandoverKind.choices)
    from_organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="handovers_out")
    to_organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="handovers_in")
    state = models.CharField(max_length=30, choices=HandoverState.choices, default=HandoverState.PLANNED)
    planned_at = models.DateTimeField()
    effective_at = models.DateTimeField()
    objection_deadline = models.DateTimeField()
    mandatory_granted_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-planned_at"]
        constraints = [
            models.UniqueConstraint(fields=["enrolment", "kind"], name="handover_one_per_enrolment_kind"),
        ]
        # The sweep's two claims, in their ORDER BY: a claim reads only the batch it locks. Ordered by
        # (state, date) alone, a wave's handovers (one date) were all read and sorted for every batch of
        # 500, so the sweep's cost per handover grew with the wave (docs/performance.md). Partial: only
        # the handovers still to move are in them, however many have moved.
        indexes = [
            models.Index(
                fields=["effective_at", "id"], condition=Q(state="planned"), name="handover_due_mandatory_idx"
            ),
            models.Index(
                fields=["objection_deadline", "id"], condition=Q(state="waiting"), name="handover_due_execution_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} handover {self.id} ({self.state})"


class HandoverItem(models.Model):
    """One item of a frozen plan: mandatory (moves at once) or objectable (moves after the window)."""

    id = models.BigAutoField(primary_key=True)
    handover = models.ForeignKey(Handover, on_delete=models.CASCADE, related_name="plan")
    item = models.ForeignKey(PupilItem, on_delete=models.CASCADE, related_name="+")
    mandatory = models.BooleanField()
    rule = models.CharField(max_length=20)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handover", "item"], name="handover_item_unique")]

    def __str__(self) -> str:
        return f"{self.item_id} in {self.handover_id}"


class HandoverEvent(models.Model):
    """The visible history of a handover."""

    id = models.BigAutoField(primary_key=True)
    handover = models.ForeignKey(Handover, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField()
    state = models.CharField(max_length=30, choices=HandoverState.choices)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.handover_id}: {self.state}"


class Notice(models.Model):
    """T-CLB-2: the notification of a planned transfer to the capable pupil or the parents.

    The text is rendered from the frozen plan when read; nothing of the pupil's file is stored here.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    handover = models.ForeignKey(Handover, on_delete=models.CASCADE, related_name="notices")
    addressee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    parent = models.ForeignKey(PupilParent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    to_pupil = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"notice {self.id}"


class Outbox(models.Model):
    """A message to send after commit; the sweeper resends what a lost broker message left behind."""

    id = models.BigAutoField(primary_key=True)
    topic = models.CharField(max_length=40)
    object_id = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["processed_at", "created_at"], name="outbox_pending_idx")]

    def __str__(self) -> str:
        return f"{self.topic} {self.object_id}"


class TrajectoryState(models.TextChoices):
    APPLIED = "applied", _("Aangevraagd")
    DECLINED = "declined", _("Geweigerd")
    RUNNING = "running", _("Lopend")
    ENDED = "ended", _("Afgesloten")


class Trajectory(models.Model):
    """N-1..N-4: a NAFT trajectory, applied for by a CLB, run by a NAFT provider.

    Goals and the referral are in the encrypted referral item; rows here hold no pupil text.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="trajectories")
    clb = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="naft_trajectories_applied")
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="naft_trajectories")
    school = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="naft_trajectories_school")
    applied_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    coach = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    referral_item = models.ForeignKey(PupilItem, on_delete=models.PROTECT, related_name="+")
    goal_count = models.PositiveSmallIntegerField()
    school_agreed_on = models.DateField()
    pupil_agreed_on = models.DateField()
    parents_agreed_on = models.DateField()
    start = models.DateField()
    planned_end = models.DateField()
    report_every_days = models.PositiveSmallIntegerField(default=14)
    state = models.CharField(max_length=10, choices=TrajectoryState.choices, default=TrajectoryState.APPLIED)
    decline_reason = models.CharField(max_length=30, blank=True, default="")
    accepted_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    round_table_on = models.DateField(null=True, blank=True)
    round_table_item = models.ForeignKey(PupilItem, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    last_report_at = models.DateTimeField(null=True, blank=True)
    overdue_notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(planned_end__gte=F("start")), name="trajectory_end_after_start"),
            models.CheckConstraint(condition=Q(goal_count__gte=1), name="trajectory_has_goals"),
        ]

    def __str__(self) -> str:
        return f"NAFT trajectory {self.id} ({self.state})"


class ProgressReport(models.Model):
    """N-2: one period's report; the content is the encrypted ``naft_progress`` item."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trajectory = models.ForeignKey(Trajectory, on_delete=models.PROTECT, related_name="reports")
    item = models.ForeignKey(PupilItem, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField()
    period_end = models.DateField()
    days_present = models.PositiveSmallIntegerField()
    days_planned = models.PositiveSmallIntegerField()
    reported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_end"]
        constraints = [
            models.CheckConstraint(condition=Q(period_end__gte=F("period_start")), name="report_period_ordered"),
            models.CheckConstraint(condition=Q(days_present__lte=F("days_planned")), name="report_present_le_planned"),
        ]

    def __str__(self) -> str:
        return f"report {self.id}"


class StaffNotification(models.Model):
    """A notification to one staff member (a NAFT report arrived, a report is overdue, ...)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_notifications")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    pupil = models.ForeignKey(Pupil, null=True, on_delete=models.CASCADE, related_name="+")
    object_id = models.UUIDField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id}"


class AbsenceCode(models.TextChoices):
    B = "B", _("Problematische afwezigheid")
    Z = "Z", _("Ziekte")
    R = "R", _("Van rechtswege gewettigd")
    P = "P", _("Persoonlijk, met toestemming")


class HalfDay(models.TextChoices):
    AM = "am", _("Voormiddag")
    PM = "pm", _("Namiddag")


class AttendanceCase(models.Model):
    """A-2: the begeleidingsdossier school and CLB open at the fifth problematic half day.

    The CLB keeps it: its content (steps taken, notes) are encrypted ``attendance`` items linked
    through ``AttendanceStep``; this row holds ids and dates only.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="attendance_cases")
    school_year = models.CharField(max_length=9)
    clb = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="attendance_cases")
    school = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    item = models.ForeignKey(PupilItem, on_delete=models.PROTECT, related_name="+")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pupil", "school_year"], name="attendance_case_one_per_year"),
        ]

    def __str__(self) -> str:
        return f"begeleidingsdossier {self.id}"


class Absence(models.Model):
    """A-1: one half day of absence with its code; one per pupil per half day (the current code).

    The code is structured data the platform must count across schools (A-2); corrections keep
    their history in ``AbsenceChange``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey(Pupil, on_delete=models.PROTECT, related_name="absences")
    school = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="absences")
    day = models.DateField()
    half = models.CharField(max_length=2, choices=HalfDay.choices)
    code = models.CharField(max_length=1, choices=AbsenceCode.choices)
    school_year = models.CharField(max_length=9)
    case = models.ForeignKey(AttendanceCase, null=True, blank=True, on_delete=models.SET_NULL, related_name="absences")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "half"]
        constraints = [
            models.UniqueConstraint(fields=["pupil", "day", "half"], name="absence_one_per_half_day"),
        ]
        indexes = [models.Index(fields=["pupil", "school_year", "code"], name="absence_count_idx")]

    def __str__(self) -> str:
        return f"{self.code} {self.day} {self.half}"


class AbsenceChange(models.Model):
    """The history of a corrected absence."""

    id = models.BigAutoField(primary_key=True)
    absence = models.ForeignKey(Absence, on_delete=models.CASCADE, related_name="changes")
    old_code = models.CharField(max_length=1, choices=AbsenceCode.choices)
    new_code = models.CharField(max_length=1, choices=AbsenceCode.choices)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.old_code}→{self.new_code}"


class AttendanceStep(models.Model):
    """A step school or CLB took in the begeleidingsdossier; its text is the encrypted ``item``."""

    id = models.BigAutoField(primary_key=True)
    case = models.ForeignKey(AttendanceCase, on_delete=models.CASCADE, related_name="steps")
    item = models.ForeignKey(PupilItem, on_delete=models.PROTECT, related_name="+")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"step in {self.case_id}"
