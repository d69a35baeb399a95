"""Files restore end to end: back up a drive, damage it in the emulator, restore, compare.

Every test runs the real backup and the restore runner against the emulator over HTTPS,
and checks the live drive (``Tenant.live_files``) rather than the restore's own report.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup_files import backup_files
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator import drives as emulator_drives
from m365lake.emulator.drives import check_item_name
from m365lake.emulator.seed import SeedSite, SeedTenant, SeedUser
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.quickxor import quickxor_b64
from m365lake.restore import files_execute
from m365lake.restore.files import FilePlan, verify_files_restore
from m365lake.restore.files_upload import commit_stored
from m365lake.restore.model import (
    ConflictPolicy,
    ItemResult,
    Outcome,
    RestoreTarget,
    Severity,
    VerifyFinding,
)
from m365lake.restore.runner import RestoreRun, restore
from m365lake.restore.selection import Selection

OWNER = "alice@contoso.example"
SITE = "records"
FIFTY_MB = 50 * 1024 * 1024
# Names Graph accepts, from the backup's hard-case list, and one that looks like Graph's
# key syntax users('id').
ACCEPTED_NAMES = (
    "  leading and trailing spaces  .txt",
    "hash #1 and percent 100% & more.txt",
    "percent-encoded %20 %2F %25.txt",
    "it's a 'single quoted' name.txt",
    ".leading dot.txt",
    "trailing dot.",
    "semicolon;comma,equals=plus+at@.txt",
    "brackets [x] {y} (z) ~tilde.txt",
    "日本語のファイル名.txt",
    "emoji 📁😀 name.txt",
    "combining e\u0301 (decomposed).txt",
    "right-to-left שלום مرحبا.txt",
    "Budget('draft') v2.xlsx",
)
# Names SharePoint rejects, from the production's hostile-name list: the restore must
# rewrite them and say so.
HOSTILE_NAMES = (
    "..\\..\\Windows\\win.ini",
    "CON",
    "LPT1",
    "control\x01\x1fchars.txt",
    'what? a*b: "x" <y> |z|.txt',
    "~$budget.xlsx",
    "line\nbreak.txt",
)

State = dict[str, tuple[str, int]]
"""Path -> (content SHA-256, size) of every live file of a drive."""


# ---- helpers ---------------------------------------------------------------------------


def drive_state(tenant: Tenant, drive_id: str) -> State:
    return {
        "/".join(path): (hashlib.sha256(content).hexdigest(), len(content))
        for path, content, _ in tenant.live_files(drive_id).values()
    }


def item_at(tenant: Tenant, drive_id: str, path: str) -> str:
    for item_id, (parts, _, _) in tenant.live_files(drive_id).items():
        if "/".join(parts) == path:
            return item_id
    raise KeyError(path)


def folder_at(tenant: Tenant, path: tuple[str, ...]) -> str:
    return tenant.add_folder_item("onedrive", OWNER, "Documents", path)


def back_up(emulator: EmulatorServer, lake: Lake, drive_id: str) -> None:
    summary = asyncio.run(backup_files(emulator.settings(), lake, drives=[drive_id]))
    assert summary.failed == {}


def run_restore(
    emulator: EmulatorServer,
    lake: Lake,
    selection: Selection,
    *,
    policy: ConflictPolicy = ConflictPolicy.SKIP,
    target: RestoreTarget | None = None,
) -> RestoreRun:
    return asyncio.run(
        restore(
            lake,
            emulator.settings(),
            selection,
            target=target,
            policy=policy,
            dry_run=False,
            actor="restore-test",
        )
    )


def outcomes(run: RestoreRun) -> dict[str, Outcome]:
    """Return the outcome of each restored file by its archived path."""
    return {
        result.planned.source_path: result.outcome
        for result in run.report.items
        if result.planned.source_version != "folder"
    }


def writes(emulator: EmulatorServer) -> list[str]:
    return [
        f"{record.method} {record.path}"
        for record in emulator.app.state.requests.snapshot()
        if record.method not in ("GET", "HEAD") and record.path.startswith(("/v1.0/", "/_upload/"))
    ]


@pytest.fixture
def tenant() -> Tenant:
    seed = SeedTenant(users=[SeedUser(OWNER, "Alice", mail=OWNER)], sites=[SeedSite(SITE, "Rec")])
    tenant = Tenant.from_seed(seed)
    tenant.app.roles.append("Files.ReadWrite.All")
    return tenant


@pytest.fixture
def drive_id(tenant: Tenant) -> str:
    return tenant.drive_id_for("onedrive", OWNER)


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


def add(tenant: Tenant, path: str, content: bytes) -> str:
    return tenant.add_file("onedrive", OWNER, "Documents", tuple(path.split("/")), content)


# ---- round trip ------------------------------------------------------------------------


def test_onedrive_round_trip_large_and_hostile(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = random.Random(6).randbytes(FIFTY_MB)
    add(tenant, "Projects/Video/big.bin", big)
    add(tenant, "Projects/plan.txt", b"plan v1")
    for number, name in enumerate(ACCEPTED_NAMES):
        check_item_name(name)
        add(tenant, f"edge names/{name}", f"accepted {number}".encode())
    # The archive may hold names the target rejects; seed them past the name check.
    with monkeypatch.context() as patched:
        patched.setattr(emulator_drives, "check_item_name", lambda name: None)
        for number, name in enumerate(HOSTILE_NAMES):
            add(tenant, f"hostile/{name}", f"hostile {number}".encode())
    before = drive_state(tenant, drive_id)
    back_up(emulator, lake, drive_id)

    tenant.delete_item(folder_at(tenant, ("Projects",)))
    tenant.delete_item(folder_at(tenant, ("edge names",)))
    tenant.delete_item(folder_at(tenant, ("hostile",)))
    run = run_restore(emulator, lake, Selection(drive_id=drive_id))

    assert run.report.counts()["failed"] == 0
    assert run.problems == []
    after = drive_state(tenant, drive_id)
    for path, state in before.items():
        folder, _, name = path.rpartition("/")
        if folder == "hostile":
            continue
        assert after.get(path) == state, path
    assert after["Projects/Video/big.bin"] == (hashlib.sha256(big).hexdigest(), FIFTY_MB)
    big_id = item_at(tenant, drive_id, "Projects/Video/big.bin")
    assert tenant.item_info(drive_id, big_id).quick_xor == quickxor_b64(big)  # type: ignore[union-attr]
    # A 50 MB file goes through an upload session in 320 KiB-multiple fragments.
    uploads = [w for w in writes(emulator) if w.startswith("PUT /_upload/")]
    assert len(uploads) == 5
    hostile_live = {
        path.rpartition("/")[2]: state
        for path, state in after.items()
        if path.startswith("hostile/")
    }
    assert sorted(hostile_live) == sorted(
        [
            ".._.._Windows_win.ini",
            "CON_",
            "LPT1_",
            "control__chars.txt",
            "what_ a_b_ _x_ _y_ _z_.txt",
            "_$budget.xlsx",
            "line_break.txt",
        ]
    )
    for name in hostile_live:
        check_item_name(name)
    for number, name in enumerate(HOSTILE_NAMES):
        expected = hashlib.sha256(f"hostile {number}".encode()).hexdigest()
        assert expected in {sha for sha, _ in hostile_live.values()}, name
    rewrites = [f for f in run.findings if f.field == "name"]
    assert len(rewrites) == len(HOSTILE_NAMES)
    assert all(f.severity is Severity.REWRITE for f in rewrites)
    hostile_results = [
        r
        for r in run.report.items
        if r.planned.source_path.startswith("hostile/") and r.planned.source_version != "folder"
    ]
    assert all("rewritten" in (r.reason or "") for r in hostile_results)


def test_restore_keeps_original_times(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    dated = datetime(2001, 10, 26, 17, 30, tzinfo=UTC)
    tenant.add_file("onedrive", OWNER, "Documents", ("Old", "memo.txt"), b"memo", modified_at=dated)
    back_up(emulator, lake, drive_id)
    tenant.delete_item(folder_at(tenant, ("Old",)))

    run = run_restore(emulator, lake, Selection(drive_id=drive_id))

    assert outcomes(run) == {"Old/memo.txt": Outcome.CREATED}
    memo = tenant.item_info(drive_id, item_at(tenant, drive_id, "Old/memo.txt"))
    assert memo is not None
    assert memo.modified_at == dated
    assert run.findings == []


def test_throttled_restore_then_reverify(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    dated = datetime(2003, 3, 3, 9, 0, tzinfo=UTC)
    tenant.add_file("onedrive", OWNER, "Documents", ("Busy", "one.txt"), b"one", modified_at=dated)
    add(tenant, "Busy/two.txt", b"two")
    back_up(emulator, lake, drive_id)
    tenant.delete_item(folder_at(tenant, ("Busy",)))
    emulator.inject(path_pattern=":/content$", status=429, retry_after="0", times=2)
    emulator.inject(path_pattern="/children$", status=503, retry_after="0", times=1)

    run = run_restore(emulator, lake, Selection(drive_id=drive_id, path="Busy"))

    assert set(outcomes(run).values()) == {Outcome.CREATED}
    assert run.problems == []
    throttled = [
        record.status
        for record in emulator.app.state.requests.snapshot()
        if record.status in (429, 503)
    ]
    assert sorted(throttled) == [429, 429, 503]

    async def reverify(results: list[ItemResult]) -> list[VerifyFinding]:
        async with GraphClient(emulator.settings()) as graph:
            return await verify_files_restore(lake, graph, results)

    # Versions archived before Graph had hashed them carry no QuickXorHash; verify then
    # hashes the archived content itself.
    unhashed = [
        ItemResult(replace(r.planned, quickxor_hash=None), r.outcome, r.target_item_id)
        if isinstance(r.planned, FilePlan)
        else r
        for r in run.report.items
    ]
    assert asyncio.run(reverify(unhashed)) == []

    tenant.update_file_content(item_at(tenant, drive_id, "Busy/one.txt"), b"ONE")

    # Same size, other bytes: only the hash tells, whether Graph's or the archive's own.
    expected = {("quickxor_hash", Severity.MISMATCH), ("modified_at", Severity.MISMATCH)}
    for results in (run.report.items, unhashed):
        findings = asyncio.run(reverify(results))
        assert {(f.field, f.severity) for f in findings} == expected


@pytest.mark.corpus
def test_corpus_edge_names_restored(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    corpus_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    edge_folder = corpus_root / "files" / "renamed-edge-names"
    if not edge_folder.is_dir():
        pytest.skip(f"no files/renamed-edge-names folder in the corpus at {corpus_root}")
    files = {p.name: p.read_bytes() for p in sorted(edge_folder.iterdir()) if p.is_file()}
    with monkeypatch.context() as patched:
        patched.setattr(emulator_drives, "check_item_name", lambda name: None)
        for name, content in files.items():
            add(tenant, f"edge/{name}", content)
    back_up(emulator, lake, drive_id)
    tenant.delete_item(folder_at(tenant, ("edge",)))

    run = run_restore(emulator, lake, Selection(drive_id=drive_id, path="edge"))

    assert run.report.counts()["failed"] == 0
    assert run.problems == []
    restored = {
        path.removeprefix("edge/"): sha
        for path, (sha, _) in drive_state(tenant, drive_id).items()
        if path.startswith("edge/")
    }
    assert sorted(restored.values()) == sorted(
        hashlib.sha256(content).hexdigest() for content in files.values()
    )
    rejected = [name for name in files if not _accepted(name)]
    assert len(rejected) == 2
    assert len([f for f in run.findings if f.field == "name"]) == len(rejected)
    for name in restored:
        check_item_name(name)


def _accepted(name: str) -> bool:
    try:
        check_item_name(name)
    except ValueError:
        return False
    return True


# ---- point in time ---------------------------------------------------------------------


def test_restore_as_of_before_two_edits(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    item = add(tenant, "Reports/q3.txt", b"q3 first draft")
    back_up(emulator, lake, drive_id)
    before_edits = datetime.now(UTC)
    tenant.update_file_content(item, b"q3 second draft, longer")
    back_up(emulator, lake, drive_id)
    tenant.update_file_content(item, b"q3 final")
    back_up(emulator, lake, drive_id)

    beside = run_restore(
        emulator,
        lake,
        Selection(drive_id=drive_id, path="Reports", as_of=before_edits),
        target=RestoreTarget(restore_folder="Restored copy"),
    )
    assert outcomes(beside) == {"Reports/q3.txt": Outcome.CREATED}
    copy = item_at(tenant, drive_id, "Restored copy/Reports/q3.txt")
    assert tenant.file_content(drive_id, copy) == b"q3 first draft"
    assert tenant.file_content(drive_id, item) == b"q3 final"

    replaced = run_restore(
        emulator,
        lake,
        Selection(drive_id=drive_id, path="Reports", as_of=before_edits),
        policy=ConflictPolicy.REPLACE,
    )
    assert outcomes(replaced) == {"Reports/q3.txt": Outcome.REPLACED}
    assert tenant.file_content(drive_id, item) == b"q3 first draft"
    assert tenant.file_versions(drive_id, item)[0].label == "4.0"


# ---- idempotence -----------------------------------------------------------------------


def test_second_restore_creates_nothing(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    add(tenant, "Team/a.txt", b"alpha")
    add(tenant, "Team/Sub/b.txt", b"bravo")
    add(tenant, "Team/Sub/Deeper/c.txt", b"charlie")
    back_up(emulator, lake, drive_id)
    tenant.delete_item(folder_at(tenant, ("Team",)))
    selection = Selection(drive_id=drive_id, path="Team")

    first = run_restore(emulator, lake, selection)
    assert set(outcomes(first).values()) == {Outcome.CREATED}
    state = drive_state(tenant, drive_id)
    emulator.app.state.requests.clear()

    second = run_restore(emulator, lake, selection)

    assert {r.outcome for r in second.report.items} == {Outcome.ALREADY_PRESENT}
    assert writes(emulator) == []
    assert drive_state(tenant, drive_id) == state


# ---- collisions --------------------------------------------------------------------------


@pytest.fixture
def collided(tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str) -> str:
    """Back up three files, then change one, delete one and leave one as archived."""
    changed = add(tenant, "Shared/changed.txt", b"archived text")
    add(tenant, "Shared/same.txt", b"unchanged text")
    gone = add(tenant, "Shared/gone.txt", b"deleted text")
    back_up(emulator, lake, drive_id)
    tenant.update_file_content(changed, b"edited after the backup")
    tenant.delete_item(gone)
    return changed


@pytest.mark.parametrize(
    ("policy", "changed_outcome"),
    [
        (ConflictPolicy.SKIP, Outcome.SKIPPED),
        (ConflictPolicy.RENAME, Outcome.RENAMED),
        (ConflictPolicy.REPLACE, Outcome.REPLACED),
    ],
)
def test_collisions_follow_policy(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    collided: str,
    policy: ConflictPolicy,
    changed_outcome: Outcome,
) -> None:
    dry = asyncio.run(
        restore(
            lake,
            emulator.settings(),
            Selection(drive_id=drive_id, path="Shared"),
            policy=policy,
            actor="restore-test",
        )
    )
    assert outcomes(dry)["Shared/changed.txt"] == changed_outcome
    assert drive_state(tenant, drive_id)["Shared/changed.txt"][1] == len(b"edited after the backup")

    run = run_restore(emulator, lake, Selection(drive_id=drive_id, path="Shared"), policy=policy)

    assert outcomes(run) == {
        "Shared/changed.txt": changed_outcome,
        "Shared/same.txt": Outcome.ALREADY_PRESENT,
        "Shared/gone.txt": Outcome.CREATED,
    }
    live = {
        path: tenant.file_content(drive_id, item_id)
        for item_id, (parts, _, _) in tenant.live_files(drive_id).items()
        for path in ["/".join(parts)]
    }
    assert live["Shared/gone.txt"] == b"deleted text"
    assert live["Shared/same.txt"] == b"unchanged text"
    if policy is ConflictPolicy.SKIP:
        assert live["Shared/changed.txt"] == b"edited after the backup"
        assert set(live) == {"Shared/changed.txt", "Shared/same.txt", "Shared/gone.txt"}
    elif policy is ConflictPolicy.RENAME:
        assert live["Shared/changed.txt"] == b"edited after the backup"
        assert live["Shared/changed 1.txt"] == b"archived text"
    else:
        assert live["Shared/changed.txt"] == b"archived text"
        assert item_at(tenant, drive_id, "Shared/changed.txt") == collided
    changed_result = next(
        r for r in run.report.items if r.planned.source_path == "Shared/changed.txt"
    )
    assert changed_result.reason

    # The same restore again writes nothing new: the renamed copy is found through the
    # ledger, the replaced file is now identical, and skip still skips.
    state = drive_state(tenant, drive_id)
    again = run_restore(emulator, lake, Selection(drive_id=drive_id, path="Shared"), policy=policy)
    assert outcomes(again) == {
        "Shared/changed.txt": Outcome.SKIPPED
        if policy is ConflictPolicy.SKIP
        else Outcome.ALREADY_PRESENT,
        "Shared/same.txt": Outcome.ALREADY_PRESENT,
        "Shared/gone.txt": Outcome.ALREADY_PRESENT,
    }
    assert drive_state(tenant, drive_id) == state


def test_restore_into_another_drive(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, drive_id: str
) -> None:
    add(tenant, "Deals/2001/contract.pdf", b"%PDF-1.4 contract")
    add(tenant, "Deals/notes.txt", b"notes")
    back_up(emulator, lake, drive_id)
    library = tenant.drive_id_for("site", SITE, "Documents")

    run = run_restore(
        emulator,
        lake,
        Selection(drive_id=drive_id, path="Deals"),
        target=RestoreTarget(drive_id=library, restore_folder="From Alice"),
    )

    assert set(outcomes(run).values()) == {Outcome.CREATED}
    assert run.problems == []
    assert drive_state(tenant, library) == {
        "From Alice/Deals/2001/contract.pdf": (
            hashlib.sha256(b"%PDF-1.4 contract").hexdigest(),
            len(b"%PDF-1.4 contract"),
        ),
        "From Alice/Deals/notes.txt": (hashlib.sha256(b"notes").hexdigest(), len(b"notes")),
    }
    assert "Deals/notes.txt" in drive_state(tenant, drive_id)


@pytest.mark.parametrize(
    ("policy", "outcome"),
    [
        (ConflictPolicy.SKIP, Outcome.SKIPPED),
        (ConflictPolicy.RENAME, Outcome.RENAMED),
        (ConflictPolicy.REPLACE, Outcome.REPLACED),
    ],
)
def test_name_taken_at_commit_sends_bytes_once(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    monkeypatch: pytest.MonkeyPatch,
    policy: ConflictPolicy,
    outcome: Outcome,
) -> None:
    size = 6 * 1024 * 1024  # over 4 MiB: an upload session
    large = random.Random(7).randbytes(size)
    add(tenant, "Race/large.bin", large)
    back_up(emulator, lake, drive_id)
    tenant.delete_item(item_at(tenant, drive_id, "Race/large.bin"))

    sent: list[int] = []
    clashing_ids: list[str] = []
    original = GraphClient.upload_fragment

    async def racing_fragment(
        self: GraphClient, upload_url: str, data: bytes, *, start: int, total: int
    ) -> object:
        if start + len(data) == total and not clashing_ids:
            # Another writer takes the name while the last fragment is on its way.
            clashing_ids.append(add(tenant, "Race/large.bin", b"written meanwhile"))
        sent.append(len(data))
        return await original(self, upload_url, data, start=start, total=total)

    monkeypatch.setattr(GraphClient, "upload_fragment", racing_fragment)
    run = run_restore(emulator, lake, Selection(drive_id=drive_id, path="Race"), policy=policy)

    assert outcomes(run) == {"Race/large.bin": outcome}
    # The file went up once: the 409 at commit is recovered from the stored bytes.
    assert sum(sent) == size
    uploads = [
        (record.method, record.status)
        for record in emulator.app.state.requests.snapshot()
        if record.path.startswith("/_upload/")
    ]
    assert [status for method, status in uploads if method == "PUT"] == [409]
    live = {
        "/".join(parts): tenant.file_content(drive_id, item_id)
        for item_id, (parts, _, _) in tenant.live_files(drive_id).items()
    }
    if policy is ConflictPolicy.SKIP:
        assert ("DELETE", 204) in uploads
        assert live == {"Race/large.bin": b"written meanwhile"}
    elif policy is ConflictPolicy.RENAME:
        assert live == {"Race/large.bin": b"written meanwhile", "Race/large 1.bin": large}
    else:
        assert live == {"Race/large.bin": large}
        assert item_at(tenant, drive_id, "Race/large.bin") == clashing_ids[0]


def test_expired_session_after_clash_uploads_again(
    tenant: Tenant,
    emulator: EmulatorServer,
    lake: Lake,
    drive_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    large = random.Random(8).randbytes(5 * 1024 * 1024)
    add(tenant, "Race/large.bin", large)
    back_up(emulator, lake, drive_id)
    tenant.delete_item(item_at(tenant, drive_id, "Race/large.bin"))
    original_fragment = GraphClient.upload_fragment
    original_commit = commit_stored

    async def racing_fragment(
        self: GraphClient, upload_url: str, data: bytes, *, start: int, total: int
    ) -> object:
        if start + len(data) == total and not any(
            "/".join(parts) == "Race/large.bin"
            for parts, _, _ in tenant.live_files(drive_id).values()
        ):
            add(tenant, "Race/large.bin", b"written meanwhile")
        return await original_fragment(self, upload_url, data, start=start, total=total)

    async def expired_commit(graph: GraphClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await graph.cancel_upload(kwargs["upload_url"])  # as if the session had expired
        return await original_commit(graph, *args, **kwargs)

    monkeypatch.setattr(GraphClient, "upload_fragment", racing_fragment)
    monkeypatch.setattr(files_execute, "commit_stored", expired_commit)
    run = run_restore(
        emulator, lake, Selection(drive_id=drive_id, path="Race"), policy=ConflictPolicy.RENAME
    )

    assert outcomes(run) == {"Race/large.bin": Outcome.RENAMED}
    assert drive_state(tenant, drive_id)["Race/large 1.bin"][1] == len(large)
