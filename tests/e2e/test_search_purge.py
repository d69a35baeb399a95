"""The search index follows purges: purged items stop matching, surviving versions take over."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import timedelta

import pytest

from m365lake.catalog import refresh_catalog, run_sql
from m365lake.discovery import (
    active_holds,
    add_custodians,
    create_case,
    place_hold,
    release_hold,
)
from m365lake.discovery.records import utc_now
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.errors import SearchIndexError
from m365lake.lake import Lake
from m365lake.retention import add_policy, purge
from m365lake.search.hits import search
from m365lake.search.index import IndexUpdate, update_index
from tests.e2e.test_search_index import (
    InlineExtractor,
    archive,
    stored_documents,
    term_counts,
    upns,
)

OLD_WORD = "alphawombat"
NEW_WORD = "betawombat"
OLD_DATE = dt.datetime(2019, 5, 6, 7, 8, tzinfo=dt.UTC)
HOLD_END = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
"""The date-ranged hold keeps file versions modified before this, so only OLD_DATE's."""

QUERIES = [
    OLD_WORD,
    NEW_WORD,
    "kind:email",
    "kind:docs",
    "wombat*",
    "plans",
    "size>0",
]


@dataclass
class Scenario:
    """The ids that the tests check after the purge."""

    held_mailbox: str
    unheld_mailboxes: list[str]
    deleted_message_doc: str
    plan_doc: str
    plan_old_captured_at: dt.datetime


def _mailbox_id(lake: Lake, upn: str) -> str:
    sql = f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{upn}'"
    return str(run_sql(lake, sql)[1][0][0])


