"""The one choke point: whether a user may act on a pupil item, and which items a list shows.

Both are compiled from the policy table (``permissions.policy``) into SQL: a user reaches an item
when, for one of their memberships, a policy row for their organisation kind, role and action
matches the item's category, their organisation holds an active grant on one of the row's bases,
the row's extra conditions hold (involvement, no health data, teacher share, shield), and the
django-guardian projection agrees. Every single-item decision is audited (allowed or denied).

The SQL is written here by hand (``_Predicate``) rather than as one ORM ``Exists`` per
membership × rule: Django spent ~80 % of a list call compiling those (docs/performance.md). It is
compiled once per action (module-level cache): the user's active memberships and their
organisations are joined inside the statement, so a list or a decision is ONE statement with no
membership query before it, and a role or membership change counts from the next call. Every
value that comes from a request or the database is a bound parameter (per call only the user, the
clock, the pupil, the item and guardian's permission id); in the text are table and column names,
taken from the models, and the policy table's own codes (``_Sql.among``), so that on PostgreSQL the
statement text never changes and is prepared once per connection (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection
from django.db.models import BooleanField, Expression, F, Model, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound

from exchange.models import (
    Membership,
    Organisation,
    PupilItem,
    PupilItemGroupObjectPermission,
    PupilItemUserObjectPermission,
)
from exchange.selectors import membership_list_for_user
from exchange.sqltext import column as _column
from exchange.sqltext import columns as _columns
from exchange.sqltext import model_from_row, rows_to_models
from exchange.sqltext import table as _table
from permissions.audit import (
    SqlField,
    actor_id_of,
    audit_append,
    canonical_at,
    chained_append_sql,
    ensure_head,
    head_lock_statement,
    json_literal,
)
from permissions.grants import view_permission_id
from permissions.models import AuditAction, AuditOutcome, Grant, Involvement, Shield, TeachingAssignment
from permissions.pipeline import ReadPipeline
from permissions.policy import POLICY, READ, WRITE, PolicyRule, rules_for
from permissions.prepared import ServerBoundQuerySet, server_bound

logger = logging.getLogger(__name__)


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


class _Sql:
    """Collects bound parameters while a fragment is written; values never enter the SQL text.

    ``p`` returns a numbered placeholder, so fragments may be written in any order; ``finish`` puts
    the parameters in the order their placeholders appear and turns them into ``%s``.
    """

    PLACEHOLDER = re.compile(r"%\(lp(\d+)\)s")

    def __init__(self, vendor: str = "") -> None:
        self._values: list[Any] = []
        self.vendor = vendor

    def p(self, value: Any) -> str:
        self._values.append(value)
        return f"%(lp{len(self._values) - 1})s"

    CODE = re.compile(r"[a-z0-9_|]+")

    def among(self, expression: str, codes: Iterable[str]) -> str:
        """``expression`` is one of ``codes``: policy-table constants (kinds, roles, bases, categories joined
        by ``|``), written into the text as literals, never values from a request.

        As literals they are parsed once when the statement is prepared; as a bound array (~300 keys) every
        call sent and parsed them again, which cost more than running the statement. Each code must match
        ``CODE`` (no quote can reach the SQL), checked when the statement is compiled.
        """
        ordered = sorted(codes)
        for code in ordered:
            if not self.CODE.fullmatch(code):
                raise ValueError(f"not a policy code: {code!r}")
        literals = ", ".join("'" + code + "'" for code in ordered)  # no braces: the text is str.format()ted later
        if self.vendor == "postgresql":
            return f"{expression} = ANY(ARRAY[{literals}]::text[])"
        return f"{expression} IN ({literals})"

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


class _PerCall:
    """A parameter only known per call (the user, the clock); compiled statements keep its place."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_USER = _PerCall("user")
_NOW = _PerCall("now")
_ITEM = _PerCall("item")
_PERM = _PerCall("perm")  # guardian's view permission id, looked up (and cached) by permissions.grants
# The audit event written with a decision (``_audited_decision_statement``): who, why, and their JSON texts.
_ACTOR = _PerCall("actor")
_ACTOR_JSON = _PerCall("actor_json")
_AT_JSON = _PerCall("at_json")
_PURPOSE = _PerCall("purpose")
_PURPOSE_JSON = _PerCall("purpose_json")


def _bind(params: Sequence[Any], **values: Any) -> list[Any]:
    """The compiled parameters with the per-call ones filled in."""
    return [values[p.name] if isinstance(p, _PerCall) else p for p in params]


# The user's active memberships (``exchange.selectors.membership_list_for_user``) join every statement
# as ``lp_m`` with their organisation ``lp_o``; a policy row applies to the rows of its kind and roles.
def _memberships_sql() -> str:
    m, o = Membership, Organisation
    return (
        f"{_table(m)} lp_m INNER JOIN {_table(o)} lp_o ON lp_o.{_column(o, 'id')} = lp_m.{_column(m, 'organisation')}"
    )


def _user_memberships_sql(q: _Sql) -> str:
    m = Membership
    return f"lp_m.{_column(m, 'user')} = {q.p(_USER)} AND lp_m.{_column(m, 'active')}"


def _reader_sql() -> str:
    """The membership row's organisation kind and role, as one text key."""
    return f"lp_o.{_column(Organisation, 'kind')} || '|' || lp_m.{_column(Membership, 'role')}"


def _active_grant(q: _Sql) -> str:
    """A grant row ``lp_g`` active now (as ``permissions.grants.active_grants``)."""
    g = Grant
    return (
        f"lp_g.{_column(g, 'revoked_at')} IS NULL AND lp_g.{_column(g, 'valid_from')} <= {q.p(_NOW)}"
        f" AND (lp_g.{_column(g, 'valid_until')} IS NULL OR lp_g.{_column(g, 'valid_until')} > {q.p(_NOW)})"
    )


def _key_sql(q: _Sql) -> str:
    """What a policy row looks at, for a membership row, a grant row ``lp_g`` and the outer item, as one text key:
    ``kind|role|basis|category|grantee|health``, grantee ``o`` for an organisation grant, ``u`` for a grant
    naming this user (teacher share), health ``h`` or ``n``.

    A policy row is the set of keys it allows (``_rule_keys``): one ``key IN (...)`` per group of rows instead
    of an OR of per-row conditions, which PostgreSQL spent ~2 ms planning (it searches index paths per arm).
    """
    g = Grant
    user = f"lp_g.{_column(g, 'user')}"
    return (
        f"{_reader_sql()} || '|' || lp_g.{_column(g, 'basis')} || '|' || {{category}}"
        f" || '|' || CASE WHEN {user} IS NULL THEN 'o' WHEN {user} = {q.p(_USER)} THEN 'u' ELSE '-' END"
        " || '|' || CASE WHEN {health} THEN 'h' ELSE 'n' END"
    )


