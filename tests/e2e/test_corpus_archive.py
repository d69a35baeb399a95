"""Real mail from the shared corpus, archived through the real client, compared byte for byte."""

from __future__ import annotations

import asyncio
import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365lake.backup import BackupSummary, backup_mail
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.mapping import mime_attachments
from m365lake.lake import Lake

pytestmark = pytest.mark.corpus


def _backup(server: EmulatorServer, lake: Lake) -> BackupSummary:
    summary = asyncio.run(backup_mail(server.settings(), lake))
    assert not summary.failed
    refresh_catalog(lake)
    return summary


def _archive(
    seed_path: Path, state: Path, lake_root: Path
) -> Iterator[tuple[Tenant, Lake, EmulatorServer]]:
    tenant = Tenant.from_seed(load_corpus(seed_path))
    with EmulatorServer(tenant, state) as server:
        lake = Lake.open(lake_root)
        _backup(server, lake)
        yield tenant, lake, server


def _live_archive(lake: Lake) -> set[tuple[str, str, str]]:
    rows = run_sql(lake, "SELECT message_id, folder_path, mime_sha256 FROM messages")[1]
    return {tuple(row) for row in rows}


def _live_tenant(tenant: Tenant) -> set[tuple[str, str, str]]:
    return {
        (message_id, "/".join(live.folder_path), hashlib.sha256(live.mime).hexdigest())
        for info in tenant.users()
        for message_id, live in tenant.live_messages(info.user.user_principal_name).items()
    }


@pytest.fixture(scope="module")
def enron(
    corpus_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tenant, Lake, EmulatorServer]]:
    yield from _archive(
        corpus_root / "mail" / "enron" / "maildir",
        tmp_path_factory.mktemp("state"),
        tmp_path_factory.mktemp("enron") / "lake",
    )


@pytest.mark.slow
def test_every_enron_message_archived_byte_exact(enron, corpus_root: Path):
    _, lake, _ = enron
    manifest = corpus_root / "mail" / "enron" / "maildir_manifest.csv"
    with manifest.open(newline="") as handle:
        expected_hashes = sorted(row["sha256"] for row in csv.DictReader(handle))

    live = run_sql(lake, "SELECT count(*) FROM messages")[1][0][0]
    assert live == len(expected_hashes) == 9788
    rows = run_sql(lake, "SELECT mime_sha256, mime_inline FROM messages")[1]
    stored = sorted(
        hashlib.sha256(lake.read_content(sha, inline)).hexdigest() for sha, inline in rows
    )
    assert stored == expected_hashes
    assert run_sql(lake, "SELECT count(*) FROM failures")[1][0][0] == 0


@pytest.mark.slow
def test_enron_folder_tree_kept(enron):
    _, lake, _ = enron
    paths = {row[0] for row in run_sql(lake, "SELECT DISTINCT folder_path FROM messages")[1]}
    assert "Inbox" in paths
    assert any(path.startswith("Inbox/") for path in paths), "arora-h has inbox sub-folders"
    per_mailbox = dict(
        run_sql(
            lake,
            "SELECT b.user_principal_name, count(*) FROM messages m "
            "JOIN mailboxes b USING (mailbox_id) GROUP BY 1",
        )[1]
    )
    assert per_mailbox == {
        "allen-p@enron.example": 2428,
        "arora-h@enron.example": 524,
        "griffith-j@enron.example": 2382,
        "lokay-m@enron.example": 4454,
    }


@pytest.mark.slow
def test_enron_second_run_adds_nothing_with_few_requests(enron):
    tenant, lake, server = enron
    versions = run_sql(lake, "SELECT count(*) FROM message_versions")[1][0][0]
    folders = run_sql(lake, "SELECT count(*) FROM folders")[1][0][0]
    server.clear_requests()

    summary = _backup(server, lake)

    assert summary.total("messages_new") + summary.total("messages_updated") == 0
    assert run_sql(lake, "SELECT count(*) FROM message_versions")[1][0][0] == versions
    mailbox_requests = [r for r in server.requests if r.path.startswith("/v1.0/users/")]
    assert len(mailbox_requests) <= folders + len(tenant.users())


@pytest.mark.slow
def test_enron_changes_recorded_exactly(enron):
    tenant, lake, server = enron
    upn = "griffith-j@enron.example"
    live = tenant.live_messages(upn)
    ids = sorted(
        message_id
        for message_id, message in live.items()
        if message.folder_path != ("Deleted Items",)
    )
    versions = run_sql(lake, "SELECT count(*) FROM message_versions")[1][0][0]
    copied = tenant.live_messages("allen-p@enron.example")
    tenant.add_message(upn, ("Inbox",), next(iter(copied.values())).mime)
    tenant.update_message(upn, ids[0], categories=["Legal"])
    tenant.move_message(upn, ids[1], ("Deleted Items",))
    tenant.delete_message(upn, ids[2])
    tenant.delete_message(upn, ids[3])

    summary = _backup(server, lake)

    assert summary.total("messages_new") == 1
    assert summary.total("messages_updated") == 2
    assert summary.total("messages_deleted") == 2
    assert run_sql(lake, "SELECT count(*) FROM message_versions")[1][0][0] == versions + 3
    assert _live_archive(lake) == _live_tenant(tenant)


def test_enron_attachments_listed_with_hashes(corpus_root: Path, tmp_path: Path):
    source = corpus_root / "mail" / "enron" / "edrm-lokay-m-eml"
    for tenant, lake, _ in _archive(source, tmp_path / "state", tmp_path / "lake"):
        expected = set()
        for info in tenant.users():
            for message_id, live in tenant.live_messages(info.user.user_principal_name).items():
                for attachment in mime_attachments(live.mime):
                    digest = hashlib.sha256(attachment.content).hexdigest()
                    expected.add((message_id, attachment.name, digest))
        rows = run_sql(lake, "SELECT message_id, name, content_sha256 FROM attachments")[1]
        assert len(expected) >= 29
        assert expected <= {tuple(row) for row in rows}


def test_mime_edge_cases_archived_or_recorded(corpus_root: Path, tmp_path: Path):
    source = corpus_root / "mail" / "mime-edge"
    for tenant, lake, _ in _archive(source, tmp_path / "state", tmp_path / "lake"):
        seeded = {
            message_id
            for info in tenant.users()
            for message_id in tenant.live_messages(info.user.user_principal_name)
        }
        archived = {row[0] for row in run_sql(lake, "SELECT message_id FROM messages")[1]}
        failed = {
            row[0]
            for row in run_sql(lake, "SELECT item_id FROM failures WHERE item_id IS NOT NULL")[1]
        }
        assert seeded, "the loader should seed the edge corpus"
        assert seeded <= archived | failed
        for info in tenant.users():
            for message_id, live in tenant.live_messages(info.user.user_principal_name).items():
                if message_id in archived:
                    row = run_sql(
                        lake,
                        f"SELECT mime_sha256 FROM messages WHERE message_id = '{message_id}'",
                    )[1]
                    assert row[0][0] == hashlib.sha256(live.mime).hexdigest()
