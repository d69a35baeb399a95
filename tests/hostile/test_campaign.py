"""Hostile inputs through the whole product: backup, index, search, production, restore.

The generator's malformed messages and archive bombs are seeded into the emulator as
mail and OneDrive files. The run must finish and archive every item byte for byte, or
record it in ``failures`` with a reason. Extraction limits must show as statuses, the
extraction workers must stay under their memory cap, and files may be written only inside
the lake and the production folder. Restored items must land inside the restore folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.discovery import add_custodians, create_case
from m365lake.discovery.production import ExportOptions, export_production
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.drives import check_item_name
from m365lake.emulator.seed import SeedTenant, SeedUser
from m365lake.lake import Lake
from m365lake.restore.model import RestoreTarget
from m365lake.restore.runner import restore
from m365lake.restore.selection import Selection
from m365lake.search import fields
from m365lake.search.extract import ExtractionPool
from m365lake.search.hits import search
from m365lake.search.index import update_index
from tests.hostile.generator import (
    HOSTILE_NAMES,
    HostileCase,
    attachments_message,
    file_cases,
    mail_cases,
)
from tests.unit.discovery.test_export_fixtures import parse_dat, read_bytes

UPN = "alice@contoso.example"
MAIL_FOLDER = ("Inbox", "Hostile")
DRIVE_FOLDER = "Hostile"
RESTORE_FOLDER = "Hostile restore"
ACTOR = "counsel@firm.example"
WORKER_MEMORY_LIMIT = 768 * 1024 * 1024
"""Address-space cap of each extraction worker; the bombs expand far past it."""

# Each campaign took under a minute on 2 cores when written; the bound stops a hang
# rather than measuring speed.
pytestmark = pytest.mark.timeout(480)


@dataclass
class WorkerMemory:
    """Samples the resident memory of this process's children while a block runs."""

    peak_rss: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            for child in me.children(recursive=True):
                try:
                    self.peak_rss = max(self.peak_rss, child.memory_info().rss)
                except psutil.Error:
                    continue  # the child ended between listing and reading
            self.samples += 1

    def __enter__(self) -> WorkerMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def all_files(root: Path) -> Iterator[Path]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield Path(folder) / name


def seed(cases_mail: Iterable[HostileCase], cases_files: Iterable[HostileCase]) -> Tenant:
    tenant = Tenant.from_seed(SeedTenant(users=[SeedUser(UPN, "Alice", mail=UPN)]))
    # The restore writes back, which needs the write permissions of a restore app.
    tenant.app.roles.extend(["Mail.ReadWrite", "Files.ReadWrite.All"])
    for case in cases_mail:
        tenant.add_message(UPN, MAIL_FOLDER, case.data)
    for case in cases_files:
        tenant.add_file("onedrive", UPN, "Documents", (DRIVE_FOLDER, case.name), case.data)
    return tenant


@pytest.fixture(scope="module")
def generated() -> tuple[list[HostileCase], list[HostileCase]]:
    return mail_cases(), file_cases()


def known_mismatches(tenant: Tenant) -> set[str]:
    """Ids of the generated messages whose restored copy verification reports as different.

    NOTE: the message nested 200 deep comes back with its top-level message/rfc822 body
    as an itemAttachment, but the restore writes attached messages only 8 levels deep
    (deeper ones travel as files) while the archive lists 50 levels, so the counts of
    attached messages differ. That is a finding of the verification, not a crash.
    """
    return {
        message_id
        for message_id, live in tenant.live_messages(UPN).items()
        if live.folder_path == MAIL_FOLDER and b"Subject: wrapper 199" in live.mime[:400]
    }


def archived_or_failed(lake: Lake, expected: dict[str, bytes], query: str) -> set[str]:
    """Check each archived row's bytes; return the SHA-256 of the inputs archived exactly."""
    found = set()
    for sha256, inline in run_sql(lake, query)[1]:
        data = lake.read_content(sha256, inline)
        assert hashlib.sha256(data).hexdigest() == sha256
        found.add(sha256)
    return found & set(expected)


@dataclass
class Campaign:
    """What a campaign run saw, for the checks particular to its inputs."""

    issues: list[str]
    partially_indexed: int
    worker_peak_rss: int
    restore_failures: list[str]