def _rule_keys(rule: PolicyRule) -> set[str]:
    """The keys (``_key_sql``) a policy row allows: its kind, roles, bases and categories; health items only
    when the row does not exclude them (ACC-4); a grant naming the user only for rows that need one (S-3)."""
    grantee = "u" if rule.user_grant_only else "o"
    health = ("n",) if rule.no_health else ("n", "h")
    return {
        "|".join(str(part) for part in (rule.reader_kind, role, basis, category, grantee, h))
        for role in rule.roles
        for basis in rule.bases
        for category in rule.categories
        for h in health
    }


def _extras_sql(q: _Sql, *, involvement: bool, teaching: bool, shield: bool) -> list[str]:
    """The conditions outside the grant: involvement (ACC-4), teaching (S-3), the pupil's shield (ACC-4)."""
    parts = []
    organisation = f"lp_m.{_column(Membership, 'organisation')}"
    if involvement:
        v = Involvement
        parts.append(
            f"EXISTS (SELECT 1 FROM {_table(v)} lp_v WHERE lp_v.{_column(v, 'pupil')} = {{pupil_id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_v.{_column(v, 'clb')} = {organisation} AND lp_v.{_column(v, 'user')} = {q.p(_USER)}"
            f" AND lp_v.{_column(v, 'ended_at')} IS NULL{{fence}})"
        )
    if teaching:
        t = TeachingAssignment
        parts.append(
            f"EXISTS (SELECT 1 FROM {_table(t)} lp_t WHERE lp_t.{_column(t, 'pupil')} = {{pupil_id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_t.{_column(t, 'school')} = {organisation}"
            f" AND lp_t.{_column(t, 'teacher')} = {q.p(_USER)} AND lp_t.{_column(t, 'ended_at')} IS NULL{{fence}})"
        )
    if shield:
        s = Shield
        parts.append(
            f"NOT EXISTS (SELECT 1 FROM {_table(s)} lp_s WHERE lp_s.{_column(s, 'item')} = {{id}}"  # noqa: S608 - names from model metadata, values bound
            f" AND lp_s.{_column(s, 'user')} = {q.p(_USER)}{{fence}})"
        )
    return parts


def _rules(action: str) -> list[tuple[int, PolicyRule]]:
    """The policy rows of an action with their place in ``POLICY`` (the order a decision tries them in)."""
    return [(n, rule) for n, rule in enumerate(POLICY) if rule.action == action]


def _policy_sql(q: _Sql, *, action: str) -> str:
    """A policy row of the action allows the membership row ``lp_m``/``lp_o`` through the grant row ``lp_g``
    on the item ``{id}``/``{pupil_id}``/``{category}``/``{health}``.

    Rows sharing the same extra conditions form one group: one key test and each extra subquery once per group.
    """
    groups: dict[tuple[bool, bool, bool], list[PolicyRule]] = {}
    for _, rule in _rules(action):
        groups.setdefault((rule.requires_involvement, rule.requires_teaching, rule.honours_shield), []).append(rule)
    alternatives = []
    for (involvement, teaching, shield), grouped in groups.items():
        keys: set[str] = set()
        for rule in grouped:
            keys |= _rule_keys(rule)
        extras = _extras_sql(q, involvement=involvement, teaching=teaching, shield=shield)
        alternatives.append(" AND ".join([f"({q.among(_key_sql(q), keys)})", *extras]))
    return " OR ".join(f"({a})" for a in alternatives) or "1 = 0"


def _granted_sql(q: _Sql, *, action: str) -> str:
    """ONE EXISTS for the outer item (a list of one pupil): an active membership of the user, an active grant of
    its organisation on the item, and a policy row of the action for the membership's kind and role that the
    grant and item satisfy."""
    g, m = Grant, Membership
    return (
        f"EXISTS (SELECT 1 FROM {_memberships_sql()} INNER JOIN {_table(g)} lp_g"  # noqa: S608 - names from model metadata, values bound
        f" ON lp_g.{_column(g, 'organisation')} = lp_m.{_column(m, 'organisation')}"
        f" WHERE {_user_memberships_sql(q)} AND lp_g.{_column(g, 'item')} = {{id}} AND {_active_grant(q)}"
        f" AND ({_policy_sql(q, action=action)}){{fence}})"
    )


def _granted_items_sql(q: _Sql, *, action: str) -> str:
    """The same as ``_granted_sql`` as an ``IN`` over the user's organisations' grants and their items (a list
    without a pupil): PostgreSQL starts from the (organisation, item) grant index and checks each granted item
    once, instead of running the EXISTS for every item an organisation holds a grant on."""
    g, m, i = Grant, Membership, PupilItem
    policy = _policy_sql(q, action=action)
    for name in _Predicate.COLUMNS:
        policy = policy.replace(f"{{{name}}}", f"lp_i.{_column(i, name)}")
    return (
        f"{{id}} IN (SELECT lp_g.{_column(g, 'item')} FROM {_memberships_sql()} INNER JOIN {_table(g)} lp_g"  # noqa: S608 - names from model metadata, values bound
        f" ON lp_g.{_column(g, 'organisation')} = lp_m.{_column(m, 'organisation')}"
        f" INNER JOIN {_table(i)} lp_i ON lp_i.{_column(i, 'id')} = lp_g.{_column(g, 'item')}"
        f" WHERE {_user_memberships_sql(q)} AND ({_readers_sql(q, action=action)}) AND {_active_grant(q)}"
        f" AND ({policy}))"
    )


def _readers_sql(q: _Sql, *, action: str) -> str:
    """The membership row has a kind and role that some policy row of the action names."""
    roles_by_kind: dict[str, set[str]] = {}
    for _, rule in _rules(action):
        roles_by_kind.setdefault(rule.reader_kind, set()).update(rule.roles)
    readers = {f"{kind!s}|{role!s}" for kind, roles in roles_by_kind.items() for role in roles}
    return q.among(_reader_sql(), readers) if readers else "1 = 0"


