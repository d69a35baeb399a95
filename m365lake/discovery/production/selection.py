"""Choose what a production contains: the case's query, its custodians, the item versions.

The query runs against the search index, which must be up to date with the lake. Its
hits are kept when they belong to one of the case's custodians: a mailbox custodian
contributes its messages, events and contacts, a OneDrive its files, a site the files of
its libraries, a team the messages of its channels (``workload_selection``). For
each kept hit the latest archived version that is not a deletion is read back from the
tables, as the index itself chose it, with the file and row that store its content.

Families come out in production order: by custodian label, then mail, files, events,
contacts and Teams threads, then by mailbox folder and date, by library and path, by
start, by name, or by the time a thread started.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa

from m365lake.discovery.case_state import CaseDetails
from m365lake.discovery.custodians import site_drive_ids
from m365lake.discovery.errors import CaseNotFoundError, CaseStateError, InvalidRequestError
from m365lake.discovery.lake_rows import latest_rows
from m365lake.discovery.production.workload_rows import WORKLOAD_TABLES
from m365lake.discovery.production.workload_selection import select_workload_families
from m365lake.discovery.records import Custodian, SavedSearch
from m365lake.discovery.search_api import SearchHit, search_hits, validate_kql
from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.search.documents import doc_id_of

logger = logging.getLogger(__name__)

Workload = Literal["mail", "files", "calendar", "contacts", "teams"]

_OPTIONS = (
    "filename = true, file_row_number = true, hive_partitioning = false, union_by_name = true"
)
_MAIL_COLUMNS = (
    "mailbox_id, message_id, captured_at, run_id, folder_path, internet_message_id, "
    "conversation_id, subject, from_address, from_name, to_addresses, cc_addresses, "
    "bcc_addresses, sent_at, received_at, size, mime_sha256, "
    "mime_inline IS NOT NULL AS has_inline"
)
_FILE_COLUMNS = (
    "drive_id, item_id, captured_at, run_id, site_id, name, path, size, mime_type, "
    "created_at, modified_at, created_by, modified_by, content_sha256, package_type, "
    "web_url, coalesce(is_folder, false) AS is_folder, content_inline IS NOT NULL AS has_inline"
)
_TABLES: dict[Workload, tuple[str, str, str, str]] = {
    "mail": ("messages", "mailbox_id", "message_id", _MAIL_COLUMNS),
    "files": ("drive_items", "drive_id", "item_id", _FILE_COLUMNS),
}


def _key_columns(workload: Workload) -> tuple[str, str]:
    """Return the (container, item) key columns of ``workload``'s table."""
    if workload in WORKLOAD_TABLES:
        spec = WORKLOAD_TABLES[workload]
        return spec.container, spec.item
    return _TABLES[workload][1], _TABLES[workload][2]


@dataclass(frozen=True)
class FamilySource:
    """One item to produce with its attachments: its custodian, version row and storage."""

    ordinal: int
    workload: Workload
    custodian_id: str
    custodian_label: str
    location: str
    """The mailbox's user principal name, or the library's URL (``drive:<id>`` if unknown)."""
    row: dict[str, Any]
    """The version's columns, without the content itself."""
    parquet_entry: Mapping[str, Any]
    """The manifest entry of the Parquet file that stores the version."""
    row_index: int
    deleted_at: datetime | None

    @property
    def parquet_path(self) -> str:
        """Lake-relative path of the Parquet file that stores the version."""
        return str(self.parquet_entry["path"])

    @property
    def container_id(self) -> str:
        return str(self.row[_key_columns(self.workload)[0]])

    @property
    def item_id(self) -> str:
        return str(self.row[_key_columns(self.workload)[1]])

    @property
    def source_id(self) -> str:
        """The search index's document id, e.g. ``mail:<mailbox>:<message>``.

        The load file's SOURCEID, which joins a document back to the lake. Events,
        series, contacts and threads are named by their (first) item.
        """
        return doc_id_of(self.workload, self.container_id, self.item_id)

    @property
    def content_sha256(self) -> str | None:
        if self.workload in WORKLOAD_TABLES:
            value = self.row.get("json_sha256")
        else:
            value = self.row["mime_sha256" if self.workload == "mail" else "content_sha256"]
        return str(value) if value else None

    @property
    def size(self) -> int:
        return max(int(self.row.get("size") or 0), 0)

    @property
    def source_path(self) -> str:
        """The mailbox folder path or the library path, led by the mailbox or library.

        For events, contacts and Teams threads the location already names the calendar,
        the contacts or the team and channel.
        """
        if self.workload in WORKLOAD_TABLES:
            return self.location
        inner = self.row.get("folder_path" if self.workload == "mail" else "path") or ""
        return f"{self.location}/{inner}" if inner else self.location


