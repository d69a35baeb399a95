"""Hard cases of the files backup, each checked against the emulator's live drive state.

Every check reads the archive through the catalog views ``files`` and ``file_versions``
and compares item id, path, content SHA-256 and QuickXorHash with ``Tenant.live_files``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from m365lake.backup_files import FilesBackupSummary, backup_files
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator import downloads as emulator_downloads
from m365lake.emulator.drives import check_item_name
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.seed import SeedFile, SeedSite, SeedTenant, SeedUser
from m365lake.lake import Lake
from m365lake.quickxor import quickxor_b64
from m365lake.sources.drives import CHECKPOINT_FILES, delta_key

SITE = "records"
LIBRARY = "Documents"
OWNER = "alice@contoso.example"

THREE_MIB = bytes(range(251)) * (3 * 1024 * 1024 // 251 + 1)
"""A little over 3 MiB, above the default inline threshold, so archived as a blob."""

FileState = tuple[str, str, str]
"""(path, content SHA-256, QuickXorHash) of one file."""


# ---- helpers ---------------------------------------------------------------------------


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_backup(emulator: EmulatorServer, lake: Lake, **options: Any) -> FilesBackupSummary:
    summary = asyncio.run(backup_files(emulator.settings(), lake, **options))
    assert summary.failed == {}
    assert summary.skipped == {}
    return summary


def tenant_state(tenant: Tenant, drive_id: str) -> dict[str, FileState]:
    return {
        item_id: ("/".join(path), hashlib.sha256(content).hexdigest(), quickxor)
        for item_id, (path, content, quickxor) in tenant.live_files(drive_id).items()
    }


def archive_state(lake: Lake, drive_id: str) -> dict[str, FileState]:
    """Return the live files of ``drive_id`` in the ``files`` view, checking stored content."""
    refresh_catalog(lake)
    rows = run_sql(
        lake,
        "SELECT item_id, path, content_sha256, quickxor_hash, content_inline, deleted_at "
        f"FROM files WHERE drive_id = {sql_literal(drive_id)}",
    )[1]
    state = {}
    for item_id, path, sha256, quickxor, inline, deleted_at in rows:
        assert deleted_at is None, f"{path}: a live file has deleted_at set"
        assert sha256 is not None, f"{path}: no content archived"
        data = lake.read_content(sha256, inline)
        assert hashlib.sha256(data).hexdigest() == sha256, f"{path}: stored content differs"
        state[item_id] = (path, sha256, quickxor)
    return state


def version_set(lake: Lake, drive_id: str) -> set[tuple[str, str, str]]:
    """Return (item id, path, content SHA-256) of every version in ``file_versions``."""
    refresh_catalog(lake)
    rows = run_sql(
        lake,
        "SELECT item_id, path, content_sha256 FROM file_versions "
        f"WHERE drive_id = {sql_literal(drive_id)}",
    )[1]
    return {(item_id, path, sha256) for item_id, path, sha256 in rows}


def snapshot(tenant: Tenant, drive_id: str) -> set[tuple[str, str, str]]:
    return {
        (item_id, path, sha256)
        for item_id, (path, sha256, _) in tenant_state(tenant, drive_id).items()
    }


def item_id_at(tenant: Tenant, drive_id: str, path: str) -> str:
    for item_id, (parts, _, _) in tenant.live_files(drive_id).items():
        if "/".join(parts) == path:
            return item_id
    raise KeyError(path)


def folder_id_at(tenant: Tenant, path: tuple[str, ...]) -> str:
    return tenant.add_folder_item("site", SITE, LIBRARY, path)


def add(tenant: Tenant, path: str, content: bytes) -> str:
    return tenant.add_file("site", SITE, LIBRARY, tuple(path.split("/")), content)


@pytest.fixture
def site_drive(tenant: Tenant) -> str:
    tenant.add_site(SeedSite(SITE, "Records"))
    return tenant.drive_id_for("site", SITE, LIBRARY)


# ---- 1. real documents -----------------------------------------------------------------


def _corpus_seed(files_root: Path) -> tuple[SeedTenant, dict[tuple[str, str], Path]]:
    """Seed one OneDrive and one site library from the corpus, alternating top folders.

    Returns the seed and the source file of each (drive kind, path) it placed.
    """
    seed = SeedTenant(
        users=[SeedUser(OWNER, "Alice", mail=OWNER)],
        sites=[SeedSite(SITE, "Records")],
    )
    sources: dict[tuple[str, str], Path] = {}
    tops = sorted(files_root.iterdir())
    for index, top in enumerate(tops):
        kind, owner = ("onedrive", OWNER) if index % 2 == 0 else ("site", SITE)
        candidates = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for source in candidates:
            parts = source.relative_to(files_root).parts
            try:
                for name in parts:
                    check_item_name(name)
            except ValueError:
                continue
            seed.files.append(SeedFile(kind, owner, LIBRARY, parts, source.read_bytes()))
            sources[(kind, "/".join(parts))] = source
    return seed, sources


@pytest.mark.corpus
def test_corpus_documents_archived_exactly(
    corpus_root: Path, emulator_state: Path, tmp_path: Path
) -> None:
    files_root = corpus_root / "files"
    if not files_root.is_dir():
        pytest.skip(f"no files/ folder in the corpus at {corpus_root}")
    seed, sources = _corpus_seed(files_root)
    tenant = Tenant.from_seed(seed)
    lake = Lake.open(tmp_path / "lake")
    drives = {
        "onedrive": tenant.drive_id_for("onedrive", OWNER),
        "site": tenant.drive_id_for("site", SITE, LIBRARY),
    }

    with EmulatorServer(tenant, emulator_state) as emulator:
        run_backup(emulator, lake)

    placed = {kind: 0 for kind in drives}
    for kind, drive_id in drives.items():
        archived = archive_state(lake, drive_id)
        assert archived == tenant_state(tenant, drive_id), kind
        for path, sha256, quickxor in archived.values():
            data = sources[(kind, path)].read_bytes()
            assert sha256 == hashlib.sha256(data).hexdigest(), path
            assert quickxor == quickxor_b64(data), path
            placed[kind] += 1
    assert placed["onedrive"] > 0
    assert placed["site"] > 0
    assert sum(placed.values()) == len(sources)


# ---- 2. awkward names ------------------------------------------------------------------

GENERATED_NAMES = (
    "  leading and trailing spaces  .txt",
    "hash #1 and percent 100% & more.txt",
    "percent-encoded %20 %2F %25.txt",
    "it's a 'single quoted' name.txt",
    'a "double quoted" name.txt',
    ".leading dot.txt",
    "trailing dot.",
    "..two leading dots",
    "semicolon;comma,equals=plus+at@.txt",
    "brackets [x] {y} (z) ~tilde.txt",
    "日本語のファイル名.txt",
    "emoji 📁😀 name.txt",
    "combining e\u0301 (decomposed).txt",
    "precomposed \u00e9.txt",
    "right-to-left שלום مرحبا.txt",
    "tab\tinside.txt",
    "question?.txt",
    "~$lockfile.docx",
)


def _long_path() -> tuple[str, ...]:
    folders = tuple(f"nested folder level {depth:02d} " + "x" * 30 for depth in range(8))
    return (*folders, "a file name that is long on purpose " + "y" * 60 + ".txt")


def _add_accepted(tenant: Tenant, files: list[tuple[str, bytes]]) -> list[tuple[str, ...]]:
    """Add each file whose name the emulator accepts under ``edge names``; return the paths."""
    accepted: list[tuple[str, ...]] = []
    for name, content in files:
        try:
            check_item_name(name)
        except ValueError:
            continue
        path = ("edge names", name)
        tenant.add_file("site", SITE, LIBRARY, path, content)
        accepted.append(path)
    return accepted


def _assert_names_round_trip(
    tenant: Tenant, lake: Lake, drive_id: str, paths: list[tuple[str, ...]]
) -> None:
    archived = archive_state(lake, drive_id)
    assert archived == tenant_state(tenant, drive_id)
    archived_paths = {path for path, _, _ in archived.values()}
    for path in paths:
        assert "/".join(path) in archived_paths, path
    names_in_table = {
        row[0]
        for row in run_sql(
            lake, f"SELECT name FROM files WHERE drive_id = {sql_literal(drive_id)}"
        )[1]
    }
    assert {path[-1] for path in paths} == names_in_table


def test_generated_names_round_trip(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    files = [(name, f"generated {name!r}".encode()) for name in GENERATED_NAMES]
    paths = _add_accepted(tenant, files)
    # Names OneDrive rejects stay out of the tenant, so they never reach the archive:
    # the double quote, the tab, the question mark and the ``~$`` prefix.
    assert len(paths) == len(GENERATED_NAMES) - 4
    assert ("edge names", 'a "double quoted" name.txt') not in paths
    assert ("edge names", "~$lockfile.docx") not in paths
    long_path = _long_path()
    tenant.add_file("site", SITE, LIBRARY, long_path, b"deep")
    paths.append(long_path)
    assert len("/".join(long_path)) > 400

    run_backup(emulator, lake, drives=[site_drive])

    _assert_names_round_trip(tenant, lake, site_drive, paths)


@pytest.mark.corpus
def test_corpus_edge_names_round_trip(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str, corpus_root: Path
) -> None:
    edge_folder = corpus_root / "files" / "renamed-edge-names"
    if not edge_folder.is_dir():
        pytest.skip(f"no files/renamed-edge-names folder in the corpus at {corpus_root}")
    files = [(p.name, p.read_bytes()) for p in sorted(edge_folder.iterdir()) if p.is_file()]
    paths = _add_accepted(tenant, files)
    # Two corpus names contain characters or a prefix that OneDrive rejects.
    assert len(paths) == len(files) - 2

    run_backup(emulator, lake, drives=[site_drive])

    _assert_names_round_trip(tenant, lake, site_drive, paths)


# ---- 3. incremental changes ------------------------------------------------------------


def _assert_run_matches(
    tenant: Tenant, lake: Lake, drive_id: str, captured: set[tuple[str, str, str]]
) -> None:
    """Compare the live set and check that every version captured so far is still kept."""
    assert archive_state(lake, drive_id) == tenant_state(tenant, drive_id)
    captured |= snapshot(tenant, drive_id)
    assert captured <= version_set(lake, drive_id)


def test_incremental_changes_recorded_exactly(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    add(tenant, "Projects/Alpha/plan.txt", b"plan v1")
    add(tenant, "Projects/Alpha/specs/spec.md", b"spec")
    add(tenant, "Projects/Alpha/specs/deep/data.bin", THREE_MIB)
    add(tenant, "Projects/Beta/notes.txt", b"beta notes")
    add(tenant, "Archive/old.txt", b"old")
    add(tenant, "Trash/a.txt", b"a")
    add(tenant, "Trash/sub/b.txt", b"b")
    add(tenant, "loose.txt", b"loose")
    captured: set[tuple[str, str, str]] = set()
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)

    plan = item_id_at(tenant, site_drive, "Projects/Alpha/plan.txt")
    old = item_id_at(tenant, site_drive, "Archive/old.txt")
    trash_file = item_id_at(tenant, site_drive, "Trash/sub/b.txt")
    alpha = folder_id_at(tenant, ("Projects", "Alpha"))
    archive = folder_id_at(tenant, ("Archive",))
    add(tenant, "Projects/Gamma/new.txt", b"created")
    tenant.update_file_content(plan, b"plan v2")
    tenant.rename_item(item_id_at(tenant, site_drive, "loose.txt"), "loose renamed.txt")
    tenant.move_item(alpha, archive)
    tenant.rename_item(archive, "Archive 2024")
    tenant.delete_item(old)
    tenant.delete_item(folder_id_at(tenant, ("Trash",)))
    summary = run_backup(emulator, lake, drives=[site_drive])

    _assert_run_matches(tenant, lake, site_drive, captured)
    [result] = summary.results
    # Archive/old.txt, Trash/a.txt, Trash/sub/b.txt and the folders Trash and Trash/sub.
    assert result.items_deleted == 5
    data_path = "Archive 2024/Alpha/specs/deep/data.bin"
    assert data_path in {p for p, _, _ in archive_state(lake, site_drive).values()}
    # The moved blob is reused, not downloaded again.
    assert result.bytes_downloaded < len(THREE_MIB)
    deleted = dict(
        run_sql(
            lake,
            "SELECT item_id, max(deleted_at) FROM file_versions "
            f"WHERE drive_id = {sql_literal(site_drive)} GROUP BY item_id",
        )[1]
    )
    assert deleted[old] is not None
    assert deleted[trash_file] is not None
    assert deleted[plan] is None
    plan_history = run_sql(
        lake,
        "SELECT path, content_sha256 FROM file_versions "
        f"WHERE item_id = {sql_literal(plan)} ORDER BY captured_at",
    )[1]
    assert plan_history == [
        ("Projects/Alpha/plan.txt", hashlib.sha256(b"plan v1").hexdigest()),
        ("Archive 2024/Alpha/plan.txt", hashlib.sha256(b"plan v2").hexdigest()),
    ]


def _build_round_trip_tree(tenant: Tenant) -> None:
    add(tenant, "Parent/keep.txt", b"kept in parent")
    add(tenant, "Parent/Child/one.txt", b"one")
    add(tenant, "Parent/Child/Grandchild/two.txt", b"two")
    add(tenant, "Parent/Child/Grandchild/big.bin", THREE_MIB)
    add(tenant, "Elsewhere/marker.txt", b"marker")


def test_folder_moved_out_and_back_loses_nothing(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    _build_round_trip_tree(tenant)
    captured: set[tuple[str, str, str]] = set()
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)
    child_files = {
        item_id
        for item_id, (path, _, _) in tenant_state(tenant, site_drive).items()
        if path.startswith("Parent/Child/")
    }
    child = folder_id_at(tenant, ("Parent", "Child"))

    tenant.move_item(child, folder_id_at(tenant, ("Elsewhere",)))
    tenant.delete_item(folder_id_at(tenant, ("Parent",)))
    new_parent = folder_id_at(tenant, ("Parent",))
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)

    tenant.move_item(child, new_parent)
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)

    live = archive_state(lake, site_drive)
    assert child_files <= set(live)
    assert {live[item_id][0] for item_id in child_files} == {
        "Parent/Child/one.txt",
        "Parent/Child/Grandchild/two.txt",
        "Parent/Child/Grandchild/big.bin",
    }
    assert "Parent/keep.txt" not in {path for path, _, _ in live.values()}


def test_folder_round_trip_in_one_gap(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    _build_round_trip_tree(tenant)
    captured: set[tuple[str, str, str]] = set()
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)
    child = folder_id_at(tenant, ("Parent", "Child"))

    # All three steps between two runs: delta reports the old parent deleted, a new
    # folder of the same name, and the child folder under it.
    tenant.move_item(child, folder_id_at(tenant, ("Elsewhere",)))
    tenant.delete_item(folder_id_at(tenant, ("Parent",)))
    tenant.move_item(child, folder_id_at(tenant, ("Parent",)))
    run_backup(emulator, lake, drives=[site_drive])

    _assert_run_matches(tenant, lake, site_drive, captured)


# ---- 4. 410 resync ---------------------------------------------------------------------


def test_resync_marks_gap_deletions(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    add(tenant, "Team/a.txt", b"a")
    add(tenant, "Team/Old/b.txt", b"b")
    add(tenant, "Team/Old/c.bin", THREE_MIB)
    add(tenant, "solo.txt", b"solo")
    captured: set[tuple[str, str, str]] = set()
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)
    deleted_in_gap = {
        item_id_at(tenant, site_drive, path)
        for path in ("Team/Old/b.txt", "Team/Old/c.bin", "solo.txt")
    }

    tenant.delete_item(folder_id_at(tenant, ("Team", "Old")))
    tenant.delete_item(item_id_at(tenant, site_drive, "solo.txt"))
    tenant.rename_item(folder_id_at(tenant, ("Team",)), "Team renamed")
    add(tenant, "Team renamed/new.txt", b"new during the gap")
    tenant.expire_drive_delta(site_drive)
    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.resyncs == 1
    _assert_run_matches(tenant, lake, site_drive, captured)
    deleted_at = dict(
        run_sql(
            lake,
            "SELECT item_id, deleted_at FROM file_versions "
            f"WHERE drive_id = {sql_literal(site_drive)}",
        )[1]
    )
    for item_id in deleted_in_gap:
        assert deleted_at[item_id] is not None, item_id
    assert result.items_deleted == 4  # three files and the folder Old

    # The next incremental run reads the fresh token and changes nothing.
    again = run_backup(emulator, lake, drives=[site_drive])
    [result] = again.results
    assert result.items_new + result.items_updated + result.items_deleted == 0


# ---- 5. broken and expired downloads ---------------------------------------------------


def test_download_broken_twice_resumes(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    big = add(tenant, "big.bin", THREE_MIB)
    emulator.inject_broken_download(big, after_bytes=len(THREE_MIB) // 2, times=2)

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.failures == 0
    assert result.resumes == 2
    assert archive_state(lake, site_drive) == tenant_state(tenant, site_drive)
    assert lake.verify()["blobs"] >= 1


class _ExpiringClock:
    """Replacement for the emulator's ``time`` module, so a test can expire a download URL."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def expire_download_urls(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[int]]:
    """Expire the download URL presented at the given (1-based) download requests.

    The test appends request numbers to the yielded list. At each of those requests the
    emulator's clock jumps past the URL lifetime before the token is checked, which is
    what a slow client sees when the URL expires between the 302 and its GET.
    """
    clock = _ExpiringClock()
    monkeypatch.setattr(emulator_downloads, "time", SimpleNamespace(time=clock.time))
    service = emulator.app.state.downloads
    original = service.check
    expire_at: list[int] = []
    checks = SimpleNamespace(count=0)

    def check(payload: str, signature: str) -> dict[str, Any]:
        checks.count += 1
        if checks.count in expire_at:
            clock.offset += service.lifetime_seconds + 1
        return original(payload, signature)  # type: ignore[no-any-return]

    monkeypatch.setattr(service, "check", check)
    yield expire_at


