"""The grants ledger, its key wraps and its django-guardian projection, kept in one transaction.

Creating a grant wraps every version's DEK for the grantee organisation; revoking the last grant
of an organisation on an item deletes those wraps. django-guardian object permissions
(direct foreign-key tables, one group per organisation and role) are recomputed from the ledger
for the touched items in the same transaction; ``reconcile_permissions`` proves they agree.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from exchange.crypto.keyring import keyring_from_settings
from exchange.files import version_wrap_aad
from exchange.models import (
    ItemVersion,
    Membership,
    Organisation,
    PupilItem,
    PupilItemGroupObjectPermission,
    PupilItemUserObjectPermission,
    WrappedKey,
)
from permissions.audit import EventSpec, audit_append_many
from permissions.bulk import insert_rows
from permissions.models import NO_SOURCE, AuditAction, AuditOutcome, Grant
from permissions.policy import roles_reading

VIEW_CODENAME = "view_pupilitem"


@cache
def view_permission_id() -> int:
    return Permission.objects.get(codename=VIEW_CODENAME, content_type__app_label="exchange").pk


def role_group_name(organisation_id: uuid.UUID, role: str) -> str:
    return f"lp:{organisation_id}:{role}"


def role_group(*, organisation_id: uuid.UUID, role: str) -> Group:
    group, _created = Group.objects.get_or_create(name=role_group_name(organisation_id, role))
    return group


def role_group_ids(keys: Iterable[tuple[uuid.UUID, str]]) -> dict[tuple[uuid.UUID, str], int]:
    """The group id of every (organisation, role), created where missing: two queries for any number."""
    names = {role_group_name(organisation_id, role): (organisation_id, role) for organisation_id, role in set(keys)}
    if not names:
        return {}
    found = dict(Group.objects.filter(name__in=list(names)).values_list("name", "pk"))
    missing = [name for name in names if name not in found]
    if missing:
        Group.objects.bulk_create([Group(name=name) for name in missing], ignore_conflicts=True)
        found.update(Group.objects.filter(name__in=missing).values_list("name", "pk"))
    return {key: found[name] for name, key in names.items()}


def membership_groups_sync(*, user: Any) -> None:
    """Put the user in exactly the role groups of their active memberships."""
    wanted = {
        role_group(organisation_id=m.organisation_id, role=m.role).pk
        for m in Membership.objects.filter(user=user, active=True)
    }
    current = set(user.groups.filter(name__startswith="lp:").values_list("pk", flat=True))
    if current - wanted:
        user.groups.remove(*(current - wanted))
    if wanted - current:
        user.groups.add(*(wanted - current))


def active_grants(*, at: datetime | None = None) -> QuerySet[Grant]:
    at = at or timezone.now()
    return Grant.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=at), revoked_at__isnull=True, valid_from__lte=at
    )


class ItemRef(NamedTuple):
    """What the ledger needs of an item (a ``PupilItem`` has the same attributes): bulk callers
    pass these instead of loading model instances."""

    pk: uuid.UUID
    pupil_id: uuid.UUID
    holder_id: uuid.UUID
    category: str
    health: bool
    created_at: datetime


Item = PupilItem | ItemRef


@dataclass(frozen=True)
class GrantSpec:
    item: Item
    organisation: Organisation
    basis: str
    rule: str
    user: Any = None
    source_type: str = ""
    source_id: uuid.UUID = NO_SOURCE
    valid_from: datetime | None = None
    valid_until: datetime | None = None


def _ensure_wraps(*, items: list[Item], organisation_ids: dict[uuid.UUID, set[uuid.UUID]]) -> None:
    """Wrap every version's DEK of each item for the organisations that need it, in bulk.

    The holder's wrap of each version unwraps the DEK (one query for all versions); a wrap that
    exists already is left as it is (the insert skips it), so a repeat is harmless.
    """
    keyring = keyring_from_settings()
    holders = {i.pk: i.holder_id for i in items}
    # Two lookups by key (the items' versions, then their wraps) rather than one join through the item
    # for its holder: the join's plan drifted to scanning whole tables as a September wave grew them.
    versions = {
        version_id: (item_id, number)
        for version_id, item_id, number in ItemVersion.objects.filter(item_id__in=list(holders)).values_list(
            "id", "item_id", "version"
        )
    }
    holder_wraps = [
        (version_id, *versions[version_id], org, kek_version, wrapped)
        for version_id, org, kek_version, wrapped in WrappedKey.objects.filter(
            item_version_id__in=list(versions)
        ).values_list("item_version_id", "organisation_id", "kek_version", "wrapped_dek")
        if org == holders[versions[version_id][0]]
    ]
    now = timezone.now()
    new = []
    for version_id, item_id, number, source_org, source_kek_version, source_wrapped in holder_wraps:
        missing = [org for org in organisation_ids.get(item_id, set()) if org != source_org]
        if not missing:
            continue
        dek = keyring.unwrap(
            org_id=str(source_org),
            kek_version=source_kek_version,
            wrapped=bytes(source_wrapped),
            aad=version_wrap_aad(item_id=item_id, version=number, organisation_id=source_org),
        )
        for org in missing:
            kek_version, wrapped = keyring.wrap(
                org_id=str(org),
                dek=dek,
                aad=version_wrap_aad(item_id=item_id, version=number, organisation_id=org),
            )
            new.append((version_id, org, kek_version, wrapped, now))
    # A shredded or never-wrapped version has no holder wrap: a grant without a key cannot decrypt.
    insert_rows(
        WrappedKey,
        ("item_version", "organisation", "kek_version", "wrapped_dek", "created_at"),
        new,
        ignore_conflicts=True,
    )


def _project_added(specs: list[GrantSpec], now: datetime) -> None:
    """Add the guardian rows of new grants (the projection is a union over grants: adding a grant
    only ever adds rows, so no diff against the table is needed; ``projection_sync`` does the
    full diff where grants end). Expired specs project nothing, as in ``expected_projection``."""
    perm = view_permission_id()
    groups: set[tuple[uuid.UUID, tuple[uuid.UUID, str]]] = set()
    users: set[tuple[uuid.UUID, int]] = set()
    for s in specs:
        if s.valid_until is not None and s.valid_until <= now:
            continue
        if s.user is not None:
            users.add((s.item.pk, s.user.pk))
            continue
        for role in roles_reading(reader_kind=s.organisation.kind, basis=s.basis, category=s.item.category):
            groups.add((s.item.pk, (s.organisation.pk, role)))
    group_ids = role_group_ids(key for _item_id, key in groups)
    insert_rows(
        PupilItemGroupObjectPermission,
        ("content_object", "group", "permission"),
        sorted({(item_id, group_ids[key], perm) for item_id, key in groups}, key=str),
        ignore_conflicts=True,
    )
    insert_rows(
        PupilItemUserObjectPermission,
        ("content_object", "user", "permission"),
        sorted({(item_id, user_id, perm) for item_id, user_id in users}, key=str),
        ignore_conflicts=True,
    )


def _user_id(user: Any) -> int | None:
    return user.pk if user is not None and getattr(user, "is_authenticated", False) else None


@transaction.atomic
def grants_create(*, specs: Iterable[GrantSpec], created_by: Any = None, purpose: str = "") -> int:
    """Create grants in bulk, wrap keys for the grantees, project to guardian, audit. Idempotent.

    Returns the number of specs; a spec whose active grant exists already changes nothing.
    """
    specs = list(specs)
    if not specs:
        return 0
    now = timezone.now()
    actor_id = _user_id(created_by)
    # Unique constraints on active grants make a duplicate impossible; a repeat is a no-op.
    insert_rows(
        Grant,
        (
            "id",
            "item",
            "organisation",
            "user",
            "basis",
            "rule",
            "source_type",
            "source_id",
            "valid_from",
            "valid_until",
            "created_by",
            "created_at",
            *Grant.ITEM_COPIES,
        ),
        [
            (
                uuid.uuid4(),
                s.item.pk,
                s.organisation.pk,
                s.user.pk if s.user is not None else None,
                s.basis,
                s.rule,
                s.source_type,
                s.source_id,
                s.valid_from or now,
                s.valid_until,
                actor_id,
                now,
                *(getattr(s.item, column) for column in Grant.ITEM_COPIES.values()),
            )
            for s in specs
        ],
        ignore_conflicts=True,
    )
    items = list({s.item.pk: s.item for s in specs}.values())
    needed: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for s in specs:
        needed[s.item.pk].add(s.organisation.pk)
    _ensure_wraps(items=items, organisation_ids=needed)
    _project_added(specs, now)
    audit_append_many(
        events=[
            EventSpec(
                action=AuditAction.GRANT,
                outcome=AuditOutcome.ALLOWED,
                actor_id=actor_id,
                organisation_id=s.organisation.pk,
                pupil_id=s.item.pupil_id,
                item_id=s.item.pk,
                purpose=purpose or s.basis,
                legal_basis=s.rule,
            )
            for s in specs
        ]
    )
    return len(specs)


@transaction.atomic
def grants_revoke(*, grants: QuerySet[Grant], revoked_by: Any = None, purpose: str = "") -> int:
    """Revoke grants; an organisation left without any grant on an item loses its key wraps (S-4)."""
    now = timezone.now()
    revoked = list(grants.filter(revoked_at__isnull=True).select_related("item"))
    if not revoked:
        return 0
    Grant.objects.filter(pk__in=[g.pk for g in revoked]).update(revoked_at=now, revoked_by=revoked_by)
    items = list({g.item_id: g.item for g in revoked}.values())
    still = set(Grant.objects.filter(item__in=items, revoked_at__isnull=True).values_list("item_id", "organisation_id"))
    unwrap = sorted(
        {
            (g.item_id, g.organisation_id)
            for g in revoked
            if (g.item_id, g.organisation_id) not in still and g.organisation_id != g.item.holder_id
        },
        key=str,
    )
    for first in range(0, len(unwrap), 500):
        condition = Q()
        for item_id, organisation_id in unwrap[first : first + 500]:
            condition |= Q(item_version__item_id=item_id, organisation_id=organisation_id)
        WrappedKey.objects.filter(condition).delete()
    projection_sync(items=items)
    actor_id = revoked_by.pk if revoked_by is not None and getattr(revoked_by, "is_authenticated", False) else None
    audit_append_many(
        events=[
            EventSpec(
                action=AuditAction.REVOKE,
                outcome=AuditOutcome.ALLOWED,
                actor_id=actor_id,
                organisation_id=g.organisation_id,
                pupil_id=g.item.pupil_id,
                item_id=g.item_id,
                purpose=purpose or g.basis,
                legal_basis=g.rule,
            )
            for g in revoked
        ]
    )
    return len(revoked)


def expected_projection(*, items: Iterable[Item]) -> tuple[set[tuple[uuid.UUID, int]], set[tuple[uuid.UUID, int]]]:
    """The guardian rows the ledger implies: (item, group id) and (item, user id)."""
    items = list(items)
    by_id = {i.pk: i for i in items}
    groups: set[tuple[uuid.UUID, int]] = set()
    users: set[tuple[uuid.UUID, int]] = set()
    # Future grants (an enrolment from 1 September, T-CLB-5) are projected already; the access
    # check enforces ``valid_from`` in SQL, so the projection never has to wait for a clock.
    grants = (
        Grant.objects.filter(item_id__in=list(by_id), revoked_at__isnull=True)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=timezone.now()))
        .values_list("item_id", "user_id", "organisation_id", "organisation__kind", "basis")
    )
    wanted: list[tuple[uuid.UUID, tuple[uuid.UUID, str]]] = []
    for item_id, user_id, organisation_id, kind, basis in grants:
        if user_id is not None:
            users.add((item_id, user_id))
            continue
        for role in roles_reading(reader_kind=kind, basis=basis, category=by_id[item_id].category):
            wanted.append((item_id, (organisation_id, role)))
    group_ids = role_group_ids(key for _item_id, key in wanted)
    groups.update((item_id, group_ids[key]) for item_id, key in wanted)
    return groups, users


def actual_projection(*, items: Iterable[Item]) -> tuple[set[tuple[uuid.UUID, int]], set[tuple[uuid.UUID, int]]]:
    ids = [i.pk for i in items]
    perm = view_permission_id()
    groups = set(
        PupilItemGroupObjectPermission.objects.filter(content_object_id__in=ids, permission_id=perm).values_list(
            "content_object_id", "group_id"
        )
    )
    users = set(
        PupilItemUserObjectPermission.objects.filter(content_object_id__in=ids, permission_id=perm).values_list(
            "content_object_id", "user_id"
        )
    )
    return groups, users


def _delete_pairs(model: Any, column: str, pairs: set[tuple[uuid.UUID, int]], perm: int) -> int:
    """Delete the guardian rows of (item, group or user) pairs, a few hundred pairs per statement."""
    removed = 0
    ordered = sorted(pairs, key=str)
    for first in range(0, len(ordered), 500):
        condition = Q()
        for item_id, other_id in ordered[first : first + 500]:
            condition |= Q(content_object_id=item_id, **{column: other_id})
        removed += model.objects.filter(condition, permission_id=perm).delete()[0]
    return removed


def grant_copies_drift(*, items: Iterable[Item]) -> QuerySet[Grant]:
    """Grants of ``items`` whose copies of the item's columns (``Grant.ITEM_COPIES``) differ from the item."""
    same = Q(**{copy: F(f"item__{column}") for copy, column in Grant.ITEM_COPIES.items()})
    return Grant.objects.filter(item__in=[i.pk for i in items]).exclude(same)


