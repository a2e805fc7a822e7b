"""The feed: every item a user may see, across their pupils, newest first, page by page (ACC-4, S-0, S-3, T-SCH-2).

``GET /api/v1/items`` walks each membership's grants in feed order (``item_feed_for_user``); these tests hold it
to the same decision as the per-pupil list (``item_list_for_user``), which the authorization matrix holds to the
policy table, and check the pages, the cursor, the errors and the audit trail (ACC-1).
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from exchange import files, services
from exchange.item_apis import feed_cursor
from exchange.models import Category, ItemKind, Level, PupilItem, Role
from permissions.access import item_feed_for_user, item_list_for_user
from permissions.grants import GrantSpec, grants_create, grants_revoke
from permissions.models import AuditEvent, Basis, Grant
from permissions.services import item_pass_to_teacher
from tests.conftest import start_of_school_year
from tests.factories import UserFactory
from tests.test_ledger_and_audit import clb_verslag

pytestmark = pytest.mark.django_db


def note(world: Any, *, pupil: Any = None, holder: str = "A", category: str = Category.CAREER, n: int = 0) -> Any:
    return files.item_create(
        pupil=pupil or world.lotte,
        holder=world.orgs[holder],
        category=category,
        kind=ItemKind.NOTE,
        title=f"note {n}",
        body=f"body {n}",
    )


def expected(user: Any) -> list[uuid.UUID]:
    """What the per-pupil lists show the user, over all pupils, in feed order."""
    return list(item_list_for_user(user=user).order_by("-created_at", "id").values_list("pk", flat=True))


def walk_api(client: Any, limit: int) -> tuple[list[str], int]:
    """All pages of the feed through the API; the ids in order and the number of pages."""
    ids: list[str] = []
    url: str | None = f"/api/v1/items?limit={limit}"
    pages = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        ids += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
        assert pages < 100
    return ids, pages


def test_feed_pages_are_the_users_visible_items_newest_first_without_gaps_or_repeats(world) -> None:
    made = [note(world, n=n) for n in range(7)]
    note(world, holder="X", category=Category.GUIDANCE)  # the CLB's: not for the school (S-0 / beroepsgeheim)
    user = world.users["care_a"]
    want = [str(pk) for pk in expected(user)]
    assert {str(i.pk) for i in made} <= set(want)
    for limit in (1, 2, 3, 50):
        ids, pages = walk_api(world.client("care_a"), limit)
        assert ids == want, limit
        # A full last page cannot know it is the last: one empty page follows it.
        assert pages == len(want) // limit + 1, limit
    first = world.client("care_a").get("/api/v1/items?limit=3").json()
    assert [row["title"] for row in first["results"]] == ["note 6", "note 5", "note 4"]  # titles decrypted
    assert first["results"][0]["category"] == "career"


def test_an_item_reached_through_several_grants_is_shown_once(world) -> None:
    items = [note(world, n=n) for n in range(4)]
    # School A also holds a consent grant on two of its own items: two ledger rows, one item.
    grants_create(
        specs=[
            GrantSpec(item=i, organisation=world.orgs["A"], basis=Basis.CONSENT, rule="S-1", source_id=uuid.uuid4())
            for i in items[1:3]
        ]
    )
    user = world.users["care_a"]
    assert Grant.objects.filter(item=items[1], organisation=world.orgs["A"], revoked_at=None).count() == 2
    for limit in (1, 2, 5):
        ids, _pages = walk_api(world.client("care_a"), limit)
        assert ids == [str(pk) for pk in expected(user)], limit
        assert len(ids) == len(set(ids))


def test_a_user_with_several_memberships_sees_both_organisations_merged_in_order(world) -> None:
    both = UserFactory(username="care_a_and_c")
    services.membership_grant(user=both, organisation=world.orgs["A"], role=Role.CARE_TEAM)
    services.membership_grant(user=both, organisation=world.orgs["C"], role=Role.CARE_TEAM)
    for n in range(3):
        note(world, pupil=world.lotte, holder="A", n=n)
        note(world, pupil=world.sam, holder="C", n=10 + n)
    want = expected(both)
    pupils = {i.pupil_id for i in PupilItem.objects.filter(pk__in=want)}
    assert pupils == {world.lotte.pk, world.sam.pk}
    for limit in (1, 2, 4, 50):
        got: list[uuid.UUID] = []
        after = None
        while True:
            page = item_feed_for_user(user=both, after=after, limit=limit)
            got += [i.pk for i in page.items]
            if page.next_key is None:
                break
            after = page.next_key
        assert got == want, limit


@pytest.mark.parametrize(
    "persona",
    ["care_a", "teacher_lotte", "teacher_other", "worker_x", "worker_x_other", "doctor_x", "coach_n", "stranger"],
)
def test_feed_shows_exactly_what_the_policy_allows(world, persona: str) -> None:
    """ACC-4 (involvement, health), S-3 (teacher share), T-SCH-2 (the CLB's verslag to the enrolled school)."""
    note(world, n=1)
    passed = note(world, n=2)
    item_pass_to_teacher(
        item=passed, school=world.orgs["A"], teacher=world.users["teacher_lotte"], passed_by=world.users["care_a"]
    )
    note(world, holder="X", category=Category.GUIDANCE, n=3)
    note(world, holder="X", category=Category.MEDICAL, n=4)
    clb_verslag(world)
    user = world.users[persona]
    ids, _pages = walk_api(world.client(persona), 2)
    assert ids == [str(pk) for pk in expected(user)]
    if persona == "teacher_lotte":
        assert ids == [str(passed.pk)]
    if persona in ("teacher_other", "worker_x_other", "stranger"):
        assert ids == []


def test_a_revoked_or_not_yet_valid_grant_leaves_the_feed(world) -> None:
    """S-3 withdrawn; T-CLB-5: an enrolment for next school year grants nothing before it starts."""
    item = note(world)
    teacher = world.users["teacher_lotte"]
    item_pass_to_teacher(item=item, school=world.orgs["A"], teacher=teacher, passed_by=world.users["care_a"])
    assert [i.pk for i in item_feed_for_user(user=teacher).items] == [item.pk]
    grants_revoke(grants=Grant.objects.filter(item=item, user=teacher))
    assert item_feed_for_user(user=teacher).items == []

    verslag = clb_verslag(world)
    next_year = start_of_school_year() + timedelta(days=366)
    services.enrolment_end(enrolment=world.lotte.enrolments.get(), end=next_year - timedelta(days=1))
    services.enrolment_register(pupil=world.lotte, school=world.orgs["B"], level=Level.SECUNDAIR, start=next_year)
    assert verslag.pk not in [i.pk for i in item_feed_for_user(user=world.users["care_b"]).items]


def test_a_shredded_item_leaves_the_feed(world) -> None:
    item = note(world, holder="X", category=Category.GUIDANCE)
    assert item.pk in [i.pk for i in item_feed_for_user(user=world.users["worker_x"]).items]
    files.item_shred(item=item, by=world.users["director_x"], reason="entered_in_error")
    assert item.pk not in [i.pk for i in item_feed_for_user(user=world.users["worker_x"]).items]


def test_listing_is_audited_once_per_pupil_on_the_page(world) -> None:
    """ACC-1: the pupil's access history shows that their items were listed, by whom and why."""
    note(world, n=1)
    note(world, pupil=world.sam, holder="C", n=2)
    coordinator = UserFactory(username="care_a_and_c")
    services.membership_grant(user=coordinator, organisation=world.orgs["A"], role=Role.CARE_TEAM)
    services.membership_grant(user=coordinator, organisation=world.orgs["C"], role=Role.CARE_TEAM)
    before = AuditEvent.objects.count()
    client = world.client(None)
    client.force_authenticate(coordinator)
    assert client.get("/api/v1/items", HTTP_X_PURPOSE="weekly care meeting").status_code == 200
    events = AuditEvent.objects.filter(sequence__gt=before)
    assert sorted((e.pupil_id, e.action, e.purpose, e.actor_id, e.organisation_id, e.role) for e in events) == sorted(
        [
            (world.lotte.pk, "read", "weekly care meeting", coordinator.pk, world.orgs["A"].pk, "care_team"),
            (world.sam.pk, "read", "weekly care meeting", coordinator.pk, world.orgs["C"].pk, "care_team"),
        ]
    )
    # An empty page reads nothing and records nothing.
    before = AuditEvent.objects.count()
    assert world.client("stranger").get("/api/v1/items").json() == {"next": None, "results": []}
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=not-a-cursor", "after"),
        ("after=" + "A" * 201, "after"),
        ("after=" + feed_cursor((timezone.now(), uuid.uuid4()))[:-3], "after"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
    ],
)
def test_bad_paging_parameters_get_a_400_that_names_them(world, query: str, field: str) -> None:
    note(world)
    response = world.client("care_a").get(f"/api/v1/items?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_a_naive_timestamp_cursor_is_refused(world) -> None:
    import base64

    cursor = base64.urlsafe_b64encode(f"2026-01-01T00:00:00|{uuid.uuid4()}".encode()).decode()
    response = world.client("care_a").get(f"/api/v1/items?after={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["fields"]["after"][0]


def test_anonymous_gets_401(world) -> None:
    assert world.client(None).get("/api/v1/items").status_code == 401


def test_grants_copy_their_items_columns_and_reconcile_repairs_a_drifted_copy(world) -> None:
    item = note(world, holder="X", category=Category.MEDICAL)
    grant = Grant.objects.get(item=item, organisation=world.orgs["X"])
    assert (grant.item_pupil_id, grant.item_category, grant.item_health, grant.item_created_at) == (
        item.pupil_id,
        item.category,
        True,
        item.created_at,
    )
    Grant.objects.filter(pk=grant.pk).update(item_health=False, item_category=Category.GUIDANCE)
    with pytest.raises(CommandError, match="drift"):
        call_command("reconcile_permissions", stdout=io.StringIO())
    out = io.StringIO()
    call_command("reconcile_permissions", "--repair", stdout=out)
    assert "1 differing" in out.getvalue()
    grant.refresh_from_db()
    assert (grant.item_category, grant.item_health) == (Category.MEDICAL, True)
    call_command("reconcile_permissions", stdout=io.StringIO())
