"""The one choke point: whether a user may act on a pupil item, and which items a list shows.

Both are compiled from the policy table (``permissions.policy``) into SQL: a user reaches an item
when, for one of their memberships, a policy row for their organisation kind, role and action
matches the item's category, their organisation holds an active grant on one of the row's bases,
the row's extra conditions hold (involvement, no health data, teacher share, shield), and the
django-guardian projection agrees. Every single-item decision is audited (allowed or denied).

The SQL is written here by hand (``_Predicate``) rather than as one ORM ``Exists`` per
membership × rule: Django spent ~80 % of a list call compiling those (docs/performance.md). Every
value is a bound parameter; only table and column names, taken from the models, are in the text.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import BooleanField, Expression, F, IntegerField, Model, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from rest_framework.exceptions import NotFound

from exchange.models import (
    Membership,
    Organisation,
    PupilItem,
    PupilItemGroupObjectPermission,
    PupilItemUserObjectPermission,
)
from exchange.selectors import membership_list_for_user
from permissions.audit import audit_append
from permissions.grants import view_permission_id
from permissions.models import AuditAction, AuditOutcome, Grant, Involvement, Shield, TeachingAssignment
from permissions.policy import READ, WRITE, PolicyRule, rules_for


class Action:
    READ = READ
    WRITE = WRITE
    SHRED = "shred"


# Crypto-shredding (RET-1 destruction, erasure requests) is for the holder's director.
SHRED_ROLES = frozenset({"clb_director", "school_director"})


@dataclass(frozen=True)
class Access:
    item: PupilItem
    organisation: Organisation
    membership: Membership
    rule: str


# --------------------------------------------------------------------------------------------
# SQL compilation of the policy table
# --------------------------------------------------------------------------------------------


def _table(model: type[Model]) -> str:
    return f'"{model._meta.db_table}"'


def _column(model: type[Model], field: str) -> str:
    return f'"{model._meta.get_field(field).column}"'  # type: ignore[union-attr]


class _Sql:
    """Collects bound parameters while a fragment is written; values never enter the SQL text.

    ``p`` returns a numbered placeholder, so fragments may be written in any order; ``finish`` puts
    the parameters in the order their placeholders appear and turns them into ``%s``.
    """

    PLACEHOLDER = re.compile(r"%\(lp(\d+)\)s")

    def __init__(self) -> None:
        self._values: list[Any] = []

    def p(self, value: Any) -> str:
        self._values.append(value)
        return f"%(lp{len(self._values) - 1})s"

    def values(self, values: Iterable[Any]) -> str:
        return ", ".join(self.p(v) for v in sorted(values))

    def finish(self, sql: str) -> tuple[str, list[Any]]:
        params = [self._values[int(n)] for n in self.PLACEHOLDER.findall(sql)]
        return self.PLACEHOLDER.sub("%s", sql), params


class _Predicate(Expression):
    """A hand-written boolean SQL condition on the outer ``PupilItem`` row.

    ``{id}``, ``{pupil_id}``, ``{category}`` and ``{health}`` in ``sql`` stand for the outer row's
    columns; they are resolved like ``F()`` references, so the alias is right even when the
    queryset ends up as a subquery (where Django relabels the outer table). ``{fence}`` ends every
    subquery: with ``fence`` on PostgreSQL it is ``OFFSET 0``, which keeps each EXISTS a small
    parameterised subplan instead of a join for the planner to search (planning went from ~1.2 ms to
    ~0.3 ms); meant for queries over a handful of rows (one pupil, one item).
    """

    COLUMNS = ("id", "pupil_id", "category", "health")

    def __init__(self, sql: str, params: Sequence[Any], *, fence: bool = False, output_field: Any = None) -> None:
        super().__init__(output_field=output_field or BooleanField())
        self.sql = sql
        self.params = tuple(params)
        self.fence = fence
        self.columns: list[Any] = [F(name) for name in self.COLUMNS]

    def get_source_expressions(self) -> list[Any]:
        return self.columns

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        self.columns = list(exprs)

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, list[Any]]:
        names = {name: compiler.compile(column)[0] for name, column in zip(self.COLUMNS, self.columns, strict=True)}
        fence = " OFFSET 0" if self.fence and connection.vendor == "postgresql" else ""
        return "(" + self.sql.format(fence=fence, **names) + ")", [_adapt(value, connection) for value in self.params]


def _adapt(value: Any, connection: Any) -> Any:
    # The bound values as the backend stores them (SQLite keeps UUIDs as hex and datetimes as text).
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    if isinstance(value, uuid.UUID) and not connection.features.has_native_uuid_field:
        return value.hex
    return value


@dataclass(frozen=True)
class _Branch:
    membership: Membership
    rule: PolicyRule


def _active_grant(q: _Sql, *, organisation_id: uuid.UUID, now: datetime) -> str:
    """An active grant of ``organisation_id`` on the outer item (as ``permissions.grants.active_grants``)."""
    g = Grant
    return (
        f"lp_g.{_column(g, 'item')} = {{id}} AND lp_g.{_column(g, 'organisation')} = {q.p(organisation_id)}"
        f" AND lp_g.{_column(g, 'revoked_at')} IS NULL AND lp_g.{_column(g, 'valid_from')} <= {q.p(now)}"
        f" AND (lp_g.{_column(g, 'valid_until')} IS NULL OR lp_g.{_column(g, 'valid_until')} > {q.p(now)})"
    )


def _rule_sql(q: _Sql, *, user_id: int, rule: PolicyRule) -> str:
    """The rule's own conditions on a grant row ``lp_g`` and the outer item (basis, grantee, category, health)."""
    g = Grant
    user_column = f"lp_g.{_column(g, 'user')}"
    parts = [
        f"lp_g.{_column(g, 'basis')} IN ({q.values(rule.bases)})",
        # A user-level grant (teacher share) counts only for the named user, and only for such rules.
        f"{user_column} = {q.p(user_id)}" if rule.user_grant_only else f"{user_column} IS NULL",
        f"{{category}} IN ({q.values(rule.categories)})",
    ]
    if rule.no_health:
        parts.append(f"{{health}} = {q.p(False)}")
    return " AND ".join(parts)


