from django.urls import path

from permissions import apis

urlpatterns = [
    path("pupils/<uuid:pupil_id>/involvements", apis.InvolvementAssignApi.as_view(), name="involvement-assign"),
    path("involvements/<uuid:involvement_id>/end", apis.InvolvementEndApi.as_view(), name="involvement-end"),
    path("pupils/<uuid:pupil_id>/teachers", apis.TeachingAssignApi.as_view(), name="teaching-assign"),
    path("pupils/<uuid:pupil_id>/file-overview", apis.PupilFileOverviewApi.as_view(), name="pupil-file-overview"),
    path("pupils/<uuid:pupil_id>/access-log", apis.PupilAccessLogApi.as_view(), name="pupil-access-log"),
    path("items/<uuid:item_id>/teachers", apis.ItemPassToTeacherApi.as_view(), name="item-pass-to-teacher"),
    path(
        "items/<uuid:item_id>/teachers/withdraw",
        apis.ItemWithdrawFromTeacherApi.as_view(),
        name="item-withdraw-from-teacher",
    ),
    path("items/<uuid:item_id>/shields", apis.ItemShieldApi.as_view(), name="item-shield"),
    path("audit/export", apis.AuditExportApi.as_view(), name="audit-export"),
]
