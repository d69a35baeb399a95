"""Files restore pieces: fragment planning, resuming uploads, names, the planner, verify."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedTenant, SeedUser
from m365lake.errors import LakeIntegrityError
from m365lake.graph import GraphClient
from m365lake.quickxor import quickxor_b64
from m365lake.restore.files_names import safe_item_name
from m365lake.restore.files_plan import FilePlan, _DrivePlanner
from m365lake.restore.files_upload import (
    FRAGMENT_BYTES,
    FRAGMENT_UNIT,
    FileTimes,
    fragment_ranges,
    fragments,
    next_offset,
    upload_in_session,
)
from m365lake.restore.files_verify import compare_item
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import ConflictPolicy, Outcome, RestoreTarget, Severity

OWNER = "alice@contoso.example"
MIB = 1024 * 1024


# ---- fragments -------------------------------------------------------------------------


def test_fragment_ranges_ten_mib_units() -> None:
    assert FRAGMENT_BYTES == 32 * FRAGMENT_UNIT == 10 * MIB
    ranges = fragment_ranges(50 * MIB, 0)
    assert len(ranges) == 5
    assert ranges[0] == (0, 10 * MIB - 1)
    assert ranges[-1] == (40 * MIB, 50 * MIB - 1)


def test_fragment_ranges_resume_and_tail() -> None:
    ranges = fragment_ranges(3 * FRAGMENT_UNIT + 7, FRAGMENT_UNIT, FRAGMENT_UNIT)
    assert ranges == [
        (FRAGMENT_UNIT, 2 * FRAGMENT_UNIT - 1),
        (2 * FRAGMENT_UNIT, 3 * FRAGMENT_UNIT - 1),
        (3 * FRAGMENT_UNIT, 3 * FRAGMENT_UNIT + 6),
    ]
    assert fragment_ranges(10, 10) == []


@pytest.mark.parametrize("size", [0, FRAGMENT_UNIT + 1, 1000])
def test_fragment_ranges_reject_odd_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="320 KiB"):
        fragment_ranges(10 * MIB, 0, size)


def test_fragment_ranges_reject_start_past_end() -> None:
    with pytest.raises(ValueError, match="outside"):
        fragment_ranges(10, 11)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"nextExpectedRanges": ["26-"]}, 26),
        ({"nextExpectedRanges": ["77829-99375", "12345-55232"]}, 12345),
        ({"nextExpectedRanges": []}, None),
        ({}, None),
        ({"nextExpectedRanges": ["garbage"]}, None),
    ],
)
def test_next_offset(status: dict[str, Any], expected: int | None) -> None:
    assert next_offset(status) == expected


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, position, index = [], 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        chunks.append(data[position : position + size])
        position += size
        index += 1
    return chunks


async def collect(source: Any, start: int, fragment_bytes: int) -> list[tuple[int, bytes]]:
    return [piece async for piece in fragments(source, start, fragment_bytes)]


def test_fragments_reassemble_content() -> None:
    data = bytes(range(256)) * (3 * FRAGMENT_UNIT // 256) + b"tail"
    chunks = chunked(data, [100_000, 7, 300_001])
    pieces = asyncio.run(collect(lambda: iter(chunks), 0, FRAGMENT_UNIT))
    assert b"".join(piece for _, piece in pieces) == data
    assert [offset for offset, _ in pieces] == [
        0,
        FRAGMENT_UNIT,
        2 * FRAGMENT_UNIT,
        3 * FRAGMENT_UNIT,
    ]
    assert all(len(piece) == FRAGMENT_UNIT for _, piece in pieces[:-1])
    assert pieces[-1][1] == b"tail"


def test_fragments_resume_mid_content() -> None:
    data = bytes(range(256)) * (2 * FRAGMENT_UNIT // 256)
    chunks = chunked(data, [65_536])
    start = FRAGMENT_UNIT + 1000
    pieces = asyncio.run(collect(lambda: iter(chunks), start, FRAGMENT_UNIT))
    assert pieces == [(start, data[start:])]


def test_fragments_hold_last_until_source_checked() -> None:
    data = b"x" * (2 * FRAGMENT_UNIT + 10)

    def damaged() -> Iterator[bytes]:
        yield from chunked(data, [FRAGMENT_UNIT // 2])
        raise LakeIntegrityError("blob hashes to something else")

    received: list[tuple[int, bytes]] = []

    async def scenario() -> None:
        async for piece in fragments(damaged, 0, FRAGMENT_UNIT):
            received.append(piece)

    with pytest.raises(LakeIntegrityError):
        asyncio.run(scenario())
    assert [offset for offset, _ in received] == [0, FRAGMENT_UNIT]
    assert sum(len(piece) for _, piece in received) < len(data)


# ---- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.docx", "report.docx"),
        ('what? a*b: "x" <y> |z|.txt', "what_ a_b_ _x_ _y_ _z_.txt"),
        ("CON", "CON_"),
        ("nul", "nul_"),
        ("nul.txt", "nul.txt"),
        ("~$budget.xlsx", "_$budget.xlsx"),
        ("site_vti_cnf", "site_vti-cnf"),
        ("line\nbreak.txt", "line_break.txt"),
        ("..", "_"),
        ("日本語 📁.txt", "日本語 📁.txt"),
    ],
)
def test_safe_item_name(name: str, expected: str) -> None:
    cleaned, reason = safe_item_name(name)
    assert cleaned == expected
    if cleaned == name:
        assert reason is None
    else:
        assert reason is not None
        assert repr(name) in reason


# ---- verify ----------------------------------------------------------------------------


def file_plan(name: str, **fields: Any) -> FilePlan:
    values: dict[str, Any] = {
        "workload": "files",
        "source_container": "d1",
        "source_item_id": "i1",
        "source_version": "sha",
        "source_path": name,
        "target_container": "d1",
        "target_path": name,
        "action": "create",
        "name": name,
        "original_name": name,
        "size": 4,
        "quickxor_hash": quickxor_b64(b"data"),
        "modified_at": datetime(2001, 10, 26, 17, 30, tzinfo=UTC),
    }
    values.update(fields)
    return FilePlan(**values)


def live_item(name: str, data: bytes, modified: str = "2001-10-26T17:30:00Z") -> dict[str, Any]:
    return {
        "id": "t1",
        "name": name,
        "size": len(data),
        "file": {"hashes": {"quickXorHash": quickxor_b64(data)}},
        "fileSystemInfo": {"lastModifiedDateTime": modified},
    }


def test_compare_item_matching_file() -> None:
    item = file_plan("notes.txt")
    assert compare_item(item, Outcome.CREATED, live_item("notes.txt", b"data")) == []


def test_compare_item_content_mismatch() -> None:
    findings = compare_item(
        file_plan("notes.txt"), Outcome.CREATED, live_item("notes.txt", b"other")
    )
    assert {f.field for f in findings} == {"size", "quickxor_hash"}
    assert {f.severity for f in findings} == {Severity.MISMATCH}


def test_compare_item_office_rewrite_tolerated() -> None:
    findings = compare_item(
        file_plan("memo.docx"), Outcome.CREATED, live_item("memo.docx", b"other")
    )
    assert findings
    assert {f.severity for f in findings} == {Severity.REWRITE}


def test_compare_item_time_and_name() -> None:
    item = file_plan("a_b.txt", original_name="a:b.txt", name_rewrite="rewritten")
    findings = compare_item(
        item, Outcome.CREATED, live_item("a_b.txt", b"data", "2026-01-01T00:00:00Z")
    )
    by_field = {f.field: f for f in findings}
    assert by_field["name"].severity is Severity.REWRITE
    assert by_field["name"].expected == "a:b.txt"
    assert by_field["modified_at"].severity is Severity.MISMATCH
    # An item found already present keeps its own times, so they are not compared.
    present = compare_item(
        item, Outcome.ALREADY_PRESENT, live_item("a_b.txt", b"data", "2026-01-01T00:00:00Z")
    )
    assert {f.field for f in present} == {"name"}


# ---- against the emulator --------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    tenant = Tenant.from_seed(SeedTenant(users=[SeedUser(OWNER, "Alice", mail=OWNER)]))
    tenant.app.roles.append("Files.ReadWrite.All")
    with EmulatorServer(tenant, tmp_path_factory.mktemp("emulator")) as server:
        yield server


def drive_of(emulator: EmulatorServer) -> tuple[str, str]:
    drive_id = emulator.tenant.drive_id_for("onedrive", OWNER)
    info = emulator.tenant.drive_info(drive_id)
    assert info is not None
    return drive_id, info.root_id


def session_requests(emulator: EmulatorServer) -> list[str]:
    return [
        f"{record.method} {record.status}"
        for record in emulator.app.state.requests.snapshot()
        if record.path.startswith("/_upload/") or record.path.endswith("createUploadSession")
    ]


def upload(emulator: EmulatorServer, name: str, data: bytes) -> dict[str, Any]:
    drive_id, root = drive_of(emulator)

    async def scenario() -> dict[str, Any]:
        async with GraphClient(emulator.settings()) as graph:
            return await upload_in_session(
                graph,
                f"/drives/{drive_id}/items/{root}:/{name}:/createUploadSession",
                name=name,
                size=len(data),
                source=lambda: iter([data[i : i + 100_000] for i in range(0, len(data), 100_000)]),
                conflict="fail",
                times=FileTimes(None, datetime(2002, 2, 2, tzinfo=UTC)),
                fragment_bytes=FRAGMENT_UNIT,
            )

    return asyncio.run(scenario())


DATA = bytes(range(256)) * (3 * FRAGMENT_UNIT // 256) + b"end"


def test_upload_resumes_after_416(emulator: EmulatorServer) -> None:
    emulator.app.state.requests.clear()
    emulator.inject(path_pattern="^/_upload/", status=416, code="invalidRange")
    item = upload(emulator, "resumed.bin", DATA)
    drive_id, _ = drive_of(emulator)
    assert emulator.tenant.file_content(drive_id, item["id"]) == DATA
    assert item["fileSystemInfo"]["lastModifiedDateTime"] == "2002-02-02T00:00:00Z"
    requests = session_requests(emulator)
    # The rejected first fragment, a status read, then four fragments from byte 0.
    assert requests[:3] == ["POST 200", "PUT 416", "GET 200"]
    assert requests[3:] == ["PUT 202", "PUT 202", "PUT 202", "PUT 201"]


def test_upload_restarts_lost_session(emulator: EmulatorServer) -> None:
    emulator.app.state.requests.clear()
    emulator.inject(path_pattern="^/_upload/", status=404, code="itemNotFound")
    item = upload(emulator, "restarted.bin", DATA)
    drive_id, _ = drive_of(emulator)
    assert emulator.tenant.file_content(drive_id, item["id"]) == DATA
    requests = session_requests(emulator)
    assert requests.count("POST 200") == 2
    assert emulator.app.state.upload_sessions.open_count() == 0


def test_upload_of_damaged_content_commits_nothing(emulator: EmulatorServer) -> None:
    drive_id, root = drive_of(emulator)

    def damaged() -> Iterator[bytes]:
        yield DATA
        raise LakeIntegrityError("blob hashes to something else")

    async def scenario() -> None:
        async with GraphClient(emulator.settings()) as graph:
            await upload_in_session(
                graph,
                f"/drives/{drive_id}/items/{root}:/damaged.bin:/createUploadSession",
                name="damaged.bin",
                size=len(DATA),
                source=damaged,
                conflict="fail",
                times=FileTimes(None, None),
                fragment_bytes=FRAGMENT_UNIT,
            )

    with pytest.raises(LakeIntegrityError):
        asyncio.run(scenario())
    names = {child.name for child in emulator.tenant.children_of(drive_id, root)}
    assert "damaged.bin" not in names
    assert emulator.app.state.upload_sessions.open_count() == 0


def row(path: str, item_id: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "drive_id": "",
        "item_id": item_id,
        "parent_id": "parent",
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "is_folder": False,
        "size": 4,
        "quickxor_hash": quickxor_b64(b"data"),
        "content_sha256": f"sha-{item_id}",
        "package_type": None,
        "created_at": None,
        "modified_at": None,
    }
    values.update(fields)
    return values


def plan_rows(
    emulator: EmulatorServer,
    rows: list[dict[str, Any]],
    folders: dict[str, dict[str, Any]],
    *,
    policy: ConflictPolicy = ConflictPolicy.SKIP,
    target: RestoreTarget | None = None,
) -> dict[str, FilePlan]:
    drive_id, _ = drive_of(emulator)

    async def scenario() -> list[FilePlan]:
        async with GraphClient(emulator.settings()) as graph:
            planner = _DrivePlanner(
                graph, drive_id, target or RestoreTarget(), policy, RestoreLedger({}), folders
            )
            return await planner.run([{**r, "drive_id": drive_id} for r in rows])

    return {item.target_path: item for item in asyncio.run(scenario())}


def test_planner_against_live_drive(emulator: EmulatorServer) -> None:
    tenant = emulator.tenant
    kept = tenant.add_folder_item("onedrive", OWNER, "Documents", ("Plans", "Kept"))
    tenant.add_file("onedrive", OWNER, "Documents", ("Plans", "Kept", "same.txt"), b"data")
    tenant.add_file("onedrive", OWNER, "Documents", ("Plans", "Kept", "edited.txt"), b"new!")
    tenant.add_file("onedrive", OWNER, "Documents", ("Plans", "Blocked"), b"a file")
    # The archived folder "Renamed" is the live folder "Kept": reused by id.
    folders = {
        "Plans": {"item_id": "gone-plans"},
        "Plans/Renamed": {"item_id": kept},
        "Plans/New": {"item_id": "gone-new"},
    }
    rows = [
        row("Plans/Renamed", kept, is_folder=True),
        row("Plans/Renamed/same.txt", "f1"),
        row("Plans/Renamed/edited.txt", "f2"),
        row("Plans/New/fresh.txt", "f3"),
        row("Plans/New/a:b.txt", "f4"),
        row("Plans/New/Notebook", "f5", package_type="oneNote"),
        row("Plans/New/empty.txt", "f6", content_sha256=None),
        row("Plans/Blocked/inside.txt", "f7"),
    ]

    plan = plan_rows(emulator, rows, folders)

    assert plan["Plans"].action == "already_present"
    assert plan["Plans/Renamed"].action == "already_present"
    assert plan["Plans/Renamed"].live_item_id == kept
    assert plan["Plans/Renamed/same.txt"].action == "already_present"
    assert plan["Plans/Renamed/edited.txt"].action == "collision"
    assert plan["Plans/New"].action == "create"
    assert plan["Plans/New"].source_item_id == "gone-new"
    assert plan["Plans/New/fresh.txt"].action == "create"
    assert plan["Plans/New/fresh.txt"].parent_id is None
    rewritten = plan["Plans/New/a_b.txt"]
    assert rewritten.action == "create"
    assert rewritten.name_rewrite is not None
    assert plan["Plans/New/Notebook"].action == "unrestorable"
    assert plan["Plans/New/empty.txt"].action == "unrestorable"
    assert plan["Plans/Blocked"].action == "collision"
    assert plan["Plans/Blocked/inside.txt"].action == "collision"
    assert "skipped" in (plan["Plans/Blocked/inside.txt"].reason or "")

    renamed = plan_rows(emulator, rows, folders, policy=ConflictPolicy.RENAME)
    assert renamed["Plans/Blocked"].action == "collision"
    assert renamed["Plans/Blocked/inside.txt"].action == "create"


def test_planner_restore_folder_reuses_nothing(emulator: EmulatorServer) -> None:
    tenant = emulator.tenant
    kept = tenant.add_folder_item("onedrive", OWNER, "Documents", ("Keep2",))
    rows = [row("Keep2", kept, is_folder=True), row("Keep2/x.txt", "g1")]
    plan = plan_rows(
        emulator, rows, {"Keep2": {"item_id": kept}}, target=RestoreTarget(restore_folder="Back")
    )
    assert list(plan) == ["Back", "Back/Keep2", "Back/Keep2/x.txt"]
    assert {item.action for item in plan.values()} == {"create"}
    assert plan["Back"].parent_path == ""
    assert plan["Back/Keep2/x.txt"].parent_path == "Back/Keep2"


def test_planner_uses_ledger(emulator: EmulatorServer, tmp_path: Path) -> None:
    tenant = emulator.tenant
    drive_id, _ = drive_of(emulator)
    copy = tenant.add_file("onedrive", OWNER, "Documents", ("Ledger", "doc 1.txt"), b"data")
    tenant.add_file("onedrive", OWNER, "Documents", ("Ledger", "doc.txt"), b"live")
    ledger = RestoreLedger({("files", drive_id, "h1", "sha-h1", drive_id): copy})

    async def scenario() -> list[FilePlan]:
        async with GraphClient(emulator.settings()) as graph:
            planner = _DrivePlanner(
                graph, drive_id, RestoreTarget(), ConflictPolicy.RENAME, ledger, {}
            )
            return await planner.run([{**row("Ledger/doc.txt", "h1"), "drive_id": drive_id}])

    plan = {item.target_path: item for item in asyncio.run(scenario())}
    assert plan["Ledger/doc.txt"].action == "already_present"
    assert plan["Ledger/doc.txt"].live_item_id == copy
