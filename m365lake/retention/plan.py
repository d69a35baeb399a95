"""Decide which archived versions a purge removes: expired, not kept, not held.

Every version (row) of ``messages``, of files in ``drive_items``, of ``events``,
``contacts`` and ``channel_messages`` is read with its file and row number. A version is
purged when a delete policy has expired it, no keep policy still protects it and no
active hold covers it. A deletion tombstone (the row recording that the tenant deleted
the item) goes only together with every other version of its item, so the archive never
keeps a tombstone for content it still has. Rows of ``attachments`` go with the last
message version that carried their MIME; rows of ``event_attachments`` and
``channel_message_parts`` go as ``_part_rows`` says, and their blobs become candidates
for deletion like the versions' own.

A calendar series (its master, its exceptions and their attachments) is one unit: an
exception is dated by its series' end, and no member leaves the archive entirely while
another member keeps a version, because an export of a master without its exceptions
shows moved or changed occurrences at their original time.

Query holds are matched through the search index, which contains each item's newest
live version. Before deciding, every older version of an item that could lose versions
is evaluated against the query holds the index did not match for it
(``m365lake.discovery.query_versions``), so a version edited out of a hold's query keeps
the whole item held.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from m365lake.discovery.coverage import HoldCoverage, ItemKey, ItemVersion, Workload, item_key
from m365lake.discovery.custodians import site_drive_ids, team_channel_ids
from m365lake.discovery.query_versions import match_older_versions
from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.retention.policies import RetentionPolicy

# Stands for the committed files of a table in the statements below, until _scan_sql puts
# in the read_parquet calls that read them with their keys.
_SOURCE = "<lake files>"
_SOURCE_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)
_NEWEST_FIRST = (
    "ORDER BY captured_at DESC, list_position($files, filename) DESC, file_row_number DESC"
)
# True for the newest row of an item that is not a removal: the version the index contains.
# A removal is a deletion, and for Teams also a message a user deleted, which Graph keeps
# with its body emptied; the index keeps the text of the version before it.
_NEWEST_LIVE = (
    "NOT ({removed}) AND row_number() OVER (PARTITION BY {key}, ({removed}) "
    f"{_NEWEST_FIRST}) = 1"
)
_DELETED = "change = 'deleted'"
_NOT_DELETED = "change IS DISTINCT FROM 'deleted'"
_DELETED_AT = "coalesce(deleted_at, captured_at)"
_VERSION_COLUMNS = (
    "list_position($files, filename) AS file_pos, file_row_number AS row_index, "
    "{container} AS container_id, {item} AS item_id, captured_at, "
    "change = 'deleted' AS tombstone, {item_date} AS item_date, "
    "first_value(CASE WHEN ({removed}) THEN {removed_at} END) "
    f"OVER (PARTITION BY {{container}}, {{item}} {_NEWEST_FIRST}) AS item_deleted_at, "
    "size, {sha256} AS sha256, {series} AS series_id, "
    f"{_NEWEST_LIVE.format(key='{container}, {item}', removed='{removed}')} AS newest_live"
)
# The date a series ends: the day after the range's ``endDate`` (taken as UTC, which errs
# late by at most a day). NOTE: a ``noEnd`` series never ends, and the last occurrence of a
# ``numbered`` series is not computed here, so both have no date: no delete policy
# expires their master, and a keep policy keeps it.
_RECURRENCE = "CASE WHEN json_valid(recurrence) THEN recurrence END"
_SERIES_END = (
    f"CASE WHEN json_extract_string({_RECURRENCE}, '$.range.type') = 'endDate' THEN "
    f"timezone('UTC', CAST(TRY_CAST(json_extract_string({_RECURRENCE}, '$.range.endDate') "
    "AS DATE) + INTERVAL 1 DAY AS TIMESTAMP)) END"
)
_EVENT_END = (
    f"CASE WHEN event_type = 'seriesMaster' THEN {_SERIES_END} ELSE coalesce(end_at, start_at) END"
)
_NO_SERIES = "CAST(NULL AS VARCHAR)"
_EVENT_SERIES = (
    "CASE WHEN event_type = 'exception' THEN series_master_id "
    "WHEN event_type = 'seriesMaster' THEN event_id END"
)
# An exception lives as long as its series: it takes the latest end of any archived
# version of its master. Only an exception whose master the archive lacks has its own date.
_EVENTS_WITH_SERIES_END = (
    "(SELECT *, "
    f"bool_or(event_type = 'seriesMaster' AND {_NOT_DELETED}) OVER series AS master_archived, "
    f"max(CASE WHEN event_type = 'seriesMaster' AND {_NOT_DELETED} THEN {_SERIES_END} END) "
    "OVER series AS series_end "
    f"FROM {_SOURCE} WINDOW series AS (PARTITION BY mailbox_id, "
    "CASE WHEN event_type = 'exception' THEN series_master_id ELSE event_id END))"
)
_EXCEPTION_END = (
    f"CASE WHEN event_type = 'exception' AND master_archived THEN series_end ELSE {_EVENT_END} END"
)
_VERSIONS_SQL = {
    "messages": (
        "SELECT "
        + _VERSION_COLUMNS.format(
            container="mailbox_id",
            item="message_id",
            item_date="coalesce(received_at, sent_at)",
            sha256="mime_sha256",
            series=_NO_SERIES,
            removed=_DELETED,
            removed_at=_DELETED_AT,
        )
        + f" FROM {_SOURCE}"
    ),
    "drive_items": (
        "SELECT "
        + _VERSION_COLUMNS.format(
            container="drive_id",
            item="item_id",
            item_date="modified_at",
            sha256="content_sha256",
            series=_NO_SERIES,
            removed=_DELETED,
            removed_at=_DELETED_AT,
        )
        + f" FROM {_SOURCE} WHERE NOT coalesce(is_folder, false)"
    ),
    "events": (
        "SELECT "
        + _VERSION_COLUMNS.format(
            container="mailbox_id",
            item="event_id",
            item_date=_EXCEPTION_END,
            sha256="json_sha256",
            series=_EVENT_SERIES,
            removed=_DELETED,
            removed_at=_DELETED_AT,
        )
        + f" FROM {_EVENTS_WITH_SERIES_END}"
    ),
    "contacts": (
        "SELECT "
        + _VERSION_COLUMNS.format(
            container="mailbox_id",
            item="contact_id",
            item_date="coalesce(modified_at, created_at)",
            sha256="json_sha256",
            series=_NO_SERIES,
            removed=_DELETED,
            removed_at=_DELETED_AT,
        )
        + f" FROM {_SOURCE}"
    ),
    "channel_messages": (
        "SELECT "
        + _VERSION_COLUMNS.format(
            container="channel_id",
            item="message_id",
            item_date="created_at",
            sha256="json_sha256",
            series=_NO_SERIES,
            removed=f"{_DELETED} OR soft_deleted_at IS NOT NULL",
            removed_at="coalesce(deleted_at, soft_deleted_at, captured_at)",
        )
        + f" FROM {_SOURCE}"
    ),
}
_WORKLOADS: dict[str, Workload] = {
    "messages": "mail",
    "drive_items": "files",
    "events": "calendar",
    "contacts": "contacts",
    "channel_messages": "teams",
}
# Rows stored per captured version of an item, whose content is a blob: the table, its
# (container, item) key columns, and whether a row follows one version (matched by
# ``captured_at``) or only the whole item. NOTE: the calendar backup stamps an event
# attachment row with its own capture time, not its event version's, so those rows stay
# until the whole event goes.
_PART_TABLES: dict[str, tuple[str, str, str, bool]] = {
    "event_attachments": ("calendar", "mailbox_id", "event_id", False),
    "channel_message_parts": ("teams", "channel_id", "message_id", True),
}
# Joins container and item ids into one key. Graph ids never contain a control character.
_KEY_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class StoredVersion:
    """One archived version and the committed file row that stores it."""

    table: str
    path: str
    """Lake-relative path of the Parquet file."""
    row_index: int
    version: ItemVersion
    tombstone: bool
    item_deleted_at: datetime | None
    """When the tenant deleted the item, if the newest archived row is its deletion (for
    Teams also a message a user deleted, which Graph still returns)."""
    size: int | None
    sha256: str | None
    newest_live: bool = False
    """The item's newest version that is not a deletion, which the search index contains."""
    series_id: str | None = None
    """The master's event id of a calendar series' master or exception; None otherwise."""


