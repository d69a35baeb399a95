"""Row helpers shared by every workload: timestamps and the ``failures`` table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_graph_time(value: str | None) -> datetime | None:
    """Parse Graph's ISO-8601 UTC timestamps (``2001-05-14T23:39:00Z``)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def failure_row(
    *,
    workload: str,
    run_id: str,
    mailbox_id: str | None,
    container_id: str | None,
    item_id: str | None,
    stage: str,
    outcome: str,
    reason: str,
    detail: str,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build one ``failures`` row: an item that was not archived, and why."""
    return {
        "run_id": run_id,
        "captured_at": now_utc(),
        "workload": workload,
        "mailbox_id": mailbox_id,
        "container_id": container_id,
        "item_id": item_id,
        "stage": stage,
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "request_id": request_id,
    }


FAILURE_DETAIL_CHARS = 500
"""Characters of an error's message kept in ``failures.detail``."""


def error_reason(error: Exception) -> str:
    """Return the short reason of ``error``: Graph's error code, else the exception type."""
    return str(getattr(error, "code", None) or type(error).__name__)


def failure_from_error(
    error: Exception,
    *,
    workload: str,
    run_id: str,
    mailbox_id: str | None,
    container_id: str | None,
    item_id: str | None,
    stage: str,
    outcome: str,
) -> dict[str, Any]:
    """Build the ``failures`` row of an item that ``error`` kept out of the archive."""
    return failure_row(
        workload=workload,
        run_id=run_id,
        mailbox_id=mailbox_id,
        container_id=container_id,
        item_id=item_id,
        stage=stage,
        outcome=outcome,
        reason=error_reason(error),
        detail=str(error)[:FAILURE_DETAIL_CHARS],
        request_id=getattr(error, "request_id", None),
    )