def run_campaign(
    messages: list[HostileCase],
    files: list[HostileCase],
    emulator_state: Path,
    tmp_path: Path,
    expected_mismatches: Callable[[Tenant], set[str]] = lambda _: set(),
) -> Campaign:
    """Back up, index, search, produce and restore the inputs; check what must always hold.

    ``expected_mismatches`` returns the ids of source messages whose restored copy may
    differ from the archive in verification.
    """
    tenant = seed(messages, files)
    lake_root = tmp_path / "lake"
    production_root = tmp_path / "production"
    lake = Lake.open(lake_root)
    outside_before = set(all_files(tmp_path.parent)) - set(all_files(tmp_path))

    with EmulatorServer(tenant, emulator_state) as emulator:
        mail = asyncio.run(backup_mail(emulator.settings(), lake))
        drive = asyncio.run(backup_files(emulator.settings(), lake))
        assert mail.failed == {}
        assert drive.failed == {}
        refresh_catalog(lake)

        # Every input archived byte for byte, or a failure row with its reason.
        failures = run_sql(lake, "SELECT workload, item_id, outcome, reason FROM failures")[1]
        for row in failures:
            assert row[3], f"failure without a reason: {row}"
        by_hash = {hashlib.sha256(case.data).hexdigest(): case.name for case in messages}
        exact_mail = archived_or_failed(
            lake, by_hash, "SELECT mime_sha256, mime_inline FROM messages"
        )
        missing_mail = {by_hash[digest] for digest in set(by_hash) - exact_mail}
        assert len(missing_mail) <= len([row for row in failures if row[0] == "mail"]), (
            f"messages neither archived exactly nor failed: {sorted(missing_mail)}"
        )
        file_hashes = {hashlib.sha256(case.data).hexdigest(): case.name for case in files}
        exact_files = archived_or_failed(
            lake, file_hashes, "SELECT content_sha256, content_inline FROM files"
        )
        missing_files = {file_hashes[digest] for digest in set(file_hashes) - exact_files}
        assert len(missing_files) <= len([row for row in failures if row[0] != "mail"]), (
            f"files neither archived exactly nor failed: {sorted(missing_files)}"
        )

        # Extraction stops at its limits and reports them; the workers stay under their cap.
        documents: list[fields.SearchDocument] = []
        with (
            ExtractionPool(workers=1, timeout=60, memory_limit_bytes=WORKER_MEMORY_LIMIT) as pool,
            WorkerMemory() as memory,
        ):
            update = update_index(lake, extractor=pool, on_document=documents.append)
        assert update.documents_total == len(messages) + len(files)
        assert memory.samples > 0
        assert 0 < memory.peak_rss < WORKER_MEMORY_LIMIT
        issues = [str(issue) for doc in documents for issue in doc.get("index_issues", ())]

        hits = search(lake, "kind:email OR kind:docs", limit=1000).hits
        assert len(hits) == len(messages) + len(files)
        assert search(lake, "bottom", limit=10).hits is not None

        # A production of everything: every name inside the production folder.
        create_case(lake, "Hostile", actor=ACTOR, case_id="HOSTILE")
        add_custodians(lake, "HOSTILE", [("mailbox", UPN), ("onedrive", UPN)], actor=ACTOR)
        with ExtractionPool(workers=1, timeout=60, memory_limit_bytes=WORKER_MEMORY_LIMIT) as pool:
            result = export_production(
                lake,
                "HOSTILE",
                production_root,
                actor=ACTOR,
                kql="kind:email OR kind:docs",
                options=ExportOptions(prefix="HOS"),
                extractor=pool,
            )
        assert result.counts["errors"] == 0
        rows = parse_dat(production_root / "DATA" / "loadfile.dat")
        assert len(rows) == result.counts["documents"]
        for row in rows:
            native = read_bytes(production_root, row["NATIVELINK"])
            assert hashlib.sha256(native).hexdigest() == row["SHA256"], row["BEGBATES"]
        assert result.counts["families"] == len(messages) + len(files)

        # A restore of everything into a restore folder of the same mailbox and OneDrive.
        run = asyncio.run(
            restore(
                lake,
                emulator.settings(),
                Selection(custodian=UPN),
                target=RestoreTarget(restore_folder=RESTORE_FOLDER),
                dry_run=False,
                actor=ACTOR,
            )
        )
        # Folders too: the restore folder, Inbox and Hostile in the mailbox; the restore
        # folder and Hostile in the OneDrive.
        assert len(run.report.items) == len(messages) + len(files) + 5
        not_created = [item for item in run.report.items if item.outcome != "created"]
        for item in not_created:
            assert item.outcome == "failed", item
            assert item.reason, item
        mismatched = {finding.source_item_id for finding in run.problems}
        assert mismatched <= expected_mismatches(tenant), run.problems

    restored = [m for m in tenant.live_messages(UPN).values() if m.folder_path != MAIL_FOLDER]
    assert len(restored) == len(messages) - len(not_created)
    for message in restored:
        assert message.folder_path[0] == RESTORE_FOLDER, f"restored outside: {message.folder_path}"
    drive_id = tenant.drive_id_for("onedrive", UPN)
    for parts, _content, _ in tenant.live_files(drive_id).values():
        assert parts[0] in (DRIVE_FOLDER, RESTORE_FOLDER), f"restored outside: {parts}"

    # Nothing written outside the lake and the production folder.
    written = set(all_files(tmp_path))
    stray = [
        path
        for path in written
        if not path.is_relative_to(lake_root) and not path.is_relative_to(production_root)
    ]
    assert stray == []
    outside_after = set(all_files(tmp_path.parent)) - written
    new_outside = outside_after - outside_before
    assert {path for path in new_outside if not path.is_relative_to(emulator_state)} == set()
    for name in HOSTILE_NAMES:
        if name.startswith("/"):
            assert not Path(name).exists(), f"{name} was written"
    for path in all_files(production_root):
        relative = path.relative_to(production_root)
        assert ".." not in relative.parts
        assert all(ord(char) >= 32 and char not in "\u202e\u2066" for char in str(relative))
    reasons = [str(item.reason) for item in not_created]
    return Campaign(issues, update.partially_indexed, memory.peak_rss, reasons)


