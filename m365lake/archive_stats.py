"""Figures about the archive for run reports, Dagster metadata and notebooks.

Every figure is read from the catalog views, so it counts only committed rows. Sizes are
the ``size`` column: the MIME size of a message, the byte size of a file version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from m365lake.catalog import connect
from m365lake.lake import Lake

Workload = Literal["mail", "files", "teams"]

# Views and key column per workload; folders are left out of the file figures.
_LIVE = {
    "mail": ("messages", "mailbox_id"),
    "files": ("files", "drive_id"),
    "teams": ("channel_messages", "team_id"),
}
_VERSIONS = {
    "mail": ("message_versions", "mailbox_id"),
    "files": ("file_versions", "drive_id"),
    "teams": ("channel_message_versions", "team_id"),
}

_GROWTH = """
WITH versions AS (
    SELECT captured_at, size, mailbox_id AS container_id
    FROM messages_rows WHERE change <> 'deleted'
    UNION ALL
    SELECT captured_at, size, drive_id
    FROM drive_items_rows WHERE change <> 'deleted' AND NOT coalesce(is_folder, false)
)
SELECT
    CAST(timezone('UTC', captured_at) AS DATE) AS day,
    count(*) AS versions,
    coalesce(sum(size), 0) AS bytes,
    sum(count(*)) OVER (ORDER BY day) AS total_versions,
    sum(coalesce(sum(size), 0)) OVER (ORDER BY day) AS total_bytes
FROM versions
WHERE $container IS NULL OR container_id = $container
GROUP BY day
ORDER BY day
"""

_CUSTODIANS = """
SELECT 'mailbox' AS kind, b.user_principal_name AS name, count(*) AS items,
    coalesce(sum(m.size), 0) AS bytes
FROM messages AS m
JOIN mailboxes AS b USING (mailbox_id)
GROUP BY ALL
UNION ALL
SELECT
    CASE d.owner_kind WHEN 'user' THEN 'onedrive' ELSE 'site' END,
    coalesce(s.display_name, d.owner_name, d.owner_id),
    count(f.item_id),
    coalesce(sum(f.size), 0)
FROM drives AS d
LEFT JOIN sites AS s USING (site_id)
LEFT JOIN files AS f USING (drive_id)
GROUP BY ALL
UNION ALL
SELECT 'team', coalesce(t.display_name, m.team_id), count(*), coalesce(sum(m.size), 0)
FROM channel_messages AS m
LEFT JOIN teams AS t USING (team_id)
GROUP BY ALL
ORDER BY bytes DESC, kind, name
"""


@dataclass(frozen=True)
class ContainerTotals:
    """Archived items and bytes of one mailbox or drive."""

    live_items: int
    """Items the tenant still had at the last backup."""
    live_bytes: int
    versions: int
    """Every archived version, those of items deleted in the tenant included."""
    version_bytes: int


@dataclass(frozen=True)
class GrowthPoint:
    """Versions archived on one day (UTC) and the running totals up to that day."""

    day: date
    versions: int
    bytes: int
    total_versions: int
    total_bytes: int


@dataclass(frozen=True)
class CustodianVolume:
    """Live items and bytes of one mailbox, OneDrive, site (all its libraries) or team.

    A mailbox counts its mail (MIME sizes) and a team the messages of all its channels
    (Graph JSON sizes).
    """

    kind: str
    """``mailbox``, ``onedrive``, ``site`` or ``team``."""
    name: str
    items: int
    bytes: int


def container_totals(lake: Lake, workload: Workload, container_id: str) -> ContainerTotals:
    """Return the live and versioned item counts and bytes of one mailbox or drive."""
    live_view, key = _LIVE[workload]
    versions_view, _ = _VERSIONS[workload]
    with connect(lake) as db:
        live = db.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM {live_view} WHERE {key} = ?",
            [container_id],
        ).fetchone()
        kept = db.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM {versions_view} WHERE {key} = ?",
            [container_id],
        ).fetchone()
    assert live is not None and kept is not None  # an aggregate always returns a row
    return ContainerTotals(int(live[0]), int(live[1]), int(kept[0]), int(kept[1]))


def delta_token_age(
    lake: Lake, container_id: str, run_id: str, started_at: datetime
) -> timedelta | None:
    """Return how old the delta state was that run ``run_id`` started from.

    The state was committed by the container's previous successful run, so its age is the
    time from that run's finish to this run's start. None for a first run.
    """
    with connect(lake) as db:
        row = db.execute(
            "SELECT max(finished_at) FROM runs WHERE container = ? AND run_id <> ? "
            "AND status = 'succeeded' AND finished_at <= ?",
            [container_id, run_id, started_at],
        ).fetchone()
    if row is None or row[0] is None:
        return None
    age: timedelta = started_at - row[0]
    return age


def archive_growth(lake: Lake, container_id: str | None = None) -> list[GrowthPoint]:
    """Return the versions archived per day, for one mailbox or drive or for the whole lake."""
    with connect(lake) as db:
        rows = db.execute(_GROWTH, {"container": container_id}).fetchall()
    return [GrowthPoint(row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4])) for row in rows]


def custodian_volume(lake: Lake) -> list[CustodianVolume]:
    """Return the live volume of every mailbox, OneDrive, site and team, largest first."""
    with connect(lake) as db:
        rows = db.execute(_CUSTODIANS).fetchall()
    return [CustodianVolume(str(row[0]), str(row[1]), int(row[2]), int(row[3])) for row in rows]


def format_bytes(count: float) -> str:
    """Format a byte count with a binary unit: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable: the last unit returns")


def markdown_bars(
    rows: Sequence[tuple[str, int]],
    *,
    label: str,
    value: str,
    width: int = 24,
    bytes_values: bool = True,
) -> str:
    """Render labelled values as a Markdown table with a bar of block characters per row.

    The Dagster UI and Jupyter both render Markdown, so one text chart serves both
    without a plotting library. Bars are scaled to the largest value.
    """
    if not rows:
        return "no data"
    largest = max(number for _, number in rows) or 1
    lines = [f"| {label} | {value} | |", "|---|---:|---|"]
    for name, number in rows:
        shown = format_bytes(number) if bytes_values else f"{number:,}"
        bar = "█" * round(width * number / largest)
        lines.append(f"| {name} | {shown} | {bar} |")
    return "\n".join(lines)


def growth_markdown(points: Sequence[GrowthPoint], *, last_days: int = 30) -> str:
    """Render the running archive size of the last ``last_days`` days with data as bars."""
    shown = list(points)[-last_days:]
    return markdown_bars(
        [(point.day.isoformat(), point.total_bytes) for point in shown],
        label="day (UTC)",
        value="archived bytes",
    )


def custodian_markdown(volumes: Sequence[CustodianVolume], *, top: int = 25) -> str:
    """Render the live bytes of the ``top`` largest custodians as bars."""
    return markdown_bars(
        [(f"{volume.kind}: {volume.name}", volume.bytes) for volume in volumes[:top]],
        label="custodian",
        value="live bytes",
    )
