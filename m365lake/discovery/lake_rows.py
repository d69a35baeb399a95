"""Read committed rows of lake tables with DuckDB, without rebuilding the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan

# Files are passed in commit order, so the file position and row number order versions
# captured at the same instant, as in the catalog's views.
_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)


def latest_rows(
    lake: Lake, table: str, keys: Sequence[str], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Return ``columns`` of the latest committed row per ``keys`` of ``table``."""
    files = TableScan(lake, lake.committed_entries(table))
    if not files:
        return []
    selected = ", ".join(f'"{name}"' for name in columns)
    partition = ", ".join(f'"{name}"' for name in keys)
    with reading.connect(lake) as db, files.errors():
        query = (
            f"SELECT {selected} FROM {files.sql(_OPTIONS, connection=db)} "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY captured_at DESC, "
            "list_position($files, filename) DESC, file_row_number DESC) = 1"
        )
        cursor = db.execute(query, {"files": files.locations})
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
