"""Which archived item versions the active holds cover: the check retention runs first.

A hold covers item versions, and it covers every version of an item it covers, whether
the tenant still has the item or deleted it. Custodian holds resolve through the lake's
tables: a mailbox holds its messages, calendar events and contacts, a OneDrive its drive
items, a site the items of its drives, and a team the messages of its channels and the
archived files those messages link to (Teams stores a shared file in SharePoint or
OneDrive, where no other custodian of the case may cover it).

A query hold covers an item when any archived version of it, dated inside the hold's
date range, matches the query; it then covers every version of the item. The search
index contains only each item's newest live version, so its hits settle most items.
For the rest, whatever could be removed has to be checked version by version
(``m365lake.discovery.query_versions``), and ``confirm`` records each item found there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from m365lake.discovery.case_state import active_holds
from m365lake.discovery.custodians import linked_files, site_drive_ids, team_channel_ids
from m365lake.discovery.records import Hold
from m365lake.discovery.search_api import search_hits
from m365lake.lake import Lake

Workload = Literal["mail", "files", "calendar", "contacts", "teams"]
MAILBOX_WORKLOADS: tuple[Workload, ...] = ("mail", "calendar", "contacts")
"""The workloads whose container is a mailbox, so a mailbox custodian holds them."""


@dataclass(frozen=True)
class ItemVersion:
    """One archived version of an item, as retention passes it in.

    ``container_id`` and ``item_id`` are: for mail, the mailbox id and the message id;
    for files, the drive id and the drive item id; for calendar and contacts, the
    mailbox id and the event or contact id; for teams, the channel id and the message
    id (a channel id is unique in the tenant, a message id only within its channel).
    ``item_date`` is the version's own date for date-ranged holds and retention: the
    received time of mail (or the sent time when none was recorded), the modified time
    of files and contacts, the end of an event (see ``m365lake.retention.plan`` for
    series) and the creation time of a channel message.
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
    channels: set[str] = field(default_factory=set)
    linked_files: set[tuple[str, str]] = field(default_factory=set)
    """(drive id, item id) of archived files that messages of ``channels`` link to."""
    everywhere: bool = False

    def contains(self, version: ItemVersion) -> bool:
        if self.everywhere:
            return True
        if version.workload in MAILBOX_WORKLOADS:
            return version.container_id in self.mailboxes
        if version.workload == "teams":
            return version.container_id in self.channels
        return (
            version.container_id in self.drives
            or (version.container_id, version.item_id) in self.linked_files
        )


ItemKey = tuple[str, str, str]
"""(workload, container id, item id) of an archived item."""


def item_key(version: ItemVersion) -> ItemKey:
    return (version.workload, version.container_id, version.item_id)


@dataclass
class _ResolvedHold:
    hold: Hold
    scope: _Scope
    index_hits: dict[ItemKey, datetime | None] | None
    """Items the query matched in the search index, with the ``captured_at`` of the
    indexed version; None for a custodian hold."""
    matched: set[ItemKey] = field(default_factory=set)
    """Items with a version inside the date range that matches the query."""

    def covers(self, version: ItemVersion) -> bool:
        if not self.scope.contains(version):
            return False
        if self.index_hits is None:
            return in_date_range(self.hold, version.item_date)
        return item_key(version) in self.matched

    def settle_hit(
        self, key: ItemKey, versions: Sequence[ItemVersion], indexed: ItemVersion | None
    ) -> None:
        """Add the item ``key`` to ``matched`` when its indexed version lies in the date range.

        Without a date range every hit counts. With one, the indexed version is
        ``indexed`` when the caller knows it, else the one captured in the same second as
        the hit's ``captured_at`` (the index stores whole seconds). When neither finds
        it, any version in the range counts, because holds win over a doubtful match.
        """
        if self.index_hits is None or key in self.matched or key not in self.index_hits:
            return
        candidates = (
            [indexed]
            if indexed is not None
            else _captured_in_second(versions, self.index_hits[key])
        )
        if any(in_date_range(self.hold, v.item_date) for v in candidates or versions):
            self.matched.add(key)


