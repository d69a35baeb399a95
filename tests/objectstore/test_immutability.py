"""S3 Object Lock on a real lake against the moto server: locks, legal holds, purge, verify.

moto does not model IAM, so any caller may bypass a governance-mode lock here. The tests
therefore check the bypass only in compliance mode, where S3 rejects it for everyone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import s3fs
from botocore.exceptions import ClientError
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.discovery import (
    add_custodians,
    create_case,
    place_hold,
    read_audit_events,
    release_hold,
)
from m365lake.errors import LakeError
from m365lake.lake import BlobStore, Lake, reading
from m365lake.lake.object_lock import (
    LEGAL_HOLDS_KEY,
    SETTINGS_KEY,
    ObjectLockRule,
    S3ObjectVersions,
    rule_from_state,
)
from m365lake.retention import add_policy, purge
from m365lake.retention.immutability import (
    LEGAL_HOLD_SYNC,
    object_lock_settings,
    set_object_lock,
    sync_legal_holds,
)
from tests.objectstore.servers import (
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    AzuriteServer,
    S3Server,
    unique_name,
)
from tests.unit.discovery.lake_fixture import ALICE, T0, message, seed_lake

PREFIX = "lake"
CONTENT = b"board minutes attachment " * 60_000
"""Larger than the inline threshold, so the lake stores it as a blob."""


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def lake(s3_env: None, s3_bucket: str) -> Lake:
    opened = Lake.open(f"s3://{s3_bucket}/{PREFIX}")
    seed_lake(opened)
    return opened


def reopen(lake: Lake) -> Lake:
    """Open the lake again, as a new process would, with no cached versions."""
    return Lake.open(lake.location, create=False)


def key(relative: str) -> str:
    return f"{PREFIX}/{relative}"


def bucket_of(lake: Lake) -> str:
    return lake.location.split("://", 1)[1].split("/", 1)[0]


def versions(client: Any, bucket: str, relative: str) -> list[dict[str, Any]]:
    listed = client.list_object_versions(Bucket=bucket, Prefix=key(relative))
    return [entry for entry in listed.get("Versions", []) if entry["Key"] == key(relative)]


def oldest_head(client: Any, bucket: str, relative: str) -> dict[str, Any]:
    oldest = versions(client, bucket, relative)[-1]
    head: dict[str, Any] = client.head_object(
        Bucket=bucket, Key=key(relative), VersionId=oldest["VersionId"]
    )
    return head


def commit_mail_with_blob(lake: Lake, mailbox: str, message_id: str) -> tuple[str, str]:
    """Commit one message whose MIME is a blob; return the table file and blob names."""
    digest = lake.blobs.put(content_of(message_id))
    with lake.begin(run_id=f"mail-{message_id}", kind="mail", container=mailbox) as tx:
        tx.write_rows(
            "messages",
            [message(mailbox, message_id, "created", T0, mime_sha256=digest)],
            partition={"mailbox_id": mailbox},
        )
        tx.commit()
    newest = lake.manifests()[-1]
    return newest["files"][0]["path"], BlobStore.relative_path(digest)


def content_of(message_id: str) -> bytes:
    return CONTENT + message_id.encode()


def newest_manifest_name(lake: Lake) -> str:
    return f"commits/{lake.head().seq:010d}.json"


def test_set_rejects_bucket_without_object_lock(s3_env: None, s3_server: S3Server) -> None:
    bucket = unique_name("plain")
    s3_server.client().create_bucket(Bucket=bucket)
    lake = Lake.open(f"s3://{bucket}/{PREFIX}")

    with pytest.raises(LakeError, match="does not have Object Lock enabled"):
        set_object_lock(lake, actor="ops", mode="governance", days=1)

    assert object_lock_settings(lake) == (None, None)


def test_set_rejects_local_lake(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(LakeError, match="local folder"):
        set_object_lock(lake, actor="ops", mode="governance", days=1)


def test_set_rejects_azure_lake(
    azurite_server: AzuriteServer,
    azure_container: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache"))
    lake = Lake.open(f"az://{azure_container}/{PREFIX}")

    with pytest.raises(LakeError, match="Azure Blob Storage are not supported"):
        set_object_lock(lake, actor="ops", mode="compliance", days=1)


def test_new_objects_get_retention(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    before_file, before_blob = commit_mail_with_blob(lake, "mb-bob", "before")

    rule = set_object_lock(lake, actor="ops", mode="governance", days=1)
    table_file, blob = commit_mail_with_blob(lake, "mb-bob", "after")
    manifest = newest_manifest_name(lake)

    assert (rule.mode, rule.days) == ("GOVERNANCE", 1)
    earliest = datetime.now(UTC) + timedelta(hours=23)
    for name in (table_file, blob, manifest):
        head = oldest_head(client, bucket, name)
        assert head.get("ObjectLockMode") == "GOVERNANCE", name
        assert head["ObjectLockRetainUntilDate"] > earliest, name
    for name in (before_file, before_blob):
        assert "ObjectLockMode" not in oldest_head(client, bucket, name), name
    events = [event for event in read_audit_events(lake) if event.action == "immutability.set"]
    assert len(events) == 1


def test_keep_policy_lengthens_the_lock(lake: Lake, s3_server: S3Server) -> None:
    set_object_lock(lake, actor="ops", mode="governance", days=1)
    add_policy(lake, actor="ops", name="keep mail", workload="mail", action="keep", days=30)

    fresh = reopen(lake)
    table_file, _ = commit_mail_with_blob(fresh, "mb-bob", "kept")

    head = oldest_head(s3_server.client(), bucket_of(lake), table_file)
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)
    assert object_lock_settings(fresh)[1] is not None
    assert object_lock_settings(fresh)[1].days == 30  # type: ignore[union-attr]


def test_rogue_admin_cannot_destroy_locked_objects(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    set_object_lock(lake, actor="ops", mode="compliance", days=1)
    digest = lake.blobs.put(content_of("evidence"))
    table_file, blob = commit_mail_with_blob(lake, "mb-bob", "evidence")
    manifest = newest_manifest_name(lake)
    head_before = lake.head()

    for name in (table_file, blob, manifest):
        original = versions(client, bucket, name)[-1]["VersionId"]
        with pytest.raises(ClientError) as denied:
            client.delete_object(Bucket=bucket, Key=key(name), VersionId=original)
        assert denied.value.response["Error"]["Code"] == "AccessDenied", name
        with pytest.raises(ClientError) as bypass:
            client.delete_object(
                Bucket=bucket,
                Key=key(name),
                VersionId=original,
                BypassGovernanceRetention=True,
            )
        assert bypass.value.response["Error"]["Code"] == "AccessDenied", name
    # What does succeed on a locked bucket: a newer version on top, and a delete marker.
    client.put_object(Bucket=bucket, Key=key(table_file), Body=b"ransom note")
    client.put_object(Bucket=bucket, Key=key(blob), Body=b"ransom note")
    client.delete_object(Bucket=bucket, Key=key(manifest))

    fresh = reopen(lake)
    counts = fresh.verify()

    assert counts["files"] >= 1
    assert fresh.head() == head_before
    assert fresh.storage.read_bytes(table_file)[:4] == b"PAR1"
    entry = next(item for item in fresh.committed_entries("messages") if item["path"] == table_file)
    rows = [row for batch in reading.iter_batches(fresh, entry, 100) for row in batch.to_pylist()]
    assert [row["message_id"] for row in rows] == ["evidence"]
    assert fresh.blobs.read(digest) == content_of("evidence")


def test_commit_after_rogue_delete_marker_keeps_chain(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    set_object_lock(lake, actor="ops", mode="governance", days=1)
    commit_mail_with_blob(lake, "mb-bob", "one")
    hidden = newest_manifest_name(lake)
    client.delete_object(Bucket=bucket, Key=key(hidden))

    fresh = reopen(lake)
    seq_before = fresh.head().seq
    commit_mail_with_blob(fresh, "mb-bob", "two")

    assert fresh.head().seq == seq_before + 1
    assert len(versions(client, bucket, hidden)) == 1
    reopen(lake).verify()


def test_legal_hold_follows_hold_until_release(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    alice_file, alice_blob = commit_mail_with_blob(lake, "mb-alice", "held")
    bob_file, bob_blob = commit_mail_with_blob(lake, "mb-bob", "free")
    set_object_lock(lake, actor="ops", mode="governance", days=1)
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")

    hold = place_hold(lake, "C", actor="carol", custodian_ids=["mailbox:mb-alice"])

    def status(name: str) -> str | None:
        value = oldest_head(client, bucket, name).get("ObjectLockLegalHoldStatus")
        return None if value is None else str(value)

    recorded = lake.state(LEGAL_HOLDS_KEY) or {}
    assert status(alice_file) == "ON"
    assert status(alice_blob) == "ON"
    assert status(bob_file) != "ON"
    assert status(bob_blob) != "ON"
    assert recorded[alice_file]["holds"] == [hold.hold_id]
    original = versions(client, bucket, alice_blob)[-1]["VersionId"]
    with pytest.raises(ClientError):
        client.delete_object(
            Bucket=bucket, Key=key(alice_blob), VersionId=original, BypassGovernanceRetention=True
        )

    head_before = lake.head()
    again = sync_legal_holds(lake, actor="carol")
    assert not again.changed
    assert lake.head() == head_before

    release_hold(lake, hold.hold_id, actor="carol", reason="matter settled")

    assert status(alice_file) == "OFF"
    assert status(alice_blob) == "OFF"
    assert lake.state(LEGAL_HOLDS_KEY) == {}
    actions = [event.action for event in read_audit_events(lake)]
    assert actions.count(LEGAL_HOLD_SYNC) == 2


def shorten_lock(client: Any, bucket: str, name: str, until: datetime) -> None:
    """Stand in for time passing: move a governance lock's date close to now."""
    for entry in versions(client, bucket, name):
        client.put_object_retention(
            Bucket=bucket,
            Key=key(name),
            VersionId=entry["VersionId"],
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
            BypassGovernanceRetention=True,
        )


