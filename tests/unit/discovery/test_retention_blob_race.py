"""A purge and a backup at the same time: the blob the backup reuses is never deleted."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from m365lake.discovery import verify_archive
from m365lake.discovery.records import utc_now
from m365lake.lake import BlobStore, Lake
from m365lake.lake.blob_users import (
    PURGE_LOCK,
    USERS_DIR,
    BlobsInUseError,
    blob_user,
    exclusive_blobs,
    live_blob_users,
    register_blob_user,
)
from m365lake.retention import PurgeResult, add_policy, finish_purges, purge
from tests.unit.discovery.lake_fixture import T0, message

CONTENT = b"quarterly figures attachment " * 60_000
"""Larger than the inline threshold, so the lake stores it as a blob."""
LATER = utc_now() + timedelta(days=1)
# Bounds the test's own polling; the purge and the backup never need this long.
POLLS = 600


def _wait_for(condition: object) -> None:
    for _ in range(POLLS):
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("the condition was not reached")


@pytest.fixture
def expiring_blob(lake: Lake) -> str:
    """Store a blob that only an expired message references, and a policy expiring mail."""
    digest = lake.blobs.put(CONTENT)
    with lake.begin(run_id="old-mail", kind="mail", container="mb-bob") as tx:
        tx.write_rows(
            "messages",
            [message("mb-bob", "old", "created", T0, mime_sha256=digest)],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    return digest


def _blob_exists(lake: Lake, digest: str) -> bool:
    return lake.storage.exists(BlobStore.relative_path(digest))


def test_purge_waits_for_backup_reusing_blob(lake: Lake, expiring_blob: str) -> None:
    reused = threading.Event()
    may_commit = threading.Event()
    outcome: dict[str, object] = {}

    def backup() -> None:
        with blob_user(lake.storage, owner="backup-1"):
            ref = lake.store_content(CONTENT)
            outcome["reused"] = ref.sha256 == expiring_blob and ref.inline is None
            reused.set()
            may_commit.wait()
            with lake.begin(run_id="backup-1", kind="mail", container="mb-carol") as tx:
                tx.write_rows(
                    "messages",
                    [message("mb-carol", "new", "created", LATER, mime_sha256=ref.sha256)],
                    partition={"mailbox_id": "mb-carol"},
                )
                tx.commit()

    def run_purge() -> None:
        outcome["purge"] = purge(lake, actor="erin", apply=True, now=LATER)

    backup_thread = threading.Thread(target=backup)
    backup_thread.start()
    reused.wait()
    purge_thread = threading.Thread(target=run_purge)
    purge_thread.start()

    # The purge has committed its rewrite and now holds the purge lock, waiting for
    # the backup before it decides which blobs are unreferenced.
    _wait_for(lambda: lake.storage.exists(PURGE_LOCK))
    assert purge_thread.is_alive()
    assert _blob_exists(lake, expiring_blob)
    may_commit.set()
    backup_thread.join()
    purge_thread.join()

    result = outcome["purge"]
    assert isinstance(result, PurgeResult)
    assert outcome["reused"] is True
    assert result.plan.counts()["versions"] >= 1
    assert result.blobs_deleted == 0
    assert result.blobs_deferred is None
    assert _blob_exists(lake, expiring_blob)
    assert verify_archive(lake)["blobs_referenced"] == 1
    assert not lake.storage.exists(PURGE_LOCK)


def test_backup_waits_for_purge_lock(lake: Lake) -> None:
    registered = threading.Event()

    def backup() -> None:
        with blob_user(lake.storage, owner="backup-2", poll_seconds=0.05):
            registered.set()

    with exclusive_blobs(lake.storage, owner="purge-1"):
        waiting = threading.Thread(target=backup)
        waiting.start()
        with pytest.raises(BlobsInUseError, match="purge-1"):
            register_blob_user(lake.storage, owner="backup-3", wait_seconds=0)
        assert not registered.is_set()
        assert live_blob_users(lake.storage) == []
    waiting.join()

    assert registered.is_set()
    assert live_blob_users(lake.storage) == []


def test_purge_defers_blobs_while_used(lake: Lake, expiring_blob: str) -> None:
    use = register_blob_user(lake.storage, owner="long backup")

    result = purge(lake, actor="erin", apply=True, now=LATER, blob_wait_seconds=0)

    assert result.blobs_deleted == 0
    assert result.blobs_deferred is not None
    assert "long backup" in result.blobs_deferred
    assert _blob_exists(lake, expiring_blob)
    use.release()
    assert finish_purges(lake, actor="erin") == (0, 1)
    assert not _blob_exists(lake, expiring_blob)


def _record_of_dead_process(lake: Lake, relative: str, owner: str) -> None:
    """Write a lease record as a process that then died, by running one that exits."""
    script = (
        "import sys; from m365lake.lake.storage import LocalStorage; "
        "from m365lake.lake import blob_users; "
        "storage = LocalStorage(__import__('pathlib').Path(sys.argv[1])); "
        "blob_users.register_blob_user(storage, owner=sys.argv[2]) if sys.argv[3] == 'user' "
        "else blob_users._take_purge_lock(storage, 'dead', sys.argv[2], 600.0)"
    )
    kind = "user" if relative == USERS_DIR else "purge"
    subprocess.run([sys.executable, "-c", script, str(lake.root), owner, kind], check=True)


def test_killed_backup_lease_expires(lake: Lake, expiring_blob: str) -> None:
    _record_of_dead_process(lake, USERS_DIR, "killed backup")
    assert lake.storage.list_names(USERS_DIR)

    result = purge(lake, actor="erin", apply=True, now=LATER, blob_wait_seconds=0)

    assert result.blobs_deferred is None
    assert result.blobs_deleted == 1
    assert lake.storage.list_names(USERS_DIR) == []


def test_expired_lease_on_other_host_ignored(lake: Lake, expiring_blob: str) -> None:
    use = register_blob_user(lake.storage, owner="remote backup")
    path = Path(lake.storage.path(use.name))
    record = json.loads(path.read_text())
    record.update(host="another-host", expires_at=time.time() - 1)
    path.write_text(json.dumps(record))

    result = purge(lake, actor="erin", apply=True, now=LATER, blob_wait_seconds=0)

    assert result.blobs_deleted == 1


def test_live_lease_on_other_host_waited_for(lake: Lake, expiring_blob: str) -> None:
    use = register_blob_user(lake.storage, owner="remote backup")
    path = Path(lake.storage.path(use.name))
    record = json.loads(path.read_text())
    record.update(host="another-host", pid=1)
    path.write_text(json.dumps(record))

    result = purge(lake, actor="erin", apply=True, now=LATER, blob_wait_seconds=0)

    assert result.blobs_deleted == 0
    assert result.blobs_deferred is not None
    assert "another-host" in result.blobs_deferred


def test_killed_purge_lock_expires(lake: Lake) -> None:
    _record_of_dead_process(lake, PURGE_LOCK, "killed purge")
    assert lake.storage.exists(PURGE_LOCK)

    use = register_blob_user(lake.storage, owner="next backup", wait_seconds=0)

    assert [record["owner"] for record in live_blob_users(lake.storage)] == ["next backup"]
    use.release()
    with exclusive_blobs(lake.storage, owner="next purge", wait_seconds=0):
        assert json.loads(lake.storage.read_bytes(PURGE_LOCK))["owner"] == "next purge"
