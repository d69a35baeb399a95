"""The search index built from a lake that the emulator's tenant was archived into."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.message
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import tantivy

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.samplefiles import docx_document, pdf_document
from m365lake.errors import SearchIndexError
from m365lake.lake import Lake
from m365lake.search import extract, fields
from m365lake.search.extract import Extraction, ExtractionPool, MessageText
from m365lake.search.index import (
    LEASE_NAME,
    OLD_PREFIX,
    REBUILD_PREFIX,
    STATE_FILE,
    index_path,
    open_index,
    update_index,
)

ATTACHMENT_WORD = "zanzibarite"
DOCUMENT_WORD = "quokkafield"
PDF_WORD = "marmaladine"


class InlineExtractor:
    """The real extractors, run in this process: fast enough for small test tenants."""

    def __init__(self) -> None:
        self.calls = 0

    def extract_text(
        self, data: bytes, *, filename: str | None = None, content_type: str | None = None
    ) -> Extraction:
        self.calls += 1
        return extract.extract_text(data, filename=filename, content_type=content_type)

    def extract_message(self, mime: bytes) -> MessageText:
        self.calls += 1
        return extract.extract_message(mime)


class FailingExtractor(InlineExtractor):
    """Raises on the call after ``budget`` calls, as a crash in the middle of an update."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def extract_message(self, mime: bytes) -> MessageText:
        if self.calls >= self.budget:
            raise RuntimeError("simulated crash during indexing")
        return super().extract_message(mime)


def hanging_text_extractor(data: bytes, **options: Any) -> Extraction:
    """Hang on files named ``hang*``; runs in the extraction worker process."""
    if (options.get("filename") or "").startswith("hang"):
        time.sleep(3600)
    return extract.extract_text(data, **options)


def archive(emulator: EmulatorServer, lake: Lake) -> None:
    mail = asyncio.run(backup_mail(emulator.settings(), lake))
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not mail.failed
    assert not files.failed
    refresh_catalog(lake)


def message_with_attachment(subject: str, name: str, content: bytes, word: str) -> bytes:
    message = email.message.EmailMessage()
    message["From"] = "Adele Vance <adele.vance@contoso.example>"
    message["To"] = "Lucía Ortega <lucia.ortega@adatum.example>"
    message["Subject"] = subject
    message["Date"] = "Mon, 03 Jun 2024 10:00:00 +0000"
    message.set_content(f"Please find the {word} notes attached.\n")
    message.add_attachment(
        content,
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename=name,
    )
    return message.as_bytes()


def upns(tenant: Tenant) -> list[str]:
    return sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)


def stored_documents(lake: Lake) -> dict[str, dict[str, Any]]:
    """Return every document's stored fields, by doc_id."""
    opened = open_index(lake)
    searcher = opened.index.searcher()
    result = searcher.search(tantivy.Query.all_query(), limit=max(searcher.num_docs, 1))
    documents = {}
    for _, address in result.hits:
        stored = searcher.doc(address).to_dict()
        documents[stored["doc_id"][0]] = stored
    return documents


TERM_FIELDS = [
    name
    for name, spec in fields.FIELDS_BY_NAME.items()
    if spec.kind in (fields.FieldKind.TEXT, fields.FieldKind.KEYWORD)
]


def term_counts(lake: Lake) -> dict[str, list[tuple[str, int]]]:
    """Return every indexed term of every text field with its count among live documents."""
    opened = open_index(lake)
    searcher = opened.index.searcher()
    everything = tantivy.Query.all_query()
    return {
        name: sorted(searcher.terms_with_prefix(name, "", filter_query=everything))
        for name in TERM_FIELDS
    }


def term_hits(lake: Lake, field_name: str, token: str) -> set[str]:
    opened = open_index(lake)
    searcher = opened.index.searcher()
    query = tantivy.Query.term_query(opened.index.schema, field_name, token)
    return {
        searcher.doc(address).to_dict()["doc_id"][0]
        for _, address in searcher.search(query, limit=1000).hits
    }


def live_items(lake: Lake) -> set[tuple[str, str, str, dt.datetime, str]]:
    rows = run_sql(
        lake,
        "SELECT 'mail', mailbox_id, message_id, captured_at, run_id FROM messages "
        "UNION ALL SELECT 'files', drive_id, item_id, captured_at, run_id FROM files",
    )[1]
    return {tuple(row) for row in rows}  # type: ignore[misc]


