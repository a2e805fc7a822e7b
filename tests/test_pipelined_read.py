"""The read of one item on PostgreSQL: decision, audit event and key fetch in one libpq pipeline, the event's
commit (the pipeline's Sync) overlapping decryption (``permissions.access.item_reading``,
``permissions.pipeline``, ``exchange.files.item_read``).

What these prove: every read leaves its event before anything of it is returned (ACC-5, ACC-1: the pupil's
access history is complete), a read whose event cannot commit returns nothing (a 503), a denial is recorded
before its 404, and the connection goes back to Django idle and in autocommit whatever happens, or is closed
and replaced. Run outside a test transaction (``transaction=True``): only then is the read its own transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, DataError, connection
from django.test.utils import CaptureQueriesContext
from psycopg.pq import TransactionStatus
from rest_framework.exceptions import NotFound

from exchange import files
from exchange.models import PupilItem
from permissions.access import AuditNotRecorded, StatementDuringRead, item_reading
from permissions.audit import audit_verify
from permissions.models import AuditEvent
from tests.api.test_items_api import create

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

FAIL_AT_COMMIT = "test-fail-at-commit"


def committed_events(**where: Any) -> list[tuple[str, str, str]]:
    """(action, outcome, purpose) of the events matching ``where``, read on a second connection: only what
    has committed."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    clauses = " AND ".join(f"{column} = %s" for column in where)
    with psycopg.connect(**params, autocommit=True) as other:
        rows = other.execute(
            f"SELECT action, outcome, purpose FROM permissions_auditevent WHERE {clauses} ORDER BY sequence",  # noqa: S608 - test columns
            list(where.values()),
        ).fetchall()
    return [tuple(row) for row in rows]


def assert_idle_in_autocommit() -> None:
    assert connection.get_autocommit()
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE


FAIL_AT_INSERT = "test-fail-at-insert"


