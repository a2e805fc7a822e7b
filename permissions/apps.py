from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _forget_permission_ids(**kwargs: Any) -> None:
    # Permission rows are recreated after a flush (transactional tests) or a fresh migrate.
    from permissions.grants import view_permission_id

    view_permission_id.cache_clear()


class PermissionsConfig(AppConfig):
    name = "permissions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_forget_permission_ids, dispatch_uid="permissions.forget_permission_ids")
