from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _


class NonWorkingKind(models.TextChoices):
    PUBLIC_HOLIDAY = "public_holiday", _("public holiday")
    SCHOOL_HOLIDAY = "school_holiday", _("school holiday")


class NonWorkingPeriod(models.Model):
    """Days on which a legal working-day deadline does not run (ACC-2 inspection, handover receipts).

    One row per public holiday or school holiday period, both days included. Operators keep the
    table current in the admin; weekends are never working days and need no rows.
    """

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=NonWorkingKind.choices)
    first_day = models.DateField(_("first day"))
    last_day = models.DateField(_("last day"))

    class Meta:
        ordering = ["first_day"]
        verbose_name = _("non-working period")
        verbose_name_plural = _("non-working periods")
        constraints = [
            models.CheckConstraint(condition=Q(last_day__gte=F("first_day")), name="workdays_period_ordered"),
            models.UniqueConstraint(fields=["kind", "first_day"], name="workdays_period_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.first_day:%d-%m-%Y} – {self.last_day:%d-%m-%Y})"