def _guardian_sql(q: _Sql) -> str:
    """The enforced projection: a guardian view permission on the outer item for the user or one of their groups."""
    gp, up = PupilItemGroupObjectPermission, PupilItemUserObjectPermission
    user_groups = get_user_model().groups.through
    perm = _PERM
    return (
        f"EXISTS (SELECT 1 FROM {_table(gp)} lp_gp WHERE lp_gp.{_column(gp, 'content_object')} = {{id}}"  # noqa: S608 - names from model metadata, values bound
        f" AND lp_gp.{_column(gp, 'permission')} = {q.p(perm)} AND lp_gp.{_column(gp, 'group')} IN"
        f" (SELECT lp_ug.{_column(user_groups, 'group')} FROM {_table(user_groups)} lp_ug"
        f" WHERE lp_ug.{_column(user_groups, 'user')} = {q.p(_USER)}){{fence}})"
        f" OR EXISTS (SELECT 1 FROM {_table(up)} lp_up WHERE lp_up.{_column(up, 'content_object')} = {{id}}"
        f" AND lp_up.{_column(up, 'permission')} = {q.p(perm)}"
        f" AND lp_up.{_column(up, 'user')} = {q.p(_USER)}{{fence}})"
    )


@functools.cache
def _list_condition(action: str, *, all_items: bool, vendor: str) -> tuple[str, tuple[Any, ...]]:
    """The list condition of an action, compiled once: SQL text and parameters (user and clock left open)."""
    q = _Sql(vendor)
    # With a pupil, the pupil index is the better driver; without, the grant index.
    conditions = [_granted_items_sql(q, action=action) if all_items else _granted_sql(q, action=action)]
    if action == READ:
        conditions.append(_guardian_sql(q))
    sql, params = q.finish(" AND ".join(f"({c})" for c in conditions))
    return sql, tuple(params)


def item_list_for_user(*, user: Any, pupil_id: uuid.UUID | None = None, action: str = READ) -> QuerySet[PupilItem]:
    """Items the user may act on, as one SQL query (lists never loop in Python).

    One statement, no membership query before it: the policy table is compiled once per action into one
    EXISTS over the user's active memberships and their organisations' grants (``_granted_sql``), and (for
    reads) the guardian projection; only the user and the clock are bound per call.
    """
    if not getattr(user, "is_authenticated", False):
        return PupilItem.objects.none()
    sql, params = _list_condition(action, all_items=pupil_id is None, vendor=connection.vendor)
    # One pupil: a handful of rows, planning dominates (fenced subplans); all items: the grant index drives.
    predicate = _Predicate(
        sql, _bind(params, user=user.pk, now=timezone.now(), perm=view_permission_id()), fence=pupil_id is not None
    )
    if pupil_id is not None:
        # What the endpoints run: prepared once per connection (permissions.prepared).
        return ServerBoundQuerySet(model=PupilItem).filter(predicate, shredded_at__isnull=True, pupil_id=pupil_id)
    # Without a pupil the best plan depends on how many grants the organisations hold: planned per call
    # (a generic plan was 1.3x slower for a CLB worker, docs/performance.md).
    return PupilItem.objects.filter(predicate, shredded_at__isnull=True)


# --------------------------------------------------------------------------------------------
# The feed: everything a user may see, newest item first, one page at a time
# --------------------------------------------------------------------------------------------

_READER = _PerCall("reader")  # the membership's "kind|role"
_ORGANISATION = _PerCall("organisation")
_BEFORE_AT = _PerCall("before_at")
_BEFORE_ID = _PerCall("before_id")
_LIMIT = _PerCall("limit")

# The first page starts after this key (no item is created so late).
FEED_START = (datetime(9999, 12, 31, tzinfo=UTC), uuid.UUID(int=0))


@dataclass(frozen=True)
class FeedPage:
    """One page of ``item_feed_for_user``: the items, newest first, and the key to continue after (None at the end)."""

    items: list[PupilItem]
    next_key: tuple[datetime, uuid.UUID] | None
    # For each item on the page, the membership it is shown through: (organisation id, role), for the audit.
    through: dict[uuid.UUID, tuple[Any, str]] = dataclasses.field(default_factory=dict)


@functools.cache
def _feed_statement(action: str, vendor: str) -> tuple[str, tuple[Any, ...]]:
    """One membership's walk over its organisation's grants, newest item first (grant_org_feed_idx), keeping the
    grants the policy table allows, up to a limit. The item's columns are the grant's copies (``Grant.ITEM_COPIES``),
    so a grant row is tested without reading its item; every subquery is fenced, so that each one stays a small
    subplan run per walked row and the walk stops at the limit instead of the planner joining whole tables."""
    g = Grant
    q = _Sql(vendor)
    copies = {
        "id": f"lp_g.{_column(g, 'item')}",
        "pupil_id": f"lp_g.{_column(g, 'item_pupil_id')}",
        "category": f"lp_g.{_column(g, 'item_category')}",
        "health": f"lp_g.{_column(g, 'item_health')}",
    }
    reader = q.p(_READER)
    organisation = q.p(_ORGANISATION)
    conditions = [
        _policy_sql(q, action=action)
        .replace(_reader_sql(), reader)
        .replace(f"lp_m.{_column(Membership, 'organisation')}", f"lp_g.{_column(g, 'organisation')}")
    ]
    if action == READ:
        conditions.append(_guardian_sql(q))
    created, item = f"lp_g.{_column(g, 'item_created_at')}", f"lp_g.{_column(g, 'item')}"
    before_at, before_id = q.p(_BEFORE_AT), q.p(_BEFORE_ID)
    i = PupilItem
    walk = (
        f"SELECT {item} AS lp_item, {created} AS lp_created FROM {_table(g)} lp_g"  # noqa: S608 - names from model metadata, values bound
        f" WHERE lp_g.{_column(g, 'organisation')} = {organisation}"
        # After the key in the order (created_at DESC, id): the first part is an index condition.
        f" AND {created} <= {before_at} AND ({created} < {before_at} OR {item} > {before_id})"
        f" AND {_active_grant(q)} AND {' AND '.join(f'({c})' for c in conditions)}"
        f" ORDER BY {created} DESC, {item} LIMIT {q.p(_LIMIT)}"
    )
    # The walked rows' items come with them (no second statement); a missing item row is left to Python.
    sql = (
        f"SELECT lp_w.lp_item, lp_w.lp_created, {', '.join(_columns(i, 'lp_i'))} FROM ({walk}) lp_w"  # noqa: S608 - names from model metadata, values bound
        f" LEFT OUTER JOIN {_table(i)} lp_i ON lp_i.{_column(i, 'id')} = lp_w.lp_item"
    )
    fence = " OFFSET 0" if vendor == "postgresql" else ""
    compiled, params = q.finish(sql.format(fence=fence, **copies))
    return compiled, tuple(params)


