"""Search over calendar events, contacts and Teams channel messages written to a lake."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import tantivy

from m365lake.errors import KqlSyntaxError
from m365lake.lake import Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE
from m365lake.search import extract, search, search_statistics
from m365lake.search.documents import doc_id_of
from m365lake.search.extract import Extraction, MessageText
from m365lake.search.index import open_index, update_index
from tests.unit.search import workload_fixture as lakes
from tests.unit.search.workload_fixture import (
    ALICE,
    ALICE_MAILBOX,
    CHANNEL,
    TEAM,
    TEAM_NAME,
    TEAM_URL,
)


class InlineExtractor:
    """The real extractors, run in this process."""

    def extract_text(
        self, data: bytes, *, filename: str | None = None, content_type: str | None = None
    ) -> Extraction:
        return extract.extract_text(data, filename=filename, content_type=content_type)

    def extract_message(self, mime: bytes) -> MessageText:
        return extract.extract_message(mime)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    opened = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(opened)
    update_index(opened, extractor=InlineExtractor())
    return opened


def doc_ids(lake: Lake, query: str, **options: Any) -> set[str]:
    return {hit.doc_id for hit in search(lake, query, limit=100, **options).hits}


def stored_documents(lake: Lake) -> dict[str, dict[str, Any]]:
    opened = open_index(lake)
    searcher = opened.index.searcher()
    result = searcher.search(tantivy.Query.all_query(), limit=max(searcher.num_docs, 1))
    documents = {}
    for _, address in result.hits:
        stored = searcher.doc(address).to_dict()
        documents[stored["doc_id"][0]] = stored
    return documents


def event_id(item: str) -> str:
    return doc_id_of("calendar", ALICE_MAILBOX, item)


def contact_id(item: str) -> str:
    return doc_id_of("contacts", ALICE_MAILBOX, item)


def teams_id(item: str) -> str:
    return doc_id_of("teams", CHANNEL, item)


EVENTS = {event_id(lakes.SERIES), event_id(lakes.EXCEPTION), event_id(lakes.SINGLE)}
CONTACTS = {contact_id(lakes.CONTACT_LUCIA), contact_id(lakes.CONTACT_KENJI)}
MESSAGES = {
    teams_id(lakes.ROOT),
    teams_id(lakes.REPLY_ONE),
    teams_id(lakes.REPLY_TWO),
    teams_id(lakes.REPLY_DELETED),
}


def test_doc_id_prefix_per_workload():
    assert doc_id_of("calendar", "m", "e") == "event:m:e"
    assert doc_id_of("contacts", "m", "c") == "contact:m:c"
    assert doc_id_of("teams", "19:c@thread.tacv2", "17") == "teams:19:c@thread.tacv2:17"
    with pytest.raises(ValueError, match="unknown workload 'chat'"):
        doc_id_of("chat", "a", "b")


def test_kind_selects_each_workload(lake: Lake):
    assert doc_ids(lake, "kind:meetings") == EVENTS
    assert doc_ids(lake, "kind:contacts") == CONTACTS
    assert doc_ids(lake, "kind:microsoftteams") == MESSAGES
    assert doc_ids(lake, "kind:email") == set()


def test_unknown_kind_lists_archived_kinds(lake: Lake):
    with pytest.raises(KqlSyntaxError, match="microsoftteams"):
        search(lake, "kind:tasks")


def test_event_body_html_is_searchable(lake: Lake):
    assert doc_ids(lake, lakes.SERIES_WORD) == {event_id(lakes.SERIES), event_id(lakes.EXCEPTION)}
    assert doc_ids(lake, f"body:{lakes.SINGLE_WORD}") == {event_id(lakes.SINGLE)}


def test_event_attachment_text_is_searchable(lake: Lake):
    assert doc_ids(lake, lakes.ATTACHMENT_WORD) == {event_id(lakes.SINGLE)}
    assert doc_ids(lake, "attachmentnames:agenda") == {event_id(lakes.SINGLE)}
    assert doc_ids(lake, "kind:meetings hasattachment:true") == {event_id(lakes.SINGLE)}


def test_event_people_properties(lake: Lake):
    assert doc_ids(lake, "organizer:alice") == EVENTS
    assert doc_ids(lake, "kind:meetings from:alice") == EVENTS
    assert doc_ids(lake, 'to:"Bob Kline"') == EVENTS
    assert doc_ids(lake, "cc:lucia.ortega") == EVENTS
    assert doc_ids(lake, "to:lucia.ortega") == set()
    assert doc_ids(lake, "attendees:lucia.ortega") == EVENTS
    assert doc_ids(lake, "kind:meetings participants:bob") == EVENTS


def test_event_dates_and_location(lake: Lake):
    assert doc_ids(lake, "start>=2024-03-06 start<2024-03-07") == {event_id(lakes.SINGLE)}
    assert doc_ids(lake, "start:2024-03-11") == {event_id(lakes.EXCEPTION)}
    assert doc_ids(lake, 'location:"harbour room"') == EVENTS
    assert doc_ids(lake, "kind:meetings sent:2024-03-01") == EVENTS


def test_contact_properties(lake: Lake):
    lucia = {contact_id(lakes.CONTACT_LUCIA)}
    assert doc_ids(lake, "companyname:adatum") == lucia
    assert doc_ids(lake, "emailaddress:lucía@adatum.example") == lucia
    assert doc_ids(lake, "givenname:kenji") == {contact_id(lakes.CONTACT_KENJI)}
    assert doc_ids(lake, "nickname:ken") == {contact_id(lakes.CONTACT_KENJI)}
    assert doc_ids(lake, "surname:ortega kind:contacts") == lucia
    assert doc_ids(lake, 'businessphone:"425 555 0100"') == CONTACTS
    assert doc_ids(lake, "businessaddress:seattle") == CONTACTS
    assert doc_ids(lake, "jobtitle:controller") == CONTACTS
    assert doc_ids(lake, lakes.CONTACT_NOTE_WORD) == lucia
    assert doc_ids(lake, "fabrikam") == {contact_id(lakes.CONTACT_KENJI)}


def test_contact_hit_titled_by_name(lake: Lake):
    hits = search(lake, "companyname:fabrikam").hits
    assert [hit.title for hit in hits] == ["Kenji Sato"]
    assert hits[0].workload == "contacts"
    assert hits[0].container_id == ALICE_MAILBOX


def test_phrase_found_only_in_teams_reply(lake: Lake):
    assert doc_ids(lake, f'"{lakes.REPLY_PHRASE}"') == {teams_id(lakes.REPLY_ONE)}


def test_teams_properties(lake: Lake):
    assert doc_ids(lake, "kind:microsoftteams from:bob") == {
        teams_id(lakes.REPLY_ONE),
        teams_id(lakes.REPLY_DELETED),
    }
    assert doc_ids(lake, f"from:{lakes.BOB}") == {
        teams_id(lakes.REPLY_ONE),
        teams_id(lakes.REPLY_DELETED),
    }
    assert doc_ids(lake, 'mentions:"alice park"') == {teams_id(lakes.REPLY_ONE)}
    assert doc_ids(lake, 'subject:"quarter close"') == {teams_id(lakes.ROOT)}
    assert doc_ids(lake, "channel:general") == MESSAGES
    assert doc_ids(lake, "team:finance") == MESSAGES
    assert doc_ids(lake, "kind:microsoftteams sent:2024-03-04") == MESSAGES


def test_teams_hits_name_channel_and_message(lake: Lake):
    [hit] = search(lake, f'"{lakes.REPLY_PHRASE}"').hits
    assert hit.workload == "teams"
    assert hit.container_id == CHANNEL
    assert hit.item_id == lakes.REPLY_ONE
    assert hit.custodian == TEAM_NAME
    assert hit.location == TEAM_URL


def test_teams_sender_without_address_named_by_archived_mailbox(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(lake)
    carol_id, message_id = "user-carol", "1709543040000"
    with lake.begin(run_id="seed-carol", kind="directory", container=None) as tx:
        tx.write_rows(
            "mailboxes",
            [
                {
                    "mailbox_id": carol_id,
                    "user_principal_name": "carol@contoso.example",
                    "display_name": "Carol",
                }
            ],
            partition={},
        )
        tx.commit()
    item = lakes.message_json(
        message_id, "<p>Late note.</p>", reply_to=lakes.ROOT, sender=("Carol Diaz", carol_id)
    )
    row = lakes.message_row(item, lakes.T0, lake, address=ALICE)
    row["from_address"] = None
    with lake.begin(run_id="run-teams-3", kind="teams", container=TEAM) as tx:
        tx.write_rows("channel_messages", [row], partition={"team_id": TEAM})
        tx.commit()

    update_index(lake, extractor=InlineExtractor())

    assert doc_ids(lake, "from:carol@contoso.example") == {teams_id(message_id)}


def test_teams_reply_without_subject_titled_by_first_words(lake: Lake):
    titles = {hit.item_id: hit.title for hit in search(lake, "kind:microsoftteams").hits}

    assert titles[lakes.ROOT] == "Quarter close"
    assert titles[lakes.REPLY_ONE] == "I do. The ledger closes on Friday."
    assert titles[lakes.REPLY_TWO] == "Thanks, noted."
    assert titles[lakes.REPLY_DELETED] == f"Ignore the {lakes.DELETED_WORD} figures."


def test_teams_reply_title_shortened_or_named_by_channel(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(lake)
    long_id, empty_id = "1709543040000", "1709543100000"
    long_text = " ".join(f"word{number}" for number in range(30))
    items = [
        lakes.message_json(
            long_id, f"<p>{long_text}</p>", reply_to=lakes.ROOT, sender=lakes.ALICE_SENDER
        ),
        lakes.message_json(empty_id, "<p></p>", reply_to=lakes.ROOT, sender=lakes.ALICE_SENDER),
    ]
    with lake.begin(run_id="run-teams-3", kind="teams", container=TEAM) as tx:
        tx.write_rows(
            "channel_messages",
            [lakes.message_row(item, lakes.T0, lake, address=ALICE) for item in items],
            partition={"team_id": TEAM},
        )
        tx.commit()

    update_index(lake, extractor=InlineExtractor())

    titles = {hit.item_id: hit.title for hit in search(lake, "kind:microsoftteams").hits}
    assert titles[long_id] == " ".join(long_text.split()[:12]) + "…"
    assert titles[empty_id] == f"reply in {lakes.CHANNEL_NAME}"


def test_deleted_teams_message_keeps_its_text(lake: Lake):
    [hit] = search(lake, lakes.DELETED_WORD).hits
    assert hit.item_id == lakes.REPLY_DELETED
    assert hit.deleted_at is not None
    assert hit.deleted_at.isoformat().startswith("2024-03-04T11:00")
    assert hit.run_id == "run-teams-1"
    assert doc_ids(lake, lakes.DELETED_WORD, include_deleted=False) == set()


def test_deleted_teams_message_keeps_its_text_after_incremental_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    lake = Lake.open(tmp_path / "lake")
    extractor = InlineExtractor()
    monkeypatch.setattr(lakes, "delete_reply", lambda lake: None)
    lakes.seed_workloads(lake)
    update_index(lake, extractor=extractor)
    monkeypatch.undo()
    # The deletion arrives after the live reply was indexed: the update reads only the
    # new, empty version, and must keep the text of the version it replaces.
    lakes.delete_reply(lake)
    update_index(lake, extractor=extractor)

    [hit] = search(lake, lakes.DELETED_WORD).hits
    assert hit.item_id == lakes.REPLY_DELETED
    assert hit.deleted_at is not None
    assert hit.run_id == "run-teams-1"


def test_index_reads_event_attachments_of_encrypted_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    key = base64.b64encode(bytes(range(32))).decode()
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY, f"key-1:{key}")
    lake = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(lake)

    update_index(lake, extractor=InlineExtractor())

    assert doc_ids(lake, lakes.ATTACHMENT_WORD) == {event_id(lakes.SINGLE)}


def test_mailbox_items_have_mailbox_custodian(lake: Lake):
    documents = stored_documents(lake)
    for doc_id in EVENTS | CONTACTS:
        assert documents[doc_id]["custodian_key"] == [ALICE]
        assert documents[doc_id]["location_key"] == [ALICE]
        assert "partially_indexed" in documents[doc_id]
        assert documents[doc_id]["partially_indexed"] == [False]


def test_statistics_group_new_kinds(lake: Lake):
    statistics = search_statistics(lake, "kind:meetings OR kind:microsoftteams", ["kickoff"])
    custodians = {group.name: group.items for group in statistics.custodians}
    locations = {group.name: group.items for group in statistics.locations}
    assert custodians == {ALICE: 3, TEAM_NAME: 4}
    assert locations == {ALICE: 3, TEAM_URL: 4}
    assert statistics.keywords[0].items == 1


def test_rebuild_equals_incremental(tmp_path: Path):
    incremental = Lake.open(tmp_path / "incremental")
    extractor = InlineExtractor()
    lakes.seed_workloads(incremental)
    # A second capture of the calendar, indexed by a later update, replaces documents.
    update_index(incremental, extractor=extractor)
    lakes.seed_calendar(incremental)
    update_index(incremental, extractor=extractor)

    rebuilt = stored_documents(incremental)
    update_index(incremental, rebuild=True, extractor=extractor)

    assert stored_documents(incremental) == rebuilt


def test_incremental_update_picks_up_each_table(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")
    extractor = InlineExtractor()
    lakes.seed_workloads(lake)
    before = update_index(lake, extractor=extractor)
    lakes.seed_channel(lake)

    after = update_index(lake, extractor=extractor)

    assert before.documents_added == 9
    assert after.documents_replaced == 4
    assert after.documents_added == 0
    # Captured again live, the deleted reply is no longer marked deleted.
    [hit] = search(lake, lakes.DELETED_WORD).hits
    assert hit.deleted_at is None
    assert hit.run_id == "run-teams-1"


def test_purge_of_channel_partition_removes_document(lake: Lake):
    entries = lake.committed_entries("channel_messages")
    kept = [
        row for row in _rows(lake, "channel_messages") if row["message_id"] != lakes.REPLY_DELETED
    ]
    with lake.begin(run_id="purge-1", kind="purge", container=None) as tx:
        tx.remove_files(entries)
        tx.write_rows("channel_messages", kept, partition={"team_id": TEAM})
        tx.commit()

    update = update_index(lake, extractor=InlineExtractor())

    assert update.documents_removed == 1
    assert doc_ids(lake, "kind:microsoftteams") == MESSAGES - {teams_id(lakes.REPLY_DELETED)}
    assert doc_ids(lake, lakes.DELETED_WORD) == set()


def _rows(lake: Lake, table: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in lake.committed_files(table):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def test_message_deleted_before_capture_indexed(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(lake)
    deleted = lakes.T0 + lakes.HOUR
    late_id = "1709543040000"
    item = lakes.message_json(
        late_id, "", reply_to=lakes.ROOT, sender=lakes.ALICE_SENDER, deleted=deleted
    )
    with lake.begin(run_id="run-teams-3", kind="teams", container=TEAM) as tx:
        tx.write_rows(
            "channel_messages",
            [lakes.message_row(item, lakes.T0 + 4 * lakes.HOUR, lake, address=ALICE)],
            partition={"team_id": TEAM},
        )
        tx.commit()

    update_index(lake, extractor=InlineExtractor())

    assert doc_ids(lake, "kind:microsoftteams") == MESSAGES | {teams_id(late_id)}
    [hit] = [hit for hit in search(lake, "kind:microsoftteams").hits if hit.item_id == late_id]
    assert hit.deleted_at == deleted
    assert hit.run_id == "run-teams-3"
