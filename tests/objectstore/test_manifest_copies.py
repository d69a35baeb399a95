"""Local copies of a remote lake's manifests: runs read them, verify reads the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.lake import Lake
from m365lake.lake.commits import MANIFEST_COPIES, manifest_name
from tests.objectstore.servers import (
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    S3Server,
    unique_name,
)

pytestmark = pytest.mark.objectstore


@pytest.fixture
def plain_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A bucket without versioning, so an overwrite replaces what the lake reads."""
    name = unique_name("copies")
    s3_server.client().create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache"))
    return name


def _commit(lake: Lake, run_id: str) -> None:
    with lake.begin(run_id=run_id, kind="mail", container="u1") as tx:
        tx.write_rows("runs", [{"run_id": run_id}], partition={})
        tx.commit()


def test_reads_use_copies_and_verify_reads_the_store(
    plain_bucket: str, s3_server: S3Server
) -> None:
    lake = Lake.open(f"s3://{plain_bucket}/lake")
    _commit(lake, "r1")
    _commit(lake, "r2")
    assert len(lake.manifests()) == 2
    copies = lake.local_dir / MANIFEST_COPIES
    assert sorted(path.name for path in copies.iterdir()) == ["0000000001.json", "0000000002.json"]

    key = f"lake/{manifest_name(2)}"
    s3_server.client().put_object(Bucket=plain_bucket, Key=key, Body=b'{"seq": 2}\n')

    reopened = Lake.open(f"s3://{plain_bucket}/lake")
    assert [manifest["run_id"] for manifest in reopened.manifests()] == ["r1", "r2"]
    _, problems = reopened.check_chain()
    assert any(manifest_name(2) in problem for problem in problems)


def test_new_chain_at_the_same_url_drops_the_copies(plain_bucket: str, s3_server: S3Server) -> None:
    lake = Lake.open(f"s3://{plain_bucket}/lake")
    _commit(lake, "old-1")
    _commit(lake, "old-2")
    assert len(lake.manifests()) == 2
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=plain_bucket, Prefix="lake/")
    for entry in listed["Contents"]:
        client.delete_object(Bucket=plain_bucket, Key=entry["Key"])

    fresh = Lake.open(f"s3://{plain_bucket}/lake")
    _commit(fresh, "new-1")

    again = Lake.open(f"s3://{plain_bucket}/lake")
    assert [manifest["run_id"] for manifest in again.manifests()] == ["new-1"]
    assert again.verify()["manifests"] == 1