def item_feed_for_user(
    *, user: Any, after: tuple[datetime, uuid.UUID] | None = None, limit: int = 50, action: str = READ
) -> FeedPage:
    """The items the user may act on, newest first (``created_at`` descending, then ``id``), ``limit`` of them
    after the key ``after`` (keyset pagination: no offset, a page costs the same however deep).

    The same decision as ``item_list_for_user`` (the policy table, the grants ledger and the guardian projection),
    taken per membership by walking its organisation's grants in feed order and stopping once the page is full;
    the pages of the memberships are merged and an item reached by several grants is shown once. One query for
    the memberships, then one walk per membership (one for almost everyone) that also reads its rows' items.
    """
    if not getattr(user, "is_authenticated", False) or limit < 1:
        return FeedPage(items=[], next_key=None)
    memberships = _feed_memberships(user)
    now = timezone.now()
    key = after or FEED_START
    order: list[uuid.UUID] = []
    seen: dict[uuid.UUID, int] = {}  # item -> the membership (index) it is shown through
    columns: dict[uuid.UUID, Sequence[Any]] = {}  # item -> its row, as the walk read it
    to_uuid, to_datetime = PupilItem._meta.pk.to_python, _datetime_converter()
    more = False
    with server_bound(), connection.cursor() as cursor:
        while True:
            walked: list[tuple[datetime, uuid.UUID, int]] = []
            complete = True  # every walk returned all its rows after the key
            walks = feed_walks(user=user, memberships=memberships, now=now, key=key, limit=limit, action=action)
            for n, (sql, values) in enumerate(walks):
                cursor.execute(sql, values)
                rows = cursor.fetchall()
                complete = complete and len(rows) < limit
                for row in rows:
                    item_id = to_uuid(row[0])
                    walked.append((to_datetime(row[1]), item_id, n))
                    columns.setdefault(item_id, row[2:])
            # The walks merged in feed order. The first ``limit`` rows of the merge are the first ``limit`` of all
            # the memberships' grants: each walk is complete up to its own ``limit`` rows.
            walked.sort(key=lambda row: row[1].int)
            walked.sort(key=lambda row: row[0], reverse=True)
            consumed = 0
            for created, item, n in walked[:limit]:
                consumed += 1
                key = (created, item)
                if item not in seen:
                    seen[item] = n
                    order.append(item)
                    if len(order) == limit:
                        break
            unseen_rest = any(item not in seen for _created, item, _n in walked[consumed:])
            if len(order) == limit:
                more = unseen_rest or not complete
                break
            if complete and not unseen_rest:
                break
            # Grants of items already on the page filled the walk: continue after the last one read.
    # Shredding revokes an item's grants; a shredded item is still never shown.
    shredded = PupilItem._meta.concrete_fields.index(PupilItem._meta.get_field("shredded_at"))
    rows = [columns[pk] for pk in order if columns[pk][0] is not None and columns[pk][shredded] is None]
    items = rows_to_models(PupilItem, rows, connection)
    through = {
        item.pk: (memberships[seen[item.pk]][0], memberships[seen[item.pk]][1].partition("|")[2]) for item in items
    }
    return FeedPage(items=items, next_key=key if more else None, through=through)


def feed_walks(
    *,
    user: Any,
    memberships: list[tuple[Any, str]] | None = None,
    now: datetime | None = None,
    key: tuple[datetime, uuid.UUID] = FEED_START,
    limit: int = 50,
    action: str = READ,
) -> list[tuple[str, list[Any]]]:
    """The walk statement of each membership with its bound values (``item_feed_for_user``; EXPLAIN in bench/)."""
    sql, params = _feed_statement(action, connection.vendor)
    values = {"user": user.pk, "now": now or timezone.now(), "perm": view_permission_id(), "limit": limit}
    return [
        (
            sql,
            [
                _adapt(value, connection)
                for value in _bind(
                    params, reader=reader, organisation=organisation, before_at=key[0], before_id=key[1], **values
                )
            ],
        )
        for organisation, reader in (_feed_memberships(user) if memberships is None else memberships)
    ]


def _feed_memberships(user: Any) -> list[tuple[Any, str]]:
    """The user's active memberships as (organisation id, "kind|role"), as ``membership_list_for_user``."""
    q = _Sql(connection.vendor)
    sql, params = q.finish(
        f"SELECT lp_m.{_column(Membership, 'organisation')}, {_reader_sql()} FROM {_memberships_sql()}"  # noqa: S608 - names from model metadata, values bound
        f" WHERE {_user_memberships_sql(q)}"
        # As membership_list_for_user (organisation kind and name, role), so the first membership shows an item.
        f" ORDER BY lp_o.{_column(Organisation, 'kind')}, lp_o.{_column(Organisation, 'name')},"
        f" lp_m.{_column(Membership, 'role')}, lp_m.{_column(Membership, 'id')}"
    )
    with server_bound(), connection.cursor() as cursor:
        cursor.execute(sql, _bind(params, user=user.pk))
        return [(Organisation._meta.pk.to_python(org), reader) for org, reader in cursor.fetchall()]


def _datetime_converter() -> Any:
    """Reads a walked ``item_created_at`` as the ORM does (SQLite returns text; PostgreSQL a datetime)."""
    column = Grant._meta.get_field("item_created_at").get_col(Grant._meta.db_table)
    converters = [*connection.ops.get_db_converters(column), *column.get_db_converters(connection)]

    def convert(value: Any) -> datetime:
        for converter in converters:
            value = converter(value, column, connection)
        converted: datetime = value
        return converted

    return convert


def memberships_showing(*, memberships: Sequence[Membership], items: Sequence[PupilItem]) -> list[Membership]:
    """Of ``memberships`` (in their order), the first of each organisation holding an active grant on one of
    ``items``: who a list of those items was shown to, for the audit (ACC-1). One query."""
    now = timezone.now()
    granted = set(
        Grant.objects.filter(
            Q(valid_until__isnull=True) | Q(valid_until__gt=now),
            item__in=[i.pk for i in items],
            organisation__in={m.organisation_id for m in memberships},
            revoked_at__isnull=True,
            valid_from__lte=now,
        ).values_list("organisation_id", flat=True)
    )
    shown: dict[Any, Membership] = {}
    for membership in memberships:
        if membership.organisation_id in granted:
            shown.setdefault(membership.organisation_id, membership)
    return list(shown.values())


@dataclass(frozen=True)
class _Decision:
    item: PupilItem
    memberships: list[Membership]
    branch: _Branch | None