def test_purge_reports_locked_objects_and_retries(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    set_object_lock(lake, actor="ops", mode="governance", days=1)
    table_file, blob = commit_mail_with_blob(lake, "mb-bob", "expiring")
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    later = datetime.now(UTC) + timedelta(days=1)

    first = purge(lake, actor="erin", apply=True, now=later)

    locked = {error.relative for error in first.locked}
    assert table_file in locked
    assert blob in locked
    assert all("locked until" in error.describe() for error in first.locked)
    assert first.counts()["objects_locked"] == len(first.locked)
    reopen(lake).verify()

    until = datetime.now(UTC) + timedelta(seconds=2)
    for name in locked:
        shorten_lock(client, bucket, name, until)
    while datetime.now(UTC) <= until:
        time.sleep(0.2)
    second = purge(reopen(lake), actor="erin", apply=True, now=later)

    assert second.locked == []
    assert versions(client, bucket, table_file) == []
    assert versions(client, bucket, blob) == []
    reopen(lake).verify()


def test_purge_deletes_rogue_versions_of_removed_files(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    table_file, _ = commit_mail_with_blob(lake, "mb-bob", "expiring")
    set_object_lock(lake, actor="ops", mode="governance", days=1)
    client.put_object(Bucket=bucket, Key=key(table_file), Body=b"ransom note")
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)

    result = purge(
        reopen(lake), actor="erin", apply=True, now=datetime.now(UTC) + timedelta(days=1)
    )

    assert table_file not in {error.relative for error in result.locked}
    listed = client.list_object_versions(Bucket=bucket, Prefix=key(table_file))
    assert listed.get("Versions", []) == []
    assert listed.get("DeleteMarkers", []) == []


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, None),
        ({SETTINGS_KEY: {"mode": "GOVERNANCE", "days": 7}}, ("GOVERNANCE", 7)),
        ({SETTINGS_KEY: {"mode": "sideways", "days": 7}}, None),
        (
            {
                SETTINGS_KEY: {"mode": "COMPLIANCE", "days": 7},
                "retention/policy/p1": {"action": "keep", "days": 90},
                "retention/policy/p2": {"action": "delete", "days": 400},
            },
            ("COMPLIANCE", 90),
        ),
        (
            {
                SETTINGS_KEY: {"mode": "COMPLIANCE", "days": 30},
                "retention/policy/p1": {"action": "keep", "days": 10},
            },
            ("COMPLIANCE", 30),
        ),
        ({"retention/policy/p1": {"action": "keep", "days": 90}}, None),
    ],
)
def test_rule_from_state(state: dict[str, Any], expected: tuple[str, int] | None) -> None:
    rule = rule_from_state(state)

    assert (None if rule is None else (rule.mode, rule.days)) == expected


