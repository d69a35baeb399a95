"""Which archived item versions the active holds cover: the check retention runs first.

A hold covers item versions, and it covers every version of an item it covers, whether
the tenant still has the item or deleted it. Custodian holds resolve through the lake's
tables (a mailbox holds its messages, a OneDrive its drive items, a site the items of
its drives). Query holds resolve through the search index: an item is covered when the
query matches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from m365lake.discovery.case_state import active_holds
from m365lake.discovery.custodians import site_drive_ids
from m365lake.discovery.records import Hold
from m365lake.discovery.search_api import search_hits
from m365lake.lake import Lake

Workload = Literal["mail", "files"]


@dataclass(frozen=True)
class ItemVersion:
    """One archived version of an item, as retention passes it in.

    For mail, ``container_id`` is the mailbox id and ``item_id`` the message id; for
    files, the drive id and the drive item id. ``item_date`` is the version's own date
    for date-ranged holds: the received time of mail (or the sent time when none was
    recorded), the modified time of files.
    """

    workload: Workload
    container_id: str
    item_id: str
    captured_at: datetime | None = None
    item_date: datetime | None = None


@dataclass
class _Scope:
    mailboxes: set[str] = field(default_factory=set)
    drives: set[str] = field(default_factory=set)
    everywhere: bool = False

    def contains(self, version: ItemVersion) -> bool:
        if self.everywhere:
            return True
        if version.workload == "mail":
            return version.container_id in self.mailboxes
        return version.container_id in self.drives


@dataclass
class _ResolvedHold:
    hold: Hold
    scope: _Scope
    matches: set[tuple[str, str, str]] | None
    """(workload, container id, item id) of the items the query matched; None: no query."""

    def covers(self, version: ItemVersion) -> bool:
        if not self.scope.contains(version):
            return False
        if self.matches is not None and (
            (version.workload, version.container_id, version.item_id) not in self.matches
        ):
            return False
        return _in_range(self.hold, version.item_date)


def _in_range(hold: Hold, moment: datetime | None) -> bool:
    if hold.date_start is None and hold.date_end is None:
        return True
    # A version without a date might fall inside the range, so it is kept: holds win.
    if moment is None:
        return True
    if hold.date_start is not None and moment < hold.date_start:
        return False
    return not (hold.date_end is not None and moment >= hold.date_end)


class HoldCoverage:
    """The active holds of a lake, resolved once, answering which versions they cover.

    Build it after the transaction that removes data has begun: a hold placed later
    commits an audit event, which makes that transaction's commit conflict.
    """

    def __init__(self, holds: list[_ResolvedHold]) -> None:
        self._holds = holds

    @classmethod
    def load(cls, lake: Lake) -> HoldCoverage:
        """Resolve every active hold; query holds need the search index (SearchIndexError)."""
        holds = active_holds(lake)
        site_ids = {
            custodian_id.split(":", 1)[1]
            for hold in holds
            for custodian_id in hold.custodian_ids or ()
            if custodian_id.startswith("site:")
        }
        drives_of_sites = site_drive_ids(lake, site_ids)
        resolved = []
        for hold in holds:
            scope = _Scope(everywhere=hold.custodian_ids is None)
            for custodian_id in hold.custodian_ids or ():
                kind, _, container_id = custodian_id.partition(":")
                if kind == "mailbox":
                    scope.mailboxes.add(container_id)
                elif kind == "onedrive":
                    scope.drives.add(container_id)
                elif kind == "site":
                    scope.drives.update(
                        drive for drive, site in drives_of_sites.items() if site == container_id
                    )
            matches = None
            if hold.kql is not None:
                # NOTE: the index stores the latest captured version of each item, so the
                # query is matched against that version only. A match holds every version;
                # an item whose older versions matched but whose latest does not is not held.
                matches = {
                    (hit.workload, hit.container_id, hit.item_id)
                    for hit in search_hits(lake, hold.kql)
                }
            resolved.append(_ResolvedHold(hold, scope, matches))
        return cls(resolved)

    @property
    def holds(self) -> list[Hold]:
        return [item.hold for item in self._holds]

    def holds_covering(self, version: ItemVersion) -> list[str]:
        """Return the ids of the active holds that cover ``version`` (empty: none)."""
        return [item.hold.hold_id for item in self._holds if item.covers(version)]

    def covered(self, versions: Iterable[ItemVersion]) -> dict[ItemVersion, list[str]]:
        """Return each covered version of ``versions`` with the ids of the holds covering it."""
        result = {}
        for version in versions:
            hold_ids = self.holds_covering(version)
            if hold_ids:
                result[version] = hold_ids
        return result


def covered_versions(lake: Lake, versions: Iterable[ItemVersion]) -> dict[ItemVersion, list[str]]:
    """Return the versions among ``versions`` that any active hold covers, with hold ids."""
    return HoldCoverage.load(lake).covered(versions)