def _first_rule_sql(q: _Sql, *, action: str) -> str:
    """The place in ``POLICY`` of the first row of ``action`` that an active grant of the membership row's
    organisation satisfies for its kind and role, or NULL.

    The first row any grant satisfies is the smallest, over the grants, of the first row each one
    satisfies: one scalar subquery per membership row.
    """
    whens = []
    for n, rule in _rules(action):
        extras = _extras_sql(
            q, involvement=rule.requires_involvement, teaching=rule.requires_teaching, shield=rule.honours_shield
        )
        whens.append(f"WHEN {' AND '.join([q.among(_key_sql(q), _rule_keys(rule)), *extras])} THEN {n}")
    if not whens:
        return "NULL"
    g, m = Grant, Membership
    return (
        f"(SELECT MIN(CASE {' '.join(whens)} END) FROM {_table(g)} lp_g"  # noqa: S608 - names from model metadata, values bound
        f" WHERE lp_g.{_column(g, 'item')} = {{id}}"
        f" AND lp_g.{_column(g, 'organisation')} = lp_m.{_column(m, 'organisation')}"
        f" AND {_active_grant(q)}{{fence}})"
    )


def _decision_parts(q: _Sql, *, action: str) -> tuple[list[str], str, str]:
    """The decision's select list, its ``FROM ... WHERE`` and its ``ORDER BY`` (``{id}``... and ``{fence}`` open).

    The rows: the item (with its holder) and one row per active membership of the user, in the order of
    ``membership_list_for_user``, each with the first policy row that allows ``action`` through it; and
    whether the guardian projection agrees."""
    i, o, m = PupilItem, Organisation, Membership
    guardian = f"CASE WHEN {_guardian_sql(q)} THEN 1 ELSE 0 END" if action == READ else "1"
    select = [
        *_columns(i, "lp_i"),
        *_columns(o, "lp_h"),
        *_columns(m, "lp_m"),
        *_columns(o, "lp_o"),
        _first_rule_sql(q, action=action),
        guardian,
    ]
    body = (
        f" FROM {_table(i)} lp_i INNER JOIN {_table(o)} lp_h ON lp_h.{_column(o, 'id')} = lp_i.{_column(i, 'holder')}"
        f" LEFT OUTER JOIN {_table(m)} lp_m ON {_user_memberships_sql(q)}"
        f" LEFT OUTER JOIN {_table(o)} lp_o ON lp_o.{_column(o, 'id')} = lp_m.{_column(m, 'organisation')}"
        f" WHERE lp_i.{_column(i, 'id')} = {q.p(_ITEM)} AND lp_i.{_column(i, 'shredded_at')} IS NULL"
    )
    # As Membership.Meta.ordering (organisation, i.e. its kind and name, then role); id breaks ties.
    order = f"lp_o.{_column(o, 'kind')}, lp_o.{_column(o, 'name')}, lp_m.{_column(m, 'role')}, lp_m.{_column(m, 'id')}"
    return select, body, order


def _item_columns(sql: str) -> str:
    """``sql`` with the outer item's ``{id}``, ``{pupil_id}``... resolved to ``lp_i``; ``{fence}`` left open."""
    names = {name: f'lp_i."{PupilItem._meta.get_field(name).column}"' for name in _Predicate.COLUMNS}  # type: ignore[union-attr]
    return sql.replace("{fence}", "\0").format(**names).replace("\0", "{fence}")


@functools.cache
def _decision_statement(action: str, vendor: str) -> tuple[str, tuple[Any, ...]]:
    """The decision (``_decision_parts``) as one statement, compiled once per action; ``{fence}`` is left open."""
    q = _Sql(vendor)
    select, body, order = _decision_parts(q, action=action)
    compiled, params = q.finish(_item_columns(f"SELECT {', '.join(select)}{body} ORDER BY {order}"))
    return compiled, tuple(params)


def _widths() -> list[int]:
    """Where the item, its holder, the membership and its organisation start in a decision row."""
    widths = [len(model._meta.concrete_fields) for model in (PupilItem, Organisation, Membership, Organisation)]
    return [sum(widths[:n]) for n in range(len(widths) + 1)]


def _position(model: type[Model], start: int, field: str) -> int:
    return start + [f.name for f in model._meta.concrete_fields].index(field)


def _code(value: str) -> str:
    """A policy or audit code as an SQL string literal (checked: no quote can reach the SQL)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", value):
        raise ValueError(f"not a code: {value!r}")
    return "'" + value + "'"


@dataclass(frozen=True)
class _EventSql:
    """The audit event of a decision, in SQL (``_event_sql``)."""

    ctes: str  # lp_d (the decision's rows and their order), lp_pick (the allowing row), lp_ev (the event's row)
    columns: list[str]  # lp_d's columns, in ``_decision_statement``'s order
    fields: dict[str, SqlField]  # the event's fields, read from lp_ev, for ``chained_append_sql``


def _event_sql(q: _Sql, *, action: str) -> _EventSql:
    """The decision's rows (``_decision_parts``) as the CTE ``lp_d``; ``lp_pick``, the first row, in membership
    order, whose first rule is set and whose guardian projection agrees (what ``_decision_from_rows`` picks);
    ``lp_ev``, the event: allowed through the picked membership and rule, else denied and named after the
    first membership, as ``item_get_for_user`` appends it elsewhere. A missing or shredded item has no rows and
    no event."""
    i, m = PupilItem, Membership
    select, body, order = _decision_parts(q, action=action)
    starts = _widths()
    first, guardian = len(select) - 2, len(select) - 1
    member_id = _position(m, starts[2], "id")
    organisation = _position(m, starts[2], "organisation")
    role = _position(m, starts[2], "role")
    pupil = _position(i, starts[0], "pupil")
    item = _position(i, starts[0], "id")
    columns = [f"lp_c{n}" for n in range(len(select))]
    decision = _item_columns(
        f"lp_d ({', '.join(columns)}, lp_rn) AS (SELECT {', '.join(select)},"
        f" ROW_NUMBER() OVER (ORDER BY {order}){body})"
    )
    ctes = (
        f"{decision},"  # noqa: S608 - names from model metadata, codes checked, values bound
        f" lp_pick AS (SELECT lp_rn, lp_c{first} AS lp_first FROM lp_d WHERE lp_c{member_id} IS NOT NULL"
        f" AND lp_c{first} IS NOT NULL AND lp_c{guardian} = 1 ORDER BY lp_rn LIMIT 1),"
        f" lp_ev AS (SELECT lp_p.lp_rn IS NOT NULL AS lp_allowed, lp_p.lp_first, lp_f.lp_c{item} AS lp_item,"
        f" lp_f.lp_c{organisation} AS lp_organisation, COALESCE(lp_f.lp_c{role}, '') AS lp_role,"
        f" lp_f.lp_c{pupil} AS lp_pupil FROM lp_d lp_f LEFT OUTER JOIN lp_pick lp_p ON TRUE"
        f" WHERE lp_f.lp_rn = COALESCE(lp_p.lp_rn, 1))"
    )
    return _EventSql(ctes=ctes, columns=columns, fields=_event_fields_sql(q, action=action))


def _event_fields_sql(q: _Sql, *, action: str) -> dict[str, SqlField]:
    """The event's fields as SQL over ``lp_ev``'s columns and the call's actor, time and purpose."""
    allowed_action = AuditAction.READ if action == READ else AuditAction.WRITE
    rules = " ".join(f"WHEN {n} THEN {{}}" for n, _rule in _rules(action))

    def by_rule(literal: Any) -> str:
        if not rules:
            return literal("")
        return (
            f"CASE lp_first {rules.format(*(literal(rule.rule) for _n, rule in _rules(action)))} ELSE {literal('')} END"
        )

    def by_outcome(allowed: str, denied: str, literal: Any) -> str:
        return f"CASE WHEN lp_allowed THEN {literal(allowed)} ELSE {literal(denied)} END"

    def quoted(expression: str) -> str:
        return f"""COALESCE('"' || {expression}::text || '"', 'null')"""

    return {
        "action": SqlField(
            by_outcome(allowed_action, AuditAction.DENIED, _code),
            by_outcome(allowed_action, AuditAction.DENIED, json_literal),
        ),
        "outcome": SqlField(
            by_outcome(AuditOutcome.ALLOWED, AuditOutcome.DENIED, _code),
            by_outcome(AuditOutcome.ALLOWED, AuditOutcome.DENIED, json_literal),
        ),
        "legal_basis": SqlField(by_rule(_code), by_rule(json_literal)),
        "actor": SqlField(f"{q.p(_ACTOR)}::integer", f"{q.p(_ACTOR_JSON)}::text"),
        "at": SqlField(f"{q.p(_NOW)}::timestamptz", f"{q.p(_AT_JSON)}::text"),
        "item": SqlField("lp_item", quoted("lp_item")),
        "organisation": SqlField("lp_organisation", quoted("lp_organisation")),
        "pupil": SqlField("lp_pupil", quoted("lp_pupil")),
        "purpose": SqlField(f"{q.p(_PURPOSE)}::text", f"{q.p(_PURPOSE_JSON)}::text"),
        # Membership roles are codes (a check constraint keeps them to Role's values): no escaping needed.
        "role": SqlField("lp_role", """'"' || lp_role || '"'"""),
    }


