"""Tests: SQLite unless DATABASE_URL is set (CI sets it to PostgreSQL)."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import env

_tmp = Path(tempfile.mkdtemp(prefix="lp-test-"))
MEDIA_ROOT = _tmp / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="memory://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_ALWAYS_EAGER = False
LANGUAGE_CODE = "en"
