"""Streaming natives out of the blob store, and families whose content is damaged."""

from __future__ import annotations

import json
import os

import pytest
import zstandard

from m365lake.discovery import save_search
from m365lake.discovery.production import export_production, verify_production
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake
from m365lake.lake.blobs import BlobStore, sha256_hex
from tests.unit.discovery.test_export_fixtures import (
    ACTOR,
    InlineExtractor,
    SeedLake,
    mime_message,
    open_case,
    parse_dat,
)

OWNER = "alice@contoso.example"


def test_read_chunks_streams_compressed_blob(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    data = b"compressible budget text\n" * 200_000
    digest = lake.blobs.put(data)

    chunks = list(lake.blobs.read_chunks(digest, chunk_bytes=1 << 16))

    assert len(chunks) > 10
    assert max(len(chunk) for chunk in chunks) <= 1 << 16
    assert b"".join(chunks) == data


def test_read_chunks_streams_raw_block_blob(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    data = os.urandom(3 * 1024 * 1024 + 17)
    with lake.blobs.writer() as writer:
        for start in range(0, len(data), 100_000):
            writer.write(data[start : start + 100_000])
        digest, _ = writer.commit()
    assert writer.compressed is False

    assert b"".join(lake.blobs.read_chunks(digest)) == data


def test_read_chunks_detects_altered_blob(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    digest = lake.blobs.put(b"original content " * 1000)
    path = lake.storage.path(BlobStore.relative_path(digest))
    os.chmod(path, 0o644)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"altered content " * 1000))

    with pytest.raises(LakeIntegrityError, match="hashes to"):
        b"".join(lake.blobs.read_chunks(digest))


def test_read_chunks_reports_missing_blob(tmp_path):
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(LakeIntegrityError, match="missing"):
        list(lake.blobs.read_chunks(sha256_hex(b"never stored")))


def test_damaged_blob_fails_only_its_family(tmp_path):
    lake = Lake.open(tmp_path / "lake", inline_threshold=64)
    seed = SeedLake(lake)
    seed.mailbox("mb-alice", OWNER)
    seed.onedrive("d-alice", "mb-alice", OWNER)
    good = b"budget that is intact\n" * 50
    bad = b"budget that will be damaged\n" * 50
    seed.file("d-alice", "good", "good.txt", good)
    seed.file("d-alice", "bad", "bad.txt", bad)
    seed.message(
        "mb-alice",
        "m1",
        mime_message(subject="budget", sender=OWNER, to=[OWNER], body="budget " * 50),
    )
    seed.commit()
    seed.index()
    case_id = open_case(lake, "CASE-D", [("mailbox", OWNER), ("onedrive", OWNER)])
    save_search(lake, case_id, "budget", "budget", actor=ACTOR)
    damaged = lake.storage.path(BlobStore.relative_path(sha256_hex(bad)))
    os.chmod(damaged, 0o644)
    damaged.write_bytes(zstandard.ZstdCompressor().compress(b"something else entirely"))
    destination = tmp_path / "prod"

    result = export_production(lake, case_id, destination, actor=ACTOR, extractor=InlineExtractor())

    assert result.counts["errors"] == 1
    assert result.counts["families_produced"] == 2
    assert [error["source_id"] for error in result.errors] == ["file:d-alice:bad"]
    assert "hashes to" in result.errors[0]["message"]
    names = {row["FILENAME"] for row in parse_dat(destination / "DATA" / "loadfile.dat")}
    assert "bad.txt" not in names
    assert "good.txt" in names
    report = json.loads((destination / "REPORTS" / "chain_of_custody.json").read_text())
    assert report["errors"][0]["source_id"] == "file:d-alice:bad"
    assert not list(destination.rglob("*.partial"))
    assert verify_production(destination).ok


def test_item_without_content_is_metadata_only(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    seed = SeedLake(lake)
    seed.mailbox("mb-alice", OWNER)
    seed.onedrive("d-alice", "mb-alice", OWNER)
    seed.file("d-alice", "note", "budget notebook", None, package_type="oneNote")
    seed.commit()
    seed.index()
    case_id = open_case(lake, "CASE-M", [("onedrive", OWNER)])
    destination = tmp_path / "prod"

    result = export_production(
        lake, case_id, destination, actor=ACTOR, kql="budget", extractor=InlineExtractor()
    )
    (row,) = parse_dat(destination / "DATA" / "loadfile.dat")

    assert result.counts["metadata_only"] == 1
    assert row["NATIVELINK"] == ""
    assert row["SHA256"] == ""
    assert row["ISSUES"].startswith("no native: the content of this oneNote package")
    assert row["TEXTSTATUS"].startswith("unsupported: ")
    assert (destination / row["TEXTLINK"].replace("\\", "/")).read_bytes() == b"\xef\xbb\xbf"
    assert verify_production(destination).ok