def _extras_sql(
    q: _Sql, *, user_id: int, organisation_id: uuid.UUID, involvement: bool, teaching: bool, shield: bool
) -> list[str]:
    """The conditions outside the grant: involvement (ACC-4), teaching (S-3), the pupil's shield (ACC-4)."""
    parts = []
    if involvement:
        v = Involvement
        parts.append(
            f"EXISTS (SELECT 1 FROM {_table(v)} lp_v WHERE lp_v.{_column(v, 'pupil')} = {{pupil_id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_v.{_column(v, 'clb')} = {q.p(organisation_id)} AND lp_v.{_column(v, 'user')} = {q.p(user_id)}"
            f" AND lp_v.{_column(v, 'ended_at')} IS NULL{{fence}})"
        )
    if teaching:
        t = TeachingAssignment
        parts.append(
            f"EXISTS (SELECT 1 FROM {_table(t)} lp_t WHERE lp_t.{_column(t, 'pupil')} = {{pupil_id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_t.{_column(t, 'school')} = {q.p(organisation_id)}"
            f" AND lp_t.{_column(t, 'teacher')} = {q.p(user_id)} AND lp_t.{_column(t, 'ended_at')} IS NULL{{fence}})"
        )
    if shield:
        s = Shield
        parts.append(
            f"NOT EXISTS (SELECT 1 FROM {_table(s)} lp_s WHERE lp_s.{_column(s, 'item')} = {{id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_s.{_column(s, 'user')} = {q.p(user_id)}{{fence}})"
        )
    return parts


