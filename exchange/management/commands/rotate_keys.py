"""Rewrap every DEK under the newest KEK version, without touching content.

Batched (keyset pagination over ids), each batch in its own transaction: an interrupted run
leaves every row readable (old or new version) and a second run picks up what is left, so it is
safe to run twice. Old KEK versions can be removed from the keyring once a run reports 0 left.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from tqdm import tqdm

from exchange.crypto.keyring import Keyring, keyring_from_settings, rewrap
from exchange.files import version_wrap_aad
from exchange.identity import IDENTITY_KEK_ORG, identity_rewrap_aad, parent_rewrap_aad
from exchange.models import Pupil, PupilParent, WrappedKey


class Command(BaseCommand):
    help = "Rewrap every data key (items and pupil identities) under the newest KEK version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (e.g. in cron)")

    def handle(self, *args: Any, **options: Any) -> None:
        keyring = keyring_from_settings()
        target = keyring.current_version()
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            self.stderr.write("--batch-size must be at least 1")
            raise SystemExit(2)
        wraps = WrappedKey.objects.filter(kek_version__lt=target)
        total = wraps.count() + sum(
            m.objects.filter(identity_kek_version__lt=target).count() for m in (Pupil, PupilParent)
        )
        done = 0
        with tqdm(total=total, unit="key", disable=options["no_progress"], desc=f"rewrap to KEK v{target}") as bar:
            last_id = 0
            while True:
                batch = list(
                    wraps.filter(id__gt=last_id)
                    .order_by("id")
                    .values_list(
                        "id",
                        "organisation_id",
                        "kek_version",
                        "wrapped_dek",
                        "item_version__item_id",
                        "item_version__version",
                    )[:batch_size]
                )
                if not batch:
                    break
                updated: list[tuple[int, bytes, int, int]] = []
                for row_id, org_id, kek_version, wrapped, item_id, version in batch:
                    new_version, new_wrapped = rewrap(
                        keyring,
                        org_id=str(org_id),
                        kek_version=kek_version,
                        wrapped=bytes(wrapped),
                        aad=version_wrap_aad(item_id=item_id, version=version, organisation_id=org_id),
                    )
                    updated.append((new_version, new_wrapped, row_id, kek_version))
                _update_rows(WrappedKey, "id", "kek_version", "wrapped_dek", updated)
                last_id = batch[-1][0]
                done += len(batch)
                bar.update(len(batch))

            for model, aad_of in ((Pupil, identity_rewrap_aad), (PupilParent, parent_rewrap_aad)):
                done += self._rewrap_identities(model, aad_of, keyring, target, batch_size, bar)
        left = (
            WrappedKey.objects.filter(kek_version__lt=target).count()
            + Pupil.objects.filter(identity_kek_version__lt=target).count()
        )
        self.stdout.write(f"Rewrapped {done} keys to KEK version {target}; {left} left under older versions.")

    @staticmethod
    def _rewrap_identities(
        model: type[Pupil] | type[PupilParent],
        aad_of: Callable[[uuid.UUID], bytes],
        keyring: Keyring,
        target: int,
        batch_size: int,
        bar: tqdm,
    ) -> int:
        """Rewrap the identity DEKs of pupils or parents, batch by batch."""
        done = 0
        last_id: uuid.UUID | None = None
        while True:
            page = model.objects.filter(identity_kek_version__lt=target).order_by("id")
            if last_id is not None:
                page = page.filter(id__gt=last_id)
            rows = list(page.values_list("id", "identity_kek_version", "identity_wrapped_dek")[:batch_size])
            if not rows:
                return done
            updated: list[tuple[int, bytes, Any, int]] = []
            for row_id, kek_version, wrapped in rows:
                new_version, new_wrapped = rewrap(
                    keyring,
                    org_id=IDENTITY_KEK_ORG,
                    kek_version=kek_version,
                    wrapped=bytes(wrapped),
                    aad=aad_of(row_id),
                )
                updated.append((new_version, new_wrapped, row_id, kek_version))
            _update_rows(model, "id", "identity_kek_version", "identity_wrapped_dek", updated)
            last_id = rows[-1][0]
            done += len(rows)
            bar.update(len(rows))


def _update_rows(model: Any, pk: str, version_field: str, wrap_field: str, rows: list[tuple[Any, ...]]) -> None:
    """One batch in one transaction, as a plain executemany.

    Django's ``bulk_update`` builds a CASE expression per row and costs more than the crypto; a
    conditional UPDATE (only if the row is still under the version we read) keeps a concurrent
    rotation or a shred from being overwritten.
    """
    table = connection.ops.quote_name(model._meta.db_table)
    version_column = connection.ops.quote_name(model._meta.get_field(version_field).column)
    wrap_column = connection.ops.quote_name(model._meta.get_field(wrap_field).column)
    pk_column = connection.ops.quote_name(model._meta.get_field(pk).column)
    sql = (
        f"UPDATE {table} SET {version_column} = %s, {wrap_column} = %s "  # noqa: S608 - names from model metadata
        f"WHERE {pk_column} = %s AND {version_column} = %s"
    )
    params = [
        (version, wrap, row_id.hex if connection.vendor == "sqlite" and hasattr(row_id, "hex") else row_id, old)
        for version, wrap, row_id, old in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)
