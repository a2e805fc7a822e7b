"""Settings shared by every environment.

Values come from the environment (django-environ); secrets may come from a file named by the
same variable with a ``_FILE`` suffix, as Docker and Kubernetes secrets do.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

from exchange.crypto.keyring import DEVELOPMENT_BLIND_INDEX_KEY, DEVELOPMENT_KEKS

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()


def env_secret(name: str, default: str | None = None) -> str | None:
    """Read ``NAME`` from the environment, or the contents of the file named by ``NAME_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text(encoding="utf-8").strip()
    return os.environ.get(name, default)


# Dev-only secret key; production.py refuses it.
DEVELOPMENT_SECRET_KEY = "django-insecure-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY) or DEVELOPMENT_SECRET_KEY
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "guardian",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "exchange",
    "exchange.workdays",
    "consent",
    "permissions",
    "api_schema",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env.str("LP_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# SQLite is the embedded default; DATABASE_URL selects PostgreSQL (CI, production).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
elif env.bool("LP_DB_PREPARED_STATEMENTS", default=True):
    # Django binds parameters on the client (ClientCursor, never prepared). The need-to-know statements
    # (a pupil's items, the decision on one item, the audit append) run server-bound instead
    # (permissions.prepared) and psycopg prepares each once a connection has run it this many times:
    # they cost more to plan than to run. Off behind a pooler that cannot keep prepared statements
    # (docs/operations.md).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = False
GUARDIAN_RENDER_403 = False
# django-guardian's anonymous user is not used: every API call is authenticated.
ANONYMOUS_USER_NAME = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "nl"
LANGUAGES = [("nl", "Nederlands"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Stored in UTC; deadlines shown to people in Brussels time.
TIME_ZONE = "Europe/Brussels"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = VAR_DIR / "media"

# Encrypted blobs only; the storage never sees plaintext.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "api_schema.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api_schema.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "api_schema.pagination.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "leerlingenpaspoort API",
    "DESCRIPTION": (
        "Secure information exchange between Flemish schools, CLBs and NAFT providers. "
        'Every error has the same JSON shape: `{"error": {"code", "message", "fields"}}`. '
        "Forbidden and missing objects both answer 404 with the same body."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets served locally: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "OrganisationKindEnum": "exchange.models.OrganisationKind.choices",
        "ItemKindEnum": "exchange.models.ItemKind.choices",
        "SchoolKindEnum": "exchange.models.SchoolKind.choices",
        "RecordedViaEnum": "consent.models.RecordedVia.choices",
        "CategoryEnum": "exchange.models.Category.choices",
        "HandoverKindEnum": "exchange.models.HandoverKind.choices",
        "ActorEnum": "consent.models.Actor.choices",
        "HandoverStateEnum": "exchange.models.HandoverState.choices",
        "TrajectoryStateEnum": "exchange.models.TrajectoryState.choices",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api_schema.hooks.add_error_responses",
    ],
}

# Celery: the embedded default is kombu's filesystem transport (no server to install);
# production sets CELERY_BROKER_URL to RabbitMQ.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),  # kombu's default is ./control, in the working directory
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_queue_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_DEFAULT_QUEUE = env.str("LP_CELERY_QUEUE", default="celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Deadlines are database columns; this sweep claims what is due (ARCHITECTURE.md).
    "handover-sweep": {
        "task": "exchange.tasks.handover_sweep",
        "schedule": env.float("LP_SWEEP_SECONDS", default=60.0),
    },
    "naft-overdue": {"task": "exchange.tasks.naft_overdue_sweep", "schedule": 3600.0},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Keyring (exchange/crypto): versioned KEKs and the blind-index key. The defaults are the
# development keys; production.py refuses to start with them.
LP_KEKS = env_secret("LP_KEKS", "") or DEVELOPMENT_KEKS
LP_BLIND_INDEX_KEY = env_secret("LP_BLIND_INDEX_KEY", "") or DEVELOPMENT_BLIND_INDEX_KEY

LP_MAX_UPLOAD_BYTES = env.int("LP_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
# problematic half days (B) that open a begeleidingsdossier; a Z-code threshold is off (0).
LP_ABSENCE_B_THRESHOLD = env.int("LP_ABSENCE_B_THRESHOLD", default=5)
LP_ABSENCE_Z_THRESHOLD = env.int("LP_ABSENCE_Z_THRESHOLD", default=0)
LP_STREAM_SEGMENT_BYTES = 1 << 20
# Uploads go through exchange.uploads.SealingUploadHandler only: plaintext never touches disk.
FILE_UPLOAD_HANDLERS = ["exchange.uploads.SealingUploadHandler"]

EMAIL_BACKEND = env.str("DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", default="leerlingenpaspoort@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
