"""Contact folders and contacts: listing, delta, roles, paging caps and restore writes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from m365lake.emulator import Tenant
from m365lake.emulator.contact_json import WRITABLE_PROPERTIES
from m365lake.emulator.routes_contacts import DELTA_MAX_PAGE
from tests.emulator.conftest import ALICE, BOB, NOBOX, follow_delta, graph, run, seed_tenant

ANNA = {
    "givenName": "Anna",
    "surname": "Lindqvist",
    "displayName": "Anna Lindqvist",
    "emailAddresses": [{"name": "Anna Lindqvist", "address": "anna@fabrikam.example"}],
    "businessPhones": ["+46 8 555 0100"],
    "businessAddress": {"street": "Sveavägen 1", "city": "Stockholm", "postalCode": "111 57"},
    "categories": ["Travel"],
    "personalNotes": "Met in Malmö; likes tea.",
    "birthday": "1980-04-02T11:59:00Z",
}


@pytest.fixture
def contacts_tenant() -> Tenant:
    tenant = Tenant.from_seed(seed_tenant(messages_per_folder=1))
    tenant.add_contact(ALICE, (), ANNA)
    tenant.add_contact(ALICE, (), {"givenName": "Bo", "surname": "Ek"})
    tenant.add_contact(ALICE, ("Clients",), {"displayName": "Client One"})
    tenant.add_contact(ALICE, ("contacts",), {"displayName": "Lower-case twin"})
    tenant.add_contact_folder(ALICE, ("Clients", "Key accounts"))
    return tenant


def _user(tenant: Tenant, upn: str = ALICE) -> str:
    return f"/v1.0/users/{tenant.user_id(upn)}"


def test_default_folder_by_well_known_name(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            response = await client.get(f"{_user(contacts_tenant)}/contactFolders/contacts")
            assert response.status_code == 200, response.text
            default = response.json()
            assert default["displayName"] == "Contacts"
            by_id = await client.get(f"{_user(contacts_tenant)}/contactfolders/{default['id']}")
            assert by_id.json()["id"] == default["id"]
            listed = (await client.get(f"{_user(contacts_tenant)}/contactFolders")).json()
            names = sorted(folder["displayName"] for folder in listed["value"])
            assert names == ["Clients", "contacts"]
            assert {f["parentFolderId"] for f in listed["value"]} == {default["id"]}
            clients = next(f for f in listed["value"] if f["displayName"] == "Clients")
            children = await client.get(
                f"{_user(contacts_tenant)}/contactFolders/{clients['id']}/childFolders"
            )
            assert [f["displayName"] for f in children.json()["value"]] == ["Key accounts"]

    run(scenario())


def test_contact_json_has_every_property(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            body = (await client.get(f"{_user(contacts_tenant)}/contacts")).json()
            assert [c["displayName"] for c in body["value"]] == ["Anna Lindqvist", "Bo Ek"]
            anna = body["value"][0]
            assert anna["@odata.etag"] == f'W/"{anna["changeKey"]}"'
            assert anna["emailAddresses"] == ANNA["emailAddresses"]
            assert anna["businessAddress"]["city"] == "Stockholm"
            assert anna["homeAddress"] == {}
            assert anna["homePhones"] == []
            assert anna["middleName"] is None
            assert set(WRITABLE_PROPERTIES) <= set(anna)
            single = await client.get(f"{_user(contacts_tenant)}/contacts/{anna['id']}")
            assert single.json()["personalNotes"] == ANNA["personalNotes"]

    run(scenario())


def test_folder_delta_leaves_out_default_folder(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            url = f"{_user(contacts_tenant)}/contactFolders/delta"
            pages, delta_link = await follow_delta(client, url)
            names = sorted(item["displayName"] for page in pages for item in page)
            assert names == ["Clients", "Key accounts", "contacts"]

            clients = contacts_tenant.add_contact_folder(ALICE, ("Clients",))
            key_accounts = contacts_tenant.add_contact_folder(ALICE, ("Clients", "Key accounts"))
            contacts_tenant.delete_contact_folder(ALICE, clients)
            pages, _ = await follow_delta(client, delta_link)
            removed = {item["id"] for page in pages for item in page if "@removed" in item}
            assert removed == {clients, key_accounts}

    run(scenario())


def test_contact_delta_rounds_and_tombstones(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            folder = contacts_tenant.add_contact_folder(ALICE, ())
            url = f"{_user(contacts_tenant)}/contactFolders/{folder}/contacts/delta"
            pages, delta_link = await follow_delta(client, url, {"Prefer": "odata.maxpagesize=1"})
            assert [len(page) for page in pages] == [1, 1]
            anna, bo = (page[0]["id"] for page in pages)

            contacts_tenant.update_contact(ALICE, anna, {"jobTitle": "Buyer"})
            contacts_tenant.delete_contact(ALICE, bo)
            brief = contacts_tenant.add_contact(ALICE, (), {"displayName": "Brief"})
            contacts_tenant.delete_contact(ALICE, brief)
            pages, delta_link = await follow_delta(client, delta_link)
            items = [item for page in pages for item in page]
            assert [item["id"] for item in items if "@removed" not in item] == [anna]
            assert {"id": bo, "@removed": {"reason": "deleted"}} in items
            assert brief not in {item["id"] for item in items}
            assert next(i for i in items if i["id"] == anna)["jobTitle"] == "Buyer"

            pages, _ = await follow_delta(client, delta_link)
            assert pages == [[]]

    run(scenario())


def test_moved_contact_leaves_a_tombstone(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            default = contacts_tenant.add_contact_folder(ALICE, ())
            clients = contacts_tenant.add_contact_folder(ALICE, ("Clients",))
            urls = [
                f"{_user(contacts_tenant)}/contactFolders/{folder}/contacts/delta"
                for folder in (default, clients)
            ]
            links = [(await follow_delta(client, url))[1] for url in urls]
            anna = next(
                cid
                for cid, c in contacts_tenant.live_contacts(ALICE).items()
                if c.properties.get("givenName") == "Anna"
            )

            contacts_tenant.move_contact(ALICE, anna, ("Clients",))

            old_pages, _ = await follow_delta(client, links[0])
            new_pages, _ = await follow_delta(client, links[1])
            assert old_pages == [[{"id": anna, "@removed": {"reason": "deleted"}}]]
            moved = [item for page in new_pages for item in page]
            assert [item["id"] for item in moved] == [anna]
            assert moved[0]["parentFolderId"] == clients

    run(scenario())


def test_contact_delta_select_and_page_cap(contacts_tenant: Tenant) -> None:
    for index in range(DELTA_MAX_PAGE + 5):
        contacts_tenant.add_contact(ALICE, ("Bulk",), {"displayName": f"Bulk {index}"})

    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            folder = contacts_tenant.add_contact_folder(ALICE, ("Bulk",))
            url = f"{_user(contacts_tenant)}/contactFolders/{folder}/contacts/delta"
            response = await client.get(
                url, params={"$select": "displayName"}, headers={"Prefer": "odata.maxpagesize=999"}
            )
            body = response.json()
            assert len(body["value"]) == DELTA_MAX_PAGE
            assert set(body["value"][0]) == {"@odata.etag", "id", "displayName"}
            rest = (await client.get(body["@odata.nextLink"])).json()
            assert len(rest["value"]) == 5
            assert set(rest["value"][0]) == {"@odata.etag", "id", "displayName"}
            bad = await client.get(url, params={"$select": "nonsense"})
            assert bad.status_code == 400
            filtered = await client.get(url, params={"$filter": "displayName eq 'x'"})
            assert filtered.status_code == 400

    run(scenario())


def test_expired_sync_state_is_410(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            folder = contacts_tenant.add_contact_folder(ALICE, ("Clients",))
            url = f"{_user(contacts_tenant)}/contactFolders/{folder}/contacts/delta"
            _, delta_link = await follow_delta(client, url)
            _, folders_link = await follow_delta(
                client, f"{_user(contacts_tenant)}/contactFolders/delta"
            )
            contacts_tenant.expire_sync_state(ALICE)
            for link in (delta_link, folders_link):
                expired = await client.get(link)
                assert expired.status_code == 410
                assert expired.json()["error"]["code"] == "SyncStateNotFound"
                assert expired.headers["location"].startswith("https://graph.test/v1.0/users/")
            pages, _ = await follow_delta(client, url)
            assert [item["displayName"] for page in pages for item in page] == ["Client One"]

    run(scenario())


def test_roles_and_mailbox_checks(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            no_mailbox = await client.get(f"{_user(contacts_tenant, NOBOX)}/contactFolders")
            assert no_mailbox.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
            write = await client.post(
                f"{_user(contacts_tenant)}/contactFolders", json={"displayName": "New"}
            )
            assert write.status_code == 403
            assert write.json()["error"]["code"] == "ErrorAccessDenied"
        contacts_tenant.app.roles.remove("Contacts.Read")
        async with graph(contacts_tenant) as client:
            denied = await client.get(f"{_user(contacts_tenant)}/contacts")
            assert denied.status_code == 403
            assert denied.json()["error"]["code"] == "ErrorAccessDenied"

    run(scenario())


def test_contact_requests_count_against_mailbox(contacts_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            await client.get(f"{_user(contacts_tenant)}/contacts")
            await client.get(f"{_user(contacts_tenant)}/contactFolders/delta")
            app: Any = client.app  # type: ignore[attr-defined]
            records = [r for r in app.state.requests.snapshot() if "contact" in r.path.lower()]
            assert len(records) == 2
            assert {r.mailbox for r in records} == {contacts_tenant.user_id(ALICE)}

    run(scenario())


async def _post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body)


def test_folder_writes_follow_exchange_case_rules(contacts_tenant: Tenant) -> None:
    contacts_tenant.app.roles.append("Contacts.ReadWrite")

    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            user = _user(contacts_tenant, BOB)
            created = await _post(client, f"{user}/contactFolders", {"displayName": "Partners"})
            assert created.status_code == 201, created.text
            partners = created.json()
            default = contacts_tenant.default_contact_folder(contacts_tenant.user_id(BOB))
            assert partners["parentFolderId"] == default.id
            clash = await _post(client, f"{user}/contactFolders", {"displayName": "PARTNERS"})
            assert clash.status_code == 409
            assert clash.json()["error"]["code"] == "ErrorFolderExists"
            twin = await _post(
                client, f"{user}/contactFolders/contacts/childFolders", {"displayName": "contacts"}
            )
            assert twin.status_code == 201, twin.text
            nested = await _post(
                client,
                f"{user}/contactFolders/{partners['id']}/childFolders",
                {"displayName": "Partners"},
            )
            assert nested.status_code == 201
            empty = await _post(client, f"{user}/contactFolders", {"displayName": " "})
            assert empty.status_code == 400

    run(scenario())


def test_contact_writes_check_the_body(contacts_tenant: Tenant) -> None:
    contacts_tenant.app.roles.append("Contacts.ReadWrite")

    async def scenario() -> None:
        async with graph(contacts_tenant) as client:
            user = _user(contacts_tenant, BOB)
            folder = await _post(client, f"{user}/contactFolders", {"displayName": "Restored"})
            folder_id = folder.json()["id"]
            created = await _post(client, f"{user}/contactFolders/{folder_id}/contacts", ANNA)
            assert created.status_code == 201, created.text
            contact = created.json()
            assert contact["parentFolderId"] == folder_id
            assert contact["emailAddresses"] == ANNA["emailAddresses"]
            default = await _post(client, f"{user}/contacts", {"givenName": "Default"})
            assert default.json()["displayName"] == "Default"
            for bad in ({"id": "x"}, {"nickname": "x"}, {"businessPhones": "123"}):
                rejected = await _post(client, f"{user}/contacts", bad)
                assert rejected.status_code == 400, bad
                assert rejected.json()["error"]["code"] == "RequestBodyRead"
            deleted = await client.delete(f"{user}/contacts/{contact['id']}")
            assert deleted.status_code == 204
            gone = await client.delete(f"{user}/contacts/{contact['id']}")
            assert gone.status_code == 404
            live = contacts_tenant.live_contacts(BOB)
            assert sorted(c.folder_path for c in live.values()) == [("Contacts",)]

    run(scenario())
