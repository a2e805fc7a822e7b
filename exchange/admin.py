from typing import Any

from django.contrib import admin

from exchange.models import (
    CooperationAgreement,
    Enrolment,
    IntegrityFailure,
    Membership,
    Organisation,
    PupilItem,
    PupilParent,
)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "official_number", "school_kind", "objection_window_days")
    list_filter = ("kind", "school_kind")
    search_fields = ("name", "official_number")


@admin.register(CooperationAgreement)
class CooperationAgreementAdmin(admin.ModelAdmin):
    list_display = ("school", "clb", "start", "end")
    list_select_related = ("school", "clb")
    autocomplete_fields = ("school", "clb")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organisation", "role", "active")
    list_filter = ("role", "active")
    list_select_related = ("user", "organisation")
    autocomplete_fields = ("organisation",)
    search_fields = ("user__username", "organisation__name")


@admin.register(Enrolment)
class EnrolmentAdmin(admin.ModelAdmin):
    # Pupil identity is not shown in the admin: it is pupil data, reached only through the API's checks.
    list_display = ("id", "school", "level", "school_year", "start", "end")
    list_filter = ("level", "school_year")
    list_select_related = ("school",)
    readonly_fields = ("pupil", "created_by")


@admin.register(PupilParent)
class PupilParentAdmin(admin.ModelAdmin):
    list_display = ("id", "relation", "pupil")
    readonly_fields = ("pupil", "user")
    exclude = ("identity_ciphertext", "identity_wrapped_dek", "identity_kek_version")


@admin.register(PupilItem)
class PupilItemAdmin(admin.ModelAdmin):
    """Metadata only: titles, bodies and files are ciphertext and never shown here."""

    list_display = ("id", "holder", "category", "kind", "current_version", "created_at", "shredded_at")
    list_filter = ("category", "kind", "shredded_at")
    list_select_related = ("holder",)
    fields = (
        "id",
        "pupil",
        "holder",
        "dossier",
        "category",
        "kind",
        "current_version",
        "created_at",
        "shredded_at",
        "shred_reason",
    )
    readonly_fields = fields

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # deletion is crypto-shredding through the API, recorded


@admin.register(IntegrityFailure)
class IntegrityFailureAdmin(admin.ModelAdmin):
    list_display = ("detected_at", "part", "organisation", "item_version", "user")
    list_filter = ("part",)
    readonly_fields = ("detected_at", "part", "organisation", "item_version", "pupil", "user")

    def has_add_permission(self, request: Any) -> bool:
        return False
