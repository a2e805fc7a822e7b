"""Consent, capacity and objections as data (S-1..S-5, CAP-1..CAP-3, T-CLB-2, V-1).

Free text about the pupil (a capacity motivation, a share's summary, a concern's justification, a
scanned objection letter) is never stored here: it is an encrypted item in the pupil's file,
linked from these rows.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Actor(models.TextChoices):
    PUPIL = "pupil", _("De leerling")
    PARENT = "parent", _("Een ouder")


class CapacityBasis(models.TextChoices):
    PRESUMED_CAPABLE = "presumed_capable", _("Vermoed bekwaam (12 of ouder, CAP-1)")
    PRESUMED_NOT_CAPABLE = "presumed_not_capable", _("Vermoed niet bekwaam (jonger dan 12, CAP-1)")
    OVERRIDE_CAPABLE = "override_capable", _("Bekwaam na beslissing CLB (CAP-2)")
    OVERRIDE_NOT_CAPABLE = "override_not_capable", _("Niet bekwaam na beslissing CLB (CAP-2)")


class RecordedVia(models.TextChoices):
    ORAL = "oral", _("Mondeling, genoteerd in het dossier")
    WRITING = "writing", _("Schriftelijk")
    ONLINE = "online", _("Door de persoon zelf, online")


class CapacityDecision(models.Model):
    """CAP-2: a CLB staff member overrides the age presumption, with a written motivation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="capacity_decisions")
    clb = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    capable = models.BooleanField()
    motivation_item = models.ForeignKey("exchange.PupilItem", on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-decided_on", "-created_at"]

    def __str__(self) -> str:
        return f"capacity override for {self.pupil_id}: {self.capable}"


class Purpose(models.TextChoices):
    SUPPORT_AT_SCHOOL = "support_at_school", _("Ondersteuning op school")
    CARE_COORDINATION = "care_coordination", _("Afstemming zorg school-CLB")
    NAFT_RELAY = "naft_relay", _("Terugkoppeling NAFT-traject")
    ATTENDANCE = "attendance", _("Begeleiding bij afwezigheden")


class ScopeKind(models.TextChoices):
    SUMMARY = "summary", _("Een samenvatting voor dit doel")
    ITEMS = "items", _("Benoemde stukken")
    CATEGORIES = "categories", _("Categorieën")


class Consent(models.Model):
    """S-1/S-2: who consented, to what, for whom, how it was recorded, and until when."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="consents")
    clb = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    given_by = models.CharField(max_length=10, choices=Actor.choices)
    given_by_parent = models.ForeignKey(
        "exchange.PupilParent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    capacity_basis = models.CharField(max_length=30, choices=CapacityBasis.choices)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_via = models.CharField(max_length=10, choices=RecordedVia.choices)
    purpose = models.CharField(max_length=30, choices=Purpose.choices)
    recipient = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    recipient_role = models.CharField(max_length=20, default="care_team")
    scope_kind = models.CharField(max_length=12, choices=ScopeKind.choices)
    scope_items = models.ManyToManyField("exchange.PupilItem", blank=True, related_name="+")
    scope_categories = models.JSONField(default=list, blank=True)
    valid_from = models.DateField()
    valid_until = models.DateField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    withdrawal_via = models.CharField(max_length=10, choices=RecordedVia.choices, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=models.F("valid_from")),
                name="consent_valid_until_after_from",
            ),
            models.CheckConstraint(
                condition=Q(given_by="pupil", given_by_parent__isnull=True)
                | Q(given_by="parent", given_by_parent__isnull=False),
                name="consent_parent_named_when_parent_gives",
            ),
        ]

    def __str__(self) -> str:
        return f"consent {self.id} ({self.purpose})"


class Share(models.Model):
    """S-2/S-3: data communicated to the school — a summary or selected items, never the MDD."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="shares")
    dossier = models.ForeignKey("exchange.ClbDossier", on_delete=models.PROTECT, related_name="shares")
    consent = models.ForeignKey(Consent, on_delete=models.PROTECT, related_name="shares")
    clb = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    school = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=[("summary", "summary"), ("items", "items")])
    items = models.ManyToManyField("exchange.PupilItem", related_name="shared_in")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"share {self.id} to {self.school_id}"


class TransferKind(models.TextChoices):
    CLB = "clb", _("Overdracht CLB → CLB (T-CLB-2)")
    SCHOOL = "school", _("Overdracht school → school (T-SCH-3)")


class Objection(models.Model):
    """Verzet against a transfer, received by the old organisation before the window closed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="objections")
    transfer_kind = models.CharField(max_length=10, choices=TransferKind.choices)
    handover_id = models.UUIDField(help_text=_("The planned handover objected to"))
    organisation = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    objected_by = models.CharField(max_length=10, choices=Actor.choices)
    objected_by_parent = models.ForeignKey(
        "exchange.PupilParent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    capacity_basis = models.CharField(max_length=30, choices=CapacityBasis.choices)
    received_at = models.DateTimeField()
    received_via = models.CharField(max_length=10, choices=RecordedVia.choices)
    received_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    window_closed_at = models.DateTimeField()
    letter_item = models.ForeignKey(
        "exchange.PupilItem", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["handover_id", "transfer_kind"], name="objection_one_per_handover"),
            models.CheckConstraint(
                condition=Q(received_at__lte=models.F("window_closed_at")), name="objection_within_window"
            ),
        ]

    def __str__(self) -> str:
        return f"objection against {self.handover_id}"


class ConcernRecipient(models.TextChoices):
    OCJ = "ocj", _("Ondersteuningscentrum Jeugdzorg")
    VK = "vk", _("Vertrouwenscentrum Kindermishandeling")
    PROSECUTOR = "prosecutor", _("Procureur des Konings")


class ConcernGround(models.TextChoices):
    SAFETY = "safety", _("Verontrusting over de veiligheid")
    DEVELOPMENT = "development", _("Verontrusting over de ontwikkeling")


class Concern(models.Model):
    """V-1: a professional's disclosure without consent to a mandated body; reviewed by the CLB director."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="concerns")
    organisation = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    reviewing_clb = models.ForeignKey("exchange.Organisation", on_delete=models.PROTECT, related_name="+")
    professional = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    ground = models.CharField(max_length=12, choices=ConcernGround.choices)
    recipient = models.CharField(max_length=12, choices=ConcernRecipient.choices)
    justification_item = models.ForeignKey("exchange.PupilItem", on_delete=models.PROTECT, related_name="+")
    disclosed_items = models.ManyToManyField("exchange.PupilItem", blank=True, related_name="+")
    disclosed_at = models.DateTimeField(auto_now_add=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    review_outcome = models.CharField(
        max_length=12, blank=True, default="", choices=[("justified", "justified"), ("questioned", "questioned")]
    )

    class Meta:
        ordering = ["reviewed_at", "-disclosed_at"]

    def __str__(self) -> str:
        return f"concern {self.id}"
