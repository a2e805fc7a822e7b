from django.urls import path

from consent import apis

urlpatterns = [
    path("pupils/<uuid:pupil_id>/capacity", apis.PupilCapacityApi.as_view(), name="pupil-capacity"),
    path(
        "pupils/<uuid:pupil_id>/capacity-decisions",
        apis.CapacityDecisionCreateApi.as_view(),
        name="pupil-capacity-decision-create",
    ),
    path("pupils/<uuid:pupil_id>/consents", apis.ConsentListApi.as_view(), name="pupil-consent-list"),
    path("pupils/<uuid:pupil_id>/consents/create", apis.ConsentCreateApi.as_view(), name="pupil-consent-create"),
    path("consents/<uuid:consent_id>/withdraw", apis.ConsentWithdrawApi.as_view(), name="consent-withdraw"),
    path("pupils/<uuid:pupil_id>/shares", apis.ShareListApi.as_view(), name="pupil-share-list"),
    path("pupils/<uuid:pupil_id>/shares/create", apis.ShareCreateApi.as_view(), name="pupil-share-create"),
    path("pupils/<uuid:pupil_id>/concerns", apis.ConcernCreateApi.as_view(), name="pupil-concern-create"),
    path("concerns", apis.ConcernQueueApi.as_view(), name="concern-queue"),
    path("concerns/<uuid:concern_id>/review", apis.ConcernReviewApi.as_view(), name="concern-review"),
]
