from django.contrib import admin

from exchange.workdays.models import NonWorkingPeriod


@admin.register(NonWorkingPeriod)
class NonWorkingPeriodAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "first_day", "last_day")
    list_filter = ("kind",)
    date_hierarchy = "first_day"
    search_fields = ("name",)
