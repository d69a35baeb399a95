"""ObjectStorage against moto's S3 server and Azurite, one run of each test per store."""

from __future__ import annotations

import hashlib
import io
import threading

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from m365lake.errors import LakeError
from m365lake.lake.encryption import KeyRing
from m365lake.lake.object_store import ObjectStorage, open_object_storage
from m365lake.lake.parquet_keys import decryption_properties, encryption_properties
from tests.objectstore.servers import AzuriteServer, S3Server

pytestmark = pytest.mark.objectstore


@pytest.fixture
def storage(opened_store: ObjectStorage, tmp_path_factory: pytest.TempPathFactory) -> ObjectStorage:
    opened_store.spool = tmp_path_factory.mktemp("spool")
    return opened_store


def test_publish_first_writer_wins(storage: ObjectStorage) -> None:
    assert storage.publish("commits/00000001.json", b"first")
    assert not storage.publish("commits/00000001.json", b"second")

    assert storage.read_bytes("commits/00000001.json") == b"first"


def test_publish_with_overwrite_replaces_the_object(storage: ObjectStorage) -> None:
    storage.publish("leases/writer.json", b"old")
    assert storage.publish("leases/writer.json", b"new", overwrite=True)

    assert storage.read_bytes("leases/writer.json") == b"new"


def test_concurrent_publishers_have_one_winner(
    storage: ObjectStorage,
) -> None:
    results: dict[int, bool] = {}
    start = threading.Barrier(4)

    def publish(writer: int) -> None:
        start.wait()
        results[writer] = storage.publish("commits/00000002.json", f"writer {writer}".encode())

    threads = [threading.Thread(target=publish, args=(writer,)) for writer in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [writer for writer, won in results.items() if won]
    assert len(winners) == 1
    assert storage.read_bytes("commits/00000002.json") == f"writer {winners[0]}".encode()


def test_new_file_is_invisible_until_closed_durably(storage: ObjectStorage) -> None:
    handle = storage.open_new("blobs/ab/abcdef")
    handle.write(b"x" * 3000)

    assert not storage.exists("blobs/ab/abcdef")
    assert storage.list_tree("blobs") == []

    storage.close_durably(handle)
    assert storage.exists("blobs/ab/abcdef")
    assert storage.hash_file("blobs/ab/abcdef") == (
        hashlib.sha256(b"x" * 3000).hexdigest(),
        3000,
    )


def test_open_new_rejects_taken_name(storage: ObjectStorage) -> None:
    storage.publish("tables/messages/run-0.parquet", b"committed")

    with pytest.raises(FileExistsError):
        storage.open_new("tables/messages/run-0.parquet")


def test_close_durably_rejects_name_taken_meanwhile(storage: ObjectStorage) -> None:
    handle = storage.open_new("tables/messages/run-1.parquet")
    handle.write(b"loser")
    assert storage.publish("tables/messages/run-1.parquet", b"winner")

    with pytest.raises(FileExistsError):
        storage.close_durably(handle)

    assert storage.read_bytes("tables/messages/run-1.parquet") == b"winner"
    assert len(list(storage.spool.iterdir())) == 1
    storage.abandon_new(handle)
    assert list(storage.spool.iterdir()) == []


def test_parquet_written_through_open_new_reads_back(storage: ObjectStorage) -> None:
    table = pa.table({"id": ["a", "b", "c"], "size": [1, 2, 3]})
    handle = storage.open_new("tables/messages/run-2.parquet")
    writer = pq.ParquetWriter(handle, table.schema)
    writer.write_table(table)
    writer.close()
    storage.close_durably(handle)

    read = pq.read_table(io.BytesIO(storage.read_bytes("tables/messages/run-2.parquet")))
    assert read.equals(table)


def test_listing_names_files_and_skips_temp_files(storage: ObjectStorage) -> None:
    for name in ("state/a.json", "state/b.json", "state/.tmp-c.json", "state/sub/d.json"):
        storage.publish(name, b"{}")

    assert storage.list_tree("state") == ["state/a.json", "state/b.json", "state/sub/d.json"]
    assert sorted(storage.list_names("state")) == ["a.json", "b.json", "sub"]
    assert storage.list_names("missing") == []


def test_remove_deletes_and_tolerates_a_missing_name(storage: ObjectStorage) -> None:
    storage.publish("locks/purge.json", b"{}")

    storage.remove("locks/purge.json")
    storage.remove("locks/purge.json")

    assert not storage.exists("locks/purge.json")


@pytest.mark.parametrize("name", ["../outside", "/absolute", "tables/../../x"])
def test_names_outside_root_rejected(storage: ObjectStorage, name: str) -> None:
    with pytest.raises(LakeError, match="must not contain"):
        storage.path(name)


def test_unknown_scheme_rejected() -> None:
    with pytest.raises(LakeError, match="unknown object storage scheme 'gs'"):
        open_object_storage("gs://bucket/lake")


def test_duckdb_reads_committed_files_through_the_store(storage: ObjectStorage) -> None:
    """DuckDB reads the store through the fsspec file system registered on its connection."""
    names = ["tables/messages/run-3.parquet", "tables/messages/run-4.parquet"]
    for start, name in enumerate(names):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"size": [start * 10 + 1, start * 10 + 2]}), buffer)
        storage.publish(name, buffer.getvalue())
    connection = duckdb.connect()
    connection.register_filesystem(storage.fs)

    locations = [storage.url(name) for name in names]
    rows = connection.execute("SELECT sum(size), count(*) FROM read_parquet(?)", [locations])

    assert rows.fetchall() == [(26, 4)]


