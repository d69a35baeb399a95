"""A lake written with an encryption key: backup, SQL, search, export and restore read it.

The backups run against the emulator over HTTPS. Every blob on disk must be encrypted,
and every reader must still return the archived bytes exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.discovery import add_custodians, create_case
from m365lake.discovery.production import export_production
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake import BlobStore, Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE, MAGIC
from m365lake.restore.model import ConflictPolicy
from m365lake.restore.runner import restore
from m365lake.restore.selection import Selection
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

    assert passed.returncode == 0, passed.stderr
    assert "passed verification" in passed.stdout
    assert keyless.returncode == 1
    assert "key id 'lake-2026', which is not loaded" in keyless.stdout
    assert damaged.returncode == 1
    assert f"encrypted blob {blob} fails authentication" in damaged.stdout
    assert parquet in damaged.stdout