@functools.cache
def _audited_decision_statement(action: str, vendor: str) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the decision and its audit event in ONE statement (``item_get_for_user`` for read and write).

    ``_event_sql``'s CTEs, then ``permissions.audit`` appends ``lp_ev`` to the chain in the same statement;
    the statement returns the decision's rows, each ending with the new event's sequence (NULL when the chain
    has no head yet).

    One statement instead of two saves the append's round trip and its Python work; the commit (one WAL
    flush) is what an audited decision costs over an unaudited one (docs/performance.md).
    """
    q = _Sql(vendor)
    event = _event_sql(q, action=action)
    sql = (
        f"WITH {event.ctes}, {chained_append_sql(source='lp_ev', fields=event.fields)}"  # noqa: S608 - as _event_sql
        f" SELECT {', '.join(event.columns)}, (SELECT sequence FROM lp_moved) FROM lp_d ORDER BY lp_rn"
    )
    compiled, params = q.finish(sql)
    return compiled, tuple(params)


# The transaction-local setting in which the read's decision leaves its event for the read's append.
_READ_EVENT = "lp.read_event"
_LP_EV_TYPES = {
    "lp_allowed": "boolean",
    "lp_first": "integer",
    "lp_item": "uuid",
    "lp_organisation": "uuid",
    "lp_role": "text",
    "lp_pupil": "uuid",
}


@functools.cache
def _read_decision_statement(vendor: str) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the read's decision (``item_reading``): ``_decision_statement``'s rows, each with one more
    column, and, as it runs, its audit event (``_event_sql``'s ``lp_ev``) left in the transaction-local
    setting ``lp.read_event`` for ``_read_append_statement``, the next statement but one in the same
    transaction. The event is worked out by the statement that decides, on its snapshot: the event says what
    the rows Python decides from say. No rows (a missing item): nothing is left, and nothing is appended."""
    q = _Sql(vendor)
    event = _event_sql(q, action=READ)
    sql = (
        f"WITH {event.ctes} SELECT {', '.join(event.columns)},"  # noqa: S608 - as _event_sql
        f" (SELECT set_config('{_READ_EVENT}', row_to_json(lp_ev)::text, true) FROM lp_ev)"
        " FROM lp_d ORDER BY lp_rn"
    )
    compiled, params = q.finish(sql)
    return compiled, tuple(params)


@functools.cache
def _read_append_statement(vendor: str) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the append of the event ``_read_decision_statement`` left in ``lp.read_event`` (none if it
    left none, or if what is there is not about the item read), with the read's actor, time and purpose;
    returns the new event's sequence (no row: no event, or no head yet)."""
    q = _Sql(vendor)
    event_fields = _event_fields_sql(q, action=READ)
    columns = ", ".join(f"(lp_e ->> '{name}')::{kind} AS {name}" for name, kind in _LP_EV_TYPES.items())
    sql = (
        f"WITH lp_g AS (SELECT NULLIF(current_setting('{_READ_EVENT}', true), '')::jsonb AS lp_e),"  # noqa: S608 - constants, codes checked
        f" lp_ev AS (SELECT {columns} FROM lp_g WHERE (lp_e ->> 'lp_item')::uuid = {q.p(_ITEM)}),"
        f" {chained_append_sql(source='lp_ev', fields=event_fields)}"
        " SELECT sequence FROM lp_moved"
    )
    compiled, params = q.finish(sql)
    return compiled, tuple(params)


def _decide(*, user: Any, item_id: Any, action: str) -> _Decision | None:
    """The item with the first (membership, rule) that allows ``action``, in one statement; None if missing.

    Memberships are tried in their order, each one's rules in policy order (the rule id is audited).
    Not audited here: ``item_get_for_user`` audits what this decides (or runs ``_decide_audited`` instead).
    """
    lookup_action = READ if action == Action.SHRED else action
    sql, params = _decision_statement(lookup_action, connection.vendor)
    rows = _run_decision(sql, params, user=user, item_id=item_id)
    return _decision_from_rows(rows, action=action) if rows else None