def grant_copies_sync(*, items: Iterable[Item]) -> int:
    """Copy the item's columns onto its grants where they differ; returns the number of grants repaired."""
    drifted = list(grant_copies_drift(items=items).values_list("pk", flat=True))
    if drifted:
        source = PupilItem.objects.filter(pk=OuterRef("item_id"))
        Grant.objects.filter(pk__in=drifted).update(
            **{copy: Subquery(source.values(column)[:1]) for copy, column in Grant.ITEM_COPIES.items()}
        )
    return len(drifted)


def projection_sync(*, items: Iterable[Item]) -> tuple[int, int]:
    """Make the guardian rows of ``items`` equal to what the ledger implies; returns (added, removed)."""
    items = list(items)
    perm = view_permission_id()
    want_groups, want_users = expected_projection(items=items)
    have_groups, have_users = actual_projection(items=items)
    removed = _delete_pairs(PupilItemGroupObjectPermission, "group_id", have_groups - want_groups, perm)
    removed += _delete_pairs(PupilItemUserObjectPermission, "user_id", have_users - want_users, perm)
    insert_rows(
        PupilItemGroupObjectPermission,
        ("content_object", "group", "permission"),
        [(i, g, perm) for i, g in want_groups - have_groups],
        ignore_conflicts=True,
    )
    insert_rows(
        PupilItemUserObjectPermission,
        ("content_object", "user", "permission"),
        [(i, u, perm) for i, u in want_users - have_users],
        ignore_conflicts=True,
    )
    return len(want_groups - have_groups) + len(want_users - have_users), removed