def indexed_items(lake: Lake, *, deleted: bool) -> set[tuple[str, str, str, dt.datetime, str]]:
    return {
        (
            stored["workload"][0],
            stored["container_id"][0],
            stored["item_id"][0],
            stored["captured_at"][0],
            stored["run_id"][0],
        )
        for stored in stored_documents(lake).values()
        if bool(stored.get("deleted_at")) == deleted
    }


@pytest.fixture
def seeded(tenant: Tenant) -> Tenant:
    """Add an attachment, a Word file, a PDF and a corrupt file with words to search for."""
    upn = upns(tenant)[0]
    tenant.add_message(
        upn,
        ("Inbox",),
        message_with_attachment(
            "Survey results",
            "survey.docx",
            docx_document([f"The {ATTACHMENT_WORD} deposits are larger than expected."]),
            "survey",
        ),
    )
    tenant.add_file(
        "onedrive",
        upn,
        "Documents",
        ("Research", "field notes.docx"),
        docx_document([f"Observed a {DOCUMENT_WORD} near the river."]),
    )
    tenant.add_file(
        "onedrive",
        upn,
        "Documents",
        ("Research", "summary.pdf"),
        pdf_document("Summary", [f"The {PDF_WORD} results are in."]),
    )
    tenant.add_file(
        "onedrive", upn, "Documents", ("Research", "broken.docx"), b"PK\x03\x04 truncated"
    )
    return tenant


def test_index_holds_every_live_item(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)

    update = update_index(lake, extractor=InlineExtractor())

    assert indexed_items(lake, deleted=False) == live_items(lake)
    assert update.rebuilt
    assert update.documents_added == len(live_items(lake))
    assert update.documents_replaced == 0
    assert update.folders_skipped > 0
    assert update.documents_total == update.documents_added
    assert update.manifest_seq == lake.head().seq
    state = json.loads((index_path(lake) / STATE_FILE).read_text())
    assert state["manifest_seq"] == lake.head().seq
    assert state["manifest_sha256"] == lake.head().sha256


def test_text_in_attachments_and_documents_found(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)

    update_index(lake, extractor=InlineExtractor())

    [in_attachment] = term_hits(lake, "attachment_text", ATTACHMENT_WORD)
    assert in_attachment.startswith("mail:")
    assert term_hits(lake, "attachmentnames", "survey") == {in_attachment}
    [in_document] = term_hits(lake, "content", DOCUMENT_WORD)
    assert in_document.startswith("file:")
    [in_pdf] = term_hits(lake, "content", PDF_WORD)
    assert in_pdf.startswith("file:")
    assert term_hits(lake, "fileextension", "pdf") >= {in_pdf}


def test_corrupt_document_reported_partially_indexed(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)

    update = update_index(lake, extractor=InlineExtractor())

    partial = {
        doc_id: stored
        for doc_id, stored in stored_documents(lake).items()
        if stored["partially_indexed"] == [True]
    }
    broken = [stored for stored in partial.values() if "broken.docx" in stored.get("filename", [])]
    assert len(broken) == 1
    assert broken[0]["index_issues"][0].startswith("content: ")
    assert update.partially_indexed == len(partial)
    assert update.partially_indexed_total == len(partial)
    assert update.issues.get("content", 0) >= 1


def mutate(tenant: Tenant) -> dict[str, str]:
    """Change the tenant as users do between backups; return ids of the changed items."""
    first, second = upns(tenant)[:2]
    live = sorted(tenant.live_messages(first))
    new_id = tenant.add_message(
        second,
        ("Inbox",),
        message_with_attachment(
            "Second survey",
            "second.docx",
            docx_document(["The second walrusine survey."]),
            "walrusine",
        ),
    )
    tenant.update_message(first, live[0], categories=["Legal hold"])
    tenant.move_message(first, live[1], ("Archive",))
    tenant.delete_message(first, live[2])
    drive_id = tenant.drive_id_for("onedrive", first)
    files = {
        "/".join(path): item_id for item_id, (path, _, _) in tenant.live_files(drive_id).items()
    }
    tenant.update_file_content(
        files["Research/field notes.docx"], docx_document(["Rewritten with a pangolinite."])
    )
    tenant.delete_item(files["Research/summary.pdf"])
    tenant.add_file("onedrive", first, "Documents", ("Research", "new.txt"), b"capybarane plans")
    research = tenant.item_info(drive_id, files["Research/broken.docx"]).parent_id  # type: ignore[union-attr]
    assert research is not None
    tenant.rename_item(research, "Studies")
    return {"deleted_message": live[2], "updated_message": live[0], "new_message": new_id}


