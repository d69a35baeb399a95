"""Mail restore round trips on the Enron EDRM mailbox (71 messages, 70 file attachments).

Two messages are added to the corpus mailbox in a ``Personal/Family`` subfolder: one
with a 3.5 MB attachment (upload session) and one with an attached message (item
attachment), so every attachment path runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup import backup_mail
from m365lake.catalog import connect, refresh_catalog
from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.faults import FaultPlan
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.seed import SeedUser
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.mail import plan_mail_restore
from m365lake.restore.model import ConflictPolicy, Outcome, PlannedItem, RestoreTarget, Severity
from m365lake.restore.runner import RestoreRun, restore
from m365lake.restore.selection import Selection, select_messages
from m365lake.sources.mime import list_attachments

pytestmark = pytest.mark.corpus

UPN = "archive@enron.example"
BIG_ATTACHMENT = bytes(range(256)) * (14 * 1024)  # 3.5 MiB


def _extra_messages() -> list[bytes]:
    big = EmailMessage()
    big["From"] = "Michelle Lokay <michelle.lokay@enron.example>"
    big["To"] = "Kim Watson <kimberly.watson@enron.example>"
    big["Subject"] = "Capacity model with the full data set"
    big["Date"] = "Tue, 15 May 2001 09:12:00 -0500"
    big["Message-ID"] = "<big-1@enron.example>"
    big.set_content("The model is attached.\n")
    big.add_attachment(
        BIG_ATTACHMENT, maintype="application", subtype="octet-stream", filename="model.bin"
    )
    inner = EmailMessage()
    inner["From"] = "Drew Fossum <drew.fossum@enron.example>"
    inner["To"] = "michelle.lokay@enron.example"
    inner["Subject"] = "Original contract note"
    inner["Date"] = "Mon, 14 May 2001 08:00:00 -0500"
    inner.set_content("See the contract.\n")
    inner.add_attachment(
        b"%PDF-1.4 contract", maintype="application", subtype="pdf", filename="contract.pdf"
    )
    forward = EmailMessage()
    forward["From"] = "Michelle Lokay <michelle.lokay@enron.example>"
    forward["To"] = "Kim Watson <kimberly.watson@enron.example>"
    forward["Subject"] = "FW: Original contract note"
    forward["Date"] = "Wed, 16 May 2001 10:30:00 -0500"
    forward["Message-ID"] = "<fw-1@enron.example>"
    forward.set_content("Forwarding the note.\n")
    forward.add_attachment(inner)
    return [bytes(message) for message in (big, forward)]


def _tenant(corpus_root: Path) -> Tenant:
    tenant = Tenant.from_seed(load_corpus(corpus_root / "mail" / "enron" / "edrm-lokay-m-eml"))
    tenant.app.roles.append("Mail.ReadWrite")
    received = datetime(2001, 5, 16, 15, 31, tzinfo=UTC)
    for mime in _extra_messages():
        tenant.add_message(UPN, ("Personal", "Family"), mime, is_read=True, received_at=received)
    return tenant


@pytest.fixture
def mailbox(
    corpus_root: Path, emulator_state: Path, lake: Lake
) -> Iterator[tuple[Tenant, EmulatorServer, Lake]]:
    tenant = _tenant(corpus_root)
    with EmulatorServer(tenant, emulator_state) as server:
        _backup(server, lake)
        yield tenant, server, lake


def _backup(server: EmulatorServer, lake: Lake) -> None:
    summary = asyncio.run(backup_mail(server.settings(), lake))
    assert not summary.failed
    refresh_catalog(lake)


def _restore(
    server: EmulatorServer, lake: Lake, selection: Selection, policy: ConflictPolicy
) -> RestoreRun:
    return asyncio.run(
        restore(lake, server.settings(), selection, policy=policy, dry_run=False, actor="tester")
    )


def _moment() -> datetime:
    # Captured_at values are microseconds apart; a short pause keeps "before" strict.
    time.sleep(0.01)
    moment = datetime.now(UTC)
    time.sleep(0.01)
    return moment


def _mailbox_state(lake: Lake, as_of: datetime) -> tuple[set[str], Counter[tuple[Any, ...]]]:
    """Return folder paths and messages (envelope and attachment hashes) at ``as_of``."""
    with connect(lake) as db:
        folder_rows = db.execute("SELECT folder_path FROM folders_as_of(?)", [as_of]).fetchall()
        rows = db.execute(
            "SELECT folder_path, subject, from_address, to_addresses, sent_at, received_at, "
            "is_draft, is_read, mime_sha256, mime_inline FROM messages_as_of(?)",
            [as_of],
        ).fetchall()
    folders = {row[0] for row in folder_rows}
    messages: Counter[tuple[Any, ...]] = Counter()
    for path, subject, sender, to, sent, received, draft, read, sha, inline in rows:
        attachments = list_attachments(lake.read_content(sha, inline))
        files = tuple(sorted(a.content_sha256 for a in attachments if a.kind == "file"))
        items = sum(1 for a in attachments if a.kind == "item")
        key = (path, subject, sender, tuple(to), sent, received, draft, read, files, items)
        messages[key] += 1
    return folders, messages


def test_deleted_folder_tree_restored_as_of(mailbox: tuple[Tenant, EmulatorServer, Lake]) -> None:
    tenant, server, lake = mailbox
    before = _moment()
    expected_folders, expected_messages = _mailbox_state(lake, before)
    personal = tenant.folder_id(UPN, ("Personal",))
    tree_size = sum(1 for key in expected_messages.elements() if key[0].startswith("Personal"))
    assert tree_size == 49
    tenant.delete_folder(UPN, personal)
    _backup(server, lake)

    run = _restore(server, lake, Selection(custodian=UPN, as_of=before), ConflictPolicy.SKIP)

    counts = run.report.counts()
    assert counts["failed"] == 0
    assert counts["created"] == tree_size + 2  # the messages, Personal and Personal/Family
    assert run.problems == []
    rewrites = [finding for finding in run.findings if finding.severity is Severity.REWRITE]
    assert [finding.field for finding in rewrites] == ["attachment:attached message"]

    user_id = tenant.user_id(UPN)
    restored = tenant.messages_in(user_id, tenant.folder_id(UPN, ("Personal",)))
    assert len(restored) == 47
    assert not any(message.is_draft for message in restored)

    _backup(server, lake)
    actual_folders, actual_messages = _mailbox_state(lake, datetime.now(UTC))
    assert actual_folders == expected_folders
    assert sum(actual_messages.values()) == sum(expected_messages.values()) == 73
    assert actual_messages == expected_messages
    big = hashlib.sha256(BIG_ATTACHMENT).hexdigest()
    assert any(big in key[8] for key in actual_messages)

    again = _restore(server, lake, Selection(custodian=UPN, as_of=before), ConflictPolicy.SKIP)
    again_counts = again.report.counts()
    assert again_counts["created"] == 0
    assert again_counts["failed"] == 0
    assert again_counts["already_present"] == len(again.report.items)
    _backup(server, lake)
    assert _mailbox_state(lake, datetime.now(UTC))[1] == expected_messages


def _impostor(mime: bytes) -> bytes:
    """Return a different message that carries the same Message-ID."""
    head = mime.partition(b"\r\n\r\n" if b"\r\n\r\n" in mime else b"\n\n")[0]
    return head.replace(b"Subject:", b"Subject: [local copy]", 1) + b"\n\nLocal copy.\n"


def test_collisions_follow_each_policy(mailbox: tuple[Tenant, EmulatorServer, Lake]) -> None:
    tenant, server, lake = mailbox
    user_id = tenant.user_id(UPN)
    systems = tenant.folder_id(UPN, ("Systems",))
    live = tenant.live_messages(UPN)
    originals = sorted(mid for mid, message in live.items() if message.folder_id == systems)[:3]
    impostors = {}
    for message_id in originals:
        mime = live[message_id].mime
        tenant.delete_message(UPN, message_id)
        impostors[message_id] = tenant.add_message(UPN, systems, _impostor(mime), is_read=True)

    def outcomes(run: RestoreRun) -> dict[str, Outcome]:
        return {
            result.planned.source_item_id: result.outcome
            for result in run.report.items
            if result.planned.source_item_id in originals
        }

    skipped = _restore(server, lake, Selection(item_ids=tuple(originals)), ConflictPolicy.SKIP)
    assert outcomes(skipped) == dict.fromkeys(originals, Outcome.SKIPPED)
    assert len(tenant.messages_in(user_id, systems)) == 7

    first, second, third = originals
    renamed = _restore(server, lake, Selection(item_ids=(second,)), ConflictPolicy.RENAME)
    assert outcomes(renamed) == {second: Outcome.RENAMED}
    present = {m.immutable_id for m in tenant.messages_in(user_id, systems)}
    assert impostors[second] in present
    assert len(present) == 8

    replaced = _restore(server, lake, Selection(item_ids=(third,)), ConflictPolicy.REPLACE)
    assert outcomes(replaced) == {third: Outcome.REPLACED}
    present = {m.immutable_id for m in tenant.messages_in(user_id, systems)}
    assert impostors[third] not in present
    assert len(present) == 8
    assert replaced.problems == []

    rerun = _restore(server, lake, Selection(item_ids=tuple(originals)), ConflictPolicy.SKIP)
    assert outcomes(rerun) == {
        first: Outcome.SKIPPED,
        second: Outcome.ALREADY_PRESENT,
        third: Outcome.ALREADY_PRESENT,
    }
    assert impostors[first] in {m.immutable_id for m in tenant.messages_in(user_id, systems)}


def test_restore_into_other_mailbox_folder(mailbox: tuple[Tenant, EmulatorServer, Lake]) -> None:
    tenant, server, lake = mailbox
    kim = tenant.add_user(SeedUser("kim@enron.example", "Kim Watson", mail="kim@enron.example"))
    folder_name = "Restored 2026-12-05 02-30-00 UTC"
    target = RestoreTarget(mailbox_id=kim, restore_folder=folder_name)
    selection = Selection(folder="Personal")

    def run(dry_run: bool) -> RestoreRun:
        return asyncio.run(
            restore(
                lake, server.settings(), selection, target=target, dry_run=dry_run, actor="tester"
            )
        )

    planned = run(dry_run=True)
    assert planned.report.counts()["created"] == 49 + 3
    with pytest.raises(KeyError):
        tenant.folder_id("kim@enron.example", (folder_name,))

    done = run(dry_run=False)
    assert done.report.counts()["created"] == 49 + 3
    assert done.problems == []
    personal = tenant.folder_id("kim@enron.example", (folder_name, "Personal"))
    family = tenant.folder_id("kim@enron.example", (folder_name, "Personal", "Family"))
    restored = tenant.messages_in(kim, personal) + tenant.messages_in(kim, family)
    assert len(restored) == 49
    assert not any(message.is_draft for message in restored)

    again = run(dry_run=False)
    assert again.report.counts()["created"] == 0
    assert again.report.counts()["already_present"] == 49 + 3

    async def plan_without_ledger() -> list[PlannedItem]:
        # As after a kill between creating messages and committing the ledger.
        async with GraphClient(server.settings()) as graph:
            rows = select_messages(lake, selection)
            return await plan_mail_restore(
                lake, graph, rows, target, ConflictPolicy.SKIP, RestoreLedger({})
            )

    replanned = asyncio.run(plan_without_ledger())
    assert len(replanned) == 49 + 3
    assert {item.action for item in replanned} == {"already_present"}


def test_lost_create_responses_leave_no_duplicates(
    corpus_root: Path, emulator_state: Path, lake: Lake
) -> None:
    # Resets hit message creates after the emulator stored the message, as when a
    # response is lost on the way back. The client must not send such a POST again.
    faults = FaultPlan(seed=3, reset_rate=0.3, path_pattern=r"/mailFolders/[^/]+/messages$")
    tenant = _tenant(corpus_root)
    with EmulatorServer(tenant, emulator_state, EmulatorOptions(faults=faults)) as server:
        _backup(server, lake)
        before = _moment()
        expected = _mailbox_state(lake, before)[1]
        tenant.delete_folder(UPN, tenant.folder_id(UPN, ("Personal",)))
        selection = Selection(custodian=UPN, as_of=before)

        first = _restore(server, lake, selection, ConflictPolicy.SKIP)
        assert first.report.counts()["failed"] > 0
        assert faults.counts["reset"] > 0
        faults.reset_rate = 0.0
        second = _restore(server, lake, selection, ConflictPolicy.SKIP)
        assert second.report.counts()["failed"] == 0
        assert second.report.counts()["skipped"] == 0

        _backup(server, lake)
        assert _mailbox_state(lake, datetime.now(UTC))[1] == expected


def test_same_name_folders_stay_two(mailbox: tuple[Tenant, EmulatorServer, Lake]) -> None:
    tenant, server, lake = mailbox
    user_id = tenant.user_id(UPN)
    tenant.delete_folder(UPN, tenant.folder_id(UPN, ("Systems",)))
    newer = tenant.add_folder(UPN, ("Systems",))
    tenant.add_message(UPN, newer, _extra_messages()[0], is_read=True)
    _backup(server, lake)

    run = _restore(server, lake, Selection(folder="Systems"), ConflictPolicy.SKIP)

    counts = run.report.counts()
    assert counts["failed"] == 0
    assert counts["created"] == 7 + 1  # the deleted folder's messages and the folder
    assert tenant.folder_id(UPN, ("Systems",)) == newer
    assert len(tenant.messages_in(user_id, newer)) == 1
    older = tenant.folder_id(UPN, ("Systems (2)",))
    assert len(tenant.messages_in(user_id, older)) == 7

    again = _restore(server, lake, Selection(folder="Systems"), ConflictPolicy.SKIP)
    assert again.report.counts()["created"] == 0