def _decide_audited(*, user: Any, item_id: Any, action: str, purpose: str) -> _Decision | None:
    """PostgreSQL, read and write: ``_decide`` and the audit event ``_audit_decision`` would append, in one
    statement (``_audited_decision_statement``). None if missing (no event, as ``item_get_for_user``)."""
    sql, bound = _audited_bound(user=user, item_id=item_id, action=action, purpose=purpose)
    with server_bound(), connection.cursor() as cursor:
        cursor.execute(sql, bound)
        rows = cursor.fetchall()
    if not rows:
        return None
    decision, headless = _audited_from_rows(rows, action=action)
    if headless:
        _append_first_event(decision, user=user, action=action, purpose=purpose)
    return decision


def _audited_bound(*, user: Any, item_id: Any, action: str, purpose: str) -> tuple[str, list[Any]]:
    """The audited decision's statement and its bound values."""
    sql, params = _audited_decision_statement(action, connection.vendor)
    values = _event_values(user=user, now=timezone.now(), purpose=purpose)
    return _bound(sql, params, user=user, item_id=item_id, **values)


def _event_values(*, user: Any, now: datetime, purpose: str) -> dict[str, Any]:
    """The per-call values of an event written in SQL (``_event_fields_sql``): who, when, why, and their JSON
    texts as the canonical document writes them."""
    actor = actor_id_of(user)
    return {
        "now": now,
        "actor": actor,
        "actor_json": json.dumps(actor),
        "at_json": json.dumps(canonical_at(now)),
        "purpose": purpose,
        "purpose_json": json.dumps(purpose),
    }


def _audited_from_rows(rows: Sequence[Sequence[Any]], *, action: str) -> tuple[_Decision, bool]:
    """The decision in the audited statement's rows, and whether its event is still to append: each row ends
    with the new event's sequence, NULL when the chain had no head yet (the first event ever)."""
    return _decision_from_rows([row[:-1] for row in rows], action=action), rows[0][-1] is None


def _append_first_event(decision: _Decision, *, user: Any, action: str, purpose: str) -> None:
    ensure_head()
    _audit_decision(decision, user=user, action=action, purpose=purpose)


def _bound(sql: str, params: Sequence[Any], *, user: Any, item_id: Any, **values: Any) -> tuple[str, list[Any]]:
    """A decision statement ready to run: its ``{fence}`` resolved and its parameters bound and adapted."""
    fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
    values.setdefault("now", timezone.now())
    bound = [
        _adapt(value, connection)
        for value in _bind(
            params,
            user=getattr(user, "pk", None),
            item=PupilItem._meta.pk.to_python(item_id),
            perm=view_permission_id(),
            **values,
        )
    ]
    return sql.replace("{fence}", fence), bound


def _run_decision(sql: str, params: Sequence[Any], *, user: Any, item_id: Any, **values: Any) -> list[Any]:
    statement, bound = _bound(sql, params, user=user, item_id=item_id, **values)
    with server_bound(), connection.cursor() as cursor:
        cursor.execute(statement, bound)
        return cursor.fetchall()


def _decision_from_rows(rows: Sequence[Sequence[Any]], *, action: str) -> _Decision:
    starts = _widths()
    item = model_from_row(PupilItem, rows[0][starts[0] : starts[1]], connection)
    PupilItem.holder.field.set_cached_value(
        item, model_from_row(Organisation, rows[0][starts[1] : starts[2]], connection)
    )
    guardian = bool(rows[0][-1])
    memberships: list[tuple[Membership, int | None]] = []
    for row in rows:
        if row[starts[2]] is None:  # no active membership: the one row of the outer join
            continue
        membership = model_from_row(Membership, row[starts[2] : starts[3]], connection)
        Membership.organisation.field.set_cached_value(
            membership, model_from_row(Organisation, row[starts[3] : starts[4]], connection)
        )
        memberships.append((membership, row[-2]))
    for membership, first in memberships:
        if first is None or not guardian:
            continue
        if action == Action.SHRED and (
            membership.organisation_id != item.holder_id or membership.role not in SHRED_ROLES
        ):
            continue
        return _Decision(item=item, memberships=[m for m, _ in memberships], branch=_Branch(membership, POLICY[first]))
    return _Decision(item=item, memberships=[m for m, _ in memberships], branch=None)


def _shredder(decision: _Decision) -> Membership | None:
    return next(
        (m for m in decision.memberships if m.organisation_id == decision.item.holder_id and m.role in SHRED_ROLES),
        None,
    )


def _audit_decision(decision: _Decision, *, user: Any, action: str, purpose: str) -> None:
    """Append the event of a decision (``_decision_event``)."""
    audit_append(**_decision_event(decision, user=user, action=action, purpose=purpose))


def _decision_event(decision: _Decision, *, user: Any, action: str, purpose: str) -> dict[str, Any]:
    """The event of a decision, as ``audit_append``'s keywords: allowed through its branch (or, to shred, the
    holder's director), else denied and named after the user's first membership.
    ``_audited_decision_statement`` writes the same in SQL."""
    shredder = _shredder(decision) if action == Action.SHRED and decision.branch is None else None
    named: Membership | None
    if decision.branch is not None:
        kind = AuditAction.WRITE if action != READ else AuditAction.READ
        outcome, named, rule = AuditOutcome.ALLOWED, decision.branch.membership, decision.branch.rule.rule
    elif shredder is not None:
        kind, outcome, named, rule = AuditAction.SHRED, AuditOutcome.ALLOWED, shredder, "RET-1"
    else:
        named = decision.memberships[0] if decision.memberships else None
        kind, outcome, rule = AuditAction.DENIED, AuditOutcome.DENIED, ""
    return {
        "action": kind,
        "outcome": outcome,
        "actor": user,
        "organisation_id": named.organisation_id if named else None,
        "role": named.role if named else "",
        "pupil_id": decision.item.pupil_id,
        "item_id": decision.item.pk,
        "purpose": purpose,
        "legal_basis": rule,
    }


def item_get_for_user(*, user: Any, item_id: Any, action: str, purpose: str = "") -> Access:
    """The item and the organisation the user acts for. ``NotFound`` when not allowed or missing.

    Allowed and denied attempts on an existing item are both audited (ACC-5, scenario 9): on PostgreSQL a
    read or a write is decided and audited in one statement (``_decide_audited``), elsewhere (and to shred)
    the decision is followed by its append.
    """
    purpose = purpose or action
    if connection.vendor == "postgresql" and action != Action.SHRED:
        decision = _decide_audited(user=user, item_id=item_id, action=action, purpose=purpose)
        if decision is None:
            raise NotFound
    else:
        decision = _decide(user=user, item_id=item_id, action=action)
        if decision is None:
            raise NotFound
        _audit_decision(decision, user=user, action=action, purpose=purpose)
    access = _access_of(decision, action=action)
    if access is None:
        raise NotFound
    return access