def first_backup(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> str:
    """Archive the tenant with an old plan file in the first user's OneDrive; return its id."""
    owner = upns(tenant)[0]
    plan = tenant.add_file(
        "onedrive",
        owner,
        "Documents",
        ("Notes", "plan.txt"),
        f"{OLD_WORD} plans".encode(),
        modified_at=OLD_DATE,
    )
    archive(emulator, lake)
    return plan


def change_then_purge(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, plan: str, *, index_before: bool
) -> Scenario:
    """Change the plan, delete a message, back up, hold some items and purge all others.

    Holds keep the first user's mailbox and the plan's old version (by its date), so the
    purge removes the plan's newest version, every other file, and all other mail,
    including a message the tenant deleted (its versions and its tombstone).
    """
    owner, other = upns(tenant)[0], upns(tenant)[1]
    old_captured_at = run_sql(lake, f"SELECT captured_at FROM files WHERE item_id = '{plan}'")[1][
        0
    ][0]
    tenant.update_file_content(plan, f"{NEW_WORD} plans".encode())
    deleted = sorted(tenant.live_messages(other))[0]
    tenant.delete_message(other, deleted)
    archive(emulator, lake)
    if index_before:
        update_index(lake, extractor=InlineExtractor())

    create_case(lake, "Matter", actor="carol", case_id="C")
    custodians = add_custodians(lake, "C", [("mailbox", owner), ("onedrive", owner)], actor="carol")
    by_kind = {custodian.custodian_id.split(":", 1)[0]: custodian for custodian in custodians}
    place_hold(lake, "C", actor="carol", custodian_ids=[by_kind["mailbox"].custodian_id])
    place_hold(
        lake,
        "C",
        actor="carol",
        custodian_ids=[by_kind["onedrive"].custodian_id],
        date_end=HOLD_END,
    )
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    add_policy(lake, actor="erin", name="all files", workload="files", action="delete", days=0)
    result = purge(lake, actor="erin", apply=True, now=utc_now() + timedelta(days=1))
    assert result.counts()["versions"] > 0
    refresh_catalog(lake)

    drive_id = tenant.drive_id_for("onedrive", owner)
    other_id = _mailbox_id(lake, other)
    return Scenario(
        held_mailbox=_mailbox_id(lake, owner),
        unheld_mailboxes=[_mailbox_id(lake, upn) for upn in upns(tenant)[1:]],
        deleted_message_doc=f"mail:{other_id}:{deleted}",
        plan_doc=f"file:{drive_id}:{plan}",
        plan_old_captured_at=old_captured_at,
    )


def hit_sets(lake: Lake) -> dict[str, set[str]]:
    return {
        query: {hit.doc_id for hit in search(lake, query, limit=1000).hits} for query in QUERIES
    }


def check_purge_followed(lake: Lake, scenario: Scenario, update: IndexUpdate) -> None:
    documents = stored_documents(lake)
    assert scenario.deleted_message_doc not in documents, "a purged item is never found"
    for mailbox_id in scenario.unheld_mailboxes:
        assert not [doc_id for doc_id in documents if doc_id.startswith(f"mail:{mailbox_id}:")]
    held_messages = run_sql(
        lake, f"SELECT count(*) FROM messages WHERE mailbox_id = '{scenario.held_mailbox}'"
    )[1][0][0]
    held_documents = [
        doc_id for doc_id in documents if doc_id.startswith(f"mail:{scenario.held_mailbox}:")
    ]
    assert len(held_documents) == held_messages
    assert [doc_id for doc_id in documents if doc_id.startswith("file:")] == [scenario.plan_doc]
    assert documents[scenario.plan_doc]["captured_at"] == [scenario.plan_old_captured_at]
    assert {hit.doc_id for hit in search(lake, OLD_WORD).hits} == {scenario.plan_doc}
    assert search(lake, NEW_WORD).total == 0, "the purged newest version is not found"
    assert update.documents_removed > 0
    assert update.documents_total == len(documents)


def test_update_after_purge_equals_rebuild(tenant: Tenant, emulator: EmulatorServer, lake: Lake):
    plan = first_backup(tenant, emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    scenario = change_then_purge(tenant, emulator, lake, plan, index_before=True)
    assert search(lake, NEW_WORD).total == 1
    before = stored_documents(lake)

    update = update_index(lake, extractor=InlineExtractor())

    assert not update.rebuilt
    check_purge_followed(lake, scenario, update)
    assert update.documents_removed == len(before) - len(stored_documents(lake))
    assert update.documents_replaced == 1, "only the plan changed version"
    incremental = (stored_documents(lake), term_counts(lake), hit_sets(lake))
    rebuilt = update_index(lake, rebuild=True, extractor=InlineExtractor())
    assert rebuilt.rebuilt
    assert (stored_documents(lake), term_counts(lake), hit_sets(lake)) == incremental


@pytest.mark.parametrize("chunk_rows", [1, 100_000])
def test_lagging_update_across_purge_equals_rebuild(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, chunk_rows: int
):
    plan = first_backup(tenant, emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    scenario = change_then_purge(tenant, emulator, lake, plan, index_before=False)

    update = update_index(lake, extractor=InlineExtractor(), chunk_rows=chunk_rows)

    check_purge_followed(lake, scenario, update)
    incremental = (stored_documents(lake), term_counts(lake), hit_sets(lake))
    update_index(lake, rebuild=True, extractor=InlineExtractor())
    assert (stored_documents(lake), term_counts(lake), hit_sets(lake)) == incremental


def test_two_purges_in_one_update_remove_all(tenant: Tenant, emulator: EmulatorServer, lake: Lake):
    plan = first_backup(tenant, emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    change_then_purge(tenant, emulator, lake, plan, index_before=True)
    tenant.add_message(upns(tenant)[0], ("Inbox",), b"Subject: gnuwombat\r\n\r\nlate\r\n")
    archive(emulator, lake)
    for hold in active_holds(lake):
        release_hold(lake, hold.hold_id, actor="carol", reason="matter settled")
    # The second purge removes the first one's copies and the message archived between.
    purge(lake, actor="erin", apply=True, now=utc_now() + timedelta(days=1))

    update = update_index(lake, extractor=InlineExtractor(), chunk_rows=1)

    assert stored_documents(lake) == {}
    assert search(lake, "gnuwombat").total == 0
    assert search(lake, OLD_WORD).total == 0
    assert update.documents_removed > 0
    assert update.documents_total == 0


def test_missing_lake_file_asks_to_run_again(tenant: Tenant, emulator: EmulatorServer, lake: Lake):
    archive(emulator, lake)
    [message_file, *_] = [
        entry["path"]
        for manifest in lake.manifests()
        for entry in manifest.get("files", [])
        if entry["table"] == "messages"
    ]
    lake.storage.remove(message_file)

    with pytest.raises(SearchIndexError, match="run `m365lake index` again") as raised:
        update_index(lake, extractor=InlineExtractor())

    assert message_file.split("/")[-1] in str(raised.value)
