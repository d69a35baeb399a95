"""Read cases and their custodians, searches and holds from the lake state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from m365lake.discovery.errors import CaseNotFoundError
from m365lake.discovery.records import (
    STATE_PREFIX,
    Case,
    Custodian,
    Hold,
    SavedSearch,
    case_key,
    check_case_id,
    from_state,
)
from m365lake.lake import Lake


@dataclass(frozen=True)
class CaseDetails:
    """A case with its current custodians, saved searches and holds (released ones too)."""

    case: Case
    custodians: dict[str, Custodian] = field(default_factory=dict)
    searches: dict[str, SavedSearch] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)

    def active_holds(self) -> list[Hold]:
        return [hold for hold in self.holds.values() if hold.active]


def _split(key: str) -> tuple[str, str | None, str | None]:
    """Split ``discovery/case/<case>[/<kind>/<id>]`` into case id, kind and id."""
    parts = key[len(STATE_PREFIX) :].split("/", 2)
    if len(parts) == 1:
        return parts[0], None, None
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _details(case_id: str, values: dict[str, Any]) -> CaseDetails:
    details = CaseDetails(from_state(Case, values[case_key(case_id)]))
    for key, value in values.items():
        _, kind, item_id = _split(key)
        if kind == "custodian" and item_id:
            details.custodians[item_id] = from_state(Custodian, value)
        elif kind == "search" and item_id:
            details.searches[item_id] = from_state(SavedSearch, value)
        elif kind == "hold" and item_id:
            details.holds[item_id] = from_state(Hold, value)
    return details


def find_case(lake: Lake, case_id: str) -> CaseDetails | None:
    """Return the case's current state, or None when no case has this id."""
    check_case_id(case_id)
    if lake.state(case_key(case_id)) is None:
        return None
    values = lake.state_items(f"{case_key(case_id)}/")
    values[case_key(case_id)] = lake.state(case_key(case_id))
    return _details(case_id, values)


def load_case(lake: Lake, case_id: str) -> CaseDetails:
    """Return the case's current state, or raise CaseNotFoundError."""
    details = find_case(lake, case_id)
    if details is None:
        raise CaseNotFoundError(
            f"no case {case_id!r} in the lake at {lake.location}. List the cases with "
            "`m365lake case list`"
        )
    return details


def all_cases(lake: Lake) -> list[CaseDetails]:
    """Return every case, open and closed, ordered by case id."""
    values = lake.state_items(STATE_PREFIX)
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        case_id, _, _ = _split(key)
        grouped.setdefault(case_id, {})[key] = value
    return [
        _details(case_id, grouped[case_id])
        for case_id in sorted(grouped)
        if case_key(case_id) in grouped[case_id]
    ]


def active_holds(lake: Lake) -> list[Hold]:
    """Return every active hold of every case, ordered by case and placement time."""
    holds = [hold for details in all_cases(lake) for hold in details.active_holds()]
    return sorted(holds, key=lambda hold: (hold.case_id, hold.placed_at, hold.hold_id))
