"""Fixtures: the DOMAIN.md personas, built through the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from exchange import services
from exchange.domain import school_year_of
from exchange.models import Level, Organisation, OrganisationKind, Pupil, Role, SchoolKind
from permissions.services import involvement_assign, teaching_assign
from tests.factories import UserFactory, national_number, years_ago


def start_of_school_year(day: date | None = None) -> date:
    day = day or timezone.localdate()
    return date(int(school_year_of(day)[:4]), 9, 1)


@dataclass
class World:
    orgs: dict[str, Organisation]
    users: dict[str, Any]
    lotte: Pupil
    sam: Pupil
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, name: str | None) -> APIClient:
        client = APIClient()
        if name is not None:
            client.force_authenticate(self.users[name])
        return client


STAFF = {
    "director_a": ("A", Role.SCHOOL_DIRECTOR),
    "care_a": ("A", Role.CARE_TEAM),
    "teacher_lotte": ("A", Role.TEACHER),
    "teacher_other": ("A", Role.TEACHER),
    "admin_a": ("A", Role.ADMINISTRATION),
    "director_b": ("B", Role.SCHOOL_DIRECTOR),
    "care_b": ("B", Role.CARE_TEAM),
    "admin_b": ("B", Role.ADMINISTRATION),
    "admin_c": ("C", Role.ADMINISTRATION),
    "director_x": ("X", Role.CLB_DIRECTOR),
    "worker_x": ("X", Role.CLB_WORKER),
    "worker_x_other": ("X", Role.CLB_WORKER),
    "doctor_x": ("X", Role.CLB_MEDICAL),
    "director_y": ("Y", Role.CLB_DIRECTOR),
    "worker_y": ("Y", Role.CLB_WORKER),
    "doctor_y": ("Y", Role.CLB_MEDICAL),
    "coach_n": ("N", Role.NAFT_COACH),
    "stranger": ("Z", Role.SCHOOL_DIRECTOR),
}


@pytest.fixture
def world(db: None) -> World:
    orgs = {
        "A": services.organisation_create(
            kind=OrganisationKind.SCHOOL, official_number="030001", name="School A", school_kind=SchoolKind.SECUNDAIR
        ),
        "B": services.organisation_create(
            kind=OrganisationKind.SCHOOL, official_number="030002", name="School B", school_kind=SchoolKind.SECUNDAIR
        ),
        "C": services.organisation_create(
            kind=OrganisationKind.SCHOOL, official_number="030003", name="Basisschool C", school_kind=SchoolKind.BASIS
        ),
        "Z": services.organisation_create(
            kind=OrganisationKind.SCHOOL,
            official_number="039999",
            name="Unrelated school Z",
            school_kind=SchoolKind.SECUNDAIR,
        ),
        "X": services.organisation_create(kind=OrganisationKind.CLB, official_number="100001", name="CLB X"),
        "Y": services.organisation_create(kind=OrganisationKind.CLB, official_number="100002", name="CLB Y"),
        "N": services.organisation_create(kind=OrganisationKind.NAFT, official_number="900001", name="NAFT N"),
    }
    for school, clb in (("A", "X"), ("B", "Y"), ("C", "X")):
        services.agreement_create(school=orgs[school], clb=orgs[clb], start=date(2020, 9, 1))
    users: dict[str, Any] = {"operator": UserFactory(username="operator", is_staff=True)}
    for name, (org, role) in STAFF.items():
        users[name] = UserFactory(username=name)
        services.membership_grant(user=users[name], organisation=orgs[org], role=role)

    lotte_birth = years_ago(14, days=40)
    lotte = services.pupil_register(
        national_number=national_number(lotte_birth), first_name="Lotte", last_name="Peeters", birth_date=lotte_birth
    )
    sam_birth = years_ago(9, days=40)
    sam = services.pupil_register(
        national_number=national_number(sam_birth), first_name="Sam", last_name="Janssens", birth_date=sam_birth
    )
    users["lotte"] = UserFactory(username="lotte")
    lotte.user = users["lotte"]
    lotte.save(update_fields=["user"])
    users["parent_lotte"] = UserFactory(username="parent_lotte")
    services.parent_add(pupil=lotte, first_name="An", last_name="Peeters", user=users["parent_lotte"])
    users["parent_sam"] = UserFactory(username="parent_sam")
    services.parent_add(pupil=sam, first_name="Sofie", last_name="Janssens", user=users["parent_sam"])
    start = start_of_school_year()
    services.enrolment_register(pupil=lotte, school=orgs["A"], level=Level.SECUNDAIR, start=start)
    services.enrolment_register(pupil=sam, school=orgs["C"], level=Level.BASIS, start=start)
    # ACC-4: the CLB X director makes worker_x (not worker_x_other) involved with Lotte.
    involvement_assign(pupil=lotte, clb=orgs["X"], user=users["worker_x"], assigned_by=users["director_x"])
    teaching_assign(school=orgs["A"], teacher=users["teacher_lotte"], pupil=lotte, assigned_by=users["director_a"])
    return World(orgs=orgs, users=users, lotte=lotte, sam=sam)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres`` need PostgreSQL (locks, triggers): CI sets DATABASE_URL and runs them.

    On the SQLite default they are deselected (and counted as such), not skipped one by one.
    """
    import os

    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        return
    selected = [item for item in items if item.get_closest_marker("postgres") is None]
    deselected = [item for item in items if item.get_closest_marker("postgres") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