@dataclass(frozen=True)
class PartRow:
    """A stored row of an item's part (an event attachment, a hosted content) that goes."""

    table: str
    path: str
    """Lake-relative path of the Parquet file."""
    row_index: int
    sha256: str | None
    """The part's content hash, naming its blob."""


@dataclass
class PurgePlan:
    """The outcome of evaluating the policies and holds at one moment."""

    now: datetime
    policies: list[RetentionPolicy]
    purge: list[StoredVersion] = field(default_factory=list)
    reasons: dict[StoredVersion, list[str]] = field(default_factory=dict)
    """Purged version → ids of the delete policies that expired it (empty for tombstones
    and attachments that follow their versions)."""
    held: dict[StoredVersion, list[str]] = field(default_factory=dict)
    """Expired version kept because these holds cover it."""
    protected: int = 0
    """Expired versions a keep policy still protects."""
    series_kept: int = 0
    """Expired versions kept because another member of their calendar series stays."""
    attachment_rows: list[tuple[str, int]] = field(default_factory=list)
    """(file path, row index) of ``attachments`` rows that go with purged messages."""
    part_rows: list[PartRow] = field(default_factory=list)
    """Rows of ``event_attachments`` and ``channel_message_parts`` that go with purged
    versions of their items."""

    def rows_by_file(self) -> dict[tuple[str, str], set[int]]:
        """Return (table, file path) → row indexes to remove."""
        rows: dict[tuple[str, str], set[int]] = defaultdict(set)
        for stored in self.purge:
            rows[(stored.table, stored.path)].add(stored.row_index)
        for path, row_index in self.attachment_rows:
            rows[("attachments", path)].add(row_index)
        for part in self.part_rows:
            rows[(part.table, part.path)].add(part.row_index)
        return rows

    def blob_candidates(self) -> list[str]:
        """Return the content hashes of purged versions and parts, whose blobs may go."""
        digests = {stored.sha256 for stored in self.purge if stored.sha256}
        digests.update(part.sha256 for part in self.part_rows if part.sha256)
        return sorted(digests)

    def counts(self) -> dict[str, int]:
        return {
            "versions": len(self.purge),
            "items_removed": len(
                {
                    (s.version.workload, s.version.container_id, s.version.item_id)
                    for s in self.purge
                    if s.tombstone
                }
            ),
            "attachment_rows": len(self.attachment_rows),
            "part_rows": len(self.part_rows),
            "bytes": sum(stored.size or 0 for stored in self.purge if not stored.tombstone),
            "held": len(self.held),
            "protected": self.protected,
            "series_kept": self.series_kept,
            "blob_candidates": len(self.blob_candidates()),
        }


