"""Read side of need to know."""

from __future__ import annotations

from typing import Any

from exchange.models import Organisation, Pupil
from permissions.models import Involvement


def is_involved(*, user: Any, clb: Organisation, pupil: Pupil) -> bool:
    """ACC-4: whether ``user`` is involved in the pupil's guidance at ``clb`` now."""
    return Involvement.objects.filter(user=user, clb=clb, pupil=pupil, ended_at__isnull=True).exists()