def test_incremental_update_equals_rebuild(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    changed = mutate(seeded)
    archive(emulator, lake)

    incremental = update_index(lake, extractor=InlineExtractor())
    after_update = (stored_documents(lake), term_counts(lake))
    rebuilt = update_index(lake, rebuild=True, extractor=InlineExtractor())
    after_rebuild = (stored_documents(lake), term_counts(lake))

    assert not incremental.rebuilt
    assert rebuilt.rebuilt
    assert after_update[0] == after_rebuild[0]
    assert after_update[1] == after_rebuild[1]
    assert incremental.documents_added == 2, "one message and one file are new"
    assert incremental.marked_deleted == 2, "one message and one file were deleted"
    assert incremental.documents_total == rebuilt.documents_total
    assert indexed_items(lake, deleted=False) == live_items(lake)
    assert term_hits(lake, "attachment_text", "walrusine") == {
        f"mail:{seeded.user_id(upns(seeded)[1])}:{changed['new_message']}"
    }
    assert term_hits(lake, "content", "pangolinite")
    assert not term_hits(lake, "content", DOCUMENT_WORD), "the old version was replaced"
    assert term_hits(lake, "category", "legal")
    assert term_hits(lake, "path", "studies"), "a renamed folder changes its files' paths"


def test_deleted_item_kept_with_deleted_at(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    changed = mutate(seeded)
    archive(emulator, lake)

    update_index(lake, extractor=InlineExtractor())

    mailbox_id = seeded.user_id(upns(seeded)[0])
    stored = stored_documents(lake)[f"mail:{mailbox_id}:{changed['deleted_message']}"]
    [(captured_at, deleted_at)] = run_sql(
        lake,
        "SELECT captured_at, deleted_at FROM message_versions "
        f"WHERE message_id = '{changed['deleted_message']}' AND deleted_at IS NOT NULL",
    )[1]
    assert stored["deleted_at"] == [deleted_at]
    assert stored["captured_at"] == [captured_at]
    [pdf] = term_hits(lake, "content", PDF_WORD)
    assert stored_documents(lake)[pdf].get("deleted_at")


def test_update_without_changes_writes_nothing(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    extractor = InlineExtractor()

    update = update_index(lake, extractor=extractor)

    assert update.manifests == 0
    assert update.documents_added + update.documents_replaced == 0
    assert extractor.calls == 0


def test_update_removes_killed_rebuild_folders(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake, caplog: pytest.LogCaptureFixture
):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    killed = lake.local_dir / f"{REBUILD_PREFIX}0123456789ab"
    killed.mkdir()
    (killed / "meta.json").write_text("{}")
    swapped = lake.local_dir / f"{OLD_PREFIX}0123456789ab"
    swapped.mkdir()

    lease = lake.acquire_lease(LEASE_NAME, owner="running-rebuild")
    try:
        with pytest.raises(SearchIndexError, match="running-rebuild"):
            update_index(lake, extractor=InlineExtractor())
    finally:
        lease.release()
    assert killed.is_dir()
    assert swapped.is_dir()

    with caplog.at_level(logging.INFO, logger="m365lake.search.index"):
        update_index(lake, extractor=InlineExtractor())

    assert not killed.exists()
    assert not swapped.exists()
    removals = [record for record in caplog.records if "left behind" in record.getMessage()]
    assert len(removals) == 1
    assert removals[0].levelno == logging.INFO
    assert killed.name in removals[0].getMessage()


def test_small_chunks_give_same_index(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    whole = (stored_documents(lake), term_counts(lake))

    chunked = update_index(lake, rebuild=True, extractor=InlineExtractor(), chunk_rows=1)

    assert (stored_documents(lake), term_counts(lake)) == whole
    assert chunked.documents_total == len(whole[0])


def test_crash_midway_then_resume_equals_rebuild(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    mutate(seeded)
    archive(emulator, lake)
    state_before = (index_path(lake) / STATE_FILE).read_bytes()

    with pytest.raises(RuntimeError, match="simulated crash"):
        update_index(lake, extractor=FailingExtractor(budget=1))

    assert (index_path(lake) / STATE_FILE).read_bytes() == state_before
    update_index(lake, extractor=InlineExtractor())
    resumed = (stored_documents(lake), term_counts(lake))
    update_index(lake, rebuild=True, extractor=InlineExtractor())
    assert resumed == (stored_documents(lake), term_counts(lake))


def test_first_build_killed_midway_starts_over(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)

    with pytest.raises(RuntimeError, match="simulated crash"):
        update_index(lake, extractor=FailingExtractor(budget=3))
    update = update_index(lake, extractor=InlineExtractor())

    assert update.rebuilt
    assert indexed_items(lake, deleted=False) == live_items(lake)


def test_second_writer_rejected_while_lease_held(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)
    lease = lake.acquire_lease(LEASE_NAME, owner="other-indexer")
    try:
        with pytest.raises(SearchIndexError, match="other-indexer"):
            update_index(lake, extractor=InlineExtractor())
    finally:
        lease.release()
    update_index(lake, extractor=InlineExtractor())


def test_tantivy_writer_lock_held_is_clear(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    mutate(seeded)
    archive(emulator, lake)
    other = open_index(lake).index.writer(heap_size=15_000_000, num_threads=1)
    try:
        with pytest.raises(SearchIndexError, match="writer lock"):
            update_index(lake, extractor=InlineExtractor())
    finally:
        other.wait_merging_threads()


def test_changed_manifest_chain_asks_for_rebuild(
    seeded: Tenant, emulator: EmulatorServer, lake: Lake
):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    state_path = index_path(lake) / STATE_FILE
    state = json.loads(state_path.read_text())
    state["manifest_sha256"] = "0" * 64
    state_path.write_text(json.dumps(state))

    with pytest.raises(SearchIndexError, match="--rebuild") as raised:
        update_index(lake, extractor=InlineExtractor())

    assert "now hashes to" in str(raised.value)
    rebuilt = update_index(lake, rebuild=True, extractor=InlineExtractor())
    assert rebuilt.documents_total == len(live_items(lake))


def test_index_ahead_of_lake_asks_for_rebuild(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    state_path = index_path(lake) / STATE_FILE
    state = json.loads(state_path.read_text())
    state["manifest_seq"] = lake.head().seq + 5
    state_path.write_text(json.dumps(state))

    with pytest.raises(SearchIndexError, match="restored from an older copy"):
        update_index(lake, extractor=InlineExtractor())


def test_other_field_table_asks_for_rebuild(seeded: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    state_path = index_path(lake) / STATE_FILE
    state = json.loads(state_path.read_text())
    state["schema"] = "an older field table"
    state_path.write_text(json.dumps(state))

    with pytest.raises(SearchIndexError, match="another field table"):
        update_index(lake, extractor=InlineExtractor())
    with pytest.raises(SearchIndexError, match="another field table"):
        open_index(lake)
    update_index(lake, rebuild=True, extractor=InlineExtractor())
    open_index(lake)


def test_open_index_before_any_update_says_what_to_run(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(SearchIndexError, match="run `m365lake index`"):
        open_index(lake)


def test_empty_lake_gets_empty_index(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")

    update = update_index(lake, extractor=InlineExtractor())

    assert update.documents_total == 0
    assert open_index(lake).state.manifest_seq == 0


def test_hanging_parser_times_out_in_worker_pool(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
):
    upn = upns(tenant)[0]
    tenant.add_file("onedrive", upn, "Documents", ("hang.txt",), b"never read")
    archive(emulator, lake)

    with ExtractionPool(workers=1, timeout=2, text_extractor=hanging_text_extractor) as pool:
        update = update_index(lake, extractor=pool)

    hung = [
        stored
        for stored in stored_documents(lake).values()
        if stored.get("filename") == ["hang.txt"]
    ]
    assert len(hung) == 1
    assert hung[0]["partially_indexed"] == [True]
    assert "did not finish" in hung[0]["index_issues"][0]
    assert update.documents_total == len(live_items(lake))