@dataclass(frozen=True)
class _TableVersions:
    """Every archived version of one table as Arrow columns (``_VERSION_COLUMNS``).

    One ``StoredVersion`` object per version took 1.28 GB at a million versions
    (bench/purge.py), so versions stay in columns and only those a decision needs
    become objects.
    """

    table: str
    files: list[str]
    rows: pa.Table


def _scan_sql(statement: str, scan: TableScan, db: duckdb.DuckDBPyConnection) -> str:
    return statement.replace(_SOURCE, scan.sql(_SOURCE_OPTIONS, connection=db))


def _read_table_versions(lake: Lake, table: str) -> _TableVersions | None:
    scan = TableScan(lake, lake.committed_entries(table))
    if not scan:
        return None
    with reading.connect(lake) as db, scan.errors():
        statement = _scan_sql(_VERSIONS_SQL[table], scan, db)
        rows = db.sql(statement, params={"files": scan.locations}).to_arrow_table()
    return _TableVersions(table, scan.locations, rows)


def _whole_items(versions: pa.Table, marked: pa.ChunkedArray | pa.Array) -> pa.Table:
    """Return every version of each item that has at least one ``marked`` version."""
    with duckdb.connect() as db:
        db.register("versions", versions.append_column("marked", marked))
        return db.sql(
            "SELECT v.* EXCLUDE (marked) FROM versions AS v SEMI JOIN "
            "(SELECT DISTINCT container_id, item_id FROM versions WHERE marked) AS k "
            "USING (container_id, item_id)"
        ).to_arrow_table()