def test_generated_hostile_inputs(
    generated: tuple[list[HostileCase], list[HostileCase]],
    emulator_state: Path,
    tmp_path: Path,
) -> None:
    messages, files = generated
    campaign = run_campaign(messages, files, emulator_state, tmp_path, known_mismatches)

    # The two messages nested 3,000 deep cannot be parsed, so not recreated through JSON.
    assert len(campaign.restore_failures) == 2
    for reason in campaign.restore_failures:
        assert "deeper than the email parser can follow" in reason, reason
    assert campaign.partially_indexed > 0
    for expected in (
        "bomb.zip: zip member 'zeros.txt': the archive member zeros.txt expands past",
        "bomb.gz: the archive member gzip content expands past",
        "nested.zip: zip member 'level2.zip'",
        "MIME parts nested deeper than 50 levels were skipped",
    ):
        assert any(expected in issue for issue in campaign.issues), expected


def corpus_inputs(corpus_root: Path) -> tuple[list[HostileCase], list[HostileCase]]:
    """Every MIME edge sample as a message; the awkward names as attachments and files."""
    edge = corpus_root / "mail" / "mime-edge"
    messages = [
        HostileCase(str(path.relative_to(edge)), path.read_bytes(), "MIME edge sample")
        for path in sorted(edge.rglob("*"))
        if path.is_file() and path.suffix not in (".csv", ".md")
    ]
    names = corpus_root / "files" / "renamed-edge-names"
    named = sorted(path for path in names.iterdir() if path.name != "README")
    messages.append(
        HostileCase(
            "renamed-edge-names",
            attachments_message("awkward names", [(p.name, p.read_bytes()) for p in named]),
            "awkward attachment names",
        )
    )
    files = []
    for path in named:
        try:
            check_item_name(path.name)
        except ValueError:
            continue  # Graph refuses the name, so no drive can hold it
        files.append(HostileCase(path.name, path.read_bytes(), "awkward drive item name"))
    return messages, files


@pytest.mark.corpus
def test_corpus_edge_inputs(corpus_root: Path, emulator_state: Path, tmp_path: Path) -> None:
    messages, files = corpus_inputs(corpus_root)
    assert len(messages) > 100
    assert files

    campaign = run_campaign(messages, files, emulator_state, tmp_path, all_message_ids)

    assert campaign.partially_indexed > 0
    # A message whose body alone is over Graph's 4 MB create limit cannot be restored.
    for reason in campaign.restore_failures:
        assert "more than the 4000000 bytes Graph accepts" in reason, reason


def all_message_ids(tenant: Tenant) -> set[str]:
    # NOTE: Outlook .msg, TNEF and S/MIME samples restore as Graph renders them, so the
    # corpus run accepts verification findings and checks only where items land.
    return set(tenant.live_messages(UPN))
