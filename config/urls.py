from django.contrib import admin
from django.urls import include, path

from config.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("exchange.urls")),
    path("api/v1/", include("permissions.urls")),
    path("api/v1/", include("consent.urls")),
    path("api/auth/", include("rest_framework.urls")),
    path("", include("api_schema.urls")),
]
