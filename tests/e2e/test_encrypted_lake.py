"""A lake written with an encryption key: backup, SQL, search, export and restore read it.

The backups run against the emulator over HTTPS. Every blob on disk must be encrypted,
and every reader must still return the archived bytes exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import connect, refresh_catalog, run_sql
from m365lake.discovery import add_custodians, create_case, verify_archive
from m365lake.discovery.production import export_production
from m365lake.discovery.records import utc_now
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake import BlobStore, Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE, MAGIC
from m365lake.restore.model import ConflictPolicy
from m365lake.restore.runner import restore
from m365lake.restore.selection import Selection
from m365lake.retention import add_policy, purge
from m365lake.search import search, update_index

KEY = f"lake-2026:{base64.b64encode(bytes(range(7, 39))).decode()}"
WORD = "quillwort"
MEMO = (f"Board memo about the {WORD} acquisition.\n" * 4000).encode()
"""About 180 KB of text: above the inline threshold below, so stored as a blob."""
BINARY = random.Random(11).randbytes(3 * 1024 * 1024 + 5)


@pytest.fixture
def tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=7, users=2, messages_per_user=6))
    tenant.app.roles.append("Files.ReadWrite.All")
    return tenant


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY, KEY)
    # A low threshold puts every message body in a blob, so mail is encrypted too.
    return Lake.open(tmp_path / "lake", inline_threshold=64)


def owner(tenant: Tenant) -> str:
    return tenant.users()[0].user.user_principal_name


def live_content(tenant: Tenant, drive_id: str, name: str) -> bytes:
    for parts, content, _ in tenant.live_files(drive_id).values():
        if parts[-1] == name:
            return content
    raise KeyError(name)


def test_encrypted_lake_round_trip(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, tmp_path: Path
) -> None:
    alice = owner(tenant)
    drive_id = tenant.drive_id_for("onedrive", alice)
    memo_id = tenant.add_file("onedrive", alice, "Documents", ("memo.txt",), MEMO)
    tenant.add_file("onedrive", alice, "Documents", ("scan.bin",), BINARY)
    mail = asyncio.run(backup_mail(emulator.settings(), lake))
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not mail.failed
    assert not files.failed
    refresh_catalog(lake)

    stored = list(lake.blobs.iter_hashes())
    assert len(stored) >= 2 * 6 + 2
    for digest in stored:
        assert (lake.root / BlobStore.relative_path(digest)).read_bytes().startswith(MAGIC)
    assert lake.verify()["blobs"] == len(stored)

    # SQL: the catalog reads the tables, and the content behind each row reads back.
    [(memo_sha,)] = run_sql(lake, f"SELECT content_sha256 FROM files WHERE item_id = '{memo_id}'")[
        1
    ]
    assert memo_sha == hashlib.sha256(MEMO).hexdigest()
    assert lake.read_content(memo_sha, None) == MEMO
    assert b"".join(lake.blobs.read_chunks(hashlib.sha256(BINARY).hexdigest())) == BINARY

    # Search: the index is built from decrypted content.
    update_index(lake)
    hits = search(lake, WORD).hits
    assert [hit.item_id for hit in hits] == [memo_id]

    # Export: the native in the production is the archived file.
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("onedrive", alice)], actor="carol")
    production = tmp_path / "production"
    export_production(lake, "C", production, actor="carol", kql=WORD)
    natives = [path for path in (production / "NATIVES").rglob("*") if path.is_file()]
    assert [path.read_bytes() for path in natives] == [MEMO]

    # Restore: delete the files in the tenant and bring them back from the lake.
    for name in ("memo.txt", "scan.bin"):
        for item_id, (parts, _, _) in tenant.live_files(drive_id).items():
            if parts[-1] == name:
                tenant.delete_item(item_id)
                break
    run = asyncio.run(
        restore(
            lake,
            emulator.settings(),
            Selection(drive_id=drive_id),
            target=None,
            policy=ConflictPolicy.SKIP,
            dry_run=False,
            actor="restore-test",
        )
    )
    assert run.report.counts()["failed"] == 0
    assert live_content(tenant, drive_id, "memo.txt") == MEMO
    assert live_content(tenant, drive_id, "scan.bin") == BINARY


def test_encrypted_lake_without_key(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = owner(tenant)
    tenant.add_file("onedrive", alice, "Documents", ("memo.txt",), MEMO)
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not files.failed
    monkeypatch.delenv(ENV_ENCRYPTION_KEY)
    keyless = Lake.open(lake.root, create=False)

    with pytest.raises(LakeKeyError, match="key id 'lake-2026'"):
        keyless.read_content(hashlib.sha256(MEMO).hexdigest(), None)
    with pytest.raises(LakeIntegrityError) as verified:
        keyless.verify()
    assert all("lake-2026" in problem for problem in verified.value.problems)


def verify_cli(lake: Lake, key: str | None) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in (ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE)
    }
    if key is not None:
        environment[ENV_ENCRYPTION_KEY] = key
    return subprocess.run(
        [sys.executable, "-m", "m365lake", "verify", "--lake", str(lake.root)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_command_on_encrypted_lake(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    alice = owner(tenant)
    tenant.add_file("onedrive", alice, "Documents", ("memo.txt",), MEMO)
    tenant.add_file("onedrive", alice, "Documents", ("scan.bin",), BINARY)
    manifest_count = len(lake.manifests())
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not files.failed
    assert len(lake.manifests()) > manifest_count

    passed = verify_cli(lake, KEY)
    keyless = verify_cli(lake, None)
    blob = lake.root / BlobStore.relative_path(hashlib.sha256(BINARY).hexdigest())
    flip_byte(blob, blob.stat().st_size // 2)
    [parquet, *_] = [entry["path"] for entry in lake.manifests()[-1]["files"]]
    flip_byte(lake.root / parquet, (lake.root / parquet).stat().st_size // 2)
    damaged = verify_cli(lake, KEY)
    damaged_keyless = verify_cli(lake, None)

    assert passed.returncode == 0, passed.stderr
    assert "passed verification" in passed.stdout
    # Without the key the hashes are still checked; only the encrypted content is not.
    assert keyless.returncode == 0, keyless.stdout + keyless.stderr
    assert "passed verification" in keyless.stdout
    assert "encrypted blobs and table files not checked" in keyless.stdout
    assert "need key id 'lake-2026', which is not loaded" in keyless.stderr
    assert "Restore the files" not in keyless.stderr
    assert damaged_keyless.returncode == 1
    assert parquet in damaged_keyless.stdout
    assert "need key id 'lake-2026'" in damaged_keyless.stderr
    assert damaged.returncode == 1
    assert f"encrypted blob {blob} fails authentication" in damaged.stdout
    assert parquet in damaged.stdout


# Table files. These lakes keep the default inline threshold, so small message bodies
# and file contents sit in Parquet columns beside their rows.

SUBJECT = "Lanternfish acquisition terms"
RECIPIENT = "quentin.marlowe@fabrikam.example"
FILE_NAME = "lanternfish-terms.txt"
FILE_TEXT = b"Inline lanternfish term sheet, kept in a Parquet column.\n"
K1 = f"k1:{base64.b64encode(bytes(range(100, 132))).decode()}"
K2 = f"k2:{base64.b64encode(bytes(range(140, 172))).decode()}"
STABLE_QUERIES = (
    "SELECT message_id, subject, from_address, to_addresses, mime_sha256 FROM messages "
    "ORDER BY message_id",
    "SELECT item_id, name, path, content_sha256 FROM files ORDER BY item_id",
    "SELECT mailbox_id, user_principal_name FROM mailboxes ORDER BY mailbox_id",
)


def marker_mime(sender: str, subject: str = SUBJECT) -> bytes:
    return (
        f"From: {sender}\r\nTo: {RECIPIENT}\r\nSubject: {subject}\r\n"
        "Message-ID: <lanternfish-1@contoso.example>\r\n"
        "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n\r\n"
        "The lanternfish terms are attached as a file.\r\n"
    ).encode()


def use_keys(
    monkeypatch: pytest.MonkeyPatch, key: str | None, key_file: Path | None = None
) -> None:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY, raising=False)
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    if key is not None:
        monkeypatch.setenv(ENV_ENCRYPTION_KEY, key)
    if key_file is not None:
        monkeypatch.setenv(ENV_ENCRYPTION_KEY_FILE, str(key_file))


def write_key_file(path: Path, current: str, *keys: str) -> Path:
    entries = dict(key.split(":", 1) for key in keys)
    path.write_text(json.dumps({"current": current, "keys": entries}))
    path.chmod(0o600)
    return path


def back_up(emulator: EmulatorServer, lake: Lake) -> None:
    mail = asyncio.run(backup_mail(emulator.settings(), lake))
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not mail.failed
    assert not files.failed


def add_markers(tenant: Tenant) -> str:
    alice = owner(tenant)
    tenant.add_message(alice, ("Inbox",), marker_mime(alice))
    return tenant.add_file("onedrive", alice, "Documents", (FILE_NAME,), FILE_TEXT)


def table_bytes(lake: Lake) -> bytes:
    return b"".join(path.read_bytes() for path in sorted((lake.root / "tables").rglob("*.parquet")))


def file_entries(lake: Lake) -> list[dict[str, object]]:
    return [entry for manifest in lake.manifests() for entry in manifest["files"]]


def test_tables_hold_no_plaintext(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, K1)
    lake = Lake.open(tmp_path / "lake")
    memo_id = add_markers(tenant)
    back_up(emulator, lake)

    data = table_bytes(lake)
    entries = file_entries(lake)

    assert entries
    assert {entry.get("key_id") for entry in entries} == {"k1"}
    for marker in (SUBJECT, RECIPIENT, owner(tenant), FILE_NAME, FILE_TEXT.decode()):
        assert marker.encode() not in data, marker
    assert b"mailbox_id" not in data
    [(subject, recipients)] = run_sql(
        lake, f"SELECT subject, to_addresses FROM messages WHERE subject = '{SUBJECT}'"
    )[1]
    assert (subject, recipients) == (SUBJECT, [RECIPIENT])
    [(inline,)] = run_sql(lake, f"SELECT content_inline FROM files WHERE item_id = '{memo_id}'")[1]
    assert bytes(inline) == FILE_TEXT

    update_index(lake)
    assert [hit.item_id for hit in search(lake, "lanternfish").hits if hit.workload == "files"] == [
        memo_id
    ]
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("onedrive", owner(tenant))], actor="carol")
    production = tmp_path / "production"
    export_production(lake, "C", production, actor="carol", kql="lanternfish")
    natives = [path for path in (production / "NATIVES").rglob("*") if path.is_file()]
    assert [path.read_bytes() for path in natives] == [FILE_TEXT]


def test_sql_matches_unencrypted_lake(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_markers(tenant)
    use_keys(monkeypatch, None)
    plain = Lake.open(tmp_path / "plain")
    back_up(emulator, plain)
    use_keys(monkeypatch, K1)
    encrypted = Lake.open(tmp_path / "encrypted")
    back_up(emulator, encrypted)

    for query in STABLE_QUERIES:
        expected = run_sql(plain, query)
        assert expected[1], query
        assert run_sql(encrypted, query) == expected, query
    # The Python way the README shows for analysts, outside run_sql's sandbox.
    with connect(encrypted) as db:
        assert db.execute(STABLE_QUERIES[0]).fetchall() == run_sql(plain, STABLE_QUERIES[0])[1]


def test_plaintext_then_rotated_lake_reads(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = owner(tenant)
    root = tmp_path / "lake"
    use_keys(monkeypatch, None)
    back_up(emulator, Lake.open(root))
    plain_files = {entry["path"]: entry["sha256"] for entry in file_entries(Lake.open(root))}
    use_keys(monkeypatch, K1)
    tenant.add_message(alice, ("Inbox",), marker_mime(alice, "Second lanternfish memo"))
    back_up(emulator, Lake.open(root))
    keys = write_key_file(tmp_path / "keys.json", "k2", K1, K2)
    use_keys(monkeypatch, None, keys)
    tenant.add_message(alice, ("Inbox",), marker_mime(alice, "Third lanternfish memo"))
    lake = Lake.open(root)
    back_up(emulator, lake)

    by_key = [entry.get("key_id") for entry in file_entries(lake)]
    subjects = run_sql(lake, "SELECT subject FROM messages WHERE subject LIKE '%lanternfish memo'")

    assert by_key[: len(plain_files)] == [None] * len(plain_files)
    assert "k1" in by_key
    assert by_key[-1] == "k2"
    assert sorted(row[0] for row in subjects[1]) == [
        "Second lanternfish memo",
        "Third lanternfish memo",
    ]
    assert lake.verify(blobs=False)["files"] == len(by_key)
    for path, digest in plain_files.items():
        assert lake.storage.hash_file(path)[0] == digest
    update_index(lake)
    assert len(search(lake, "lanternfish").hits) == 2


def test_missing_or_wrong_table_key_named(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, K1)
    back_up(emulator, Lake.open(tmp_path / "lake"))
    use_keys(monkeypatch, K2)
    missing = Lake.open(tmp_path / "lake")
    use_keys(monkeypatch, f"k1:{base64.b64encode(bytes(32)).decode()}")
    wrong = Lake.open(tmp_path / "lake")

    with pytest.raises(LakeKeyError, match="key id 'k1', which is not loaded") as not_loaded:
        run_sql(missing, "SELECT count(*) FROM messages")
    with pytest.raises(LakeKeyError, match="different key") as different:
        run_sql(wrong, "SELECT count(*) FROM messages")

    assert "tables/" in str(not_loaded.value)
    assert ENV_ENCRYPTION_KEY in str(not_loaded.value)
    assert "tables/" in str(different.value)


def test_flipped_table_byte_fails_integrity(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, K1)
    lake = Lake.open(tmp_path / "lake")
    back_up(emulator, lake)
    [damaged, *_] = [entry["path"] for entry in lake.committed_entries("messages")]
    flip_byte(lake.root / damaged, (lake.root / damaged).stat().st_size // 2)

    with pytest.raises(LakeIntegrityError, match="differ from the SHA-256") as raised:
        run_sql(lake, "SELECT * FROM messages_rows")
    use_keys(monkeypatch, None)
    _, problems = Lake.open(lake.root).check(blobs=False)

    assert damaged in str(raised.value)
    assert [problem for problem in problems if damaged in problem] == problems
    assert len(problems) == 1


def test_purge_rewrites_with_current_key(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_keys(monkeypatch, K1)
    add_markers(tenant)
    back_up(emulator, Lake.open(tmp_path / "lake"))
    keys = write_key_file(tmp_path / "keys.json", "k2", K1, K2)
    use_keys(monkeypatch, None, keys)
    lake = Lake.open(tmp_path / "lake")
    add_policy(lake, actor="erin", name="all files", workload="files", action="delete", days=0)

    result = purge(lake, actor="erin", apply=True, now=utc_now() + timedelta(days=1))

    rewritten = lake.manifests()[-2]["files"]
    assert result.counts()["versions"] > 0
    assert rewritten
    assert {entry["key_id"] for entry in rewritten} == {"k2"}
    assert run_sql(lake, "SELECT count(*) FROM file_versions")[1] == [(0,)]
    assert run_sql(lake, f"SELECT count(*) FROM messages WHERE subject = '{SUBJECT}'")[1] == [(1,)]
    assert FILE_NAME.encode() not in table_bytes(lake)
    assert verify_archive(lake)["files"] > 0
