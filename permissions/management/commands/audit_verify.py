"""Walk the audit hash chain and report the first broken link (ACC-5)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from permissions.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain; exits non-zero at the first broken link."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit_verify()
        if broken is not None:
            raise CommandError(f"audit chain broken at event #{broken.sequence}: {broken.reason} ({checked} verified)")
        self.stdout.write(f"audit chain intact: {checked} events verified")
