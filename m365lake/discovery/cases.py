"""Create, change and close cases: custodians and saved searches.

Every change runs in one lake transaction. It reads the case's current state and checks
the request against it. Then it appends the changed records to the discovery tables,
rewrites the case's state keys, where the case record gets a new revision, and appends
the audit event.
A concurrent change of the same case, or any concurrent audit event, makes the commit
conflict, and ``commit_with_retry`` runs the whole change again on the newer state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from m365lake.discovery import audit
from m365lake.discovery.case_state import CaseDetails, all_cases, load_case
from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.custodians import resolve_custodian
from m365lake.discovery.errors import CaseNotFoundError, CaseStateError, InvalidRequestError
from m365lake.discovery.records import (
    Case,
    Custodian,
    SavedSearch,
    case_key,
    check_actor,
    check_case_id,
    custodian_id_for,
    custodian_key,
    new_id,
    search_key,
    to_row,
    to_state,
    utc_now,
)
from m365lake.discovery.search_api import validate_kql
from m365lake.lake import Lake, Transaction

logger = logging.getLogger(__name__)


def write_case(tx: Transaction, case: Case, *, change: str, actor: str) -> None:
    """Append the case row and rewrite the case's state key, which orders its changes."""
    tx.write_rows("cases", [to_row(case, change=change, actor=actor)], partition={})
    tx.set_state(case_key(case.case_id), to_state(case))


def next_revision(case: Case) -> Case:
    return dataclasses.replace(case, revision=case.revision + 1)


def require_open(details: CaseDetails) -> Case:
    case = details.case
    if case.status != "open":
        raise CaseStateError(
            f"case {case.case_id!r} was closed at {case.closed_at} by {case.closed_by}; "
            "a closed case cannot be changed. Create a new case instead"
        )
    return case


def create_case(
    lake: Lake,
    name: str,
    *,
    actor: str,
    case_id: str | None = None,
    description: str | None = None,
) -> Case:
    """Create an open case and return it; ``case_id`` defaults to a random ``c-…`` id."""
    actor = check_actor(actor)
    case_id = check_case_id(case_id) if case_id is not None else new_id("c")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise InvalidRequestError("the case name is empty: give the case a name")

    def work(tx: Transaction) -> tuple[Case, dict[str, int]]:
        existing = lake.state(case_key(case_id))
        if existing is not None:
            raise CaseStateError(
                f"case {case_id!r} already exists (named {existing.get('name')!r}); "
                "choose another id, or omit it to get a generated one"
            )
        case = Case(
            case_id=case_id,
            name=name,
            description=description,
            status="open",
            revision=1,
            created_at=utc_now(),
            created_by=actor,
        )
        write_case(tx, case, change="created", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.CASE_CREATE,
            parameters={"name": name, "description": description},
            counts={},
            case_id=case_id,
        )
        return case, {"cases": 1}

    case = commit_with_retry(lake, kind="case", container=case_id, work=work)
    logger.info("created case %s", case_id)
    return case


