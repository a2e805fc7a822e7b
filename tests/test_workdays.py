"""The working-day calendar behind legal deadlines (ACC-2: inspection within 10 working days)."""

from datetime import date

import pytest

from exchange.workdays.models import NonWorkingKind, NonWorkingPeriod
from exchange.workdays.selectors import is_working_day, working_day_add, working_days_between

pytestmark = pytest.mark.django_db


@pytest.fixture
def calendar() -> None:
    # Tests own their calendar: the seeded rows are replaced by a known one.
    NonWorkingPeriod.objects.all().delete()
    NonWorkingPeriod.objects.create(
        name="Kerstvakantie",
        kind=NonWorkingKind.SCHOOL_HOLIDAY,
        first_day=date(2026, 12, 21),
        last_day=date(2027, 1, 3),
    )
    NonWorkingPeriod.objects.create(
        name="Wapenstilstand",
        kind=NonWorkingKind.PUBLIC_HOLIDAY,
        first_day=date(2026, 11, 11),
        last_day=date(2026, 11, 11),
    )
    NonWorkingPeriod.objects.create(
        name="Nieuwjaar", kind=NonWorkingKind.PUBLIC_HOLIDAY, first_day=date(2027, 1, 1), last_day=date(2027, 1, 1)
    )


def test_acc2_ten_working_days_skip_weekends_only_outside_holidays(calendar: None) -> None:
    # Monday 23 November 2026 + 10 working days: two full weeks, no holiday.
    assert working_day_add(start=date(2026, 11, 23), days=10) == date(2026, 12, 7)


def test_acc2_deadline_across_the_christmas_holiday(calendar: None) -> None:
    # Asked on Friday 11 December 2026: 14-18 December give 5 working days, the Christmas
    # holiday (21 December - 3 January) none, then 4-8 January 2027 the other 5.
    assert working_day_add(start=date(2026, 12, 11), days=10) == date(2027, 1, 8)


def test_acc2_deadline_across_a_public_holiday(calendar: None) -> None:
    # Asked on Monday 9 November 2026; Wednesday 11 November (Wapenstilstand) does not count.
    assert working_day_add(start=date(2026, 11, 9), days=10) == date(2026, 11, 24)
    assert not is_working_day(day=date(2026, 11, 11))
    assert is_working_day(day=date(2026, 11, 12))


def test_working_days_between_counts_the_same_calendar(calendar: None) -> None:
    assert working_days_between(start=date(2026, 12, 11), end=date(2027, 1, 8)) == 10
    assert working_days_between(start=date(2026, 12, 11), end=date(2026, 12, 11)) == 0
    assert working_days_between(start=date(2027, 1, 8), end=date(2026, 12, 11)) == 0


def test_operator_edits_count_from_the_next_call(calendar: None) -> None:
    # An operator adds a local free day in the admin: the deadline moves one day.
    before = working_day_add(start=date(2026, 11, 23), days=10)
    NonWorkingPeriod.objects.create(
        name="Facultatieve vrije dag",
        kind=NonWorkingKind.SCHOOL_HOLIDAY,
        first_day=date(2026, 11, 30),
        last_day=date(2026, 11, 30),
    )
    assert working_day_add(start=date(2026, 11, 23), days=10) == date(2026, 12, 8) != before


def test_zero_days_is_the_start_and_negative_is_refused(calendar: None) -> None:
    assert working_day_add(start=date(2026, 12, 11), days=0) == date(2026, 12, 11)
    with pytest.raises(ValueError):
        working_day_add(start=date(2026, 12, 11), days=-1)


def test_the_seeded_calendar_knows_the_flemish_christmas_holiday() -> None:
    assert NonWorkingPeriod.objects.filter(name="Kerstvakantie", first_day=date(2026, 12, 21)).exists()
    assert not is_working_day(day=date(2026, 12, 28))
