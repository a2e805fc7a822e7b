"""Production: refuses to start with development secrets."""

from django.core.exceptions import ImproperlyConfigured

from exchange.crypto.keyring import LocalKeyring

from .base import *  # noqa: F403
from .base import DEVELOPMENT_SECRET_KEY, LP_BLIND_INDEX_KEY, LP_KEKS, SECRET_KEY, env

DEBUG = False

if SECRET_KEY == DEVELOPMENT_SECRET_KEY or len(SECRET_KEY) < 40:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set to a strong secret.")

if LocalKeyring.from_strings(keks=LP_KEKS, blind_index_key=LP_BLIND_INDEX_KEY).is_development():
    raise ImproperlyConfigured(
        "LP_KEKS and LP_BLIND_INDEX_KEY (or their *_FILE variants) must be set to production keys, "
        "not the development keyring: generate them with manage.py keyring_generate."
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
SECURE_CONTENT_TYPE_NOSNIFF = True
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

if env.str("LP_OBJECT_STORAGE_BUCKET", default=""):
    STORAGES = {
        **STORAGES,  # noqa: F405
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env.str("LP_OBJECT_STORAGE_BUCKET"),
                "endpoint_url": env.str("LP_OBJECT_STORAGE_ENDPOINT", default=None),
                "default_acl": "private",
                "file_overwrite": False,
            },
        },
    }
