"""Holds keep items through purges until released; then the next purge removes them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from m365lake.backup import backup_mail
from m365lake.catalog import run_sql
from m365lake.discovery import add_custodians, create_case, place_hold, verify_archive
from m365lake.discovery.holds import release_hold
from m365lake.discovery.records import utc_now
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.lake import Lake
from m365lake.retention import add_policy, purge
from m365lake.retention.plan import versions_by_item
from m365lake.search import update_index
from m365lake.search.hits import search
from tests.e2e.test_search_index import InlineExtractor, archive, upns


def _scalar(lake: Lake, sql: str) -> object:
    return run_sql(lake, sql)[1][0][0]


def _message_ids(lake: Lake) -> set[str]:
    return {row[0] for row in run_sql(lake, "SELECT message_id FROM message_versions")[1]}


def test_custodian_and_query_holds_then_release(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    summary = asyncio.run(backup_mail(emulator.settings(), lake))
    assert not summary.failed
    upns = sorted(info.user.user_principal_name for info in tenant.users())
    custodian, queried, unheld = upns[0], upns[1], upns[2]
    custodian_box = _scalar(
        lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{custodian}'"
    )
    queried_box = _scalar(
        lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{queried}'"
    )
    custodian_messages = {
        row[0]
        for row in run_sql(
            lake, f"SELECT message_id FROM messages WHERE mailbox_id = '{custodian_box}'"
        )[1]
    }
    target_id, target_subject = run_sql(
        lake,
        f"SELECT message_id, subject FROM messages WHERE mailbox_id = '{queried_box}' "
        "AND subject IS NOT NULL ORDER BY message_id LIMIT 1",
    )[1][0]
    queried_before = {
        row[0]
        for row in run_sql(
            lake, f"SELECT message_id FROM messages WHERE mailbox_id = '{queried_box}'"
        )[1]
    }
    update_index(lake)

    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", custodian), ("mailbox", queried)], actor="carol")
    custodian_hold = place_hold(lake, "C", actor="carol", custodian_ids=None)
    query_hold = place_hold(
        lake, "C", actor="carol", kql=f'subject:"{target_subject}"', name="one subject"
    )
    # The custodian hold above covers both custodians; release it and hold only one
    # mailbox, so the queried mailbox is kept by the query hold alone.
    release_hold(lake, custodian_hold.hold_id, actor="carol", reason="narrowed to one mailbox")
    narrow_hold = place_hold(lake, "C", actor="carol", custodian_ids=[f"mailbox:{custodian_box}"])
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    later = utc_now() + timedelta(days=1)
    update_index(lake)

    first = purge(lake, actor="erin", apply=True, now=later)

    remaining = _message_ids(lake)
    assert first.counts()["versions"] > 0
    assert custodian_messages <= remaining
    assert target_id in remaining
    queried_left = {
        row[0]
        for row in run_sql(
            lake,
            f"SELECT message_id, subject FROM message_versions WHERE mailbox_id = '{queried_box}'",
        )[1]
    }
    assert target_id in queried_left
    assert queried_left < queried_before, "only the query hold's matches stay"
    unheld_left = _scalar(
        lake,
        "SELECT count(*) FROM message_versions v JOIN mailboxes m USING (mailbox_id) "
        f"WHERE m.user_principal_name = '{unheld}'",
    )
    assert unheld_left == 0

    release_hold(lake, narrow_hold.hold_id, actor="carol", reason="matter settled")
    release_hold(lake, query_hold.hold_id, actor="carol", reason="matter settled")
    update_index(lake)

    second = purge(lake, actor="erin", apply=True, now=later)

    assert second.counts()["versions"] > 0
    assert _message_ids(lake) == set()
    assert verify_archive(lake)["audit_events"] > 0


HELD_CATEGORY = "Privileged"
HELD_WORD = "zanzibarquota"


def _versions(lake: Lake) -> dict[str, int]:
    return {key[2]: len(versions) for key, versions in versions_by_item(lake).items()}


def test_query_hold_keeps_edited_items(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    # Each held item's older version matches the hold, but its newest, the one the index
    # contains, no longer does. One message is deleted in the tenant after its edit.
    owner = upns(tenant)[0]
    document = tenant.add_file(
        "onedrive", owner, "Documents", ("Notes", "plan.txt"), f"{HELD_WORD} plans".encode()
    )
    edited, deleted = sorted(tenant.live_messages(owner))[:2]
    for message_id in (edited, deleted):
        tenant.update_message(owner, message_id, categories=[HELD_CATEGORY])
    archive(emulator, lake)
    tenant.update_file_content(document, b"lunch plans")
    for message_id in (edited, deleted):
        tenant.update_message(owner, message_id, categories=[])
    archive(emulator, lake)
    tenant.delete_message(owner, deleted)
    archive(emulator, lake)
    update_index(lake, extractor=InlineExtractor())
    query = f"category:{HELD_CATEGORY} OR {HELD_WORD}"
    assert search(lake, query, include_deleted=True).total == 0
    before = _versions(lake)
    held_items = {item: before[item] for item in (edited, deleted, document)}

    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", owner), ("onedrive", owner)], actor="carol")
    hold = place_hold(lake, "C", actor="carol", kql=query)
    add_policy(lake, actor="erin", name="all mail", workload="mail", action="delete", days=0)
    add_policy(lake, actor="erin", name="all files", workload="files", action="delete", days=0)
    later = utc_now() + timedelta(days=1)

    first = purge(lake, actor="erin", apply=True, now=later)

    assert first.counts()["versions"] > 0
    remaining = _versions(lake)
    assert {item: remaining.get(item) for item in held_items} == held_items
    assert held_items[deleted] == 3, "created, updated and the deletion tombstone"
    assert held_items[document] == 2
    assert set(remaining) == set(held_items), "nothing else in the tenant is held"

    release_hold(lake, hold.hold_id, actor="carol", reason="matter settled")
    update_index(lake, extractor=InlineExtractor())

    purge(lake, actor="erin", apply=True, now=later)

    assert _versions(lake) == {}
