"""Store behaviours a lake on object storage will rely on, pinned against loopback servers.

S3 facts run against moto's server, Azure Blob facts against Azurite. Azurite has no
immutability policies and no legal holds, so the Object Lock facts have no Azure
counterpart here: Azure immutability is untested until an emulator implements it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from botocore.exceptions import ClientError

from tests.objectstore.servers import AzuriteServer, S3Server

pytestmark = pytest.mark.objectstore

MIB = 1 << 20


def error_code(error: ClientError) -> str:
    code: str = error.response["Error"]["Code"]
    return code


def days_from_now(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def put_locked(client: Any, bucket: str, key: str, data: bytes, mode: str) -> str:
    """Put ``data`` under a lock of ``mode`` for a day; return the new version id."""
    response = client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        ObjectLockMode=mode,
        ObjectLockRetainUntilDate=days_from_now(1),
    )
    version: str = response["VersionId"]
    return version


def retained_until(client: Any, bucket: str, key: str, version: str) -> dt.datetime:
    # NOTE: moto's GetObjectRetention returns 500 to botocore, so the date is read from
    # the object's headers, which carry the same retention.
    head = client.head_object(Bucket=bucket, Key=key, VersionId=version)
    until: dt.datetime = head["ObjectLockRetainUntilDate"]
    return until


# --- S3 (moto) -------------------------------------------------------------------------


def test_s3_create_if_absent_first_writer_wins(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    key = "commits/00000001.json"
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as raised:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"second", IfNoneMatch="*")

    assert error_code(raised.value) == "PreconditionFailed"
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"first"


def test_s3_multipart_upload_is_invisible_until_completed(
    s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    key = "blobs/ab/abcdef"
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    parts = []
    for number, fill in enumerate((b"a", b"b"), start=1):
        # Every part but the last must hold at least 5 MiB.
        part = client.upload_part(
            Bucket=s3_bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=fill * (5 * MIB),
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})

    with pytest.raises(ClientError) as raised:
        client.head_object(Bucket=s3_bucket, Key=key)
    assert error_code(raised.value) == "404"
    assert client.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []

    client.complete_multipart_upload(
        Bucket=s3_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert client.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == 10 * MIB


def test_s3_conditional_multipart_completion_onto_taken_name_fails(
    s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    key = "commits/00000002.json"
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    part = client.upload_part(
        Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"late"
    )
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"early", IfNoneMatch="*")

    with pytest.raises(ClientError) as raised:
        client.complete_multipart_upload(
            Bucket=s3_bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
            IfNoneMatch="*",
        )

    assert error_code(raised.value) == "PreconditionFailed"
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"early"


def test_s3_compliance_lock_denies_deleting_the_version(
    s3_server: S3Server, s3_bucket: str
) -> None:
    client = s3_server.client()
    key = "tables/messages/run-0.parquet"
    version = put_locked(client, s3_bucket, key, b"held", "COMPLIANCE")

    with pytest.raises(ClientError) as raised:
        client.delete_object(Bucket=s3_bucket, Key=key, VersionId=version)
    assert error_code(raised.value) == "AccessDenied"
    with pytest.raises(ClientError) as raised:
        client.delete_object(
            Bucket=s3_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    assert error_code(raised.value) == "AccessDenied"

    read = client.get_object(Bucket=s3_bucket, Key=key, VersionId=version)
    assert read["Body"].read() == b"held"


def test_s3_locked_version_survives_put_and_delete_of_its_name(
    s3_server: S3Server, s3_bucket: str
) -> None:
    """A plain put or delete of a locked name succeeds: only the version is protected.

    So a lake on S3 must read the version its manifest names, not the name's latest
    version, and must not take a successful delete for a purge.
    """
    client = s3_server.client()
    key = "tables/messages/run-0.parquet"
    version = put_locked(client, s3_bucket, key, b"held", "COMPLIANCE")

    client.put_object(Bucket=s3_bucket, Key=key, Body=b"replaced")
    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"replaced"
    deleted = client.delete_object(Bucket=s3_bucket, Key=key)
    assert deleted["DeleteMarker"] is True

    with pytest.raises(ClientError):
        client.head_object(Bucket=s3_bucket, Key=key)
    read = client.get_object(Bucket=s3_bucket, Key=key, VersionId=version)
    assert read["Body"].read() == b"held"


def test_s3_legal_hold_denies_delete_until_released(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    key = "blobs/cd/cdef01"
    version = client.put_object(Bucket=s3_bucket, Key=key, Body=b"evidence")["VersionId"]
    client.put_object_legal_hold(
        Bucket=s3_bucket, Key=key, VersionId=version, LegalHold={"Status": "ON"}
    )

    with pytest.raises(ClientError) as raised:
        client.delete_object(
            Bucket=s3_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    assert error_code(raised.value) == "AccessDenied"

    client.put_object_legal_hold(
        Bucket=s3_bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"}
    )
    client.delete_object(Bucket=s3_bucket, Key=key, VersionId=version)
    versions = client.list_object_versions(Bucket=s3_bucket, Prefix=key)
    assert versions.get("Versions", []) == []


def test_s3_governance_lock_yields_only_to_bypass(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    key = "state/cases/case-1.json"
    version = put_locked(client, s3_bucket, key, b"case", "GOVERNANCE")

    with pytest.raises(ClientError) as raised:
        client.delete_object(Bucket=s3_bucket, Key=key, VersionId=version)
    assert error_code(raised.value) == "AccessDenied"

    client.delete_object(
        Bucket=s3_bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
    )
    versions = client.list_object_versions(Bucket=s3_bucket, Prefix=key)
    assert versions.get("Versions", []) == []


def test_s3_compliance_retention_can_be_extended(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    key = "audit/0001.json"
    version = put_locked(client, s3_bucket, key, b"audit", "COMPLIANCE")

    longer = days_from_now(30)
    client.put_object_retention(
        Bucket=s3_bucket,
        Key=key,
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": longer},
    )

    assert retained_until(client, s3_bucket, key, version).date() == longer.date()


@pytest.mark.xfail(
    strict=True,
    reason="moto lets a compliance retention be shortened; AWS S3 denies it (AccessDenied)",
)
def test_s3_compliance_retention_cannot_be_shortened(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    key = "audit/0002.json"
    version = client.put_object(
        Bucket=s3_bucket,
        Key=key,
        Body=b"audit",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=days_from_now(30),
    )["VersionId"]

    with pytest.raises(ClientError) as raised:
        client.put_object_retention(
            Bucket=s3_bucket,
            Key=key,
            VersionId=version,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": days_from_now(2)},
            BypassGovernanceRetention=True,
        )
    assert error_code(raised.value) == "AccessDenied"


def test_s3_replace_if_unchanged_rejects_a_stale_etag(s3_server: S3Server, s3_bucket: str) -> None:
    """A lease renewal must replace only the record its holder last saw."""
    client = s3_server.client()
    key = "leases/writer.json"
    first = client.put_object(Bucket=s3_bucket, Key=key, Body=b"holder a")["ETag"]
    second = client.put_object(Bucket=s3_bucket, Key=key, Body=b"holder a renewed", IfMatch=first)

    with pytest.raises(ClientError) as raised:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"holder b", IfMatch=first)

    assert error_code(raised.value) == "PreconditionFailed"
    read = client.get_object(Bucket=s3_bucket, Key=key)
    assert read["ETag"] == second["ETag"]
    assert read["Body"].read() == b"holder a renewed"


def test_s3_lists_an_object_right_after_its_put(s3_server: S3Server, s3_bucket: str) -> None:
    """S3 has listed new objects at once since 2020; moto does too.

    The lake still must not need listing for correctness: other S3-compatible stores
    may list late.
    """
    client = s3_server.client()
    names = [f"tables/messages/run-{index}.parquet" for index in range(3)]
    for name in names:
        client.put_object(Bucket=s3_bucket, Key=name, Body=name.encode())

    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix="tables/")
    assert [entry["Key"] for entry in listed["Contents"]] == names


# --- Azure Blob Storage (Azurite) ------------------------------------------------------


def test_azure_create_if_absent_first_writer_wins(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    blob = azurite_server.service().get_blob_client(azure_container, "commits/00000001.json")
    blob.upload_blob(b"first", match_condition=MatchConditions.IfMissing)

    with pytest.raises(ResourceExistsError):
        blob.upload_blob(b"second", match_condition=MatchConditions.IfMissing)
    # overwrite=False sends the same If-None-Match: * condition.
    with pytest.raises(ResourceExistsError):
        blob.upload_blob(b"third", overwrite=False)

    assert blob.download_blob().readall() == b"first"


def test_azure_staged_blocks_invisible_until_committed(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    service = azurite_server.service()
    blob = service.get_blob_client(azure_container, "blobs/ab/abcdef")
    block_ids = ["block-0001", "block-0002"]
    for block_id, fill in zip(block_ids, (b"a", b"b"), strict=True):
        blob.stage_block(block_id, fill * MIB)

    assert not blob.exists()
    container = service.get_container_client(azure_container)
    assert list(container.list_blob_names()) == []

    blob.commit_block_list(block_ids)
    assert blob.get_blob_properties().size == 2 * MIB


def test_azure_conditional_block_commit_onto_taken_name_fails(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    blob = azurite_server.service().get_blob_client(azure_container, "commits/00000002.json")
    # The other writer goes first: Azurite counts a name that has staged blocks as
    # taken for If-None-Match, though the name does not exist for reads.
    blob.upload_blob(b"early", match_condition=MatchConditions.IfMissing)
    blob.stage_block("block-0001", b"late")

    with pytest.raises(ResourceExistsError):
        blob.commit_block_list(["block-0001"], match_condition=MatchConditions.IfMissing)

    assert blob.download_blob().readall() == b"early"


def test_azure_replace_if_unchanged_rejects_a_stale_etag(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    blob = azurite_server.service().get_blob_client(azure_container, "leases/writer.json")
    first = blob.upload_blob(b"holder a")["etag"]
    blob.upload_blob(
        b"holder a renewed",
        overwrite=True,
        etag=first,
        match_condition=MatchConditions.IfNotModified,
    )

    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(
            b"holder b",
            overwrite=True,
            etag=first,
            match_condition=MatchConditions.IfNotModified,
        )

    assert blob.download_blob().readall() == b"holder a renewed"


def test_azure_lists_a_blob_right_after_its_upload(
    azurite_server: AzuriteServer, azure_container: str
) -> None:
    container = azurite_server.service().get_container_client(azure_container)
    names = [f"tables/messages/run-{index}.parquet" for index in range(3)]
    for name in names:
        container.upload_blob(name, name.encode())

    assert list(container.list_blob_names(name_starts_with="tables/")) == names