@contextmanager
def refusing_events(name: str, purpose: str, trigger: str) -> Iterator[None]:
    """A trigger ``name`` (``trigger``: when it fires, for each row) raising for an audit event whose purpose
    is ``purpose``; dropped afterwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.purpose = '{purpose}' THEN RAISE EXCEPTION 'refused by the test';"
            " END IF; RETURN NEW; END $$"
        )
        cursor.execute(f"CREATE {trigger} FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER {name} ON permissions_auditevent")
            cursor.execute(f"DROP FUNCTION {name}()")


@pytest.fixture
def refusing_insert() -> Iterator[None]:
    """A trigger that refuses, at once, the insert of an audit event whose purpose is ``FAIL_AT_INSERT``."""
    with refusing_events(
        "lp_test_fail_at_insert",
        FAIL_AT_INSERT,
        "TRIGGER lp_test_fail_at_insert BEFORE INSERT ON permissions_auditevent",
    ):
        yield


@pytest.fixture
def refusing_commit() -> Iterator[None]:
    """A deferred constraint trigger that fails the COMMIT of any transaction holding an audit event whose
    purpose is ``FAIL_AT_COMMIT``: the commit a read sends before it decrypts."""
    with refusing_events(
        "lp_test_fail_at_commit",
        FAIL_AT_COMMIT,
        "CONSTRAINT TRIGGER lp_test_fail_at_commit AFTER INSERT ON permissions_auditevent"
        " DEFERRABLE INITIALLY DEFERRED",
    ):
        yield


def test_a_read_returns_once_its_event_has_committed(world) -> None:
    """ACC-5/ACC-1: the read's event is durable (seen by another connection) when ``item_read`` returns; the
    read is the chain head's lock, the decision, the key fetch and the event's append, in one implicit
    transaction (no BEGIN or COMMIT statement: the pipeline's Sync commits), and nothing else."""
    item_id = create(world, "care_a", body="Gesprek met ouders").json()["id"]
    reader = world.users["care_a"]
    with CaptureQueriesContext(connection) as sent:
        read = files.item_read(user=reader, item_id=item_id, purpose="pipelined")
    assert read.decrypted.body == "Gesprek met ouders"
    assert read.access.organisation == world.orgs["A"]
    assert committed_events(item_id=item_id, actor_id=reader.pk, purpose="pipelined") == [
        ("read", "allowed", "pipelined")
    ]
    sql = [query["sql"] for query in sent.captured_queries]
    assert [text.split()[0] for text in sql] == ["SELECT", "WITH", "SELECT", "WITH"], sql
    assert '"permissions_audithead"' in sql[0] and sql[0].endswith("FOR UPDATE")  # the head before the decision
    assert "set_config('lp.read_event'" in sql[1]  # the decision works out its event
    assert 'INSERT INTO "permissions_auditevent"' in sql[3]  # the event, sent before decryption
    assert audit_verify()[1] is None  # its hash continues the chain
    assert_idle_in_autocommit()


def test_the_read_records_the_decision_it_acted_on_for_every_persona(world) -> None:
    """ACC-5 (scenario 9), ACC-4, T-SCH-2: the read's event is worked out in SQL by the statement that decides;
    for every persona, reading items of each holder, it names the same outcome, organisation, role and
    legal basis as the decision Python acts on (``_decide``, ``_decision_event``), allowed or denied."""
    from permissions.access import _decide, _decision_event
    from permissions.policy import READ

    items = [
        create(world, "care_a", body="Verslag school A").json()["id"],
        create(world, "worker_x", category="guidance", kind="note", body="CLB-dossier").json()["id"],
    ]
    seen = set()
    for name, user in world.users.items():
        for item_id in items:
            purpose = f"persona-{name}"
            decision = _decide(user=user, item_id=item_id, action=READ)
            expected = _decision_event(decision, user=user, action=READ, purpose=purpose)
            with suppress(NotFound):
                files.item_read(user=user, item_id=item_id, purpose=purpose)
            event = AuditEvent.objects.get(item_id=item_id, purpose=purpose)
            got = (event.action, event.outcome, event.organisation_id, event.role, event.legal_basis, event.pupil_id)
            want = tuple(
                expected[key] for key in ("action", "outcome", "organisation_id", "role", "legal_basis", "pupil_id")
            )
            assert got == want, (name, item_id)
            assert event.actor_id == user.pk
            seen.add((event.outcome, event.legal_basis))
    assert {outcome for outcome, _basis in seen} == {"allowed", "denied"}
    assert len({basis for _outcome, basis in seen}) >= 3  # several rules, not one path
    assert audit_verify()[1] is None
    assert_idle_in_autocommit()


def test_a_read_whose_event_cannot_commit_returns_nothing(world, refusing_commit) -> None:
    """ACC-5: no content without its audit event. The commit fails after decryption has run: the API answers
    503 with no byte of the item, nothing is recorded, and the connection serves the next read."""
    item_id = create(world, "care_a", body="Zorgplan wiskunde").json()["id"]
    client = world.client("care_a")
    response = client.get(f"/api/v1/items/{item_id}", HTTP_X_PURPOSE=FAIL_AT_COMMIT)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_not_recorded"
    assert b"Zorgplan" not in response.content
    assert b"Klassenraad" not in response.content
    download = client.get(f"/api/v1/items/{item_id}/file", HTTP_X_PURPOSE=FAIL_AT_COMMIT)
    assert download.status_code == 503
    assert committed_events(item_id=item_id, purpose=FAIL_AT_COMMIT) == []
    assert_idle_in_autocommit()
    assert client.get(f"/api/v1/items/{item_id}").json()["body"] == "Zorgplan wiskunde"
    assert committed_events(item_id=item_id, purpose="read") == [("read", "allowed", "read")]


def test_a_read_whose_event_is_refused_at_its_insert_returns_nothing(world, refusing_insert) -> None:
    """ACC-5: an event the database refuses at its insert is a 503 with nothing of the item, the head's lock
    is released (the next read appends) and the connection is clean."""
    item_id = create(world, "care_a", body="Handelingsplan").json()["id"]
    client = world.client("care_a")
    response = client.get(f"/api/v1/items/{item_id}", HTTP_X_PURPOSE=FAIL_AT_INSERT)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "audit_not_recorded"
    assert b"Handelingsplan" not in response.content
    assert committed_events(item_id=item_id, purpose=FAIL_AT_INSERT) == []
    assert_idle_in_autocommit()
    assert client.get(f"/api/v1/items/{item_id}").json()["body"] == "Handelingsplan"
    assert committed_events(item_id=item_id, purpose="read") == [("read", "allowed", "read")]
    assert audit_verify()[1] is None


def test_a_read_prepares_its_statements_again_after_they_were_deallocated(world) -> None:
    """ACC-5: the read's statements are prepared once per connection; psycopg deallocates every prepared
    statement after a rollback (``DEALLOCATE ALL``), and the next read prepares them again instead of failing.
    Its event is recorded once."""
    item_id = create(world, "care_a", body="Handelingsplan").json()["id"]
    reader = world.users["care_a"]
    assert files.item_read(user=reader, item_id=item_id, purpose="first").decrypted.body == "Handelingsplan"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'lp%%'")
        assert cursor.fetchone()[0] >= 4  # the head's lock, the decision, the key fetch and the append
        cursor.execute("DEALLOCATE ALL")
    assert files.item_read(user=reader, item_id=item_id, purpose="again").decrypted.body == "Handelingsplan"
    assert committed_events(item_id=item_id, purpose="again") == [("read", "allowed", "again")]
    assert_idle_in_autocommit()
    assert audit_verify()[1] is None


def test_the_first_read_of_a_process_looks_up_what_it_needs_before_the_pipeline(world) -> None:
    """The first read in a process looks up guardian's permission id (then cached) with an ordinary query: it
    runs before the read's pipeline opens, and the read and the connection work (a query inside the pipeline
    would fail and leave the connection in pipeline mode)."""
    from permissions.grants import view_permission_id

    item_id = create(world, "care_a", body="Eerste lezing").json()["id"]
    view_permission_id.cache_clear()
    response = world.client("care_a").get(f"/api/v1/items/{item_id}")
    assert response.status_code == 200, response.content
    assert response.json()["body"] == "Eerste lezing"
    assert_idle_in_autocommit()
    assert PupilItem.objects.filter(pk=item_id).exists()


def test_the_benchmarks_read_without_audit_reads_the_same_and_records_nothing(world) -> None:
    """The access benchmark's baseline (``bench._access_measure._audit_skipped``: decision, key fetch and
    Sync in one round trip) returns the same item as the audited read, appends nothing and leaves the
    connection clean: the audit's cost is measured against a read that works."""
    from bench._access_measure import _audit_skipped

    item_id = create(world, "care_a", body="Zonder spoor").json()["id"]
    reader = world.users["care_a"]
    audited = files.item_read(user=reader, item_id=item_id, purpose="with")
    events = AuditEvent.objects.count()
    with _audit_skipped():
        skipped = files.item_read(user=reader, item_id=item_id, purpose="without")
    assert skipped.decrypted.body == audited.decrypted.body == "Zonder spoor"
    assert AuditEvent.objects.count() == events
    assert_idle_in_autocommit()


def test_an_interrupt_during_a_read_closes_the_connection_instead_of_leaving_it_mid_pipeline(world) -> None:
    """An interrupt inside the read's block (a worker's timeout raising ``SystemExit``, Ctrl-C) does not wait
    for the server: Django's connection is closed, never handed back in pipeline mode with unread answers,
    and the next read opens a new one."""
    item_id = create(world, "care_a", body="Onderbroken").json()["id"]
    reader = world.users["care_a"]
    follow = ("SELECT 1", [])
    with pytest.raises(KeyboardInterrupt), item_reading(user=reader, item_id=item_id, follow=follow):
        raise KeyboardInterrupt
    assert connection.connection is None
    assert files.item_read(user=reader, item_id=item_id, purpose="after").decrypted.body == "Onderbroken"
    assert_idle_in_autocommit()


def test_a_leftover_event_setting_is_never_appended_for_another_read(world) -> None:
    """ACC-5: the read's append takes its event from the setting the decision leaves; a value set on the
    session by anything else (here: about another item) is not appended when the read's item is missing."""
    item_id = create(world, "care_a", body="Ander item").json()["id"]
    reader = world.users["care_a"]
    event = {
        "lp_allowed": True,
        "lp_first": 0,
        "lp_item": item_id,
        "lp_organisation": str(world.orgs["A"].pk),
        "lp_role": "care_team",
        "lp_pupil": str(world.lotte.pk),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lp.read_event', %s, false)", [json.dumps(event)])
    try:
        with pytest.raises(NotFound):
            files.item_read(user=reader, item_id=uuid.uuid4(), purpose="leftover")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lp.read_event")
    assert committed_events(purpose="leftover") == []
    assert_idle_in_autocommit()


def test_a_read_prepares_nothing_when_preparing_is_off(world) -> None:
    """Behind a pooler that cannot keep prepared statements (``LP_DB_PREPARED_STATEMENTS=false``, psycopg's
    ``prepare_threshold`` None) the read prepares nothing on the server, and still records its event (ACC-5)."""
    item_id = create(world, "care_a", body="Handelingsplan").json()["id"]
    reader = world.users["care_a"]
    connection.close()
    connection.ensure_connection()
    connection.connection.prepare_threshold = None
    try:
        assert files.item_read(user=reader, item_id=item_id, purpose="unprepared").decrypted.body == "Handelingsplan"
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'lp%%'")
            assert cursor.fetchone()[0] == 0
    finally:
        connection.close()
    assert committed_events(item_id=item_id, purpose="unprepared") == [("read", "allowed", "unprepared")]
    assert audit_verify()[1] is None


SLOW_COMMIT = "test-slow-commit"


@pytest.fixture
def slow_commit() -> Iterator[None]:
    """A deferred constraint trigger that makes the commit of an audit event whose purpose is ``SLOW_COMMIT``
    take two seconds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION lp_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF NEW.purpose = '{SLOW_COMMIT}' THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER lp_test_slow_commit AFTER INSERT ON permissions_auditevent"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lp_test_slow_commit()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER lp_test_slow_commit ON permissions_auditevent")
            cursor.execute("DROP FUNCTION lp_test_slow_commit()")


def test_a_connection_lost_while_the_read_commits_is_a_503(world, slow_commit) -> None:
    """ACC-5: when the server goes away while the read's commit runs, the read cannot know its event is
    durable: nothing is returned (503), Django's connection is closed rather than left mid-protocol, and the
    next read opens a new one."""
    item_id = create(world, "care_a", body="Handelingsplan").json()["id"]
    reader = world.users["care_a"]
    follow = ("SELECT pg_backend_pid()", [])
    reading = item_reading(user=reader, item_id=item_id, follow=follow, purpose=SLOW_COMMIT)
    with pytest.raises(AuditNotRecorded), reading as read:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as other:
            assert other.execute("SELECT pg_terminate_backend(%s)", [read.rows[0][0]]).fetchone() == (True,)
    assert connection.connection is None
    assert committed_events(item_id=item_id, purpose=SLOW_COMMIT) == []
    assert files.item_read(user=reader, item_id=item_id, purpose="after").decrypted.body == "Handelingsplan"
    assert committed_events(item_id=item_id, purpose="after") == [("read", "allowed", "after")]
    assert_idle_in_autocommit()


def test_a_denied_read_is_recorded_before_its_404(world, refusing_commit) -> None:
    """ACC-5 (scenario 9): a denial is durable when the 404 is raised; one that cannot commit is a 503."""
    item_id = create(world, "care_a", body="Alleen voor school A").json()["id"]
    stranger = world.users["stranger"]
    with pytest.raises(NotFound):
        files.item_read(user=stranger, item_id=item_id, purpose="curious")
    assert committed_events(item_id=item_id, actor_id=stranger.pk) == [("denied", "denied", "curious")]
    with pytest.raises(AuditNotRecorded):
        files.item_read(user=stranger, item_id=item_id, purpose=FAIL_AT_COMMIT)
    assert committed_events(item_id=item_id, purpose=FAIL_AT_COMMIT) == []
    assert_idle_in_autocommit()


def test_no_statement_runs_while_a_read_commits(world) -> None:
    """A statement inside the read's block would queue behind the commit and run in its transaction: it is
    refused, the read's event still commits (it was sent first), and the connection comes back clean."""
    item_id = create(world, "care_a", body="...").json()["id"]
    reader = world.users["care_a"]
    follow = ("SELECT 1", [])
    reading = item_reading(user=reader, item_id=item_id, follow=follow, purpose="nested")
    with pytest.raises(StatementDuringRead), reading as read:
        assert read.rows == [(1,)]
        PupilItem.objects.filter(pk=item_id).exists()
    assert committed_events(item_id=item_id, purpose="nested") == [("read", "allowed", "nested")]
    assert_idle_in_autocommit()
    assert PupilItem.objects.filter(pk=item_id).exists()


def test_a_failing_follow_up_rolls_the_read_back(world) -> None:
    """An error in the pipeline before the COMMIT leaves no event and no open transaction behind."""
    item_id = create(world, "care_a", body="...").json()["id"]
    follow = ("SELECT 1 / 0", [])
    reading = item_reading(user=world.users["care_a"], item_id=item_id, follow=follow, purpose="broken")
    with pytest.raises(DataError, match="division by zero"), reading:
        pass
    assert committed_events(item_id=item_id, purpose="broken") == []
    assert_idle_in_autocommit()
    assert files.item_read(user=world.users["care_a"], item_id=item_id).decrypted.body == "..."


def test_an_error_whose_code_psycopg_does_not_know_rolls_the_read_back(world) -> None:
    """ACC-5: a server error with an SQLSTATE psycopg has no class for (a function's own code) still ends the
    read as a database error carrying the server's message and code: no event, no open transaction."""
    item_id = create(world, "care_a", body="...").json()["id"]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION lp_test_made_up_code() RETURNS int LANGUAGE plpgsql AS $$"
            " BEGIN RAISE EXCEPTION 'refused with a made-up code' USING ERRCODE = 'PX001'; END $$"
        )
    try:
        follow = ("SELECT lp_test_made_up_code()", [])
        reading = item_reading(user=world.users["care_a"], item_id=item_id, follow=follow, purpose="made-up")
        with pytest.raises(DatabaseError, match="refused with a made-up code") as raised, reading:
            pass
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP FUNCTION lp_test_made_up_code()")
    cause = raised.value.__cause__
    assert isinstance(cause, psycopg.DatabaseError)
    assert cause.diag.sqlstate == "PX001"
    assert committed_events(item_id=item_id, purpose="made-up") == []
    assert_idle_in_autocommit()
    assert files.item_read(user=world.users["care_a"], item_id=item_id).decrypted.body == "..."


def test_a_read_inside_a_transaction_commits_with_it(world) -> None:
    """ACC-5: inside an atomic block the read is not its own transaction: it locks the chain's head, decides
    and appends its event in the surrounding transaction, and the event becomes durable when that commits."""
    from django.db import transaction

    item_id = create(world, "care_a", body="Verslag").json()["id"]
    reader = world.users["care_a"]
    with transaction.atomic():
        assert files.item_read(user=reader, item_id=item_id, purpose="inside").decrypted.body == "Verslag"
        assert AuditEvent.objects.filter(item_id=item_id, purpose="inside").count() == 1
        assert committed_events(item_id=item_id, purpose="inside") == []
        assert connection.in_atomic_block
    assert committed_events(item_id=item_id, purpose="inside") == [("read", "allowed", "inside")]
    assert_idle_in_autocommit()
