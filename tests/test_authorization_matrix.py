"""The authorization matrix, generated from the policy table and the personas (ACC-4, S-0, S-1, S-3,
T-SCH-2, T-SCH-4, N-2), plus DOMAIN.md scenario 9.

For every persona × item category the API answer (200/404, 401 anonymous) and the list contents
are compared with an independent, in-Python reading of ``permissions.policy.POLICY`` over the
ledger; a handful of hand-written expectations anchor the table to DOMAIN.md itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.utils import timezone

from exchange import files
from exchange.models import Category, ItemKind, Membership, PupilItem
from exchange.uploads import SealedUpload
from permissions.models import AuditEvent, Grant, Involvement, Shield, TeachingAssignment
from permissions.policy import POLICY, READ, WRITE
from permissions.services import item_pass_to_teacher

pytestmark = pytest.mark.django_db

PERSONAS = [
    "director_a",
    "care_a",
    "teacher_lotte",
    "teacher_other",
    "admin_a",
    "care_b",
    "worker_x",
    "worker_x_other",
    "doctor_x",
    "director_x",
    "worker_y",
    "coach_n",
    "parent_lotte",
    "lotte",
    "stranger",
]

# One item per category, each with its holder: key, holder, category, kind.
ITEMS = [
    ("school_identification", "A", Category.IDENTIFICATION, ItemKind.RECORD),
    ("school_attendance", "A", Category.ATTENDANCE, ItemKind.RECORD),
    ("school_verslag", "A", Category.REPORT, ItemKind.VERSLAG),
    ("school_career", "A", Category.CAREER, ItemKind.DOCUMENT),
    ("school_discipline", "A", Category.DISCIPLINE, ItemKind.NOTE),
    ("school_health", "A", Category.SCHOOL_HEALTH, ItemKind.RECORD),
    ("clb_identification", "X", Category.IDENTIFICATION, ItemKind.RECORD),
    ("clb_vaccination", "X", Category.VACCINATION, ItemKind.RECORD),
    ("clb_medical", "X", Category.MEDICAL, ItemKind.NOTE),
    ("clb_attendance", "X", Category.ATTENDANCE, ItemKind.RECORD),
    ("clb_verslag", "X", Category.REPORT, ItemKind.GEMOTIVEERD_VERSLAG),
    ("clb_guidance", "X", Category.GUIDANCE, ItemKind.NOTE),
    ("naft_progress", "N", Category.NAFT_PROGRESS, ItemKind.DOCUMENT),
]


@dataclass
class Matrix:
    world: Any
    items: dict[str, PupilItem]


@pytest.fixture
def matrix(world) -> Matrix:
    items: dict[str, PupilItem] = {}
    for key, holder, category, kind in ITEMS:
        report = kind in (ItemKind.VERSLAG, ItemKind.GEMOTIVEERD_VERSLAG)
        upload = SealedUpload(name=f"{key}.txt", content_type="text/plain", charset=None)
        upload.seal(f"{key} file".encode())
        items[key] = files.item_create(
            pupil=world.lotte,
            holder=world.orgs[holder],
            category=category,
            kind=kind,
            title=f"{key} title",
            body=f"{key} body",
            upload=upload,
            report_type="type 9" if report else "",
            report_valid_from=timezone.localdate() if report else None,
        )
    # The care team passes the career item to the teacher who teaches Lotte (S-3).
    item_pass_to_teacher(
        item=items["school_career"],
        school=world.orgs["A"],
        teacher=world.users["teacher_lotte"],
        passed_by=world.users["care_a"],
    )
    return Matrix(world=world, items=items)


def expected_readable(user: Any, item: PupilItem, action: str = READ) -> bool:
    """An independent reading of the policy table over the ledger (no SQL compilation)."""
    now = timezone.now()
    memberships = Membership.objects.filter(user=user, active=True).select_related("organisation")
    for membership in memberships:
        for rule in POLICY:
            if rule.action != action or rule.reader_kind != membership.organisation.kind:
                continue
            if membership.role not in rule.roles or item.category not in rule.categories:
                continue
            if rule.no_health and item.health:
                continue
            grants = [
                g
                for g in Grant.objects.filter(item=item, organisation=membership.organisation, revoked_at=None)
                if g.basis in rule.bases
                and g.valid_from <= now
                and (g.valid_until is None or g.valid_until > now)
                and (g.user_id == user.pk if rule.user_grant_only else g.user_id is None)
            ]
            if not grants:
                continue
            if (
                rule.requires_involvement
                and not Involvement.objects.filter(
                    pupil=item.pupil, clb=membership.organisation, user=user, ended_at=None
                ).exists()
            ):
                continue
            if (
                rule.requires_teaching
                and not TeachingAssignment.objects.filter(
                    pupil=item.pupil, school=membership.organisation, teacher=user, ended_at=None
                ).exists()
            ):
                continue
            if rule.honours_shield and Shield.objects.filter(item=item, user=user).exists():
                continue
            return True
    return False


# Hand-written anchors from DOMAIN.md: what each persona reads of Lotte's file.
ANCHORS = {
    "care_a": {
        "school_identification",
        "school_attendance",
        "school_verslag",
        "school_career",
        "school_discipline",
        "school_health",
        "clb_verslag",
    },  # T-SCH-2: the CLB's verslag too
    "teacher_lotte": {"school_career"},  # S-3: only what the care team passed on
    "teacher_other": set(),
    "director_a": set(),  # no automatic access to care data
    "admin_a": {"school_identification", "school_attendance"},
    "care_b": set(),  # S-0: no relation
    "worker_x": {"clb_identification", "clb_attendance", "clb_verslag", "clb_guidance"},  # ACC-4: no health
    "worker_x_other": {"clb_attendance"},  # ACC-4: not involved; leerplicht is the CLB's compulsory task
    "doctor_x": {"clb_vaccination", "clb_medical"},  # ACC-4: health data, medical staff only
    "director_x": {"clb_attendance"},  # not involved; A-2 leerplicht
    "worker_y": set(),
    "coach_n": {"naft_progress"},  # N-2
    "parent_lotte": set(),
    "lotte": set(),
    "stranger": set(),
}


def test_anchors_agree_with_the_policy_table(matrix) -> None:
    for persona, readable in ANCHORS.items():
        user = matrix.world.users[persona]
        computed = {key for key, item in matrix.items.items() if expected_readable(user, item)}
        assert computed == readable, persona


@pytest.mark.parametrize("persona", PERSONAS)
def test_matrix_detail_file_and_list(matrix, persona: str, django_assert_max_num_queries) -> None:
    world = matrix.world
    user = world.users[persona]
    client = world.client(persona)
    allowed = set()
    for key, item in matrix.items.items():
        expected = expected_readable(user, item)
        response = client.get(f"/api/v1/items/{item.id}")
        assert response.status_code == (200 if expected else 404), (persona, key, response.content)
        download = client.get(f"/api/v1/items/{item.id}/file")
        assert download.status_code == (200 if expected else 404), (persona, key)
        if expected:
            allowed.add(str(item.id))
            assert response.json()["body"] == f"{key} body"
            assert b"".join(download.streaming_content) == f"{key} file".encode()
        may_write = expected_readable(user, item, WRITE)
        version = client.post(f"/api/v1/items/{item.id}/versions", {"title": "v2", "body": "v2"}, format="json")
        assert version.status_code == (201 if may_write else 404), (persona, key, version.content)
    listing_url = f"/api/v1/pupils/{world.lotte.id}/items"
    with django_assert_max_num_queries(25):
        listing = client.get(listing_url + "?page_size=200")
    if listing.status_code == 404:
        assert allowed == set(), persona  # a persona who cannot see the pupil sees no item either
    else:
        assert {row["id"] for row in listing.json()["results"]} == allowed, persona
    # The feed across all pupils (GET /api/v1/items) shows exactly the same items, each once.
    with django_assert_max_num_queries(25):
        feed = client.get("/api/v1/items?limit=200")
    assert feed.status_code == 200, (persona, feed.content)
    feed_ids = [row["id"] for row in feed.json()["results"]]
    assert sorted(feed_ids) == sorted(allowed), persona


def test_list_query_count_does_not_grow_with_the_number_of_items(matrix, django_assert_max_num_queries) -> None:
    world = matrix.world
    for n in range(30):
        files.item_create(
            pupil=world.lotte,
            holder=world.orgs["A"],
            category=Category.CAREER,
            kind=ItemKind.NOTE,
            title=f"n{n}",
            body="x",
        )
    with django_assert_max_num_queries(25):
        response = world.client("care_a").get(f"/api/v1/pupils/{world.lotte.id}/items?page_size=200")
    assert response.json()["count"] == 37


def test_anonymous_gets_401_everywhere(matrix) -> None:
    item = matrix.items["school_verslag"]
    client = matrix.world.client(None)
    for url in (
        f"/api/v1/items/{item.id}",
        f"/api/v1/items/{item.id}/file",
        f"/api/v1/pupils/{item.pupil_id}/items",
        "/api/v1/items",
    ):
        assert client.get(url).status_code == 401


@pytest.mark.parametrize(
    ("persona", "key"),
    [
        ("teacher_other", "school_verslag"),
        ("worker_x_other", "clb_verslag"),
        ("worker_x_other", "clb_medical"),
        ("worker_x", "clb_medical"),
        ("care_a", "clb_guidance"),
        ("care_a", "naft_progress"),
    ],
)
def test_scenario_9_refused_and_logged(matrix, persona: str, key: str) -> None:
    item = matrix.items[key]
    response = matrix.world.client(persona).get(f"/api/v1/items/{item.id}")
    assert response.status_code == 404
    denial = AuditEvent.objects.filter(item_id=item.id, actor=matrix.world.users[persona], outcome="denied")
    assert denial.count() == 1
    assert denial.get().pupil_id == matrix.world.lotte.id


def test_acc4_shield_hides_an_item_from_one_involved_worker(matrix) -> None:
    world = matrix.world
    item = matrix.items["clb_guidance"]
    assert world.client("worker_x").get(f"/api/v1/items/{item.id}").status_code == 200
    response = world.client("worker_x").post(f"/api/v1/items/{item.id}/shields", {"username": "worker_x"})
    assert response.status_code == 201
    assert world.client("worker_x").get(f"/api/v1/items/{item.id}").status_code == 404


def test_acc4_involvement_is_assigned_by_the_clb_director(matrix) -> None:
    world = matrix.world
    url = f"/api/v1/pupils/{world.lotte.id}/involvements"
    assert world.client("worker_x").post(url, {"username": "worker_x_other"}).status_code == 403
    assert world.client("director_x").post(url, {"username": "care_a"}).status_code == 400
    assert world.client("director_x").post(url, {"username": "worker_x_other"}).status_code == 201
    verslag = matrix.items["clb_verslag"]
    assert world.client("worker_x_other").get(f"/api/v1/items/{verslag.id}").status_code == 200
    involvement = Involvement.objects.get(user=world.users["worker_x_other"])
    assert world.client("director_x").post(f"/api/v1/involvements/{involvement.id}/end").status_code == 200
    assert world.client("worker_x_other").get(f"/api/v1/items/{verslag.id}").status_code == 404


def test_s3_care_team_passes_and_withdraws_an_item_for_a_teacher(matrix) -> None:
    world = matrix.world
    verslag = matrix.items["school_verslag"]
    url = f"/api/v1/items/{verslag.id}/teachers"
    assert world.client("care_a").post(url, {"username": "teacher_other"}).status_code == 400  # does not teach Lotte
    assert world.client("teacher_lotte").post(url, {"username": "teacher_lotte"}).status_code == 404
    assert world.client("care_a").post(url, {"username": "teacher_lotte"}).status_code == 201
    assert world.client("teacher_lotte").get(f"/api/v1/items/{verslag.id}").status_code == 200
    withdraw = world.client("care_a").post(url + "/withdraw", {"username": "teacher_lotte"})
    assert withdraw.json() == {"revoked": 1}
    assert world.client("teacher_lotte").get(f"/api/v1/items/{verslag.id}").status_code == 404


def test_t_sch_4_discipline_is_never_passed_to_a_teacher(matrix) -> None:
    world = matrix.world
    item = matrix.items["school_discipline"]
    world.client("care_a").post(f"/api/v1/items/{item.id}/teachers", {"username": "teacher_lotte"})
    assert world.client("teacher_lotte").get(f"/api/v1/items/{item.id}").status_code == 404