def enrolment_grants_sync(*, pupil_id: uuid.UUID, created_by: Any = None) -> None:
    """T-SCH-2 (as IRIS): every verslag of a pupil is visible to each school the pupil is enrolled at.

    An enrolment grants its school the pupil's report items from the enrolment's start (so a
    future enrolment grants nothing before 1 September, T-CLB-5) until its end; an ended or
    removed enrolment loses its grants.
    """
    from exchange.models import Category, Enrolment

    tz = timezone.get_current_timezone()
    enrolments = list(Enrolment.objects.filter(pupil_id=pupil_id).select_related("school"))
    reports = list(PupilItem.objects.filter(pupil_id=pupil_id, category=Category.REPORT, shredded_at__isnull=True))
    existing = Grant.objects.filter(item__in=reports, basis="enrolment", revoked_at__isnull=True)
    wanted: dict[tuple[uuid.UUID, uuid.UUID], Enrolment] = {}
    for enrolment in enrolments:
        for item in reports:
            if item.holder_id != enrolment.school_id:
                wanted[(item.pk, enrolment.pk)] = enrolment
    have = {(g.item_id, g.source_id) for g in existing}
    specs = []
    by_id = {i.pk: i for i in reports}
    for (item_id, enrolment_id), enrolment in wanted.items():
        if (item_id, enrolment_id) in have:
            continue
        start = datetime.combine(enrolment.start, datetime.min.time(), tzinfo=tz)
        until = datetime.combine(enrolment.end, datetime.max.time(), tzinfo=tz) if enrolment.end is not None else None
        specs.append(
            GrantSpec(
                item=by_id[item_id],
                organisation=enrolment.school,
                basis="enrolment",
                rule="T-SCH-2",
                source_type="enrolment",
                source_id=enrolment.pk,
                valid_from=start,
                valid_until=until,
            )
        )
    grants_create(specs=specs, created_by=created_by, purpose="enrolment")
    stale = existing.exclude(source_id__in=[e.pk for e in enrolments])
    grants_revoke(grants=stale, revoked_by=created_by, purpose="enrolment ended")
