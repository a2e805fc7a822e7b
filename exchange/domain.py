"""Small pure functions of the domain: ages, school years, national numbers."""

from __future__ import annotations

import re
from datetime import date

from stdnum.be import bis, nn
from stdnum.exceptions import ValidationError as StdnumValidationError

# CAP-1: a pupil of 12 or older is presumed capable.
CAPACITY_PRESUMPTION_AGE = 12

school_year_pattern = re.compile(r"(\d{4})-(\d{4})")


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day``."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def school_year_of(day: date) -> str:
    """The Flemish school year runs from 1 September to 31 August."""
    first = day.year if day.month >= 9 else day.year - 1
    return f"{first}-{first + 1}"


def school_year_start(school_year: str) -> date:
    match = school_year_pattern.fullmatch(school_year)
    if not match or int(match.group(2)) != int(match.group(1)) + 1:
        raise ValueError(f"not a school year: {school_year!r}")
    return date(int(match.group(1)), 9, 1)


class NationalNumberError(ValueError):
    """The national number is not a valid rijksregisternummer or bis number."""


def normalise_national_number(value: str) -> str:
    """Validate a rijksregisternummer or bis number and return its 11 digits.

    The error message never repeats the number: it is pupil data.
    """
    for module in (nn, bis):
        try:
            return str(module.validate(value))
        except StdnumValidationError:
            continue
    raise NationalNumberError("not a valid rijksregisternummer or bis number (11 digits, check digits)")


def birth_date_matches_national_number(number: str, birth_date: date) -> bool:
    """Whether the birth date encoded in the number (when known) equals ``birth_date``."""
    module = nn if nn.is_valid(number) else bis
    try:
        encoded = module.get_birth_date(number)
    except StdnumValidationError:
        return True
    return encoded is None or encoded == birth_date


def national_number_for(birth_date: date, serial: int) -> str:
    """A valid rijksregisternummer for ``birth_date`` and a serial (1..997); for demo and test data."""
    if not 1 <= serial <= 997:
        raise ValueError("serial must lie between 1 and 997")
    body = f"{birth_date:%y%m%d}{serial:03d}"
    base = int(("2" if birth_date.year >= 2000 else "") + body)
    return f"{body}{97 - base % 97:02d}"