def _grant_exists(
    q: _Sql, *, user_id: int, organisation_id: uuid.UUID, rules: Sequence[PolicyRule], now: datetime
) -> str:
    """ONE grants EXISTS for an organisation: an active grant of it on the outer item satisfying one of ``rules``.

    Rules sharing the same extra conditions are OR'ed first, so each extra subquery appears once per group.
    """
    groups: dict[tuple[bool, bool, bool], list[PolicyRule]] = {}
    for rule in rules:
        groups.setdefault((rule.requires_involvement, rule.requires_teaching, rule.honours_shield), []).append(rule)
    alternatives = []
    for (involvement, teaching, shield), grouped in groups.items():
        core = " OR ".join(f"({_rule_sql(q, user_id=user_id, rule=rule)})" for rule in grouped)
        extras = _extras_sql(
            q,
            user_id=user_id,
            organisation_id=organisation_id,
            involvement=involvement,
            teaching=teaching,
            shield=shield,
        )
        alternatives.append(" AND ".join([f"({core})", *extras]))
    window = _active_grant(q, organisation_id=organisation_id, now=now)
    alternatives_sql = " OR ".join(f"({a})" for a in alternatives)
    return f"EXISTS (SELECT 1 FROM {_table(Grant)} lp_g WHERE {window} AND ({alternatives_sql}){{fence}})"  # noqa: S608 - names from model metadata, values bound


def _guardian_sql(q: _Sql, *, user_id: int) -> str:
    """The enforced projection: a guardian view permission on the outer item for the user or one of their groups."""
    gp, up = PupilItemGroupObjectPermission, PupilItemUserObjectPermission
    user_groups = get_user_model().groups.through
    perm = view_permission_id()
    return (
        f"EXISTS (SELECT 1 FROM {_table(gp)} lp_gp WHERE lp_gp.{_column(gp, 'content_object')} = {{id}}"  # noqa: S608 - names from model metadata, values bound
        f" AND lp_gp.{_column(gp, 'permission')} = {q.p(perm)} AND lp_gp.{_column(gp, 'group')} IN"
        f" (SELECT lp_ug.{_column(user_groups, 'group')} FROM {_table(user_groups)} lp_ug"
        f" WHERE lp_ug.{_column(user_groups, 'user')} = {q.p(user_id)}){{fence}})"
        f" OR EXISTS (SELECT 1 FROM {_table(up)} lp_up WHERE lp_up.{_column(up, 'content_object')} = {{id}}"
        f" AND lp_up.{_column(up, 'permission')} = {q.p(perm)}"
        f" AND lp_up.{_column(up, 'user')} = {q.p(user_id)}{{fence}})"
    )


def _granted_to_any(q: _Sql, *, organisation_ids: Iterable[uuid.UUID], now: datetime) -> str:
    """The outer item has an active grant to one of the organisations: lets PostgreSQL start a list without a
    pupil from the (organisation, item) grant index (measured: 1.4 s -> 39 ms at 1M items)."""
    g = Grant
    return (
        f"{{id}} IN (SELECT lp_g.{_column(g, 'item')} FROM {_table(g)} lp_g"  # noqa: S608 - names from model metadata, values bound
        f" WHERE lp_g.{_column(g, 'organisation')} IN ({q.values(organisation_ids)})"
        f" AND lp_g.{_column(g, 'revoked_at')} IS NULL AND lp_g.{_column(g, 'valid_from')} <= {q.p(now)}"
        f" AND (lp_g.{_column(g, 'valid_until')} IS NULL OR lp_g.{_column(g, 'valid_until')} > {q.p(now)}))"
    )


