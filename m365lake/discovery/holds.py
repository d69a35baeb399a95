"""Place and release legal holds on a case's custodians or on the items a query matches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime

from m365lake.discovery import audit
from m365lake.discovery.case_state import all_cases, load_case
from m365lake.discovery.cases import next_revision, require_open, write_case
from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.errors import CaseNotFoundError, CaseStateError, InvalidRequestError
from m365lake.discovery.records import (
    Hold,
    check_actor,
    hold_key,
    new_id,
    to_row,
    to_state,
    utc_now,
)
from m365lake.discovery.search_api import validate_kql
from m365lake.errors import M365LakeError
from m365lake.lake import Lake, Transaction

logger = logging.getLogger(__name__)


def _check_range(date_start: datetime | None, date_end: datetime | None) -> None:
    for label, value in (("start", date_start), ("end", date_end)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequestError(
                f"the hold's date {label} {value.isoformat()} has no time zone; give an "
                "aware datetime (UTC is usual)"
            )
    if date_start is not None and date_end is not None and date_start >= date_end:
        raise InvalidRequestError(
            f"the hold's date range is empty: start {date_start.isoformat()} is not before "
            f"end {date_end.isoformat()}"
        )


def place_hold(
    lake: Lake,
    case_id: str,
    *,
    actor: str,
    custodian_ids: Sequence[str] | None = None,
    kql: str | None = None,
    all_locations: bool = False,
    date_start: datetime | None = None,
    date_end: datetime | None = None,
    name: str | None = None,
) -> Hold:
    """Place a hold on an open case and return it.

    Without ``kql`` it is a custodian hold on ``custodian_ids`` (default: every current
    custodian of the case). With ``kql`` it is a query hold on the matching items of
    those custodians, or of the whole lake when ``all_locations`` is set. ``date_start``
    (inclusive) and ``date_end`` (exclusive) limit it to versions dated in that range.
    """
    actor = check_actor(actor)
    _check_range(date_start, date_end)
    if kql is not None and not kql.strip():
        raise InvalidRequestError("the hold's KQL query is empty: give a query or omit it")
    if all_locations and kql is None:
        raise InvalidRequestError(
            "a hold on all locations needs a KQL query: a custodian hold names custodians"
        )
    if all_locations and custodian_ids:
        raise InvalidRequestError("give either custodians or all locations, not both")
    if kql is not None:
        validate_kql(kql)

    def work(tx: Transaction) -> tuple[Hold, dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        scope: tuple[str, ...] | None = None
        if not all_locations:
            requested = list(custodian_ids) if custodian_ids else sorted(details.custodians)
            unknown = [item for item in requested if item not in details.custodians]
            if unknown:
                known = ", ".join(sorted(details.custodians)) or "none"
                raise CaseNotFoundError(
                    f"case {case_id!r} has no custodian {', '.join(unknown)}; its custodians "
                    f"are: {known}. Add them first with `m365lake case add-custodian`"
                )
            if not requested:
                raise CaseStateError(
                    f"case {case_id!r} has no custodians to hold: add custodians first, or "
                    "place a query hold on all locations"
                )
            scope = tuple(dict.fromkeys(requested))
        hold = Hold(
            case_id=case_id,
            hold_id=new_id("h"),
            name=name,
            kind="query" if kql is not None else "custodian",
            custodian_ids=scope,
            kql=kql,
            date_start=date_start,
            date_end=date_end,
            status="active",
            placed_at=utc_now(),
            placed_by=actor,
        )
        tx.write_rows("holds", [to_row(hold, change="placed", actor=actor)], partition={})
        tx.set_state(hold_key(case_id, hold.hold_id), to_state(hold))
        write_case(tx, next_revision(case), change="hold_placed", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.HOLD,
            parameters={
                "hold_id": hold.hold_id,
                "name": name,
                "kind": hold.kind,
                "custodian_ids": list(scope) if scope is not None else None,
                "all_locations": all_locations,
                "kql": kql,
                "date_start": date_start,
                "date_end": date_end,
            },
            counts={"custodians": len(scope) if scope is not None else 0},
            case_id=case_id,
        )
        return hold, {"holds": 1}

    hold = commit_with_retry(lake, kind="case", container=case_id, work=work)
    logger.info("placed %s hold %s on case %s", hold.kind, hold.hold_id, case_id)
    _sync_object_legal_holds(lake, actor)
    return hold


def _case_of_hold(lake: Lake, hold_id: str) -> str:
    for details in all_cases(lake):
        if hold_id in details.holds:
            return details.case.case_id
    raise CaseNotFoundError(
        f"no hold {hold_id!r} in the lake at {lake.location}. "
        "List the holds with `m365lake hold list`"
    )


def release_hold(lake: Lake, hold_id: str, *, actor: str, reason: str) -> Hold:
    """Release an active hold; ``reason`` is mandatory and recorded with the hold."""
    actor = check_actor(actor)
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise InvalidRequestError(
            f"releasing hold {hold_id!r} needs a reason: say why the preservation may end "
            "(for example 'matter settled on 2025-03-01')"
        )
    case_id = _case_of_hold(lake, hold_id)

    def work(tx: Transaction) -> tuple[Hold, dict[str, int]]:
        details = load_case(lake, case_id)
        hold = details.holds[hold_id]
        if not hold.active:
            raise CaseStateError(
                f"hold {hold_id!r} was already released at {hold.released_at} by "
                f"{hold.released_by} ({hold.release_reason})"
            )
        released = dataclasses.replace(
            hold,
            status="released",
            released_at=utc_now(),
            released_by=actor,
            release_reason=reason,
        )
        tx.write_rows("holds", [to_row(released, change="released", actor=actor)], partition={})
        tx.set_state(hold_key(case_id, hold_id), to_state(released))
        write_case(tx, next_revision(details.case), change="hold_released", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.RELEASE,
            parameters={"hold_id": hold_id, "reason": reason},
            counts={},
            case_id=case_id,
        )
        return released, {"holds": 1}

    released = commit_with_retry(lake, kind="case", container=case_id, work=work)
    logger.info("released hold %s of case %s", hold_id, case_id)
    _sync_object_legal_holds(lake, actor)
    return released


def _sync_object_legal_holds(lake: Lake, actor: str) -> None:
    """Update the S3 legal holds of a lake with Object Lock after a hold change.

    A failure is logged, not raised: the hold is committed and protects its items from
    purge either way, and the next sync (after a hold change or a purge, or
    ``m365lake immutability sync``) retries.
    """
    # Imported here because retention builds on discovery.
    from m365lake.retention.immutability import sync_legal_holds

    try:
        sync_legal_holds(lake, actor=actor)
    except (M365LakeError, OSError) as error:
        logger.error(
            "the S3 legal holds of the lake at %s were not updated after the hold change: "
            "%s. Run `m365lake immutability sync` to retry",
            lake.location,
            error,
        )


def list_holds(lake: Lake, *, case_id: str | None = None, active_only: bool = False) -> list[Hold]:
    """Return holds ordered by case and placement time."""
    cases = [load_case(lake, case_id)] if case_id is not None else all_cases(lake)
    holds = [hold for details in cases for hold in details.holds.values()]
    if active_only:
        holds = [hold for hold in holds if hold.active]
    return sorted(holds, key=lambda hold: (hold.case_id, hold.placed_at, hold.hold_id))