def _whole_series(
    versions: pa.Table, marked: pa.ChunkedArray | pa.Array
) -> pa.ChunkedArray | pa.Array:
    """Extend ``marked`` to every version of each calendar series with a marked version."""
    keys = pc.binary_join_element_wise(
        versions["container_id"], versions["series_id"], _KEY_SEPARATOR
    )
    wanted = pc.drop_null(pc.unique(pc.filter(keys, marked)))
    if len(wanted) == 0:
        return marked
    return pc.or_(marked, pc.fill_null(pc.is_in(keys, value_set=wanted), False))


def _stored_versions(
    lake: Lake, table: str, files: list[str], rows: pa.Table
) -> Iterator[StoredVersion]:
    paths = [lake.storage.relative(file) for file in files]
    for row in rows.to_pylist():
        yield StoredVersion(
            table=table,
            path=paths[row["file_pos"] - 1],
            row_index=int(row["row_index"]),
            version=ItemVersion(
                _WORKLOADS[table],
                row["container_id"],
                row["item_id"],
                row["captured_at"],
                row["item_date"],
            ),
            tombstone=bool(row["tombstone"]),
            item_deleted_at=row["item_deleted_at"],
            size=row["size"],
            sha256=row["sha256"],
            newest_live=bool(row["newest_live"]),
            series_id=row["series_id"],
        )


def read_versions(lake: Lake, table: str) -> list[StoredVersion]:
    """Return every archived version of ``table``, one of the tables in ``_VERSIONS_SQL``."""
    versions = _read_table_versions(lake, table)
    if versions is None:
        return []
    return list(_stored_versions(lake, table, versions.files, versions.rows))


@dataclass
class _Scopes:
    """The containers each policy applies to (None: every container of its workload)."""

    containers: dict[str, set[str] | None]

    @classmethod
    def load(cls, lake: Lake, policies: list[RetentionPolicy]) -> _Scopes:
        site_ids = {
            location.split(":", 1)[1]
            for policy in policies
            for location in policy.locations or ()
            if location.startswith("site:")
        }
        drives_of_sites = site_drive_ids(lake, site_ids)
        team_ids = {
            location.split(":", 1)[1]
            for policy in policies
            for location in policy.locations or ()
            if location.startswith("team:")
        }
        channels_of_teams = team_channel_ids(lake, team_ids)
        containers: dict[str, set[str] | None] = {}
        for policy in policies:
            if policy.locations is None:
                containers[policy.policy_id] = None
                continue
            found: set[str] = set()
            for location in policy.locations:
                kind, _, container_id = location.partition(":")
                if kind == "site":
                    found.update(d for d, site in drives_of_sites.items() if site == container_id)
                elif kind == "team":
                    found.update(c for c, team in channels_of_teams.items() if team == container_id)
                else:
                    found.add(container_id)
            containers[policy.policy_id] = found
        return cls(containers)

    def applies(self, policy: RetentionPolicy, version: ItemVersion) -> bool:
        if policy.workload != version.workload:
            return False
        scope = self.containers[policy.policy_id]
        return scope is None or version.container_id in scope


def _expired(
    table: str,
    rows: pa.Table,
    policies: list[RetentionPolicy],
    scopes: _Scopes,
    now: datetime,
) -> pa.ChunkedArray | pa.Array:
    """Mark the versions that at least one delete policy expired, as ``_decide`` does."""
    marked: pa.ChunkedArray | pa.Array = pa.array([False] * rows.num_rows, type=pa.bool_())
    for policy in policies:
        if policy.action != "delete" or policy.workload != _WORKLOADS[table]:
            continue
        if policy.basis == "deleted":
            reference = rows["item_deleted_at"]
        else:
            reference = pc.if_else(
                rows["tombstone"], pa.scalar(None, rows["item_date"].type), rows["item_date"]
            )
        cutoff = pa.scalar(now - timedelta(days=policy.days), type=reference.type)
        expired = pc.fill_null(pc.less_equal(reference, cutoff), False)
        scope = scopes.containers[policy.policy_id]
        if scope is not None:
            inside = pc.is_in(rows["container_id"], value_set=pa.array(sorted(scope), pa.string()))
            expired = pc.and_(expired, inside)
        marked = pc.or_(marked, expired)
    return marked


