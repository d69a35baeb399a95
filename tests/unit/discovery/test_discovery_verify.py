"""Verification with a random blob sample, and the archive check around Lake.verify."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import pytest

from m365lake.discovery import record_event, verify_archive
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE
from tests.unit.discovery.lake_fixture import T0, message

KEY = f"k-verify:{base64.b64encode(bytes(range(32))).decode()}"


def stored_blobs(lake: Lake, count: int) -> list[str]:
    return [lake.blobs.put(f"content {number}".encode()) for number in range(count)]


def damage(lake: Lake, digest: str) -> None:
    lake.storage.path(lake.blobs.relative_path(digest)).write_bytes(b"not zstd")


def test_sample_counts_and_seed(lake: Lake) -> None:
    stored_blobs(lake, 10)

    counts = lake.verify(blob_sample=4, seed=3)

    assert counts["blobs"] == 4
    assert counts["blobs_stored"] == 10
    assert counts["blob_seed"] == 3


def test_sample_larger_than_store_reads_all(lake: Lake) -> None:
    stored_blobs(lake, 3)

    assert lake.verify(blob_sample=50)["blobs"] == 3


def test_sample_without_seed_reports_one(lake: Lake) -> None:
    stored_blobs(lake, 3)

    seed = lake.verify(blob_sample=1)["blob_seed"]

    assert isinstance(seed, int)


def test_same_seed_same_draw(lake: Lake) -> None:
    digests = stored_blobs(lake, 20)
    damaged = digests[:10]
    for digest in damaged:
        damage(lake, digest)

    def found(seed: int) -> list[str]:
        _counts, problems = lake.check(blob_sample=5, seed=seed)
        return sorted(problem.split()[1] for problem in problems)

    assert found(11) == found(11)
    assert all(digest in damaged for digest in found(11))


def test_damaged_blob_in_sample_named(lake: Lake) -> None:
    [digest] = stored_blobs(lake, 1)
    damage(lake, digest)

    with pytest.raises(LakeIntegrityError) as caught:
        lake.verify(blob_sample=1, seed=0)

    [problem] = caught.value.problems
    assert problem.startswith(f"blob {digest} at ")
    assert "damaged or altered" in problem


def test_negative_sample_rejected(lake: Lake) -> None:
    with pytest.raises(ValueError, match="zero or more"):
        lake.verify(blob_sample=-1)


def test_archive_check_counts_audit_events(lake: Lake) -> None:
    record_event(lake, "carol", "export", {}, {"items": 3})

    counts = verify_archive(lake, blob_sample=0, seed=1)

    assert counts["audit_events"] == 1
    assert counts["blobs"] == 0


def test_removed_tail_passes_without_anchor(lake: Lake) -> None:
    record_event(lake, "carol", "export", {}, {"items": 3})
    event = record_event(lake, "carol", "purge", {}, {"versions": 9})
    lake.storage.path(f"commits/{lake.head().seq:010d}.json").unlink()

    # The shorter chain is consistent in itself; only an outside anchor shows the cut.
    assert verify_archive(lake, blobs=False)["audit_events"] == 1
    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake, blobs=False, audit_anchor=(event.seq, event.hash))
    assert caught.value.problems == [
        f"audit event 2 (hash {event.hash}), recorded outside the lake, is missing: the "
        "trail ends at event 1, so events were removed from its end"
    ]


def test_anchor_with_other_hash_reported(lake: Lake) -> None:
    event = record_event(lake, "carol", "export", {}, {"items": 3})

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake, blobs=False, audit_anchor=(1, "0" * 64))

    [problem] = caught.value.problems
    assert problem.startswith("audit event 1 (export by carol")
    assert f"records hash {event.hash}" in problem


def test_intact_anchor_passes(lake: Lake) -> None:
    event = record_event(lake, "carol", "export", {}, {"items": 3})
    record_event(lake, "carol", "export", {}, {"items": 4})

    assert verify_archive(lake, blobs=False, audit_anchor=(event.seq, event.hash))


def test_archive_check_reports_broken_manifest_chain(lake: Lake) -> None:
    record_event(lake, "carol", "export", {}, {"items": 3})
    record_event(lake, "carol", "export", {}, {"items": 4})
    lake.storage.path(f"commits/{lake.head().seq - 1:010d}.json").unlink()

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake, blobs=False)

    problems = caught.value.problems
    assert any("has a gap" in problem for problem in problems), problems
    assert any(problem.startswith("the audit chain could not be checked") for problem in problems)
    assert any(problem.startswith("the blobs that rows reference") for problem in problems)


def test_missing_referenced_blob_named(lake: Lake) -> None:
    digest = lake.blobs.put(b"large MIME " * 1000)
    with lake.begin(run_id="blob-row", kind="mail", container="mb-bob") as tx:
        tx.write_rows(
            "messages",
            [message("mb-bob", "big", "created", T0, mime_sha256=digest)],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    lake.storage.remove(lake.blobs.relative_path(digest))

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake, blobs=False)

    [problem] = caught.value.problems
    assert problem.startswith(f"blob {digest} is missing but messages row mailbox_id=mb-bob")
    assert "message_id=big" in problem


def test_missing_key_counted_not_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY, KEY)
    keyed = Lake.open(tmp_path / "lake")
    digest = keyed.blobs.put(b"large MIME " * 1000)
    with keyed.begin(run_id="blob-row", kind="mail", container="mb-bob") as tx:
        tx.write_rows(
            "messages",
            [message("mb-bob", "big", "created", T0, mime_sha256=digest)],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    monkeypatch.delenv(ENV_ENCRYPTION_KEY)
    keyless = Lake.open(tmp_path / "lake", create=False)
    missing_keys: Counter[str] = Counter()

    counts = verify_archive(keyless, missing_keys=missing_keys)

    # One blob and one table file need the key; the file's hash was still checked.
    assert missing_keys == {"k-verify": 2}
    assert counts["files"] >= 1


def test_missing_key_is_problem_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY, KEY)
    Lake.open(tmp_path / "lake").blobs.put(b"secret")
    monkeypatch.delenv(ENV_ENCRYPTION_KEY)

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(Lake.open(tmp_path / "lake", create=False))

    [problem] = caught.value.problems
    assert "key id 'k-verify', which is not loaded" in problem