@dataclass(frozen=True)
class Selection:
    """The families one export produces, with the query and scope that chose them."""

    kql: str
    search: SavedSearch | None
    custodians: list[Custodian]
    hits: int
    out_of_scope: int
    """Hits in locations that are not custodians of the case."""
    not_found: list[str]
    """Source ids of hits with no archived version left (purged since indexing)."""
    families: list[FamilySource]


def resolve_query(
    details: CaseDetails, *, kql: str | None, search_id: str | None
) -> tuple[str, SavedSearch | None]:
    """Return the KQL to export and the saved search it came from, if any.

    ``search_id`` names a saved search by id or by name. With neither argument, a case
    with exactly one saved search uses it.
    """
    if kql is not None and search_id is not None:
        raise InvalidRequestError("give either a saved search or a KQL query, not both")
    if kql is not None:
        if not kql.strip():
            raise InvalidRequestError("the KQL query is empty: give the query to export")
        validate_kql(kql)
        return kql, None
    searches = details.searches
    known = ", ".join(f"{item.search_id} ({item.name})" for item in searches.values()) or "none"
    if search_id is None:
        if len(searches) == 1:
            search = next(iter(searches.values()))
            return search.kql, search
        raise InvalidRequestError(
            f"case {details.case.case_id!r} has {len(searches)} saved searches ({known}); "
            "name one with --search, or give a query with --kql"
        )
    matches = [item for item in searches.values() if search_id in (item.search_id, item.name)]
    if len(matches) != 1:
        raise CaseNotFoundError(
            f"case {details.case.case_id!r} has no single saved search with id or name "
            f"{search_id!r}; its searches are: {known}"
        )
    return matches[0].kql, matches[0]


def _scope(lake: Lake, custodians: Sequence[Custodian]) -> dict[tuple[Workload, str], Custodian]:
    """Return (workload, container id) → custodian for every location the custodians cover."""
    site_ids = {item.container_id for item in custodians if item.kind == "site"}
    drives_of_sites = site_drive_ids(lake, site_ids)
    scope: dict[tuple[Workload, str], Custodian] = {}
    for custodian in custodians:
        if custodian.kind == "mailbox":
            scope.setdefault(("mail", custodian.container_id), custodian)
        elif custodian.kind == "onedrive":
            scope.setdefault(("files", custodian.container_id), custodian)
        else:
            for drive, site in sorted(drives_of_sites.items()):
                if site == custodian.container_id:
                    scope.setdefault(("files", drive), custodian)
    return scope


def _latest_versions(
    lake: Lake, workload: Workload, hits: Sequence[SearchHit]
) -> list[dict[str, Any]]:
    """Return the latest non-deletion version of each hit item, with file and row number."""
    table, container, item, columns = _TABLES[workload]
    files = TableScan(lake, lake.committed_entries(table))
    if not hits or not files:
        return []
    wanted = pa.table(
        {
            "container_id": [hit.container_id for hit in hits],
            "item_id": [hit.item_id for hit in hits],
        }
    )
    query = f"""
        WITH versions AS (
            SELECT {columns}, change, deleted_at AS row_deleted_at,
                   filename, file_row_number, list_position($files, filename) AS file_pos
            FROM {{source}} AS t
            SEMI JOIN wanted AS w ON t.{container} = w.container_id AND t.{item} = w.item_id
        ),
        marked AS (
            SELECT *, first_value(CASE WHEN change = 'deleted'
                                  THEN coalesce(row_deleted_at, captured_at) END IGNORE NULLS)
                OVER (PARTITION BY {container}, {item}
                      ORDER BY captured_at, file_pos, file_row_number
                      ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS deleted_at
            FROM versions
        )
        SELECT * EXCLUDE (change, row_deleted_at, file_pos) FROM marked
        WHERE change <> 'deleted'
        QUALIFY row_number() OVER (
            PARTITION BY {container}, {item}
            ORDER BY captured_at DESC, file_pos DESC, file_row_number DESC) = 1
    """
    with reading.connect(lake) as connection, files.errors():
        connection.register("wanted", wanted)
        source = files.sql(_OPTIONS, connection=connection)
        cursor = connection.execute(query.replace("{source}", source), {"files": files.locations})
        names = [column[0] for column in cursor.description or []]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    entries = dict(zip(files.locations, files.entries, strict=True))
    for row in rows:
        row["filename"] = entries[row["filename"]]
    return rows