def _download_statuses(emulator: EmulatorServer) -> list[int]:
    return [r.status for r in emulator.requests if r.path.startswith("/_download/")]


def test_url_expired_before_first_get_refreshed(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    site_drive: str,
    expire_download_urls: list[int],
) -> None:
    add(tenant, "big.bin", THREE_MIB)
    expire_download_urls.append(1)
    emulator.clear_requests()

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.failures == 0
    assert _download_statuses(emulator)[:2] == [401, 200]
    assert archive_state(lake, site_drive) == tenant_state(tenant, site_drive)


def test_url_expired_mid_download_refreshed(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    site_drive: str,
    expire_download_urls: list[int],
) -> None:
    big = add(tenant, "big.bin", THREE_MIB)
    emulator.inject_broken_download(big, after_bytes=1024 * 1024)
    # The first GET breaks after 1 MiB; the resume on the same URL finds it expired.
    expire_download_urls.append(2)
    emulator.clear_requests()

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.failures == 0
    assert result.resumes == 2
    # GraphClient first handles a 401 by retrying with a new token, so the expired URL
    # may be tried twice before download_content requests a fresh one from /content.
    statuses = _download_statuses(emulator)
    assert statuses[0] == 200
    assert statuses[-1] == 206
    assert set(statuses[1:-1]) == {401}
    content_requests = [r for r in emulator.requests if r.path.endswith(f"/{big}/content")]
    assert len(content_requests) == 2
    assert archive_state(lake, site_drive) == tenant_state(tenant, site_drive)