def item_list_for_user(*, user: Any, pupil_id: uuid.UUID | None = None, action: str = READ) -> QuerySet[PupilItem]:
    """Items the user may act on, as one SQL query (lists never loop in Python).

    One membership query, then one statement: per membership one grants EXISTS whose inner condition
    ORs the membership's policy rows, and (for reads) the guardian projection.
    """
    if not getattr(user, "is_authenticated", False):
        return PupilItem.objects.none()
    # Only the organisation, its kind and the role shape the SQL: read them without model instances.
    memberships = (
        membership_list_for_user(user=user).order_by().values_list("organisation_id", "organisation__kind", "role")
    )
    rules_by_organisation: dict[uuid.UUID, list[PolicyRule]] = {}
    for organisation_id, kind, role in memberships:
        rules = rules_for(reader_kind=kind, role=role, action=action)
        if rules:
            rules_by_organisation.setdefault(organisation_id, []).extend(rules)
    if not rules_by_organisation:
        return PupilItem.objects.none()
    now = timezone.now()
    q = _Sql()
    conditions = [
        " OR ".join(
            f"({_grant_exists(q, user_id=user.pk, organisation_id=organisation_id, rules=rules, now=now)})"
            for organisation_id, rules in rules_by_organisation.items()
        )
    ]
    if pupil_id is None:
        # With a pupil, the pupil index is the better driver; without, the grant index.
        conditions.append(_granted_to_any(q, organisation_ids=rules_by_organisation, now=now))
    if action == READ:
        conditions.append(_guardian_sql(q, user_id=user.pk))
    # One pupil: a handful of rows, planning dominates (fenced subplans); all items: the grant index drives.
    predicate = _Predicate(*q.finish(" AND ".join(f"({c})" for c in conditions)), fence=pupil_id is not None)
    if pupil_id is not None:
        return PupilItem.objects.filter(predicate, shredded_at__isnull=True, pupil_id=pupil_id)
    return PupilItem.objects.filter(predicate, shredded_at__isnull=True)


@dataclass(frozen=True)
class _Decision:
    item: PupilItem
    memberships: list[Membership]
    branch: _Branch | None


def _first_rule_sql(
    q: _Sql, *, user_id: int, organisation_id: uuid.UUID, rules: Sequence[PolicyRule], now: datetime
) -> str:
    """The index of the first of ``rules`` an active grant of the organisation satisfies, or NULL.

    The first rule any grant satisfies is the smallest, over the grants, of the first rule each one
    satisfies: one scalar subquery per membership instead of one EXISTS per rule.
    """
    whens = []
    for n, rule in enumerate(rules):
        extras = _extras_sql(
            q,
            user_id=user_id,
            organisation_id=organisation_id,
            involvement=rule.requires_involvement,
            teaching=rule.requires_teaching,
            shield=rule.honours_shield,
        )
        whens.append(f"WHEN {' AND '.join([_rule_sql(q, user_id=user_id, rule=rule), *extras])} THEN {n}")
    window = _active_grant(q, organisation_id=organisation_id, now=now)
    return f"SELECT MIN(CASE {' '.join(whens)} END) FROM {_table(Grant)} lp_g WHERE {window}{{fence}}"  # noqa: S608 - names from model metadata, values bound


def _decide(*, user: Any, item_id: Any, action: str) -> _Decision | None:
    """The item with the first (membership, rule) that allows ``action``, in one statement; None if missing.

    Memberships are tried in their order, each one's rules in policy order (the rule id is audited).
    Not audited here: ``item_get_for_user`` is the only caller outside the benchmark.
    """
    lookup_action = READ if action == Action.SHRED else action
    memberships = list(membership_list_for_user(user=user))
    now = timezone.now()
    candidates: list[tuple[Membership, list[PolicyRule]]] = []
    annotations: dict[str, Any] = {}
    for membership in memberships:
        rules = rules_for(reader_kind=membership.organisation.kind, role=membership.role, action=lookup_action)
        if not rules:
            continue
        q = _Sql()
        sql = _first_rule_sql(q, user_id=user.pk, organisation_id=membership.organisation_id, rules=rules, now=now)
        annotations[f"lp_rule_{len(candidates)}"] = _Predicate(*q.finish(sql), fence=True, output_field=IntegerField())
        candidates.append((membership, rules))
    if candidates and lookup_action == READ:
        q = _Sql()
        annotations["lp_guardian"] = _Predicate(*q.finish(_guardian_sql(q, user_id=user.pk)), fence=True)
    queryset = PupilItem.objects.filter(pk=item_id, shredded_at__isnull=True).select_related("holder").order_by()
    item = next(iter(queryset.annotate(**annotations)), None)
    if item is None:
        return None
    first_rules = [item.__dict__.pop(f"lp_rule_{n}") for n in range(len(candidates))]
    guardian = bool(item.__dict__.pop("lp_guardian", lookup_action != READ))
    for (membership, rules), first in zip(candidates, first_rules, strict=True):
        if first is None or not guardian:
            continue
        if action == Action.SHRED and (
            membership.organisation_id != item.holder_id or membership.role not in SHRED_ROLES
        ):
            continue
        return _Decision(item=item, memberships=memberships, branch=_Branch(membership, rules[first]))
    return _Decision(item=item, memberships=memberships, branch=None)