def _reference(policy: RetentionPolicy, stored: StoredVersion) -> datetime | None:
    if policy.basis == "deleted":
        return stored.item_deleted_at
    return None if stored.tombstone else stored.version.item_date


def _decide(
    stored: StoredVersion, policies: list[RetentionPolicy], scopes: _Scopes, now: datetime
) -> tuple[list[str], bool]:
    """Return the delete policies that expired ``stored`` and whether a keep policy protects it."""
    expired, protected = [], False
    for policy in policies:
        if not scopes.applies(policy, stored.version):
            continue
        reference = _reference(policy, stored)
        period = timedelta(days=policy.days)
        if policy.action == "delete":
            if reference is not None and now - reference >= period:
                expired.append(policy.policy_id)
        elif policy.basis == "deleted":
            # A period counted from deletion does not apply to items still in the tenant.
            protected = protected or (reference is not None and now - reference < period)
        elif not stored.tombstone:
            # A version whose date is unknown cannot be shown to be old enough, so it is kept.
            # A tombstone has no date of its own; its item's other versions decide.
            protected = protected or reference is None or now - reference < period
    return expired, protected


def build_plan(
    lake: Lake, policies: list[RetentionPolicy], coverage: HoldCoverage, now: datetime
) -> PurgePlan:
    """Evaluate ``policies`` and the holds in ``coverage`` over every archived version."""
    plan = PurgePlan(now=now, policies=policies)
    if not any(policy.action == "delete" for policy in policies):
        return plan
    scopes = _Scopes.load(lake, policies)
    # Only items with a version that some delete policy expired can lose anything. So
    # only their versions become objects, and the exact decision below runs on them.
    by_item = versions_by_item(
        lake, lambda table, rows: _expired(table, rows, policies, scopes, now)
    )
    at_risk = {
        key: versions
        for key, versions in by_item.items()
        if any(_removable(stored, policies, scopes, coverage, now) for stored in versions)
    }
    resolve_query_holds(lake, coverage, at_risk)
    for versions in by_item.values():
        _plan_item(plan, versions, policies, scopes, coverage)
    _keep_series_whole(plan, by_item, coverage)
    plan.attachment_rows = _attachment_rows(lake, plan.purge, by_item)
    plan.part_rows = _part_rows(lake, plan.purge, by_item)
    return plan


VersionSelector = Callable[[str, pa.Table], "pa.ChunkedArray | pa.Array"]
"""Marks, for one table's versions, those whose items are wanted (a boolean per row)."""


def versions_by_item(
    lake: Lake, select: VersionSelector | None = None
) -> dict[ItemKey, list[StoredVersion]]:
    """Return archived versions of every item table (``_VERSIONS_SQL``), grouped by item.

    Without ``select`` every item is returned. With it, only the items that have a
    version it marks, each with all of its versions.
    """
    by_item: dict[ItemKey, list[StoredVersion]] = defaultdict(list)
    for table in _VERSIONS_SQL:
        versions = _read_table_versions(lake, table)
        if versions is None:
            continue
        rows = versions.rows
        if select is not None:
            rows = _whole_items(rows, _whole_series(rows, select(table, rows)))
        for stored in _stored_versions(lake, table, versions.files, rows):
            by_item[item_key(stored.version)].append(stored)
    return by_item


def resolve_query_holds(
    lake: Lake, coverage: HoldCoverage, items: Mapping[ItemKey, Sequence[StoredVersion]]
) -> None:
    """Decide the query holds of ``items`` (every version of each) on every version."""
    unsettled = [key for key in coverage.unsettled_hits() if key in items]
    coverage.settle_index_hits(
        {key: [s.version for s in items[key]] for key in unsettled},
        {key: s.version for key in unsettled for s in items[key] if s.newest_live},
    )
    match_older_versions(lake, coverage, items)


def _removable(
    stored: StoredVersion,
    policies: list[RetentionPolicy],
    scopes: _Scopes,
    coverage: HoldCoverage,
    now: datetime,
) -> bool:
    """Return whether ``stored`` is expired, unprotected and not (yet) known to be held."""
    expired, protected = _decide(stored, policies, scopes, now)
    return bool(expired) and not protected and not coverage.holds_covering(stored.version)