# ---- 6. SIGKILL and re-run -------------------------------------------------------------

KILL_ROUNDS = 3

BACKUP_SCRIPT = """
import asyncio, sys
from m365lake.backup_files import backup_files
from m365lake.config import GraphSettings
from m365lake.lake import Lake

checkpoint_files = int(sys.argv[2])
summary = asyncio.run(
    backup_files(
        GraphSettings.from_env(), Lake.open(sys.argv[1]), checkpoint_files=checkpoint_files
    )
)
print(summary.failed, summary.skipped, file=sys.stderr)
sys.exit(1 if summary.failed or summary.skipped else 0)
"""


@pytest.fixture
def kill_tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=1))
    tenant.add_site(SeedSite(SITE, "Records"))
    rng = random.Random(20261204)
    for index in range(400):
        folder = f"Folder {index % 17}/Sub {index % 5}"
        size = rng.randrange(10, 40_000)
        add(tenant, f"{folder}/file {index}.txt", rng.randbytes(size))
    for index in range(6):
        add(tenant, f"Large/blob {index}.bin", rng.randbytes(3 * 1024 * 1024))
    return tenant


@pytest.fixture
def kill_emulator(kill_tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(kill_tenant, emulator_state) as server:
        yield server


def _command(
    server: EmulatorServer, lake_root: Path, checkpoint_files: int
) -> tuple[list[str], dict[str, str]]:
    environment = {**os.environ, **server.environment()}
    command = [sys.executable, "-c", BACKUP_SCRIPT, str(lake_root), str(checkpoint_files)]
    return command, environment


def _run_to_completion(
    server: EmulatorServer, lake_root: Path, checkpoint_files: int = CHECKPOINT_FILES
) -> float:
    command, environment = _command(server, lake_root, checkpoint_files)
    started = time.monotonic()
    completed = subprocess.run(command, env=environment, capture_output=True, timeout=300)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-2000:]
    return time.monotonic() - started