def test_replace_if_unchanged_needs_the_current_tag(storage: ObjectStorage) -> None:
    storage.publish("leases/writer.json", b"holder a")
    _, seen_by_a = storage.read_tagged("leases/writer.json")
    _, seen_by_b = storage.read_tagged("leases/writer.json")

    assert storage.replace_if_unchanged("leases/writer.json", b"renewed by a", seen_by_a)
    assert not storage.replace_if_unchanged("leases/writer.json", b"taken by b", seen_by_b)

    data, _ = storage.read_tagged("leases/writer.json")
    assert data == b"renewed by a"


def test_replace_if_unchanged_of_a_removed_file_fails(storage: ObjectStorage) -> None:
    storage.publish("locks/purge.json", b"holder a")
    _, tag = storage.read_tagged("locks/purge.json")
    storage.remove("locks/purge.json")

    assert not storage.replace_if_unchanged("locks/purge.json", b"holder a again", tag)
    assert not storage.exists("locks/purge.json")


def test_legal_hold_keeps_the_version_until_released(s3_server: S3Server, s3_bucket: str) -> None:
    storage = open_object_storage(f"s3://{s3_bucket}/lake", **s3_server.storage_options())
    storage.publish("blobs/cd/cdef01", b"evidence")
    client = s3_server.client()

    version = storage.set_legal_hold("blobs/cd/cdef01", on=True)

    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=s3_bucket, Key="lake/blobs/cd/cdef01", VersionId=version)
    storage.set_legal_hold("blobs/cd/cdef01", on=False)
    client.delete_object(Bucket=s3_bucket, Key="lake/blobs/cd/cdef01", VersionId=version)
    assert not storage.exists("blobs/cd/cdef01")


def test_legal_hold_on_azure_is_rejected(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    storage = open_object_storage(
        f"az://{azure_container}/lake", **azurite_server.storage_options()
    )
    storage.publish("blobs/cd/cdef01", b"evidence")

    with pytest.raises(LakeError, match="not supported yet"):
        storage.set_legal_hold("blobs/cd/cdef01", on=True)


def test_encrypted_parquet_reads_back_through_the_store(storage: ObjectStorage) -> None:
    """pyarrow decrypts a lake file opened on the store as it does a local one."""
    keys = KeyRing(keys={"k1": bytes(range(32))}, current="k1")
    table = pa.table({"subject": ["quarterly numbers", "lunch"], "size": [10, 20]})
    key_id, encryption = encryption_properties(keys)
    handle = storage.open_new("tables/messages/run-5.parquet")
    writer = pq.ParquetWriter(handle, table.schema, encryption_properties=encryption)
    writer.write_table(table)
    writer.close()
    storage.close_durably(handle)

    assert b"quarterly numbers" not in storage.read_bytes("tables/messages/run-5.parquet")
    decryption = decryption_properties(keys, key_id, "tables/messages/run-5.parquet")
    with storage.fs.open(storage.path("tables/messages/run-5.parquet"), "rb") as remote:
        read = pq.ParquetFile(remote, decryption_properties=decryption).read()
    assert read.equals(table)
