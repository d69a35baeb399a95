"""Read committed rows of lake tables with DuckDB, without rebuilding the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from m365lake.lake import Lake

# Files are passed in commit order, so the file position and row number order versions
# captured at the same instant, as in the catalog's views.
_SOURCE = (
    "read_parquet($files, hive_partitioning = false, union_by_name = true, "
    "filename = true, file_row_number = true)"
)


def latest_rows(
    lake: Lake, table: str, keys: Sequence[str], columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Return ``columns`` of the latest committed row per ``keys`` of ``table``."""
    files = [str(path) for path in lake.committed_files(table)]
    if not files:
        return []
    selected = ", ".join(f'"{name}"' for name in columns)
    partition = ", ".join(f'"{name}"' for name in keys)
    query = (
        f"SELECT {selected} FROM {_SOURCE} QUALIFY row_number() OVER ("
        f"PARTITION BY {partition} ORDER BY captured_at DESC, "
        "list_position($files, filename) DESC, file_row_number DESC) = 1"
    )
    with duckdb.connect() as db:
        cursor = db.execute(query, {"files": files})
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
