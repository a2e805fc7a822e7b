"""Compare the django-guardian object permissions with the grants ledger, and the grants' copies of their
items' columns with the items; repair drift with --repair."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from exchange.models import PupilItem
from permissions.grants import (
    actual_projection,
    expected_projection,
    grant_copies_drift,
    grant_copies_sync,
    projection_sync,
)


class Command(BaseCommand):
    help = (
        "Report (and with --repair fix) drift between the grants ledger and guardian permissions, and between "
        "the grants' copies of their items' columns and the items."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true")
        parser.add_argument("--batch-size", type=int, default=2000)

    def handle(self, *args: Any, **options: Any) -> None:
        missing = extra = copies = 0
        last = None
        while True:
            page = PupilItem.objects.order_by("id")
            if last is not None:
                page = page.filter(id__gt=last)
            items = list(page[: options["batch_size"]])
            if not items:
                break
            with transaction.atomic():
                want_g, want_u = expected_projection(items=items)
                have_g, have_u = actual_projection(items=items)
                missing += len(want_g - have_g) + len(want_u - have_u)
                extra += len(have_g - want_g) + len(have_u - want_u)
                if options["repair"]:
                    projection_sync(items=items)
                    copies += grant_copies_sync(items=items)
                else:
                    copies += grant_copies_drift(items=items).count()
            last = items[-1].pk
        self.stdout.write(f"guardian projection: {missing} missing, {extra} extra permission rows")
        self.stdout.write(f"grants' item copies: {copies} differing from their item")
        if (missing or extra or copies) and not options["repair"]:
            raise CommandError("drift found: run with --repair")
        if options["repair"] and (missing or extra or copies):
            self.stdout.write("repaired")