def _plan_item(
    plan: PurgePlan,
    versions: list[StoredVersion],
    policies: list[RetentionPolicy],
    scopes: _Scopes,
    coverage: HoldCoverage,
) -> None:
    contents = [stored for stored in versions if not stored.tombstone]
    tombstones = [stored for stored in versions if stored.tombstone]
    purged = 0
    for stored in contents + (tombstones if not contents else []):
        if _consider(plan, stored, policies, scopes, coverage):
            purged += 1
    if contents and purged == len(contents):
        for stored in tombstones:
            hold_ids = coverage.holds_covering(stored.version)
            if hold_ids:
                plan.held[stored] = hold_ids
            else:
                plan.purge.append(stored)
                plan.reasons[stored] = []


def _keep_series_whole(
    plan: PurgePlan, by_item: Mapping[ItemKey, list[StoredVersion]], coverage: HoldCoverage
) -> None:
    """Take back the purge of series members that would leave while another member stays.

    A hold on one member, a keep policy or a deletion of one exception can leave a series
    partly expired. Its members then stay whole until the series can go as one.
    """
    series: dict[tuple[str, str], list[list[StoredVersion]]] = defaultdict(list)
    for (workload, container_id, _), versions in by_item.items():
        series_id = next((s.series_id for s in versions if s.series_id), None)
        if workload == "calendar" and series_id is not None:
            series[(container_id, series_id)].append(versions)
    purged = set(plan.purge)
    taken_back: set[StoredVersion] = set()
    for members in series.values():
        leaving = [member for member in members if all(s in purged for s in member)]
        if not leaving or len(leaving) == len(members):
            continue
        hold_ids = sorted(
            {
                hold_id
                for member in members
                for stored in member
                if stored not in purged
                for hold_id in coverage.holds_covering(stored.version)
            }
        )
        for member in leaving:
            for stored in member:
                taken_back.add(stored)
                if hold_ids:
                    plan.held[stored] = hold_ids
                else:
                    plan.series_kept += 1
    if taken_back:
        plan.purge = [stored for stored in plan.purge if stored not in taken_back]
        for stored in taken_back:
            plan.reasons.pop(stored, None)


def _consider(
    plan: PurgePlan,
    stored: StoredVersion,
    policies: list[RetentionPolicy],
    scopes: _Scopes,
    coverage: HoldCoverage,
) -> bool:
    """Add ``stored`` to the plan's purge, held or protected part; return whether it is purged."""
    expired, protected = _decide(stored, policies, scopes, plan.now)
    if not expired:
        return False
    if protected:
        plan.protected += 1
        return False
    hold_ids = coverage.holds_covering(stored.version)
    if hold_ids:
        plan.held[stored] = hold_ids
        return False
    plan.purge.append(stored)
    plan.reasons[stored] = expired
    return True


def _attachment_rows(
    lake: Lake,
    purged: Iterable[StoredVersion],
    by_item: Mapping[ItemKey, list[StoredVersion]],
) -> list[tuple[str, int]]:
    """Return attachments rows whose message MIME no surviving version carries."""
    purged_set = set(purged)
    orphaned: set[tuple[str, str, str]] = set()
    for key, versions in by_item.items():
        if key[0] != "mail":
            continue
        gone = {s.sha256 for s in versions if s in purged_set and s.sha256}
        kept = {s.sha256 for s in versions if s not in purged_set and s.sha256}
        orphaned.update((key[1], key[2], digest) for digest in gone - kept)
    scan = TableScan(lake, lake.committed_entries("attachments"))
    if not orphaned or not scan:
        return []
    keys = sorted(orphaned)
    wanted = pa.table(
        {
            "mailbox_id": pa.array([key[0] for key in keys], pa.string()),
            "message_id": pa.array([key[1] for key in keys], pa.string()),
            "mime_sha256": pa.array([key[2] for key in keys], pa.string()),
        }
    )
    with reading.connect(lake) as db, scan.errors():
        db.register("wanted", wanted)
        # The join runs in DuckDB, so only the rows that go reach Python.
        statement = (
            f"SELECT filename, file_row_number FROM {_SOURCE} AS a SEMI JOIN wanted AS w "
            "USING (mailbox_id, message_id, mime_sha256)"
        )
        rows: list[Any] = db.execute(_scan_sql(statement, scan, db)).fetchall()
    return [(lake.storage.relative(row[0]), int(row[1])) for row in rows]


