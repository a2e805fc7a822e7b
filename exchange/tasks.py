"""Thin Celery tasks: ids only, load, call one service. Safe to run twice."""

from __future__ import annotations

from celery import shared_task

from exchange import handover


@shared_task(acks_late=True)
def handover_advance(handover_id: str) -> str | None:
    return handover.handover_advance(handover_id=handover_id)


@shared_task(acks_late=True)
def handover_notify(handover_id: str) -> int:
    return handover.handover_notify(handover_id=handover_id)


@shared_task(acks_late=True)
def handover_notify_many(handover_ids: list[str]) -> int:
    """The notices of a batch of handovers (a planned wave enqueues one task per 100 handovers)."""
    return sum(handover.handover_notify(handover_id=handover_id) for handover_id in handover_ids)


@shared_task(acks_late=True)
def handover_sweep(batch_size: int = 500) -> dict[str, int]:
    result = handover.handover_sweep(batch_size=batch_size)
    return {"mandatory": result.mandatory, "executed": result.executed, "resent": result.resent}


@shared_task(acks_late=True)
def naft_overdue_sweep() -> int:
    from exchange.naft import trajectories_overdue_notify

    return trajectories_overdue_notify()