def _kill_after(
    server: EmulatorServer,
    lake_root: Path,
    delay: float,
    checkpoint_files: int = CHECKPOINT_FILES,
) -> bool:
    """Start a backup and SIGKILL it after ``delay`` seconds; return whether it was killed."""
    command, environment = _command(server, lake_root, checkpoint_files)
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _all_drives(tenant: Tenant) -> list[str]:
    drives = []
    for info in tenant.users():
        drive = tenant.onedrive_of(info.id)
        if drive is not None:
            drives.append(drive.id)
    for site in tenant.sites():
        drives += [drive.id for drive in tenant.drives_of_site(site.id)]
    return drives


@pytest.mark.slow
def test_killed_file_runs_match_clean_run(
    kill_tenant: Tenant, kill_emulator: EmulatorServer, tmp_path: Path
) -> None:
    rng = random.Random(7)
    drives = _all_drives(kill_tenant)
    expected = {drive_id: tenant_state(kill_tenant, drive_id) for drive_id in drives}
    assert sum(len(files) for files in expected.values()) > 400
    _run_to_completion(kill_emulator, tmp_path / "cold")
    clean_duration = _run_to_completion(kill_emulator, tmp_path / "clean")
    clean = Lake.open(tmp_path / "clean")
    killed = 0
    for round_number in range(KILL_ROUNDS):
        lake_root = tmp_path / f"lake-{round_number}"
        for _ in range(2):
            delay = rng.uniform(0.15, 0.9) * clean_duration
            killed += _kill_after(kill_emulator, lake_root, delay)
        _run_to_completion(kill_emulator, lake_root)

        lake = Lake.open(lake_root)
        for drive_id in drives:
            archived = archive_state(lake, drive_id)
            assert archived == expected[drive_id], f"round {round_number}, drive {drive_id}"
            assert archived == archive_state(clean, drive_id)
        duplicates = run_sql(
            lake,
            "SELECT drive_id, item_id, count(*) FROM file_versions "
            "GROUP BY ALL HAVING count(*) > 1",
        )[1]
        assert duplicates == [], f"round {round_number}: duplicate versions"
        assert lake.verify()["blobs"] >= 6
    assert killed >= KILL_ROUNDS, f"only {killed} of {2 * KILL_ROUNDS} runs were killed"


