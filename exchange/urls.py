from django.urls import path

from exchange import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="me"),
    path("organisations", apis.OrganisationListApi.as_view(), name="organisation-list"),
    path("organisations/<uuid:organisation_id>", apis.OrganisationDetailApi.as_view(), name="organisation-detail"),
    path("agreements", apis.AgreementListApi.as_view(), name="agreement-list"),
    path("agreements/create", apis.AgreementCreateApi.as_view(), name="agreement-create"),
    path("agreements/<uuid:agreement_id>/end", apis.AgreementEndApi.as_view(), name="agreement-end"),
    path("pupils", apis.PupilListApi.as_view(), name="pupil-list"),
    path("pupils/<uuid:pupil_id>", apis.PupilDetailApi.as_view(), name="pupil-detail"),
    path("pupils/<uuid:pupil_id>/parents", apis.PupilParentCreateApi.as_view(), name="pupil-parent-create"),
    path("enrolments", apis.EnrolmentListApi.as_view(), name="enrolment-list"),
    path("enrolments/create", apis.EnrolmentCreateApi.as_view(), name="enrolment-create"),
    path("enrolments/<uuid:enrolment_id>/end", apis.EnrolmentEndApi.as_view(), name="enrolment-end"),
]

from exchange import item_apis  # noqa: E402

urlpatterns += [
    path("items", item_apis.ItemFeedApi.as_view(), name="item-feed"),
    path("pupils/<uuid:pupil_id>/items", item_apis.PupilItemListApi.as_view(), name="pupil-item-list"),
    path("pupils/<uuid:pupil_id>/items/create", item_apis.PupilItemCreateApi.as_view(), name="pupil-item-create"),
    path("items/<uuid:item_id>", item_apis.ItemDetailApi.as_view(), name="item-detail"),
    path("items/<uuid:item_id>/file", item_apis.ItemFileApi.as_view(), name="item-file"),
    path("items/<uuid:item_id>/versions", item_apis.ItemVersionCreateApi.as_view(), name="item-version-create"),
    path("items/<uuid:item_id>/shred", item_apis.ItemShredApi.as_view(), name="item-shred"),
]

from exchange import handover_apis  # noqa: E402

urlpatterns += [
    path("handovers", handover_apis.HandoverListApi.as_view(), name="handover-list"),
    path("handovers/<uuid:handover_id>", handover_apis.HandoverDetailApi.as_view(), name="handover-detail"),
    path(
        "handovers/<uuid:handover_id>/objections",
        handover_apis.ObjectionCreateApi.as_view(),
        name="handover-objection-create",
    ),
    path("notices", handover_apis.NoticeListApi.as_view(), name="notice-list"),
    path(
        "pupils/<uuid:pupil_id>/transferred-reports",
        handover_apis.TransferredReportsApi.as_view(),
        name="pupil-transferred-reports",
    ),
]

from exchange import naft_apis  # noqa: E402

urlpatterns += [
    path("pupils/<uuid:pupil_id>/trajectories", naft_apis.TrajectoryApplyApi.as_view(), name="trajectory-apply"),
    path("trajectories", naft_apis.TrajectoryListApi.as_view(), name="trajectory-list"),
    path("trajectories/<uuid:trajectory_id>", naft_apis.TrajectoryDetailApi.as_view(), name="trajectory-detail"),
    path(
        "trajectories/<uuid:trajectory_id>/decision", naft_apis.TrajectoryDecideApi.as_view(), name="trajectory-decide"
    ),
    path(
        "trajectories/<uuid:trajectory_id>/reports",
        naft_apis.ProgressReportCreateApi.as_view(),
        name="trajectory-report-create",
    ),
    path("trajectories/<uuid:trajectory_id>/end", naft_apis.TrajectoryEndApi.as_view(), name="trajectory-end"),
    path("notifications", naft_apis.NotificationListApi.as_view(), name="notification-list"),
    path(
        "notifications/<uuid:notification_id>/read", naft_apis.NotificationReadApi.as_view(), name="notification-read"
    ),
]

from exchange import absence_apis  # noqa: E402

urlpatterns += [
    path("absences", absence_apis.AbsenceCreateApi.as_view(), name="absence-create"),
    path("absences/overview", absence_apis.AbsenceOverviewApi.as_view(), name="absence-overview"),
    path("absences/<uuid:absence_id>/correct", absence_apis.AbsenceCorrectApi.as_view(), name="absence-correct"),
    path("pupils/<uuid:pupil_id>/absences", absence_apis.PupilAbsenceListApi.as_view(), name="pupil-absence-list"),
    path("attendance-cases", absence_apis.AttendanceCaseListApi.as_view(), name="attendance-case-list"),
    path(
        "attendance-cases/<uuid:case_id>/steps",
        absence_apis.AttendanceStepCreateApi.as_view(),
        name="attendance-step-create",
    ),
]
