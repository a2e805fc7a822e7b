"""The Celery app. Tasks take ids only; deadlines live in database columns, not in the broker."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

app = Celery("leerlingenpaspoort")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