KILL_CHECKPOINT_FILES = 40
"""Versions between checkpoint commits: the 406 files of the kill tenant make about ten."""

CHECKPOINT_KILL_ROUNDS = 2


def _checkpoints_left(lake_root: Path) -> int:
    """Count the drive commits that did not advance a delta token: checkpoints of cut runs."""
    if not (lake_root / "commits").exists():
        return 0
    return sum(
        1
        for manifest in Lake.open(lake_root).manifests()
        if manifest["kind"] == "files"
        and delta_key(manifest["container"]) not in (manifest.get("state") or {})
    )


@pytest.mark.slow
def test_killed_between_checkpoints_match_clean_run(
    kill_tenant: Tenant, kill_emulator: EmulatorServer, tmp_path: Path
) -> None:
    rng = random.Random(8)
    drives = _all_drives(kill_tenant)
    expected = {drive_id: tenant_state(kill_tenant, drive_id) for drive_id in drives}
    _run_to_completion(kill_emulator, tmp_path / "cold", KILL_CHECKPOINT_FILES)
    clean_duration = _run_to_completion(kill_emulator, tmp_path / "clean", KILL_CHECKPOINT_FILES)
    clean = Lake.open(tmp_path / "clean")
    checkpoints = 0
    for round_number in range(CHECKPOINT_KILL_ROUNDS):
        lake_root = tmp_path / f"lake-{round_number}"
        # Late enough that checkpoints have usually been committed.
        delay = rng.uniform(0.4, 0.9) * clean_duration
        _kill_after(kill_emulator, lake_root, delay, KILL_CHECKPOINT_FILES)
        checkpoints += _checkpoints_left(lake_root)
        _run_to_completion(kill_emulator, lake_root, KILL_CHECKPOINT_FILES)

        lake = Lake.open(lake_root)
        for drive_id in drives:
            archived = archive_state(lake, drive_id)
            assert archived == expected[drive_id], f"round {round_number}, drive {drive_id}"
            assert archived == archive_state(clean, drive_id)
        duplicates = run_sql(
            lake,
            "SELECT drive_id, item_id, count(*) FROM file_versions "
            "GROUP BY ALL HAVING count(*) > 1",
        )[1]
        assert duplicates == [], f"round {round_number}: duplicate versions"
        assert lake.verify()["blobs"] >= 6
    assert checkpoints > 0, "no killed run left a checkpoint commit behind"


