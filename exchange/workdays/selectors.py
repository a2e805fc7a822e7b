"""Working-day arithmetic on the operator's calendar (``NonWorkingPeriod``)."""

from __future__ import annotations

from datetime import date, timedelta

from exchange.workdays.models import NonWorkingPeriod

# A deadline of N working days never spans more than this many calendar days per working day,
# even across the two-week Flemish school holidays; it bounds the one query below.
_CALENDAR_DAYS_PER_WORKING_DAY = 3
_MIN_SPAN_DAYS = 31
_MAX_WIDENINGS = 6


def _non_working_days(*, first: date, last: date) -> set[date]:
    days: set[date] = set()
    periods = NonWorkingPeriod.objects.filter(first_day__lte=last, last_day__gte=first).values_list(
        "first_day", "last_day"
    )
    for start, end in periods:
        day = max(start, first)
        while day <= min(end, last):
            days.add(day)
            day += timedelta(days=1)
    return days


def is_working_day(*, day: date) -> bool:
    return day.weekday() < 5 and day not in _non_working_days(first=day, last=day)


def working_day_add(*, start: date, days: int) -> date:
    """The date ``days`` working days after ``start`` (``start`` itself never counts).

    A working day is Monday to Friday outside the calendar's public and school holidays. With
    ``days == 0`` the answer is ``start`` itself.
    """
    if days < 0:
        raise ValueError("days must be zero or more")
    if days == 0:
        return start
    span = max(_MIN_SPAN_DAYS, days * _CALENDAR_DAYS_PER_WORKING_DAY + 14)
    for _attempt in range(_MAX_WIDENINGS):
        closed = _non_working_days(first=start, last=start + timedelta(days=span))
        day, left = start, days
        while day < start + timedelta(days=span):
            day += timedelta(days=1)
            if day.weekday() < 5 and day not in closed:
                left -= 1
                if left == 0:
                    return day
        span *= 2  # the calendar closes longer than expected: look further
    raise ValueError("the working-day calendar has no working days in reach")


def working_days_between(*, start: date, end: date) -> int:
    """How many working days fall after ``start`` up to and including ``end`` (0 when ``end <= start``)."""
    if end <= start:
        return 0
    closed = _non_working_days(first=start, last=end)
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in closed:
            count += 1
    return count
