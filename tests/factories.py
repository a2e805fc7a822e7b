"""factory_boy factories. They go through the same services as production code where a rule applies."""

from __future__ import annotations

import itertools
from datetime import date

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from exchange.domain import national_number_for
from exchange.models import Membership, Organisation, OrganisationKind, Pupil, SchoolKind

_serials = itertools.count(1)
_numbers = itertools.count(100000)


def years_ago(years: int, *, days: int = 0, today: date | None = None) -> date:
    """A birth date making someone ``years`` old today (plus ``days`` since the birthday)."""
    from datetime import timedelta

    today = today or timezone.localdate()
    try:
        birthday = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        birthday = today.replace(year=today.year - years, day=28)
    return birthday - timedelta(days=days)


def national_number(birth_date: date) -> str:
    return national_number_for(birth_date, (next(_serials) % 997) + 1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.django.Password("pw")


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    kind = OrganisationKind.SCHOOL
    official_number = factory.LazyFunction(lambda: str(next(_numbers)))
    name = factory.Sequence(lambda n: f"Organisation {n}")
    school_kind = factory.LazyAttribute(lambda o: SchoolKind.SECUNDAIR if o.kind == OrganisationKind.SCHOOL else "")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = "teacher"


class PupilFactory(factory.Factory):
    """Registers a pupil through the service, so the identity is encrypted as in production."""

    class Meta:
        model = Pupil

    birth_date = factory.LazyFunction(lambda: years_ago(14, days=30))
    national_number = factory.LazyAttribute(lambda p: national_number(p.birth_date))
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")

    @classmethod
    def _create(cls, model_class: type, *args: object, **kwargs: object) -> Pupil:
        from exchange.services import pupil_register

        return pupil_register(**kwargs)  # type: ignore[arg-type]

    _build = _create