def test_url_expired_twice_before_first_get_refreshed(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    site_drive: str,
    expire_download_urls: list[int],
) -> None:
    add(tenant, "big.bin", THREE_MIB)
    # Both the URL of the first 302 and the one fetched after the token refresh expire.
    expire_download_urls.extend([1, 2])
    emulator.clear_requests()

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.failures == 0
    assert _download_statuses(emulator)[-1] == 200
    assert archive_state(lake, site_drive) == tenant_state(tenant, site_drive)


def test_download_failing_all_run_retried_next_run(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    big = add(tenant, "Reports/big.bin", THREE_MIB)
    add(tenant, "Reports/small.txt", b"small")
    # More breaks than download_content tolerates, so the first run gives the item up.
    emulator.inject_broken_download(big, after_bytes=100_000, times=6)

    first = run_backup(emulator, lake, drives=[site_drive])

    [result] = first.results
    assert result.pending_retries == 1
    assert big not in archive_state(lake, site_drive)

    # The folder moves before the retry, so the retried item lands at its new path.
    tenant.rename_item(folder_id_at(tenant, ("Reports",)), "Reports 2025")
    second = run_backup(emulator, lake, drives=[site_drive])

    [result] = second.results
    assert result.pending_retries == 0
    assert result.failures == 0
    assert archive_state(lake, site_drive) == tenant_state(tenant, site_drive)


def test_swaps_and_recreations_in_one_gap(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    add(tenant, "Left/l.txt", b"left")
    add(tenant, "Right/r.txt", b"right")
    add(tenant, "Case/Report.txt", b"report")
    add(tenant, "Same/path.txt", b"first incarnation")
    add(tenant, "Mover/inner/m.txt", b"mover")
    captured: set[tuple[str, str, str]] = set()
    run_backup(emulator, lake, drives=[site_drive])
    _assert_run_matches(tenant, lake, site_drive, captured)
    first_incarnation = item_id_at(tenant, site_drive, "Same/path.txt")

    # Swap two folder names through a temporary name.
    left, right = folder_id_at(tenant, ("Left",)), folder_id_at(tenant, ("Right",))
    tenant.rename_item(left, "Swap tmp")
    tenant.rename_item(right, "Left")
    tenant.rename_item(left, "Right")
    # A rename that changes only the letter case.
    tenant.rename_item(item_id_at(tenant, site_drive, "Case/Report.txt"), "report.txt")
    # Delete a file and create another one at the same path: a new item id.
    tenant.delete_item(first_incarnation)
    add(tenant, "Same/path.txt", b"second incarnation")
    # Move a folder into a folder created after the last run.
    tenant.move_item(folder_id_at(tenant, ("Mover",)), folder_id_at(tenant, ("New", "Deeper")))
    run_backup(emulator, lake, drives=[site_drive])

    _assert_run_matches(tenant, lake, site_drive, captured)
    live_paths = {path for path, _, _ in archive_state(lake, site_drive).values()}
    assert {"Left/r.txt", "Right/l.txt", "Case/report.txt", "New/Deeper/Mover/inner/m.txt"} <= (
        live_paths
    )
    deleted_at = run_sql(
        lake,
        f"SELECT deleted_at FROM file_versions WHERE item_id = {sql_literal(first_incarnation)}",
    )[1]
    assert len(deleted_at) == 1
    assert deleted_at[0][0] is not None


def _version_rows(lake: Lake) -> list[tuple[Any, ...]]:
    """Return (drive, item, path, SHA-256, deleted) of every file version, sorted."""
    refresh_catalog(lake)
    return run_sql(
        lake,
        "SELECT drive_id, item_id, path, content_sha256, deleted_at IS NOT NULL "
        "FROM file_versions ORDER BY ALL",
    )[1]


@pytest.mark.slow
def test_killed_incremental_run_records_changes_once(
    kill_tenant: Tenant, kill_emulator: EmulatorServer, tmp_path: Path
) -> None:
    lake_root = tmp_path / "lake"
    _run_to_completion(kill_emulator, lake_root)
    drive_id = kill_tenant.drive_id_for("site", SITE, LIBRARY)
    for index in range(150):
        add(kill_tenant, f"Added/batch {index % 4}/new {index}.txt", f"new {index}".encode())
    kill_tenant.move_item(
        folder_id_at(kill_tenant, ("Folder 3",)), folder_id_at(kill_tenant, ("Large",))
    )
    kill_tenant.rename_item(folder_id_at(kill_tenant, ("Folder 4",)), "Folder four")
    kill_tenant.delete_item(folder_id_at(kill_tenant, ("Folder 5",)))
    kill_tenant.update_file_content(
        item_id_at(kill_tenant, drive_id, "Large/blob 0.bin"), b"now small"
    )
    probe_root = tmp_path / "probe"
    shutil.copytree(lake_root, probe_root)
    incremental_duration = _run_to_completion(kill_emulator, probe_root)

    rng = random.Random(13)
    killed = 0
    for _ in range(3):
        killed += _kill_after(
            kill_emulator, lake_root, rng.uniform(0.2, 0.9) * incremental_duration
        )
    _run_to_completion(kill_emulator, lake_root)

    lake, probe = Lake.open(lake_root), Lake.open(probe_root)
    assert killed >= 1
    assert archive_state(lake, drive_id) == tenant_state(kill_tenant, drive_id)
    assert _version_rows(lake) == _version_rows(probe)