def _locations(lake: Lake) -> dict[tuple[Workload, str], str]:
    mailboxes = latest_rows(
        lake, "mailboxes", ["mailbox_id"], ["mailbox_id", "user_principal_name"]
    )
    drives = latest_rows(lake, "drives", ["drive_id"], ["drive_id", "web_url"])
    found: dict[tuple[Workload, str], str] = {}
    for row in mailboxes:
        found[("mail", row["mailbox_id"])] = row["user_principal_name"] or row["mailbox_id"]
    for row in drives:
        found[("files", row["drive_id"])] = (row["web_url"] or f"drive:{row['drive_id']}").rstrip(
            "/"
        )
    return found


def _order_key(custodian_rank: int, workload: Workload, row: dict[str, Any]) -> tuple[Any, ...]:
    if workload == "mail":
        moment = row.get("sent_at") or row.get("received_at")
        return (
            custodian_rank,
            0,
            (row.get("folder_path") or "").casefold(),
            moment is None,
            moment.timestamp() if moment is not None else 0.0,
            row["message_id"],
        )
    return (custodian_rank, 1, (row.get("path") or "").casefold(), False, 0.0, row["item_id"])


def _split_by_scope(
    hits: Sequence[SearchHit], scope: dict[tuple[Workload, str], Custodian]
) -> tuple[dict[Workload, list[SearchHit]], int]:
    """Return the hits in scope per workload, and how many are out of scope."""
    in_scope: dict[Workload, list[SearchHit]] = {"mail": [], "files": []}
    out_of_scope = 0
    for hit in hits:
        if hit.workload in WORKLOAD_TABLES:
            continue
        workload: Workload = "mail" if hit.workload == "mail" else "files"
        if (workload, hit.container_id) in scope:
            in_scope[workload].append(hit)
        else:
            out_of_scope += 1
    return in_scope, out_of_scope


def select_families(
    lake: Lake, details: CaseDetails, kql: str, search: SavedSearch | None = None
) -> Selection:
    """Run ``kql`` (from the saved ``search``, if any) and return the families in scope."""
    custodians = sorted(
        details.custodians.values(), key=lambda item: (item.label or "", item.custodian_id)
    )
    if not custodians:
        raise CaseStateError(
            f"case {details.case.case_id!r} has no custodians, so nothing is in scope; add "
            "custodians first (`m365lake case add-custodian`)"
        )
    hits = search_hits(lake, kql, purpose="the export")
    scope = _scope(lake, custodians)
    in_scope, out_of_scope = _split_by_scope(hits, scope)

    ranks = {custodian.custodian_id: rank for rank, custodian in enumerate(custodians)}
    ordered: list[tuple[tuple[Any, ...], Workload, dict[str, Any]]] = []
    found: set[tuple[str, str, str]] = set()
    for workload, workload_hits in in_scope.items():
        container, item = _TABLES[workload][1:3]
        for row in _latest_versions(lake, workload, workload_hits):
            found.add((workload, row[container], row[item]))
            if workload == "files" and row.pop("is_folder"):
                continue
            rank = ranks[scope[(workload, row[container])].custodian_id]
            ordered.append((_order_key(rank, workload, row), workload, row))
    rendered = select_workload_families(lake, hits, custodians)
    out_of_scope += rendered.out_of_scope
    rendered_by_row = {id(family.row): family for family in rendered.families}
    for family in rendered.families:
        ordered.append((family.order, family.workload, family.row))  # type: ignore[arg-type]
    ordered.sort(key=lambda entry: entry[0])
    not_found = sorted(
        [
            f"{'mail' if hit.workload == 'mail' else 'file'}:{hit.container_id}:{hit.item_id}"
            for workload, workload_hits in in_scope.items()
            for hit in workload_hits
            if (workload, hit.container_id, hit.item_id) not in found
        ]
        + rendered.not_found
    )

    locations = _locations(lake)
    families = []
    for ordinal, (_key, workload, row) in enumerate(ordered):
        picked = rendered_by_row.get(id(row))
        if picked is not None:
            custodian, location = picked.custodian, picked.location
        else:
            container = str(row[_TABLES[workload][1]])
            custodian = scope[(workload, container)]
            location = locations.get((workload, container), f"{workload}:{container}")
        families.append(
            FamilySource(
                ordinal=ordinal,
                workload=workload,
                custodian_id=custodian.custodian_id,
                custodian_label=custodian.label or custodian.custodian_id,
                location=location,
                row=row,
                parquet_entry=row.pop("filename"),
                row_index=int(row.pop("file_row_number")),
                deleted_at=row.pop("deleted_at"),
            )
        )
    logger.info(
        "export selection: %d hits, %d out of the case's scope, %d without a version, %d families",
        len(hits),
        out_of_scope,
        len(not_found),
        len(families),
    )
    return Selection(
        kql=kql,
        search=search,
        custodians=custodians,
        hits=len(hits),
        out_of_scope=out_of_scope,
        not_found=not_found,
        families=families,
    )
