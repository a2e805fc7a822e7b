"""Need to know as data: grants (the ledger), involvement, and the append-only audit chain."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditAction(models.TextChoices):
    READ = "read", _("Gelezen")
    DENIED = "denied", _("Geweigerd")
    WRITE = "write", _("Geschreven")
    GRANT = "grant", _("Toegang verleend")
    REVOKE = "revoke", _("Toegang ingetrokken")
    SHARE = "share", _("Gedeeld")
    TRANSFER = "transfer", _("Overgedragen")
    CONSENT = "consent", _("Toestemming gewijzigd")
    SHRED = "shred", _("Vernietigd")
    INTEGRITY = "integrity", _("Integriteitsfout")


class AuditOutcome(models.TextChoices):
    ALLOWED = "allowed", _("Toegestaan")
    DENIED = "denied", _("Geweigerd")
    FAILED = "failed", _("Mislukt")


class AuditEvent(models.Model):
    """ACC-5: one event of the hash chain. Never plaintext: ids, codes and rule ids only.

    ``hash`` = SHA-256 over the previous event's hash and this event's canonical fields, so a
    modified, inserted or deleted row breaks the chain (``manage.py audit_verify``). On
    PostgreSQL a trigger rejects UPDATE and DELETE on this table.
    """

    id = models.BigAutoField(primary_key=True)
    sequence = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,  # never searched by actor; every read appends a row, so each index costs
    )
    organisation_id = models.UUIDField(null=True)
    role = models.CharField(max_length=20, blank=True, default="")
    pupil_id = models.UUIDField(null=True, db_index=True)
    item_id = models.UUIDField(null=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    purpose = models.CharField(max_length=100, blank=True, default="")
    legal_basis = models.CharField(max_length=40, blank=True, default="")
    outcome = models.CharField(max_length=10, choices=AuditOutcome.choices)
    prev_hash = models.CharField(max_length=64)
    # Not unique: the sequence orders the chain and audit_verify recomputes every hash; an index
    # on 64 random characters per event would only slow every append.
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]
        indexes = [models.Index(fields=["organisation_id", "sequence"], name="audit_org_seq_idx")]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.outcome}"


class AuditHead(models.Model):
    """A single row locked while appending, so the chain has one order even under concurrency."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.sequence}"


class Basis(models.TextChoices):
    """Why an organisation may read an item (ARCHITECTURE.md: grants are a ledger with reasons)."""

    HOLDER = "holder", _("Houder")
    ENROLMENT = "enrolment", _("Inschrijving")
    HANDOVER = "handover", _("Overdracht (bezwaar mogelijk)")
    MANDATORY_TRANSFER = "mandatory_transfer", _("Verplichte overdracht")
    CONSENT = "consent", _("Toestemming")
    CONCERN = "concern", _("Verontrusting")
    TEACHER_SHARE = "teacher_share", _("Doorgegeven door het zorgteam")
    REFERRAL = "referral", _("NAFT-traject (CLB ↔ aanbieder)")
    ATTENDANCE_CASE = "attendance_case", _("Begeleidingsdossier leerplicht (A-2)")


NO_SOURCE = uuid.UUID(int=0)


class Grant(models.Model):
    """A ledger row: ``organisation`` (optionally one ``user`` in it) may read ``item`` on ``basis``.

    ``source_type``/``source_id`` name what created it (an enrolment, handover, consent, concern or
    teacher share), so revoking that source revokes exactly its grants. Rows are never deleted:
    revocation sets ``revoked_at``. The guardian object permissions are projected from these rows
    (``permissions.grants``) in the same transaction.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey("exchange.PupilItem", on_delete=models.CASCADE, related_name="grants")
    # Indexes are chosen for a ledger that grows by hundreds of thousands of rows in a September
    # wave: the organisation is served by grant_org_item_idx, the user by a partial index over the
    # (few) user grants, and created_by/revoked_by are never searched (a deleted account's rows
    # are found by a scan, which is rare and acceptable).
    organisation = models.ForeignKey(
        "exchange.Organisation", on_delete=models.CASCADE, related_name="grants", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    basis = models.CharField(max_length=20, choices=Basis.choices)
    rule = models.CharField(max_length=20, help_text=_("DOMAIN.md rule id"))
    source_type = models.CharField(max_length=20, blank=True, default="")
    source_id = models.UUIDField(default=NO_SOURCE)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Copies of the item's immutable columns (its pupil, category and health flag are fixed when it
    # is created; the category is even bound into its ciphertexts' AAD), written with the grant by
    # ``permissions.grants.grants_create``. They let a list of everything a user may see walk the
    # organisation's grants newest item first (grant_org_feed_idx) and test the policy on the grant
    # row alone, reading an item only for the rows it shows (``permissions.access.item_feed_for_user``).
    # ``reconcile_permissions`` reports and repairs a copy that differs from its item.
    item_pupil_id = models.UUIDField()
    item_category = models.CharField(max_length=30)
    item_health = models.BooleanField()
    item_created_at = models.DateTimeField()

    ITEM_COPIES = {
        "item_pupil_id": "pupil_id",
        "item_category": "category",
        "item_health": "health",
        "item_created_at": "created_at",
    }

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "organisation", "basis", "source_id"],
                condition=models.Q(revoked_at__isnull=True, user__isnull=True),
                name="grant_unique_active_org",
            ),
            models.UniqueConstraint(
                fields=["item", "organisation", "user", "basis", "source_id"],
                condition=models.Q(revoked_at__isnull=True, user__isnull=False),
                name="grant_unique_active_user",
            ),
        ]
        indexes = [
            # The organisation's grants newest item first: the feed walks it in order and stops at a page.
            models.Index(fields=["organisation", "-item_created_at", "item"], name="grant_org_feed_idx"),
            models.Index(fields=["user"], name="grant_user_idx", condition=models.Q(user__isnull=False)),
            models.Index(fields=["source_type", "source_id"], name="grant_source_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.basis} grant of {self.item_id} to {self.organisation_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The services write grants in bulk with the copies filled (grants_create); a single save copies them here.
        if not self.item_category:
            for copy, column in self.ITEM_COPIES.items():
                setattr(self, copy, getattr(self.item, column))
        super().save(*args, **kwargs)


class Involvement(models.Model):
    """ACC-4: a CLB staff member involved in a pupil's guidance, assigned by the CLB director."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="involvements")
    clb = models.ForeignKey("exchange.Organisation", on_delete=models.CASCADE, related_name="involvements")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="involvements")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    assigned_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pupil", "clb", "user"],
                condition=models.Q(ended_at__isnull=True),
                name="involvement_unique_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} involved with {self.pupil_id}"


class TeachingAssignment(models.Model):
    """A teacher teaches a pupil at a school: the precondition for the care team passing items on."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    school = models.ForeignKey("exchange.Organisation", on_delete=models.CASCADE, related_name="+")
    teacher = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="teaching")
    pupil = models.ForeignKey("exchange.Pupil", on_delete=models.CASCADE, related_name="teachers")
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["school", "teacher", "pupil"],
                condition=models.Q(ended_at__isnull=True),
                name="teaching_unique_active",
            )
        ]

    def __str__(self) -> str:
        return f"{self.teacher_id} teaches {self.pupil_id}"


class Shield(models.Model):
    """ACC-4: the capable pupil asked to shield an item from an involved staff member."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey("exchange.PupilItem", on_delete=models.CASCADE, related_name="shields")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "user"], name="shield_unique")]

    def __str__(self) -> str:
        return f"{self.item_id} shielded from {self.user_id}"