def test_cli_sets_and_shows_the_lock(lake: Lake) -> None:
    runner = CliRunner()

    shown_before = runner.invoke(main, ["immutability", "show", "--lake", lake.location])
    set_result = runner.invoke(
        main,
        ["immutability", "set", "--mode", "compliance", "--days", "30", "--lake", lake.location],
        env={"M365LAKE_ACTOR": "ops"},
    )
    shown_after = runner.invoke(main, ["immutability", "show", "--lake", lake.location])

    assert shown_before.exit_code == 0, shown_before.output
    assert "Object Lock is off" in shown_before.output
    assert set_result.exit_code == 0, set_result.output
    assert "compliance mode for 30 days" in set_result.output
    assert shown_after.exit_code == 0, shown_after.output
    assert "mode: compliance" in shown_after.output
    assert "days in force (with keep policies): 30" in shown_after.output


def test_lock_latest_locks_an_unlocked_upload(lake: Lake, s3_server: S3Server) -> None:
    client, bucket = s3_server.client(), bucket_of(lake)
    name = "blobs/sha256/aa/bb/multipart"
    client.put_object(Bucket=bucket, Key=key(name), Body=b"parts")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_server.storage_options())
    store = S3ObjectVersions(fs, f"{bucket}/{PREFIX}")

    store.lock_latest(key(name), ObjectLockRule("COMPLIANCE", 2))

    head = oldest_head(client, bucket, name)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=1)
