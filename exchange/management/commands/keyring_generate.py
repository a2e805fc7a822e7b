"""Print new key material for the keyring: a KEK line to append to LP_KEKS, or a blind-index key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from exchange.crypto.keyring import generate_blind_index_key_string, generate_kek_string


class Command(BaseCommand):
    help = (
        "Print a new KEK entry (VERSION:base64) for LP_KEKS, or with --blind-index a new blind-index key. "
        "To rotate: append the new entry to LP_KEKS with a higher version, restart, run rotate_keys."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--kek-version", dest="kek_version", type=int, default=1, help="Version of the new KEK")
        parser.add_argument("--blind-index", action="store_true", help="Generate the blind-index key instead")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["blind_index"]:
            self.stdout.write(generate_blind_index_key_string())
        else:
            self.stdout.write(generate_kek_string(options["kek_version"]))
