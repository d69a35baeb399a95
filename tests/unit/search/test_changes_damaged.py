"""A damaged lake table file is named in a LakeIntegrityError with the next steps."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m365lake.errors import LakeIntegrityError
from m365lake.search.changes import ItemVersion, damaged_file_error, read_rows


def truncated_parquet(folder: Path) -> Path:
    path = folder / "part-0.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "size": [1, 2]}), path)
    path.write_bytes(path.read_bytes()[:40])
    return path


def test_read_rows_names_truncated_file(tmp_path: Path):
    path = truncated_parquet(tmp_path)
    version = ItemVersion("messages", "m1", "a", path, 0, None)

    with pytest.raises(LakeIntegrityError) as caught:
        list(read_rows([version]))

    assert str(path) in str(caught.value)
    assert "m365lake verify" in str(caught.value)


def test_damaged_file_found_by_footer(tmp_path: Path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"item_id": ["a"]}), good)
    bad = truncated_parquet(tmp_path)

    error = damaged_file_error([good, bad], RuntimeError("IO Error: no magic bytes"))

    assert str(bad) in str(error)
    assert str(good) not in str(error)
    assert "no magic bytes" in str(error)
