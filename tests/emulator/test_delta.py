"""Per-folder message delta: paging, links, tombstones, id types and expired sync state."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from m365lake.emulator import Tenant
from tests.emulator.conftest import ALICE, follow_delta, graph, make_mime, run

IMMUTABLE = 'IdType="ImmutableId"'


def _delta_url(tenant: Tenant, folder: tuple[str, ...] = ("Inbox",)) -> str:
    alice = tenant.user_id(ALICE)
    return f"/v1.0/users/{alice}/mailFolders/{tenant.folder_id(ALICE, folder)}/messages/delta"


def test_initial_round_pages_by_maxpagesize(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            headers = {"Prefer": "odata.maxpagesize=5"}
            first = await client.get(_delta_url(tenant), headers=headers)
            body = first.json()
            assert body["@odata.context"].endswith("$metadata#Collection(message)")
            assert len(body["value"]) == 5
            link = body["@odata.nextLink"]
            assert link.startswith("https://graph.test/v1.0/users/")
            assert list(parse_qs(urlsplit(link).query)) == ["$skiptoken"]

            pages, delta_link = await follow_delta(client, link, headers)
            sizes = [5] + [len(page) for page in pages]
            assert sizes == [5, 5, 2]
            assert list(parse_qs(urlsplit(delta_link).query)) == ["$deltatoken"]
            items = body["value"] + [item for page in pages for item in page]
            assert len({item["id"] for item in items}) == 12
            assert all(item["@odata.type"] == "#microsoft.graph.message" for item in items)
            assert not any("@removed" in item for item in items)

    run(scenario())


def test_default_page_size_and_top(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            default = (await client.get(_delta_url(tenant))).json()
            assert len(default["value"]) == 10
            top = (await client.get(_delta_url(tenant), params={"$top": "4"})).json()
            assert len(top["value"]) == 4
            bad = await client.get(_delta_url(tenant), params={"$top": "1001"})
            assert bad.status_code == 400

    run(scenario())


def test_delta_link_without_changes_is_empty(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            _, delta_link = await follow_delta(client, _delta_url(tenant))
            for _ in range(2):
                pages, delta_link = await follow_delta(client, delta_link)
                assert pages == [[]]

    run(scenario())


def test_changes_created_updated_deleted_moved(tenant: Tenant) -> None:
    inbox_messages = tenant.live_messages(ALICE)
    to_delete, to_move, to_update = sorted(
        mid for mid, live in inbox_messages.items() if live.folder_path == ("Inbox",)
    )[:3]

    async def scenario() -> None:
        async with graph(tenant) as client:
            pages, delta_link = await follow_delta(client, _delta_url(tenant))
            rest_ids = {item["id"] for page in pages for item in page}
            moved_rest_id = (
                await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/messages/{to_move}")
            ).json()["id"]
            deleted_rest_id = (
                await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/messages/{to_delete}")
            ).json()["id"]
            assert {moved_rest_id, deleted_rest_id} <= rest_ids

            new_id = tenant.add_message(ALICE, ("Inbox",), make_mime(500))
            tenant.update_message(ALICE, to_update, is_read=True, categories=["Red"])
            tenant.delete_message(ALICE, to_delete)
            tenant.move_message(ALICE, to_move, ("Archive",))

            pages, _ = await follow_delta(client, delta_link)
            changes = [item for page in pages for item in page]
            removed = {item["id"] for item in changes if "@removed" in item}
            assert removed == {deleted_rest_id, moved_rest_id}
            assert all(
                item["@removed"] == {"reason": "deleted"} for item in changes if "@removed" in item
            )
            updated = {item["id"]: item for item in changes if "@removed" not in item}
            assert len(updated) == 2
            live = tenant.live_messages(ALICE)
            flagged = next(item for item in updated.values() if item["categories"] == ["Red"])
            assert flagged["isRead"] is True
            assert flagged["changeKey"] == live[to_update].change_key
            assert any(item["subject"] == "Message 500" for item in updated.values())
            assert new_id in live

            archive_pages, _ = await follow_delta(client, _delta_url(tenant, ("Archive",)))
            archived = [item for page in archive_pages for item in page]
            moved_now = await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/messages/{to_move}")
            assert [item["id"] for item in archived] == [moved_now.json()["id"]]
            assert moved_now.json()["id"] != moved_rest_id

    run(scenario())


def test_immutable_ids_in_delta_and_tombstones(tenant: Tenant) -> None:
    headers = {"Prefer": f"odata.maxpagesize=20, {IMMUTABLE}"}
    victim = next(
        mid for mid, live in tenant.live_messages(ALICE).items() if live.folder_path == ("Inbox",)
    )

    async def scenario() -> None:
        async with graph(tenant) as client:
            pages, delta_link = await follow_delta(client, _delta_url(tenant), headers)
            ids = {item["id"] for page in pages for item in page}
            assert victim in ids
            tenant.move_message(ALICE, victim, ("Archive",))
            pages, _ = await follow_delta(client, delta_link, headers)
            assert pages == [
                [
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": victim,
                        "@removed": {"reason": "deleted"},
                    }
                ]
            ]
            archive_pages, _ = await follow_delta(client, _delta_url(tenant, ("Archive",)), headers)
            assert [item["id"] for page in archive_pages for item in page] == [victim]

    run(scenario())


def test_select_is_kept_by_tokens(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            url = _delta_url(tenant) + "?$select=subject,isRead"
            headers = {"Prefer": "odata.maxpagesize=7"}
            pages, delta_link = await follow_delta(client, url, headers)
            for item in [item for page in pages for item in page]:
                assert set(item) == {"@odata.type", "@odata.etag", "id", "subject", "isRead"}
            tenant.add_message(ALICE, ("Inbox",), make_mime(600))
            pages, _ = await follow_delta(client, delta_link, headers)
            assert [set(item) for page in pages for item in page] == [
                {"@odata.type", "@odata.etag", "id", "subject", "isRead"}
            ]

    run(scenario())


def test_changes_during_a_round_reach_the_next_round(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            headers = {"Prefer": "odata.maxpagesize=5"}
            first = (await client.get(_delta_url(tenant), headers=headers)).json()
            added = tenant.add_message(ALICE, ("Inbox",), make_mime(700))
            pages, delta_link = await follow_delta(client, first["@odata.nextLink"], headers)
            round_ids = {item["id"] for item in first["value"]} | {
                item["id"] for page in pages for item in page
            }
            assert len(round_ids) == 12
            pages, _ = await follow_delta(client, delta_link, headers)
            subjects = [item["subject"] for page in pages for item in page]
            assert subjects == ["Message 700"]
            assert added in tenant.live_messages(ALICE)

    run(scenario())


def test_expired_sync_state_is_410(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            headers = {"Prefer": "odata.maxpagesize=5", "client-request-id": "abc"}
            first = (await client.get(_delta_url(tenant), headers=headers)).json()
            _, delta_link = await follow_delta(client, first["@odata.nextLink"], headers)
            tenant.expire_sync_state(ALICE)
            for stale in (first["@odata.nextLink"], delta_link):
                response = await client.get(stale, headers=headers)
                assert response.status_code == 410
                error = response.json()["error"]
                assert error["code"] == "SyncStateNotFound"
                assert error["innerError"]["client-request-id"] == "abc"
                assert response.headers["Location"].endswith("/messages/delta")
            fresh_pages, _ = await follow_delta(client, _delta_url(tenant), headers)
            assert sum(len(page) for page in fresh_pages) == 12

    run(scenario())


def test_bad_tokens_are_400(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            _, delta_link = await follow_delta(client, _delta_url(tenant))
            token = parse_qs(urlsplit(delta_link).query)["$deltatoken"][0]
            other_folder = _delta_url(tenant, ("Archive",))
            wrong = await client.get(other_folder, params={"$deltatoken": token})
            assert wrong.status_code == 400
            mangled = await client.get(_delta_url(tenant), params={"$deltatoken": "%%%"})
            assert mangled.status_code == 400
            bad_filter = await client.get(_delta_url(tenant), params={"$filter": "isRead eq true"})
            assert bad_filter.status_code == 400

    run(scenario())


def test_received_filter(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            url = _delta_url(tenant) + "?$filter=receivedDateTime ge 2024-01-01T10:08:00Z"
            pages, _ = await follow_delta(client, url)
            received = sorted(item["receivedDateTime"] for page in pages for item in page)
            assert received == [f"2024-01-01T10:{m:02d}:00Z" for m in range(8, 12)]

    run(scenario())
