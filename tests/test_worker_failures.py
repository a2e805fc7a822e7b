"""Failure tests with a real Celery worker and RabbitMQ, on PostgreSQL (ARCHITECTURE.md: a worker
killed mid-handover; two sweepers at once). T-CLB-1, T-CLB-3, T-SCH-3: every handover executes
exactly once, no grant is missing or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection, connections
from django.db.models import Count
from django.utils import timezone

from config.celery import app as celery_app
from exchange import files, handover, services
from exchange.models import Category, Handover, HandoverEvent, HandoverItem, HandoverState, ItemKind, Level
from exchange.tasks import handover_sweep
from permissions.audit import audit_verify
from permissions.models import Basis, Grant
from tests.factories import PupilFactory

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
AMQP = os.environ.get("CELERY_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def school_changes(world, count: int) -> list[Handover]:
    """``count`` pupils at school A (CLB X) with a guidance note and a career item move to school B (CLB Y)."""
    start = timezone.localdate()
    for _ in range(count):
        pupil = PupilFactory()
        services.enrolment_register(
            pupil=pupil,
            school=world.orgs["A"],
            level=Level.SECUNDAIR,
            start=start - timezone.timedelta(days=30),
        )
        for holder, category in (("X", Category.GUIDANCE), ("A", Category.CAREER)):
            files.item_create(
                pupil=pupil, holder=world.orgs[holder], category=category, kind=ItemKind.NOTE, title="t", body="b"
            )
        services.enrolment_register(
            pupil=pupil, school=world.orgs["B"], level=Level.SECUNDAIR, start=start, ends_previous=True
        )
    handovers = list(Handover.objects.exclude(pupil=world.lotte))
    # The clock moves: every window has closed.
    Handover.objects.update(objection_deadline=timezone.now() - timezone.timedelta(seconds=1))
    return handovers


def assert_exactly_once(handovers: list[Handover]) -> None:
    ids = [h.pk for h in handovers]
    assert Handover.objects.filter(pk__in=ids, state=HandoverState.EXECUTED).count() == len(ids)
    executed_events = (
        HandoverEvent.objects.filter(handover_id__in=ids, state=HandoverState.EXECUTED)
        .values("handover_id")
        .annotate(n=Count("id"))
    )
    assert sorted(row["n"] for row in executed_events) == [1] * len(ids)
    objectable = HandoverItem.objects.filter(handover_id__in=ids, mandatory=False).count()
    moved = Grant.objects.filter(source_id__in=ids, basis=Basis.HANDOVER, revoked_at__isnull=True)
    assert moved.count() == objectable  # none missing ...
    assert moved.values("item_id", "organisation_id").distinct().count() == objectable  # ... none doubled
    _checked, broken = audit_verify()
    assert broken is None


def start_worker(queue: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": AMQP,
        "LP_CELERY_QUEUE": queue,
    }
    process = subprocess.Popen(  # noqa: S603 - our own worker, fixed arguments
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready" in log.read_text(errors="replace"):
            return process
        if process.poll() is not None:
            raise AssertionError(f"worker exited: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("worker did not become ready")


def _database_url() -> str:
    settings = connection.settings_dict
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def enqueue_sweep(queue: str, batch_size: int) -> None:
    with celery_app.connection_for_write(AMQP) as conn:
        handover_sweep.apply_async(kwargs={"batch_size": batch_size}, connection=conn, queue=queue)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_worker_killed_mid_batch_then_restarted_executes_every_handover_once(world, tmp_path) -> None:
    handovers = school_changes(world, 80)
    total = len(handovers)
    queue = f"lp-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    worker = start_worker(queue, log)
    try:
        enqueue_sweep(queue, batch_size=2)
        executed = lambda: Handover.objects.filter(state=HandoverState.EXECUTED).count()  # noqa: E731
        assert wait_until(lambda: executed() > 0, 60), log.read_text(errors="replace")[-3000:]
        os.killpg(worker.pid, signal.SIGKILL)  # in the middle of the sweep's batches
        worker.wait(10)
        done_at_kill = executed()
        assert 0 < done_at_kill < total, "the kill must land mid-sweep"
        # The unacknowledged task is redelivered to the restarted worker (acks_late, reject_on_worker_lost).
        worker = start_worker(queue, log)
        if not wait_until(lambda: executed() == total, 30):
            enqueue_sweep(queue, batch_size=50)  # the periodic sweep would do this
        assert wait_until(lambda: executed() == total, 90), log.read_text(errors="replace")[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
        with celery_app.connection_for_write(AMQP) as conn:
            conn.default_channel.queue_delete(queue)
        connections.close_all()
    assert_exactly_once(handovers)


def test_two_sweepers_at_once_never_duplicate(world) -> None:
    handovers = school_changes(world, 40)
    results: list[handover.SweepResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        try:
            barrier.wait(5)
            results.append(handover.handover_sweep(batch_size=3))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert sum(r.executed for r in results) == len(handovers)
    assert_exactly_once(handovers)
