"""The one place that decides whether a user may act on a pupil item, and which lists they see.

Every read and write of a pupil item goes through ``item_get_for_user``; every list through
``item_list_for_user``. Until the need-to-know policy lands, the rule is: staff of the holding
organisation reach its items (the holder always has a wrapped key). The need-to-know issue
replaces the bodies of these functions, not their callers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import NotFound

from exchange.models import Membership, Organisation, PupilItem
from exchange.selectors import membership_list_for_user


class Action:
    READ = "read"
    WRITE = "write"
    SHRED = "shred"


# Roles that may crypto-shred an item of their organisation.
SHRED_ROLES = frozenset({"clb_director", "school_director"})


@dataclass(frozen=True)
class Access:
    item: PupilItem
    organisation: Organisation
    membership: Membership


def item_list_for_user(*, user: Any, pupil_id: uuid.UUID | None = None) -> QuerySet[PupilItem]:
    """Items the user may see, compiled to one SQL query."""
    holders = membership_list_for_user(user=user).values("organisation_id")
    queryset = PupilItem.objects.filter(holder_id__in=holders, shredded_at__isnull=True)
    if pupil_id is not None:
        queryset = queryset.filter(pupil_id=pupil_id)
    return queryset


def item_get_for_user(*, user: Any, item_id: Any, action: str) -> Access:
    """The item and the organisation the user acts for; ``NotFound`` when not allowed or missing."""
    item = item_list_for_user(user=user).select_related("holder", "pupil").filter(pk=item_id).first()
    if item is None:
        raise NotFound
    membership = membership_list_for_user(user=user).filter(organisation=item.holder).first()
    if membership is None:
        raise NotFound
    if action == Action.SHRED and membership.role not in SHRED_ROLES:
        raise NotFound
    return Access(item=item, organisation=item.holder, membership=membership)


def organisation_for_new_item(*, user: Any, holder_id: Any | None) -> Membership:
    """The membership under which the user writes a new item (the holder)."""
    memberships = membership_list_for_user(user=user)
    if holder_id is not None:
        memberships = memberships.filter(organisation_id=holder_id)
    found = list(memberships[:2])
    if len({m.organisation_id for m in found}) != 1:
        raise NotFound
    return found[0]
