"""Manifest chain, concurrent writers and state derived from manifests."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import pytest

from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


def commit_state(lake: Lake, run_id: str, **state: object) -> dict:
    with lake.begin(run_id=run_id, kind="mail", container="u1") as tx:
        tx.write_rows("runs", [{"run_id": run_id, "status": "succeeded"}], partition={})
        for key, value in state.items():
            tx.set_state(key.replace("__", "/"), value)
        return tx.commit()


def manifest_path(lake: Lake, seq: int) -> Path:
    return lake.root / "commits" / f"{seq:010d}.json"


def test_manifest_fields(lake: Lake) -> None:
    manifest = commit_state(lake, "r1", mail__u1="t1")

    assert manifest["seq"] == 1
    assert manifest["prev"] is None
    assert manifest["run_id"] == "r1"
    assert manifest["kind"] == "mail"
    assert manifest["container"] == "u1"
    assert manifest["created_at"].endswith("Z")
    assert manifest["state"] == {"mail/u1": "t1"}
    assert json.loads(manifest_path(lake, 1).read_bytes()) == manifest


def test_chain_links_prev_hashes(lake: Lake) -> None:
    for index in range(3):
        commit_state(lake, f"r{index}")

    manifests = lake.manifests()

    assert [m["seq"] for m in manifests] == [1, 2, 3]
    assert manifests[0]["prev"] is None
    for seq in (2, 3):
        expected = hashlib.sha256(manifest_path(lake, seq - 1).read_bytes()).hexdigest()
        assert manifests[seq - 1]["prev"] == expected


def test_tampered_manifest_breaks_chain(lake: Lake) -> None:
    for index in range(3):
        commit_state(lake, f"r{index}")
    path = manifest_path(lake, 2)
    path.write_bytes(path.read_bytes().replace(b'"r1"', b'"rX"'))

    with pytest.raises(LakeIntegrityError, match="one of the two was altered") as raised:
        lake.manifests()

    assert str(path) in str(raised.value)


def test_missing_manifest_is_gap(lake: Lake) -> None:
    for index in range(3):
        commit_state(lake, f"r{index}")
    manifest_path(lake, 2).unlink()

    with pytest.raises(LakeIntegrityError, match="gap"):
        lake.manifests()


def test_tampered_data_file_fails_verify(lake: Lake) -> None:
    manifest = commit_state(lake, "r1")
    path = lake.root / manifest["files"][0]["path"]
    path.write_bytes(path.read_bytes() + b"x")

    with pytest.raises(LakeIntegrityError, match="hashes to"):
        lake.verify()


def test_state_advances_only_through_commits(lake: Lake) -> None:
    commit_state(lake, "r1", mail__u1="t1", mail__u2="u-t1")

    with lake.begin(run_id="r2", kind="mail", container="u1") as tx:
        tx.set_state("mail/u1", "t2")
        assert lake.state("mail/u1") == "t1"
        tx.commit()

    assert lake.state("mail/u1") == "t2"
    assert lake.state_items("mail/") == {"mail/u1": "t2", "mail/u2": "u-t1"}


def test_state_none_deletes_key(lake: Lake) -> None:
    commit_state(lake, "r1", mail__u1="t1")
    commit_state(lake, "r2", mail__u1=None)

    assert lake.state("mail/u1") is None
    assert lake.state_items("mail/") == {}


def test_state_holds_json_values(lake: Lake) -> None:
    value = {"delta": "https://graph/delta?token=x", "folders": ["a", "b"]}
    commit_state(lake, "r1", mail__u1=value)

    fetched = lake.state("mail/u1")
    fetched["folders"].append("mutated")

    assert lake.state("mail/u1") == value


def test_state_seen_by_other_lake_instance(lake: Lake) -> None:
    reader = Lake.open(lake.root, create=False)
    assert reader.state("mail/u1") is None

    commit_state(lake, "r1", mail__u1="t1")

    assert reader.state("mail/u1") == "t1"


def test_forged_state_cache_not_trusted(lake: Lake) -> None:
    commit_state(lake, "r1", mail__u1="t1")
    assert lake.state("mail/u1") == "t1"
    cache = lake.root / "state" / "cache.json"
    forged = json.loads(cache.read_text())
    forged["values"]["mail/u1"] = "forged"
    cache.write_text(json.dumps(forged))

    assert Lake.open(lake.root).state("mail/u1") == "t1"


def test_manifest_records_state_hash(lake: Lake) -> None:
    from m365lake.lake.commits import state_digest

    first = commit_state(lake, "r1", mail__u1="t1")
    second = commit_state(lake, "r2", mail__u2="t2")

    assert first["state_sha256"] == state_digest({"mail/u1": "t1"})
    assert second["state_sha256"] == state_digest({"mail/u1": "t1", "mail/u2": "t2"})


def test_state_value_must_be_json(lake: Lake) -> None:
    with lake.begin(run_id="r1", kind="mail", container="u1") as tx, \
            pytest.raises(ValueError, match="JSON"):
        tx.set_state("mail/u1", object())


def test_deleted_state_cache_rebuilt(lake: Lake) -> None:
    commit_state(lake, "r1", mail__u1="t1")
    commit_state(lake, "r2", mail__u2="t2")
    assert lake.state("mail/u2") == "t2"
    (lake.root / "state" / "cache.json").unlink()

    assert Lake.open(lake.root).state_items("mail/") == {"mail/u1": "t1", "mail/u2": "t2"}


def test_open_missing_lake_without_create(tmp_path: Path) -> None:
    from m365lake.errors import LakeError

    with pytest.raises(LakeError, match="no lake"):
        Lake.open(tmp_path / "absent", create=False)


def test_object_storage_without_credentials_names_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from m365lake.errors import LakeError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache"))

    with pytest.raises(LakeError, match="credentials"):
        Lake.open("s3://bucket/lake")


def _commit_many(root: str, writer: str, count: int, start: multiprocessing.Event) -> None:
    lake = Lake.open(root)
    start.wait(30)
    for index in range(count):
        with lake.begin(run_id=f"{writer}-{index}", kind="mail", container=writer) as tx:
            tx.write_rows("runs", [{"run_id": f"{writer}-{index}"}], partition={})
            tx.set_state(f"mail/{writer}", index)
            tx.commit()


def test_concurrent_writers_get_distinct_seqs(lake: Lake) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [context.Process(target=_commit_many, args=(str(lake.root), name, 15, start))
               for name in ("alpha", "beta", "gamma")]
    for process in writers:
        process.start()
    start.set()
    for process in writers:
        process.join(120)
    # A writer still running after the wait would keep the interpreter from exiting at
    # the end of the session, so it is stopped and the test fails on its exit code.
    for process in writers:
        if process.is_alive():
            process.kill()
            process.join(10)

    assert [process.exitcode for process in writers] == [0, 0, 0]
    manifests = lake.manifests()
    assert [m["seq"] for m in manifests] == list(range(1, 46))
    assert len({m["run_id"] for m in manifests}) == 45
    assert lake.state_items("mail/") == {"mail/alpha": 14, "mail/beta": 14, "mail/gamma": 14}
    assert len(lake.committed_files("runs")) == 45
    assert lake.verify()["files"] == 45


def test_stray_manifest_error_says_what_to_do(lake: Lake) -> None:
    commit_state(lake, "r1")
    (lake.root / "commits" / "0000000099.json").write_text("not a manifest\n")

    with pytest.raises(LakeIntegrityError) as caught:
        lake.manifests()

    message = str(caught.value)
    assert "0000000002.json is missing" in message
    assert "0000000099.json" in message
    assert "move it out of commits/" in message
    assert "m365lake verify" in message


def test_junk_head_manifest_error_says_what_to_do(lake: Lake) -> None:
    commit_state(lake, "r1")
    (lake.root / "commits" / "0000000002.json").write_text("{broken")

    with pytest.raises(LakeIntegrityError) as caught:
        lake.manifests()

    message = str(caught.value)
    assert "not valid JSON" in message
    assert "move it out of commits/" in message
    assert "m365lake verify" in message


def test_verify_collects_every_problem(lake: Lake) -> None:
    first = commit_state(lake, "r1")
    second = commit_state(lake, "r2")
    blob = lake.blobs.put(b"blob content " * 10_000)
    damaged = lake.root / first["files"][0]["path"]
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    damaged.write_bytes(bytes(data))
    (lake.root / second["files"][0]["path"]).unlink()
    blob_path = lake.root / lake.blobs.relative_path(blob)
    blob_path.write_bytes(blob_path.read_bytes()[:10])

    with pytest.raises(LakeIntegrityError) as caught:
        lake.verify()

    problems = caught.value.problems
    assert len(problems) == 3
    assert first["files"][0]["path"] in problems[0]
    assert first["files"][0]["sha256"] in problems[0]
    assert "hashes to" in problems[0]
    assert second["files"][0]["path"] in problems[1]
    assert "missing" in problems[1]
    assert blob in problems[2]
    assert all(problem in str(caught.value) for problem in problems)


def test_verify_without_blobs_skips_them(lake: Lake) -> None:
    commit_state(lake, "r1")
    blob = lake.blobs.put(b"blob content " * 10_000)
    (lake.root / lake.blobs.relative_path(blob)).write_bytes(b"junk")

    assert lake.verify(blobs=False) == {"manifests": 1, "files": 1, "blobs": 0}


def test_verify_reports_chain_gap_and_keeps_checking(lake: Lake) -> None:
    for index in range(3):
        commit_state(lake, f"r{index}")
    manifest_path(lake, 2).unlink()
    third = json.loads(manifest_path(lake, 3).read_bytes())
    (lake.root / third["files"][0]["path"]).write_bytes(b"changed")

    with pytest.raises(LakeIntegrityError) as caught:
        lake.verify()

    problems = caught.value.problems
    assert len(problems) == 2
    assert "gap" in problems[0]
    assert third["files"][0]["path"] in problems[1]


def test_open_file_as_lake_rejected(tmp_path: Path) -> None:
    from m365lake.errors import LakeError

    path = tmp_path / "a-file"
    path.write_text("x")

    with pytest.raises(LakeError, match="is a file, not a folder"):
        Lake.open(path)


def test_open_missing_lake_raises_not_found(tmp_path: Path) -> None:
    from m365lake.errors import LakeNotFoundError

    with pytest.raises(LakeNotFoundError) as caught:
        Lake.open(tmp_path / "absent", create=False)

    assert caught.value.root == str(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_check_writable_names_folder(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from m365lake.errors import LakeError

    lake.check_writable()

    assert not [path for path in lake.root.rglob("*") if path.name.startswith(".tmp-")]

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", denied)
    with pytest.raises(LakeError) as caught:
        lake.check_writable()

    assert str(lake.root) in str(caught.value)
    assert "not writable" in str(caught.value)
    assert "Permission denied" in str(caught.value)
