"""Retention policies and the purge: expired versions go, held and kept ones stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from m365lake import catalog
from m365lake.discovery import (
    add_custodians,
    create_case,
    place_hold,
    read_audit_events,
    verify_archive,
)
from m365lake.discovery.errors import InvalidRequestError
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake, Transaction
from m365lake.retention import add_policy, list_policies, plan_purge, purge, remove_policy
from m365lake.retention import plan as plan_module
from m365lake.retention.plan import versions_by_item
from tests.unit.discovery.lake_fixture import ALICE, DAY, SITE_URL, T0, message

NOW = T0 + 100 * DAY


def query(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    return catalog.run_sql(lake, sql)[1]


def message_versions(lake: Lake) -> list[tuple[str, str, str]]:
    return sorted(
        (row[0], row[1], row[2])
        for row in query(lake, "SELECT mailbox_id, message_id, change FROM messages_rows")
    )


def hold_alice(lake: Lake) -> str:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", ALICE)], actor="carol")
    return place_hold(lake, "C", actor="carol").hold_id


def delete_mail_after(lake: Lake, days: int, **options: Any) -> None:
    add_policy(
        lake,
        actor="erin",
        name=f"mail {days}d",
        workload="mail",
        action="delete",
        days=days,
        **options,
    )


def test_policy_round_trip(lake: Lake) -> None:
    policy = add_policy(
        lake,
        actor="erin",
        name="old files",
        workload="files",
        action="delete",
        days=30,
        locations=[("site", SITE_URL)],
    )

    assert list_policies(lake) == [policy]
    assert policy.locations == ("site:site-legal",)
    remove_policy(lake, policy.policy_id, actor="erin", reason="superseded")
    assert list_policies(lake) == []
    actions = [event.action for event in read_audit_events(lake)]
    assert actions == ["retention.policy.set", "retention.policy.remove"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workload": "chats"}, "invalid workload"),
        ({"workload": "teams", "locations": [("mailbox", ALICE)]}, "cannot apply to a mailbox"),
        ({"action": "archive"}, "invalid action"),
        ({"basis": "created"}, "invalid age basis"),
        ({"days": -1}, "invalid number of days"),
        ({"locations": [("site", SITE_URL)]}, "cannot apply to a site location"),
        ({"locations": []}, "location list is empty"),
    ],
)
def test_invalid_policy_rejected(lake: Lake, options: dict[str, Any], message: str) -> None:
    arguments = {"name": "p", "workload": "mail", "action": "delete", "days": 1, **options}

    with pytest.raises(InvalidRequestError, match=message):
        add_policy(lake, actor="erin", **arguments)


def test_dry_run_changes_nothing(lake: Lake) -> None:
    delete_mail_after(lake, 30)
    head = lake.head()

    result = purge(lake, actor="erin", now=NOW)

    assert not result.applied
    assert result.counts()["versions"] == 5
    assert lake.head() == head
    assert len(message_versions(lake)) == 5


def test_expired_unheld_versions_go(lake: Lake) -> None:
    delete_mail_after(lake, 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert result.counts()["versions"] == 5
    assert message_versions(lake) == []
    assert query(lake, "SELECT count(*) FROM drive_items_rows") == [(3,)]


def test_held_versions_survive(lake: Lake) -> None:
    hold_id = hold_alice(lake)
    delete_mail_after(lake, 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert message_versions(lake) == [
        ("mb-alice", "m1", "created"),
        ("mb-alice", "m1", "deleted"),
        ("mb-alice", "m1", "updated"),
        ("mb-alice", "m2", "created"),
    ]
    # m1's two captured versions and m2; m1's tombstone stays with them, unexpired.
    assert result.counts()["held"] == 3
    assert set(map(tuple, result.plan.held.values())) == {(hold_id,)}


def test_keep_policy_protects_younger(lake: Lake) -> None:
    delete_mail_after(lake, 30)
    add_policy(lake, actor="erin", name="keep 90d", workload="mail", action="keep", days=90)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    # m2 was received 60 days before NOW, inside the 90-day keep period.
    assert message_versions(lake) == [("mb-alice", "m2", "created")]
    assert result.counts()["protected"] == 1


def test_deletion_age_purges_whole_item(lake: Lake) -> None:
    delete_mail_after(lake, 10, basis="deleted")

    result = purge(lake, actor="erin", apply=True, now=T0 + 20 * DAY)

    # Only m1 was deleted in the tenant (at T0 + 2 days): its versions and tombstone go.
    assert message_versions(lake) == [("mb-alice", "m2", "created"), ("mb-bob", "m3", "created")]
    assert result.counts()["items_removed"] == 1


def test_deletion_age_not_reached(lake: Lake) -> None:
    delete_mail_after(lake, 30, basis="deleted")

    assert plan_purge(lake, now=T0 + 20 * DAY).purge == []


def test_location_limits_policy(lake: Lake) -> None:
    delete_mail_after(lake, 30, locations=[("mailbox", "mb-bob")])

    purge(lake, actor="erin", apply=True, now=NOW)

    assert {row[0] for row in message_versions(lake)} == {"mb-alice"}


def test_old_file_version_goes_new_stays(lake: Lake) -> None:
    add_policy(
        lake,
        actor="erin",
        name="files",
        workload="files",
        action="delete",
        days=50,
        locations=[("onedrive", ALICE)],
    )

    purge(lake, actor="erin", apply=True, now=T0 + 50 * DAY + DAY // 2)

    # f1's first version was modified at T0 (50.5 days old), its second at T0 + 1 day.
    rows = query(lake, "SELECT item_id, change FROM drive_items_rows ORDER BY item_id")
    assert rows == [("f1", "updated"), ("f2", "created")]
    assert sorted(query(lake, "SELECT item_id, change FROM drive_items")) == [
        ("f1", "updated"),
        ("f2", "created"),
    ]


def test_tombstone_stays_while_version_kept(lake: Lake) -> None:
    add_policy(
        lake,
        actor="erin",
        name="delete",
        workload="mail",
        action="delete",
        days=1,
        locations=[("mailbox", "mb-alice")],
    )
    add_policy(
        lake,
        actor="erin",
        name="keep",
        workload="mail",
        action="keep",
        days=1000,
        locations=[("mailbox", "mb-alice")],
    )

    purge(lake, actor="erin", apply=True, now=NOW)

    assert ("mb-alice", "m1", "deleted") in message_versions(lake)


def with_blobs(lake: Lake) -> tuple[str, str]:
    """Commit two old messages sharing one blob and a third with its own blob."""
    shared = lake.blobs.put(b"shared MIME " * 1000)
    own = lake.blobs.put(b"own MIME " * 1000)
    with lake.begin(run_id="blobs", kind="mail", container="mb-bob") as tx:
        tx.write_rows(
            "messages",
            [
                message("mb-bob", "b1", "created", T0, mime_sha256=shared),
                message("mb-bob", "b2", "created", T0, mime_sha256=own),
                message("mb-bob", "b3", "created", T0, received_at=NOW, mime_sha256=shared),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "attachments",
            [
                {
                    "mailbox_id": "mb-bob",
                    "message_id": "b2",
                    "mime_sha256": own,
                    "part_index": 1,
                    "name": "a.pdf",
                },
                {
                    "mailbox_id": "mb-bob",
                    "message_id": "b3",
                    "mime_sha256": shared,
                    "part_index": 1,
                    "name": "b.pdf",
                },
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    return shared, own


def test_shared_blob_stays_unshared_goes(lake: Lake) -> None:
    shared, own = with_blobs(lake)
    delete_mail_after(lake, 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert lake.blobs.exists(shared)
    assert not lake.blobs.exists(own)
    assert result.blobs_deleted == 1
    assert query(lake, "SELECT message_id FROM messages_rows") == [("b3",)]
    assert query(lake, "SELECT message_id FROM attachments_rows") == [("b3",)]


def test_verify_passes_after_purge(lake: Lake) -> None:
    with_blobs(lake)
    hold_alice(lake)
    delete_mail_after(lake, 30)

    purge(lake, actor="erin", apply=True, now=NOW)

    counts = verify_archive(lake)
    assert counts["audit_events"] == 6
    assert counts["blobs"] == 1
    assert [event.action for event in read_audit_events(lake)][-2:] == ["purge", "purge.cleanup"]


def test_purge_records_commit_and_event(lake: Lake) -> None:
    delete_mail_after(lake, 30)

    purge(lake, actor="erin", apply=True, now=NOW)

    purges = [m for m in lake.manifests() if m["kind"] == "purge"]
    assert len(purges) == 1
    assert purges[0]["removed"]["files"]
    event = read_audit_events(lake, action="purge")[0]
    assert event.actor == "erin"
    assert event.counts_dict()["versions"] == 5
    assert event.parameters_dict()["policies"][0]["days"] == 30


def test_empty_purge_still_audited(lake: Lake) -> None:
    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert result.counts()["versions"] == 0
    assert [event.action for event in read_audit_events(lake)] == ["purge"]


def test_version_order_kept_after_rewrite(lake: Lake) -> None:
    delete_mail_after(lake, 30, locations=[("mailbox", "mb-bob")])

    purge(lake, actor="erin", apply=True, now=NOW)

    assert query(lake, "SELECT message_id, change FROM messages") == [("m2", "created")]
    assert query(
        lake,
        "SELECT change FROM messages_rows WHERE message_id = 'm1' ORDER BY row_index",
    ) == [("created",), ("updated",), ("deleted",)]


class HoldDuringPurge(Lake):
    """A lake that commits a hold just before its first purge transaction commits."""

    def __init__(self, lake: Lake, other_writer: Callable[[], Any]) -> None:
        super().__init__(lake.storage)
        self.other_writer: Callable[[], Any] | None = other_writer

    def begin(self, **options: Any) -> Transaction:
        tx = super().begin(**options)
        if options.get("kind") == "purge" and self.other_writer is not None:
            writer, self.other_writer = self.other_writer, None
            commit = tx.commit

            def commit_after_hold(**commit_options: Any) -> dict[str, Any]:
                writer()
                return commit(**commit_options)

            tx.commit = commit_after_hold  # type: ignore[method-assign]
        return tx


def test_hold_placed_during_purge_wins(lake: Lake) -> None:
    delete_mail_after(lake, 30)
    other = Lake.open(lake.root)
    racing = HoldDuringPurge(lake, lambda: hold_alice(other))

    purge(racing, actor="erin", apply=True, now=NOW)

    assert {row[0] for row in message_versions(lake)} == {"mb-alice"}


def test_removal_of_unlisted_file_reported(lake: Lake) -> None:
    [listed] = lake.committed_files("drives")
    with lake.begin(run_id="forged", kind="purge", container=None) as tx:
        tx.remove_files([{"path": "tables/messages/forged.parquet", "sha256": "0" * 64}])
        tx.remove_files([{"path": lake.storage.relative(listed), "sha256": "1" * 64}])
        tx.commit()

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake, blobs=False)

    problems = caught.value.problems
    assert any(
        "removes file tables/messages/forged.parquet, which no earlier" in p for p in problems
    )
    assert any(
        "with SHA-256 1111" in p and "the commit that added it records" in p for p in problems
    )


@pytest.mark.parametrize(
    "policies",
    [
        [("mail", "item_date", 30, None)],
        [("mail", "item_date", 80, None)],
        [("mail", "deleted", 10, None)],
        [("mail", "item_date", 30, [("mailbox", "mb-bob")])],
        [("files", "item_date", 30, [("onedrive", ALICE)]), ("files", "deleted", 1, None)],
    ],
)
def test_arrow_expiry_matches_decision(
    lake: Lake, policies: list[tuple[str, str, int, list[tuple[str, str]] | None]]
) -> None:
    # Planning turns into objects only the items with a version some delete policy
    # expired, so that vectorized test must agree with the per-version decision.
    for workload, basis, days, locations in policies:
        add_policy(
            lake,
            actor="erin",
            name=f"{workload} {basis} {days}",
            workload=workload,
            action="delete",
            days=days,
            basis=basis,
            locations=locations,
        )
    active = list_policies(lake)
    scopes = plan_module._Scopes.load(lake, active)

    for table in ("messages", "drive_items"):
        versions = plan_module._read_table_versions(lake, table)
        assert versions is not None
        marked = plan_module._expired(table, versions.rows, active, scopes, NOW).to_pylist()
        stored = list(plan_module._stored_versions(lake, table, versions.files, versions.rows))
        decided = [bool(plan_module._decide(s, active, scopes, NOW)[0]) for s in stored]
        assert marked == decided, table


def test_selected_items_come_whole(lake: Lake) -> None:
    def only_m1_update(table: str, rows: pa.Table) -> pa.ChunkedArray:
        return pc.and_(pc.equal(rows["item_id"], "m1"), pc.invert(rows["tombstone"]))

    by_item = versions_by_item(lake, only_m1_update)

    assert list(by_item) == [("mail", "mb-alice", "m1")]
    assert len(by_item[("mail", "mb-alice", "m1")]) == 3
