"""Read the archived content of the families to produce, inline or from blobs.

Content up to the lake's inline threshold sits in a Parquet column beside its row; it is
read a window of families at a time, one row group at a time, so memory contains one
window's small content and never a whole table. Larger content is a blob, which a
native is streamed from chunk by chunk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from m365lake.discovery.production.selection import FamilySource
from m365lake.errors import LakeError
from m365lake.lake import Lake, reading
from m365lake.lake.blobs import sha256_hex

WINDOW_FAMILIES = 2_000
WINDOW_INLINE_BYTES = 64 * 1024 * 1024
"""A window ends at this many families or this much inline content (by recorded size)."""


def content_column(family: FamilySource) -> str:
    return "mime_inline" if family.workload == "mail" else "content_inline"


def windows(families: Sequence[FamilySource]) -> Iterator[Sequence[FamilySource]]:
    """Split ``families`` into consecutive windows that bound the inline bytes read at once."""
    start = 0
    inline_bytes = 0
    for index, family in enumerate(families):
        if family.row.get("has_inline"):
            inline_bytes += family.size
        if index + 1 - start >= WINDOW_FAMILIES or inline_bytes >= WINDOW_INLINE_BYTES:
            yield families[start : index + 1]
            start, inline_bytes = index + 1, 0
    if start < len(families):
        yield families[start:]


def read_inline(
    lake: Lake, families: Sequence[FamilySource]
) -> tuple[dict[int, bytes], dict[int, str]]:
    """Return the inline content of the families that have it, and why others failed.

    Both dictionaries are keyed by ordinal. Each content is checked against the SHA-256
    its row records, as ``Lake.read_content`` does. A Parquet file that cannot be read
    fails the families stored in it, and a mismatching hash fails its own family.
    """
    by_file: dict[tuple[str, str], list[FamilySource]] = defaultdict(list)
    for family in families:
        if family.row.get("has_inline"):
            by_file[(family.parquet_path, content_column(family))].append(family)
    found: dict[int, bytes] = {}
    problems: dict[int, str] = {}
    for (path, column), members in by_file.items():
        members.sort(key=lambda family: family.row_index)
        entry = members[0].parquet_entry
        try:
            parquet = reading.open_parquet(lake, entry)
            try:
                found.update(_read_rows(parquet, column, members))
            finally:
                parquet.close()
        except (OSError, pa.ArrowException, LakeError) as error:
            if not isinstance(error, LakeError):
                error = reading.read_error(lake, [entry], error)
            for family in members:
                problems[family.ordinal] = f"the Parquet file {path} could not be read: {error}"
    for family in families:
        data = found.get(family.ordinal)
        if data is not None and sha256_hex(data) != family.content_sha256:
            del found[family.ordinal]
            problems[family.ordinal] = (
                f"inline content of {family.source_id} recorded as {family.content_sha256} "
                f"hashes to {sha256_hex(data)}; the Parquet file {family.parquet_path} was "
                "damaged or altered"
            )
    return found, problems


def _read_rows(
    parquet: pq.ParquetFile, column: str, members: Sequence[FamilySource]
) -> dict[int, bytes]:
    """Read ``column`` of the members' rows, each needed row group once."""
    found: dict[int, bytes] = {}
    position = 0
    first_row = 0
    for group in range(parquet.metadata.num_row_groups):
        end_row = first_row + parquet.metadata.row_group(group).num_rows
        selected = []
        while position < len(members) and members[position].row_index < end_row:
            selected.append(members[position])
            position += 1
        if selected:
            values = parquet.read_row_group(group, columns=[column]).column(0)
            indices = pa.array([family.row_index - first_row for family in selected])
            for family, value in zip(selected, values.take(indices).to_pylist(), strict=True):
                if value is not None:
                    found[family.ordinal] = bytes(value)
        first_row = end_row
        if position >= len(members):
            break
    return found
