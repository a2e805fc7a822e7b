"""Core domain: organisations, agreements (S-0), pupils (CAP-1), enrolments — at the service level."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from exchange import services
from exchange.domain import age_on, national_number_for, normalise_national_number, school_year_of
from exchange.models import (
    CooperationAgreement,
    Enrolment,
    Level,
    Membership,
    Organisation,
    OrganisationKind,
    Role,
    SchoolKind,
)
from exchange.selectors import pupil_identity
from tests.factories import PupilFactory, UserFactory, years_ago

pytestmark = pytest.mark.django_db


def test_cap1_capacity_presumed_from_the_twelfth_birthday() -> None:
    """CAP-1: computed from the birth date on the day of the decision, not stored."""
    pupil = PupilFactory(birth_date=date(2014, 6, 10))
    identity = pupil_identity(pupil=pupil)
    assert not identity.is_presumed_capable(date(2026, 6, 9))
    assert identity.is_presumed_capable(date(2026, 6, 10))
    assert age_on(date(2012, 2, 29), date(2024, 2, 28)) == 11
    assert age_on(date(2012, 2, 29), date(2024, 2, 29)) == 12


def test_school_year_runs_from_september() -> None:
    assert school_year_of(date(2026, 8, 31)) == "2025-2026"
    assert school_year_of(date(2026, 9, 1)) == "2026-2027"


@pytest.mark.parametrize(
    "value",
    ["", "12345678901", "abc", "1203150101", "120315-010-99", "00000000000"],
)
def test_invalid_national_numbers_are_refused(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        services.pupil_register(national_number=value, first_name="A", last_name="B", birth_date=date(2012, 3, 15))
    assert "national_number" in info.value.message_dict
    # The message never echoes the number: it is pupil data.
    if value:
        assert value not in str(info.value)


def test_rijksregisternummer_and_bis_number_are_accepted() -> None:
    nn_value = national_number_for(date(2012, 3, 15), 101)
    assert normalise_national_number(nn_value[:6] + "-" + nn_value[6:9] + "." + nn_value[9:]) == nn_value
    # A bis number adds 40 to the month (gender known) and is valid too.
    body = f"12{3 + 40:02d}15101"
    bis = body + f"{97 - int('2' + body) % 97:02d}"
    assert normalise_national_number(bis) == bis


def test_birth_date_must_match_the_national_number() -> None:
    number = national_number_for(date(2012, 3, 15), 7)
    with pytest.raises(ValidationError) as info:
        services.pupil_register(national_number=number, first_name="A", last_name="B", birth_date=date(2012, 3, 16))
    assert "birth_date" in info.value.message_dict


def test_same_national_number_twice_is_refused() -> None:
    birth = years_ago(10)
    number = national_number_for(birth, 3)
    services.pupil_register(national_number=number, first_name="A", last_name="B", birth_date=birth)
    with pytest.raises(ValidationError, match="already registered"):
        services.pupil_register(national_number=number, first_name="C", last_name="D", birth_date=birth)


def test_s0_school_cannot_have_two_active_clb_agreements(world) -> None:
    """S-0: a school works with one CLB at a time."""
    with pytest.raises(ValidationError, match="one CLB at a time"):
        services.agreement_create(school=world.orgs["A"], clb=world.orgs["Y"], start=date(2025, 1, 1))
    # The database refuses a second open agreement even when the service is bypassed.
    with pytest.raises(IntegrityError), transaction.atomic():
        CooperationAgreement.objects.create(school=world.orgs["A"], clb=world.orgs["Y"], start=date(2030, 1, 1))


def test_s0_agreement_after_the_previous_one_ended_is_accepted(world) -> None:
    current = CooperationAgreement.objects.get(school=world.orgs["A"])
    services.agreement_end(agreement=current, end=date(2026, 8, 31))
    new = services.agreement_create(school=world.orgs["A"], clb=world.orgs["Y"], start=date(2026, 9, 1))
    assert new.clb == world.orgs["Y"]
    with pytest.raises(ValidationError, match="one CLB at a time"):
        services.agreement_create(
            school=world.orgs["A"], clb=world.orgs["X"], start=date(2026, 8, 1), end=date(2026, 9, 5)
        )


def test_s0_agreement_parties_must_be_school_and_clb(world) -> None:
    with pytest.raises(ValidationError) as info:
        services.agreement_create(school=world.orgs["X"], clb=world.orgs["A"], start=date(2026, 1, 1))
    assert set(info.value.message_dict) == {"school", "clb"}


def test_school_needs_a_kind_and_only_schools_have_one() -> None:
    with pytest.raises(ValidationError):
        services.organisation_create(kind=OrganisationKind.SCHOOL, official_number="1", name="S")
    with pytest.raises(ValidationError):
        services.organisation_create(
            kind=OrganisationKind.CLB, official_number="2", name="C", school_kind=SchoolKind.BASIS
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Organisation.objects.create(kind=OrganisationKind.CLB, official_number="3", name="C", school_kind="basis")


def test_role_must_exist_in_the_organisation_kind(world) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        services.membership_grant(user=UserFactory(), organisation=world.orgs["X"], role=Role.TEACHER)


def test_database_refuses_a_role_that_is_not_a_known_code(world) -> None:
    """Roles are codes in the audit trail (ACC-5): the database itself refuses any other text."""
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=UserFactory(), organisation=world.orgs["X"], role='clb_worker" x')


def test_overlapping_enrolment_at_the_same_level_is_refused(world) -> None:
    with pytest.raises(ValidationError, match="already enrolled"):
        services.enrolment_register(
            pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=timezone.localdate()
        )


def test_database_allows_one_open_enrolment_per_pupil_and_level(world) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Enrolment.objects.create(
            pupil=world.lotte,
            school=world.orgs["B"],
            level=Level.SECUNDAIR,
            school_year="2030-2031",
            start=date(2030, 9, 1),
        )


def test_enrolment_after_the_previous_one_ended(world) -> None:
    old = Enrolment.objects.get(pupil=world.lotte)
    end = old.start + timedelta(days=60)
    services.enrolment_end(enrolment=old, end=end)
    new = services.enrolment_register(
        pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=end + timedelta(days=1)
    )
    assert new.school_year == school_year_of(new.start)


def test_enrolment_level_must_exist_at_the_school(world) -> None:
    with pytest.raises(ValidationError) as info:
        services.enrolment_register(pupil=world.sam, school=world.orgs["A"], level=Level.BASIS, start=date(2031, 9, 1))
    assert "level" in info.value.message_dict


def test_enrolment_start_must_fall_in_its_school_year(world) -> None:
    with pytest.raises(ValidationError) as info:
        services.enrolment_register(
            pupil=world.sam,
            school=world.orgs["Z"],
            level=Level.SECUNDAIR,
            start=date(2031, 9, 1),
            school_year="2030-2031",
        )
    assert "start" in info.value.message_dict