def _part_rows(
    lake: Lake,
    purged: Iterable[StoredVersion],
    by_item: Mapping[ItemKey, list[StoredVersion]],
) -> list[PartRow]:
    """Return the part rows that no surviving version of their item needs.

    Every part row of an item goes when all its versions go. A table whose rows follow
    one version (``channel_message_parts``) also loses the rows captured with a purged
    version, unless a surviving version was captured at the same instant.
    """
    purged_set = set(purged)
    found: list[PartRow] = []
    for table, (workload, container, item, per_version) in _PART_TABLES.items():
        gone_items: set[tuple[str, str]] = set()
        gone_versions: set[tuple[str, str, datetime]] = set()
        kept_versions: set[tuple[str, str, datetime]] = set()
        for key, versions in by_item.items():
            if key[0] != workload:
                continue
            if all(stored in purged_set for stored in versions):
                gone_items.add((key[1], key[2]))
                continue
            for stored in versions:
                moment = stored.version.captured_at
                if moment is None:
                    continue
                target = gone_versions if stored in purged_set else kept_versions
                target.add((key[1], key[2], moment))
        if per_version:
            gone_versions -= kept_versions
        else:
            gone_versions = set()
        scan = TableScan(lake, lake.committed_entries(table))
        if not scan or not (gone_items or gone_versions):
            continue
        with reading.connect(lake) as db, scan.errors():
            db.register("gone_items", _keys_table(sorted(gone_items), with_time=False))
            db.register("gone_versions", _keys_table(sorted(gone_versions), with_time=True))
            # The joins run in DuckDB, so only the rows that go reach Python.
            statement = (
                f"SELECT filename, file_row_number, content_sha256 FROM {_SOURCE} AS p "
                "WHERE EXISTS (SELECT 1 FROM gone_items AS g WHERE "
                f"g.container_id = p.{container} AND g.item_id = p.{item}) "
                "OR EXISTS (SELECT 1 FROM gone_versions AS v WHERE "
                f"v.container_id = p.{container} AND v.item_id = p.{item} "
                "AND v.captured_at = p.captured_at)"
            )
            rows: list[Any] = db.execute(_scan_sql(statement, scan, db)).fetchall()
        found.extend(
            PartRow(table, lake.storage.relative(row[0]), int(row[1]), row[2]) for row in rows
        )
    return found


def _keys_table(keys: Sequence[tuple[Any, ...]], *, with_time: bool) -> pa.Table:
    columns = {
        "container_id": pa.array([key[0] for key in keys], pa.string()),
        "item_id": pa.array([key[1] for key in keys], pa.string()),
    }
    if with_time:
        columns["captured_at"] = pa.array([key[2] for key in keys], pa.timestamp("us", tz="UTC"))
    return pa.table(columns)


def held_versions_in_plan(lake: Lake, plan: PurgePlan) -> dict[StoredVersion, list[str]]:
    """Return the versions ``plan`` would purge that an active hold covers now, with hold ids.

    The holds are resolved afresh, exactly as ``build_plan`` resolves them, including the
    older versions of items that query holds are checked on. A correct plan yields none.
    """
    coverage = HoldCoverage.load(lake)
    planned = {item_key(stored.version) for stored in plan.purge}
    if not planned:
        return {}

    def in_plan(table: str, rows: pa.Table) -> pa.ChunkedArray | pa.Array:
        workload = _WORKLOADS[table]
        wanted = [
            f"{container}{_KEY_SEPARATOR}{item}" for w, container, item in planned if w == workload
        ]
        keys = pc.binary_join_element_wise(rows["container_id"], rows["item_id"], _KEY_SEPARATOR)
        return pc.is_in(keys, value_set=pa.array(wanted, pa.string()))

    items = versions_by_item(lake, in_plan)
    resolve_query_holds(lake, coverage, items)
    held = {}
    for stored in plan.purge:
        hold_ids = coverage.holds_covering(stored.version)
        if hold_ids:
            held[stored] = hold_ids
    return held