def _access_of(decision: _Decision, *, action: str) -> Access | None:
    if decision.branch is not None:
        membership = decision.branch.membership
        return Access(
            item=decision.item,
            organisation=membership.organisation,
            membership=membership,
            rule=decision.branch.rule.rule,
        )
    shredder = _shredder(decision) if action == Action.SHRED else None
    if shredder is not None:
        return Access(item=decision.item, organisation=shredder.organisation, membership=shredder, rule="RET-1")
    return None


class AuditNotRecorded(APIException):
    """A read's audit event did not commit: nothing of the read is returned."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "audit_not_recorded"
    default_detail = "This read could not be recorded in the audit trail, so nothing is shown. Try again later."


def _not_recorded(error: DatabaseError) -> AuditNotRecorded:
    """A read's event that failed, logged without the database's message (it may quote values)."""
    cause = error.__cause__
    logger.error(
        "a read's audit event did not commit: %s (SQLSTATE %s)",
        type(cause or error).__name__,
        getattr(cause, "sqlstate", None),
    )
    return AuditNotRecorded()


def _confirm(pipeline: ReadPipeline) -> None:
    """Wait for a read's commit; ``AuditNotRecorded`` when it failed."""
    try:
        pipeline.finish()
    except DatabaseError as error:
        raise _not_recorded(error) from None


class StatementDuringRead(RuntimeError):
    """A statement was sent while a read's audit event was committing (``item_reading``)."""


def _refuse_statements(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    raise StatementDuringRead(
        "No statement may run inside item_reading: the read's audit event is still committing on this"
        " connection. Use the rows of its follow-up statement, and query after the block."
    )


@dataclass(frozen=True)
class Reading:
    """An allowed read of one item: who reads it as what, and the rows of the statement that followed the
    decision (``item_reading``)."""

    access: Access
    rows: list[Any]


def _read_audited() -> bool:
    """Whether the read of one item appends its event: always. (The access benchmark swaps in False to
    measure what the audit costs; nothing else does.)"""
    return True


@contextmanager
def item_reading(*, user: Any, item_id: Any, follow: tuple[str, Sequence[Any]], purpose: str = "") -> Iterator[Reading]:
    """The read of one item: decided and audited as ``item_get_for_user(action="read")`` decides and audits it,
    followed by ``follow``, one statement that needs nothing from the decision (the read's key fetch,
    ``exchange.files.item_read``). ``NotFound`` when not allowed or missing, raised once the denial is recorded.

    On PostgreSQL, outside a transaction, the read is one libpq pipeline (``permissions.pipeline``) and its
    implicit transaction. The lock of the audit chain's head, the decision (``_read_decision_statement``,
    which also works out the read's audit event and leaves it in the transaction) and ``follow`` go out with
    a flush request, and their answers come back in one round trip. Right behind them go the event's append
    (``_read_append_statement``) and the pipeline's ``Sync``, which commits it: the server inserts the event
    and flushes the WAL while Python decides, decrypts and serializes, and the answer is waited for when
    the block ends. What the block computes must not leave before the ``with`` statement has ended: an event
    that could not commit raises there (``AuditNotRecorded``, a 503), so nothing of the read is returned
    unrecorded. The block runs no statement (the connection is still in the pipeline): one raises
    ``StatementDuringRead``. The event is the decision statement's own (same snapshot, same pick as
    ``_decision_from_rows``), so it records what the rows Python decides from say.
    The head is locked before the decision, so a read that waited for a withdrawal holding the head (S-4)
    decides, and fetches the key, only after it has committed: a deleted wrap is seen, nothing decrypted.
    Inside a transaction, and elsewhere (SQLite), ``_reading_in_turn``.
    """
    purpose = purpose or Action.READ
    if connection.vendor != "postgresql" or connection.in_atomic_block or not connection.get_autocommit():
        yield _reading_in_turn(user=user, item_id=item_id, follow=follow, purpose=purpose)
        return
    audited = _read_audited()
    # Everything that may query (guardian's permission id, on first use) is bound before the pipeline opens.
    now = timezone.now()
    statement = _read_decision_statement(connection.vendor) if audited else _decision_statement(READ, connection.vendor)
    decision_statement = _bound(*statement, user=user, item_id=item_id, now=now)
    pipeline = ReadPipeline()
    try:
        if audited:

            def append() -> list[tuple[str, list[Any]]]:  # built while the server runs the first three
                sql, params = _read_append_statement(connection.vendor)
                values = _bind(
                    params,
                    item=PupilItem._meta.pk.to_python(item_id),
                    **_event_values(user=user, now=now, purpose=purpose),
                )
                return [(sql, [_adapt(value, connection) for value in values])]

            head, decided, followed = pipeline.fetch(
                [(head_lock_statement(), ()), decision_statement, follow], then=append
            )
            decided = [row[:-1] for row in decided]  # the last column is the event's setting
            headless = not head
        else:
            # Without audit (the benchmark's baseline) nothing is written: decision, key and Sync in one round trip.
            (decided, followed), headless = pipeline.fetch([decision_statement, follow], commit=True), False
        decision: _Decision | None = None
        access: Access | None = None
        if decided:
            decision = _decision_from_rows(decided, action=READ)
            access = _access_of(decision, action=READ)
    except BaseException as exc:
        pipeline.close(exc)
        raise
    if access is None or headless:
        _confirm(pipeline)
        if headless and decision is not None:
            _append_first_event(decision, user=user, action=READ, purpose=purpose)
        if access is None:
            raise NotFound
        yield Reading(access=access, rows=followed)
        return
    try:
        with connection.execute_wrapper(_refuse_statements):
            yield Reading(access=access, rows=followed)
    except BaseException as exc:
        pipeline.close(exc)
        raise
    _confirm(pipeline)


def _reading_in_turn(*, user: Any, item_id: Any, follow: tuple[str, Sequence[Any]], purpose: str) -> Reading:
    """``item_reading`` without a pipeline (SQLite, or inside a transaction): the audited decision, then
    ``follow``. On PostgreSQL the chain's head is locked first (S-4, as in the pipeline); it and the event stay
    in the caller's transaction and commit with it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(head_lock_statement())
    access = item_get_for_user(user=user, item_id=item_id, action=READ, purpose=purpose)
    with connection.cursor() as cursor:
        cursor.execute(*follow)
        return Reading(access=access, rows=cursor.fetchall())


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
