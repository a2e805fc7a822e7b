from django.contrib import admin

from exchange.models import CooperationAgreement, Enrolment, Membership, Organisation, PupilParent


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
    exclude = ("first_name", "last_name", "email")
