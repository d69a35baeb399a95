"""Mail folders: top level, hidden folders, well-known names, childFolders, folder delta."""

from __future__ import annotations

from m365lake.emulator import Tenant
from tests.emulator.conftest import ALICE, NOBOX, follow_delta, graph, run


def test_top_level_folders_and_hidden(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            body = (await client.get(f"/v1.0/users/{alice}/mailFolders?$top=50")).json()
            names = {f["displayName"] for f in body["value"]}
            assert {"Inbox", "Sent Items", "Deleted Items", "Archive", "Drafts"} <= names
            assert "Conversation Action Settings" not in names
            inbox = next(f for f in body["value"] if f["displayName"] == "Inbox")
            assert inbox["totalItemCount"] == 12
            assert inbox["unreadItemCount"] == 6
            assert set(inbox) == {
                "id",
                "displayName",
                "parentFolderId",
                "childFolderCount",
                "unreadItemCount",
                "totalItemCount",
                "isHidden",
            }
            hidden = await client.get(
                f"/v1.0/users/{alice}/mailFolders",
                params={"includeHiddenFolders": "true", "$top": "50"},
            )
            assert "Conversation Action Settings" in {
                f["displayName"] for f in hidden.json()["value"]
            }

    run(scenario())


def test_folder_listing_pages_with_skip(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            url = f"/v1.0/users/{alice}/mailFolders?$top=3&$select=displayName"
            seen: list[str] = []
            while url:
                body = (await client.get(url)).json()
                assert len(body["value"]) <= 3
                seen.extend(f["displayName"] for f in body["value"])
                assert all(set(f) == {"id", "displayName"} for f in body["value"])
                url = body.get("@odata.nextLink")
            assert len(seen) == len(set(seen)) == 8
            default = (await client.get(f"/v1.0/users/{alice}/mailFolders")).json()
            assert len(default["value"]) == 8
            assert "@odata.nextLink" not in default

    run(scenario())


def test_well_known_names_and_child_folders(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            inbox = (await client.get(f"/v1.0/users/{alice}/mailFolders/Inbox")).json()
            assert inbox["id"] == tenant.folder_id(ALICE, ("Inbox",))
            root = (await client.get(f"/v1.0/users/{alice}/mailFolders/msgfolderroot")).json()
            assert inbox["parentFolderId"] == root["id"]
            archive = (await client.get(f"/v1.0/users/{alice}/mailFolders/archive")).json()
            assert archive["childFolderCount"] == 1
            children = await client.get(
                f"/v1.0/users/{alice}/mailFolders/{archive['id']}/childFolders"
            )
            assert [f["displayName"] for f in children.json()["value"]] == ["2023"]
            assert children.json()["value"][0]["totalItemCount"] == 1
            lower = await client.get(f"/v1.0/users/{alice}/mailfolders('x')")
            assert lower.status_code == 404
            missing = await client.get(f"/v1.0/users/{alice}/mailFolders/clutter")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "ErrorItemNotFound"

    run(scenario())


def test_user_without_mailbox(tenant: Tenant) -> None:
    room = tenant.user_id(NOBOX)

    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.get(f"/v1.0/users/{room}/mailFolders")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
            unknown = await client.get("/v1.0/users/nobody@contoso.example/mailFolders")
            assert unknown.status_code == 404

    run(scenario())


def test_folder_delta_round_and_tombstones(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    prefer = {"Prefer": "odata.maxpagesize=4"}

    async def scenario() -> None:
        async with graph(tenant) as client:
            pages, delta_link = await follow_delta(
                client, f"/v1.0/users/{alice}/mailFolders/delta", prefer
            )
            assert all(len(page) <= 4 for page in pages)
            folders = [f for page in pages for f in page]
            names = {f["displayName"] for f in folders}
            assert "Top of Information Store" not in names
            assert {"Inbox", "2023", "Conversation Action Settings"} <= names
            assert not any("@removed" in f for f in folders)

            empty_pages, same_round = await follow_delta(client, delta_link, prefer)
            assert empty_pages == [[]]

            new_id = tenant.add_folder(ALICE, ("Projects", "Alpha"))
            tenant.delete_folder(ALICE, tenant.folder_id(ALICE, ("Archive", "2023")))
            pages, _ = await follow_delta(client, same_round, prefer)
            changes = [f for page in pages for f in page]
            removed = [f for f in changes if "@removed" in f]
            assert [f["@removed"] for f in removed] == [{"reason": "deleted"}]
            assert new_id in {f["id"] for f in changes if "@removed" not in f}
            assert "Archive" in {f.get("displayName") for f in changes}

    run(scenario())