def item_get_for_user(*, user: Any, item_id: Any, action: str, purpose: str = "") -> Access:
    """The item and the organisation the user acts for. ``NotFound`` when not allowed or missing.

    Allowed and denied attempts on an existing item are both audited (ACC-5, scenario 9).
    """
    decision = _decide(user=user, item_id=item_id, action=action)
    if decision is None:
        raise NotFound
    item = decision.item
    if decision.branch is not None:
        membership, rule = decision.branch.membership, decision.branch.rule
        audit_append(
            action=AuditAction.WRITE if action != READ else AuditAction.READ,
            outcome=AuditOutcome.ALLOWED,
            actor=user,
            organisation_id=membership.organisation_id,
            role=membership.role,
            pupil_id=item.pupil_id,
            item_id=item.pk,
            purpose=purpose or action,
            legal_basis=rule.rule,
        )
        return Access(item=item, organisation=membership.organisation, membership=membership, rule=rule.rule)
    if action == Action.SHRED:
        shredder = next(
            (m for m in decision.memberships if m.organisation_id == item.holder_id and m.role in SHRED_ROLES),
            None,
        )
        if shredder is not None:
            audit_append(
                action=AuditAction.SHRED,
                outcome=AuditOutcome.ALLOWED,
                actor=user,
                organisation_id=shredder.organisation_id,
                role=shredder.role,
                pupil_id=item.pupil_id,
                item_id=item.pk,
                purpose=purpose or "shred",
                legal_basis="RET-1",
            )
            return Access(item=item, organisation=shredder.organisation, membership=shredder, rule="RET-1")
    first_membership = decision.memberships[0] if decision.memberships else None
    audit_append(
        action=AuditAction.DENIED,
        outcome=AuditOutcome.DENIED,
        actor=user,
        organisation_id=first_membership.organisation_id if first_membership else None,
        role=first_membership.role if first_membership else "",
        pupil_id=item.pupil_id,
        item_id=item.pk,
        purpose=purpose or action,
        legal_basis="",
    )
    raise NotFound


def membership_may_write(*, user: Any, membership: Membership, category: str, pupil_id: uuid.UUID) -> str | None:
    """The rule id under which ``membership`` may create an item of ``category``, or None."""
    for rule in rules_for(reader_kind=membership.organisation.kind, role=membership.role, action=WRITE):
        if category not in rule.categories:
            continue
        if (
            rule.requires_involvement
            and not Involvement.objects.filter(
                pupil_id=pupil_id, clb_id=membership.organisation_id, user=user, ended_at__isnull=True
            ).exists()
        ):
            continue
        return rule.rule
    return None


def organisation_for_new_item(*, user: Any, holder_id: Any | None) -> Membership:
    """The membership under which the user writes a new item (the holder)."""
    memberships = membership_list_for_user(user=user)
    if holder_id is not None:
        memberships = memberships.filter(organisation_id=holder_id)
    found = list(memberships)
    if len({m.organisation_id for m in found}) != 1:
        raise NotFound
    return found[0]