def _captured_in_second(
    versions: Sequence[ItemVersion], captured_at: datetime | None
) -> list[ItemVersion]:
    if captured_at is None:
        return []
    second = captured_at.replace(microsecond=0)
    return [v for v in versions if v.captured_at and v.captured_at.replace(microsecond=0) == second]


def in_date_range(hold: Hold, moment: datetime | None) -> bool:
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
        team_ids = {
            custodian_id.split(":", 1)[1]
            for hold in holds
            for custodian_id in hold.custodian_ids or ()
            if custodian_id.startswith("team:")
        }
        channels_of_teams = team_channel_ids(lake, team_ids)
        files_of_channels = linked_files(lake, set(channels_of_teams))
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
                elif kind == "team":
                    channels = {
                        channel
                        for channel, team in channels_of_teams.items()
                        if team == container_id
                    }
                    scope.channels.update(channels)
                    for channel in channels:
                        scope.linked_files.update(files_of_channels.get(channel, ()))
            resolved_hold = _ResolvedHold(hold, scope, None)
            if hold.kql is not None:
                resolved_hold.index_hits = {
                    (hit.workload, hit.container_id, hit.item_id): hit.captured_at
                    for hit in search_hits(lake, hold.kql)
                }
                if hold.date_start is None and hold.date_end is None:
                    resolved_hold.matched.update(resolved_hold.index_hits)
            resolved.append(resolved_hold)
        return cls(resolved)

    @property
    def holds(self) -> list[Hold]:
        return [item.hold for item in self._holds]

    def unsettled_hits(self) -> set[ItemKey]:
        """Return the index hits of date-ranged query holds that ``settle_index_hits`` decides."""
        return {
            key
            for resolved in self._holds
            for key in resolved.index_hits or ()
            if key not in resolved.matched
        }

    def settle_index_hits(
        self,
        items: Mapping[ItemKey, Sequence[ItemVersion]],
        indexed: Mapping[ItemKey, ItemVersion] | None = None,
    ) -> None:
        """Decide the index hits of date-ranged query holds, given every version of each item.

        ``indexed`` names each item's version that the index contains (its newest live
        version), when the caller knows it.
        """
        for resolved in self._holds:
            for key in resolved.index_hits or ():
                if key in items:
                    resolved.settle_hit(key, items[key], (indexed or {}).get(key))

    def unmatched_query_holds(self, version: ItemVersion) -> list[Hold]:
        """Return the query holds whose locations contain ``version`` but not yet its item.

        Such a hold still covers the item if one of its versions that the index does not
        contain matches the query; the caller checks them and calls ``confirm``.
        """
        return [
            resolved.hold
            for resolved in self._holds
            if resolved.index_hits is not None
            and resolved.scope.contains(version)
            and item_key(version) not in resolved.matched
        ]

    def confirm(self, hold_id: str, key: ItemKey) -> None:
        """Record that a version of item ``key`` in the hold's date range matches its query."""
        for resolved in self._holds:
            if resolved.hold.hold_id == hold_id:
                resolved.matched.add(key)

    def holds_covering(self, version: ItemVersion) -> list[str]:
        """Return the ids of the active holds that cover ``version`` (empty: none).

        For query holds this reflects the index hits settled so far and the items
        confirmed; ``covered`` settles the hits first.
        """
        return [item.hold.hold_id for item in self._holds if item.covers(version)]

    def covered(self, versions: Iterable[ItemVersion]) -> dict[ItemVersion, list[str]]:
        """Return each covered version of ``versions`` with the ids of the holds covering it.

        Query holds are decided by the index hits, among ``versions`` taken as every
        version of their items. Versions the index does not contain are not evaluated
        here (see ``m365lake.discovery.query_versions``).
        """
        versions = list(versions)
        items: dict[ItemKey, list[ItemVersion]] = defaultdict(list)
        for version in versions:
            items[item_key(version)].append(version)
        self.settle_index_hits(items)
        result = {}
        for version in versions:
            hold_ids = self.holds_covering(version)
            if hold_ids:
                result[version] = hold_ids
        return result


def covered_versions(lake: Lake, versions: Iterable[ItemVersion]) -> dict[ItemVersion, list[str]]:
    """Return the versions among ``versions`` that any active hold covers, with hold ids."""
    return HoldCoverage.load(lake).covered(versions)
