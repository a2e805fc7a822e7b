"""The need-to-know policy of DOMAIN.md as one declarative table.

A row says: staff with one of ``roles`` in an organisation of ``reader_kind`` may do ``action`` on
items of ``categories`` when their organisation holds a grant on ``basis`` — under the extra
conditions of the row (involvement, no health data, a teacher share, the pupil's shield). The
access check (``permissions.access``), the guardian projection and the authorization-matrix
test are all generated from this table; nothing else decides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from exchange.models import Category, OrganisationKind, Role
from permissions.models import Basis

READ = "read"
WRITE = "write"

CLB_CATEGORIES = frozenset(
    {
        Category.IDENTIFICATION,
        Category.VACCINATION,
        Category.MEDICAL,
        Category.ATTENDANCE,
        Category.REPORT,
        Category.GUIDANCE,
        Category.NAFT_PROGRESS,
    }
)
CLB_NON_HEALTH = CLB_CATEGORIES - {Category.VACCINATION, Category.MEDICAL}
SCHOOL_CARE = frozenset(
    {
        Category.IDENTIFICATION,
        Category.ATTENDANCE,
        Category.REPORT,
        Category.CAREER,
        Category.SCHOOL_HEALTH,
        Category.DISCIPLINE,
    }
)
CLB_BASES = frozenset({Basis.HOLDER, Basis.HANDOVER, Basis.MANDATORY_TRANSFER, Basis.CONCERN})


@dataclass(frozen=True)
class PolicyRule:
    rule: str
    reader_kind: str
    roles: frozenset[str]
    action: str
    bases: frozenset[str]
    categories: frozenset[str]
    no_health: bool = False  # ACC-4: health data only for CLB medical staff
    requires_involvement: bool = False  # ACC-4: only staff involved in the pupil's guidance
    honours_shield: bool = False  # ACC-4: the capable pupil can shield items from involved staff
    user_grant_only: bool = False  # the grant must name the user (teacher share)
    requires_teaching: bool = False  # the user teaches the pupil


def _r(*roles: str) -> frozenset[str]:
    return frozenset(roles)


POLICY: tuple[PolicyRule, ...] = (
    # --- School ----------------------------------------------------------------------------
    # The care team sees the school's own care and career data and every verslag of an enrolled pupil.
    PolicyRule("T-SCH-1", OrganisationKind.SCHOOL, _r(Role.CARE_TEAM), READ, frozenset({Basis.HOLDER}), SCHOOL_CARE),
    PolicyRule(
        "T-SCH-2",
        OrganisationKind.SCHOOL,
        _r(Role.CARE_TEAM),
        READ,
        frozenset({Basis.ENROLMENT, Basis.MANDATORY_TRANSFER}),
        frozenset({Category.REPORT}),
    ),
    PolicyRule(
        "T-SCH-3",
        OrganisationKind.SCHOOL,
        _r(Role.CARE_TEAM),
        READ,
        frozenset({Basis.HANDOVER}),
        frozenset({Category.CAREER}),
    ),
    PolicyRule(
        "T-SCH-5",
        OrganisationKind.SCHOOL,
        _r(Role.CARE_TEAM, Role.ADMINISTRATION),
        READ,
        frozenset({Basis.MANDATORY_TRANSFER}),
        frozenset({Category.ATTENDANCE, Category.IDENTIFICATION}),
    ),
    # What a CLB shares with consent reaches the care team only (S-1, S-3; N-3 for NAFT relays).
    # The begeleidingsdossier the CLB keeps is readable by the school's care team.
    PolicyRule(
        "A-2",
        OrganisationKind.SCHOOL,
        _r(Role.CARE_TEAM),
        READ,
        frozenset({Basis.ATTENDANCE_CASE}),
        frozenset({Category.ATTENDANCE}),
    ),
    PolicyRule(
        "S-1",
        OrganisationKind.SCHOOL,
        _r(Role.CARE_TEAM),
        READ,
        frozenset({Basis.CONSENT}),
        CLB_NON_HEALTH | {Category.NAFT_PROGRESS},
    ),
    # The administration registers enrolments and absences.
    PolicyRule(
        "A-1",
        OrganisationKind.SCHOOL,
        _r(Role.ADMINISTRATION),
        READ,
        frozenset({Basis.HOLDER}),
        frozenset({Category.IDENTIFICATION, Category.ATTENDANCE}),
    ),
    # A teacher sees only what the care team passed to them, for a pupil they teach.
    PolicyRule(
        "S-3",
        OrganisationKind.SCHOOL,
        _r(Role.TEACHER),
        READ,
        frozenset({Basis.TEACHER_SHARE}),
        SCHOOL_CARE - {Category.DISCIPLINE} | CLB_NON_HEALTH,
        user_grant_only=True,
        requires_teaching=True,
    ),
    PolicyRule("T-SCH-1", OrganisationKind.SCHOOL, _r(Role.CARE_TEAM), WRITE, frozenset({Basis.HOLDER}), SCHOOL_CARE),
    PolicyRule(
        "A-1",
        OrganisationKind.SCHOOL,
        _r(Role.ADMINISTRATION),
        WRITE,
        frozenset({Basis.HOLDER}),
        frozenset({Category.IDENTIFICATION, Category.ATTENDANCE}),
    ),
    # --- CLB -------------------------------------------------------------------------------
    # Involved staff read the MDD except health data; the pupil can shield items from them.
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_WORKER, Role.CLB_DIRECTOR),
        READ,
        CLB_BASES,
        CLB_NON_HEALTH,
        no_health=True,
        requires_involvement=True,
        honours_shield=True,
    ),
    # Medical staff read health data of the CLB's pupils (systematic contacts, vaccinations) ...
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_MEDICAL),
        READ,
        CLB_BASES,
        frozenset({Category.VACCINATION, Category.MEDICAL}),
    ),
    # ... and, when involved, the rest of the dossier.
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_MEDICAL),
        READ,
        CLB_BASES,
        CLB_NON_HEALTH,
        requires_involvement=True,
        honours_shield=True,
    ),
    # NAFT progress reaches the CLB staff involved only (N-2).
    PolicyRule(
        "N-2",
        OrganisationKind.CLB,
        _r(Role.CLB_WORKER, Role.CLB_MEDICAL, Role.CLB_DIRECTOR),
        READ,
        frozenset({Basis.CONSENT, Basis.HOLDER, Basis.REFERRAL}),
        frozenset({Category.NAFT_PROGRESS}),
        requires_involvement=True,
        honours_shield=True,
    ),
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_WORKER),
        WRITE,
        frozenset({Basis.HOLDER}),
        CLB_NON_HEALTH,
        no_health=True,
        requires_involvement=True,
    ),
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_MEDICAL),
        WRITE,
        frozenset({Basis.HOLDER}),
        frozenset({Category.VACCINATION, Category.MEDICAL}),
    ),
    PolicyRule(
        "ACC-4",
        OrganisationKind.CLB,
        _r(Role.CLB_MEDICAL),
        WRITE,
        frozenset({Basis.HOLDER}),
        CLB_NON_HEALTH,
        requires_involvement=True,
    ),
    # Leerplicht is a compulsory CLB task (S-5): the CLB's director and workers read the
    # begeleidingsdossiers and absences it keeps, without a separate involvement.
    PolicyRule(
        "A-2",
        OrganisationKind.CLB,
        _r(Role.CLB_WORKER, Role.CLB_DIRECTOR),
        READ,
        frozenset({Basis.HOLDER, Basis.ATTENDANCE_CASE, Basis.MANDATORY_TRANSFER}),
        frozenset({Category.ATTENDANCE}),
    ),
    PolicyRule(
        "A-2",
        OrganisationKind.CLB,
        _r(Role.CLB_WORKER, Role.CLB_DIRECTOR),
        WRITE,
        frozenset({Basis.HOLDER}),
        frozenset({Category.ATTENDANCE}),
    ),
    # --- NAFT ------------------------------------------------------------------------------
    # The NAFT provider reads what the CLB sent for its trajectory (N-1).
    PolicyRule(
        "N-1",
        OrganisationKind.NAFT,
        _r(Role.NAFT_COACH),
        READ,
        frozenset({Basis.REFERRAL}),
        frozenset({Category.GUIDANCE}),
    ),
    PolicyRule(
        "N-2",
        OrganisationKind.NAFT,
        _r(Role.NAFT_COACH),
        READ,
        frozenset({Basis.HOLDER}),
        frozenset({Category.NAFT_PROGRESS}),
    ),
    PolicyRule(
        "N-2",
        OrganisationKind.NAFT,
        _r(Role.NAFT_COACH),
        WRITE,
        frozenset({Basis.HOLDER}),
        frozenset({Category.NAFT_PROGRESS}),
    ),
)

# ACC-3: never shown to an inspecting pupil or parent through the access endpoints.
NEVER_SHOWN_TO_DATA_SUBJECT = ("third_party_confidential", "about_others_only", "for_judiciary")


def rules_for(*, reader_kind: str, role: str, action: str) -> list[PolicyRule]:
    return [r for r in POLICY if r.reader_kind == reader_kind and role in r.roles and r.action == action]


@functools.cache
def roles_reading(*, reader_kind: str, basis: str, category: str) -> frozenset[str]:
    """Roles of an organisation that can read a category on a basis (for the guardian projection).

    ``POLICY`` is an immutable tuple, so the answer is cached per (kind, basis, category)."""
    roles: set[str] = set()
    for rule in POLICY:
        if (
            rule.reader_kind == reader_kind
            and rule.action == READ
            and basis in rule.bases
            and category in rule.categories
        ):
            roles |= rule.roles
    return frozenset(roles)