def close_case(lake: Lake, case_id: str, *, actor: str, reason: str | None = None) -> Case:
    """Close an open case. Raises CaseStateError while any of its holds is active."""
    actor = check_actor(actor)

    def work(tx: Transaction) -> tuple[Case, dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        active = details.active_holds()
        if active:
            ids = ", ".join(sorted(hold.hold_id for hold in active))
            raise CaseStateError(
                f"case {case_id!r} still has {len(active)} active hold(s): {ids}. Release "
                "them first (`m365lake hold release HOLD_ID --reason ...`), so that ending "
                "the preservation is a recorded decision"
            )
        closed = dataclasses.replace(
            next_revision(case),
            status="closed",
            closed_at=utc_now(),
            closed_by=actor,
            close_reason=reason,
        )
        write_case(tx, closed, change="closed", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.CASE_CLOSE,
            parameters={"reason": reason},
            counts={},
            case_id=case_id,
        )
        return closed, {"cases": 1}

    return commit_with_retry(lake, kind="case", container=case_id, work=work)


def list_cases(lake: Lake, *, include_closed: bool = True) -> list[Case]:
    """Return the cases ordered by id."""
    cases = [details.case for details in all_cases(lake)]
    return [case for case in cases if include_closed or case.status == "open"]


def add_custodians(
    lake: Lake, case_id: str, references: Sequence[tuple[str, str]], *, actor: str
) -> list[Custodian]:
    """Add custodians given as (kind, reference) pairs; return the ones newly added.

    Each reference is validated against the lake (see ``resolve_custodian``) before
    anything is written, so one unknown reference adds none of them. A custodian the
    case already has is skipped.
    """
    actor = check_actor(actor)
    if not references:
        raise InvalidRequestError(
            "no custodian given: name at least one mailbox, OneDrive, site or team"
        )
    resolved = [resolve_custodian(lake, kind, reference) for kind, reference in references]

    def work(tx: Transaction) -> tuple[list[Custodian], dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        now = utc_now()
        added: dict[str, Custodian] = {}
        for item in resolved:
            custodian_id = custodian_id_for(item.kind, item.container_id)
            if custodian_id in details.custodians or custodian_id in added:
                continue
            added[custodian_id] = Custodian(
                case_id=case_id,
                custodian_id=custodian_id,
                kind=item.kind,
                container_id=item.container_id,
                label=item.label,
                requested_as=item.requested_as,
                added_at=now,
                added_by=actor,
            )
        if added:
            rows = [
                to_row(custodian, change="added", actor=actor, status="active")
                for custodian in added.values()
            ]
            tx.write_rows("case_custodians", rows, partition={})
            for custodian_id, custodian in added.items():
                tx.set_state(custodian_key(case_id, custodian_id), to_state(custodian))
        write_case(tx, next_revision(case), change="custodians_added", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.CUSTODIAN_ADD,
            parameters={
                "requested": [list(reference) for reference in references],
                "added": sorted(added),
            },
            counts={"added": len(added), "already_present": len(resolved) - len(added)},
            case_id=case_id,
        )
        return list(added.values()), {"case_custodians": len(added)}

    return commit_with_retry(lake, kind="case", container=case_id, work=work)


def remove_custodian(lake: Lake, case_id: str, custodian_id: str, *, actor: str) -> Custodian:
    """Remove a custodian from an open case; an active hold naming it must be released first."""
    actor = check_actor(actor)

    def work(tx: Transaction) -> tuple[Custodian, dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        custodian = details.custodians.get(custodian_id)
        if custodian is None:
            known = ", ".join(sorted(details.custodians)) or "none"
            raise CaseNotFoundError(
                f"case {case_id!r} has no custodian {custodian_id!r}; its custodians are: {known}"
            )
        holding = sorted(
            hold.hold_id
            for hold in details.active_holds()
            if hold.custodian_ids is not None and custodian_id in hold.custodian_ids
        )
        if holding:
            raise CaseStateError(
                f"custodian {custodian_id!r} of case {case_id!r} is under active hold(s) "
                f"{', '.join(holding)}; release them before removing the custodian"
            )
        row = to_row(custodian, change="removed", actor=actor, status="removed")
        tx.write_rows("case_custodians", [row], partition={})
        tx.set_state(custodian_key(case_id, custodian_id), None)
        write_case(tx, next_revision(case), change="custodian_removed", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.CUSTODIAN_REMOVE,
            parameters={"custodian_id": custodian_id, "label": custodian.label},
            counts={"removed": 1},
            case_id=case_id,
        )
        return custodian, {"case_custodians": 1}

    return commit_with_retry(lake, kind="case", container=case_id, work=work)


def save_search(lake: Lake, case_id: str, name: str, kql: str, *, actor: str) -> SavedSearch:
    """Save a KQL query with an open case, after the KQL parser (if installed) accepts it."""
    actor = check_actor(actor)
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise InvalidRequestError("the search name is empty: give the saved search a name")
    if not isinstance(kql, str) or not kql.strip():
        raise InvalidRequestError("the KQL query is empty: give the query text to save")
    validated = validate_kql(kql)

    def work(tx: Transaction) -> tuple[SavedSearch, dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        search = SavedSearch(
            case_id=case_id,
            search_id=new_id("s"),
            name=name,
            kql=kql,
            validated=validated,
            saved_at=utc_now(),
            saved_by=actor,
        )
        row = to_row(search, change="saved", actor=actor, status="active")
        tx.write_rows("case_searches", [row], partition={})
        tx.set_state(search_key(case_id, search.search_id), to_state(search))
        write_case(tx, next_revision(case), change="search_saved", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.SEARCH_SAVE,
            parameters={"search_id": search.search_id, "name": name, "kql": kql},
            counts={},
            case_id=case_id,
        )
        return search, {"case_searches": 1}

    return commit_with_retry(lake, kind="case", container=case_id, work=work)


def delete_search(lake: Lake, case_id: str, search_id: str, *, actor: str) -> SavedSearch:
    """Delete a saved search from an open case (its rows stay in the history)."""
    actor = check_actor(actor)

    def work(tx: Transaction) -> tuple[SavedSearch, dict[str, int]]:
        details = load_case(lake, case_id)
        case = require_open(details)
        search = details.searches.get(search_id)
        if search is None:
            known = ", ".join(sorted(details.searches)) or "none"
            raise CaseNotFoundError(
                f"case {case_id!r} has no saved search {search_id!r}; its searches are: {known}"
            )
        row = to_row(search, change="deleted", actor=actor, status="deleted")
        tx.write_rows("case_searches", [row], partition={})
        tx.set_state(search_key(case_id, search_id), None)
        write_case(tx, next_revision(case), change="search_deleted", actor=actor)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.SEARCH_DELETE,
            parameters={"search_id": search_id, "name": search.name, "kql": search.kql},
            counts={},
            case_id=case_id,
        )
        return search, {"case_searches": 1}

    return commit_with_retry(lake, kind="case", container=case_id, work=work)
