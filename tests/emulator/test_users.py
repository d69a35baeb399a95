"""``/users``: default properties, ``$select``, ``$top`` limits, ``$filter`` and paging."""

from __future__ import annotations

from m365lake.emulator import Tenant
from m365lake.emulator.seed import SeedUser
from tests.emulator.conftest import ALICE, DOMAIN, graph, run

DEFAULT_USER_KEYS = {
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
}


def test_users_default_properties(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.get("/v1.0/users")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/json;odata.metadata")
            body = response.json()
            assert body["@odata.context"].endswith("/v1.0/$metadata#users")
            assert "@odata.nextLink" not in body
            assert len(body["value"]) == 4
            assert set(body["value"][0]) == DEFAULT_USER_KEYS

    run(scenario())


def test_users_select_and_filter(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.get(
                "/v1.0/users",
                params={
                    "$select": "id,userPrincipalName,accountEnabled",
                    "$filter": "accountEnabled eq true",
                },
            )
            assert response.status_code == 200
            values = response.json()["value"]
            assert {tuple(sorted(v)) for v in values} == {
                ("accountEnabled", "id", "userPrincipalName")
            }
            assert len(values) == 3
            assert all(v["accountEnabled"] is True for v in values)

            bad_select = await client.get("/v1.0/users", params={"$select": "id,nope"})
            assert bad_select.status_code == 400
            bad_filter = await client.get("/v1.0/users", params={"$filter": "startswith(x,'a')"})
            assert bad_filter.status_code == 400
            assert bad_filter.json()["error"]["code"] == "Request_UnsupportedQuery"

    run(scenario())


def test_users_top_limits(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            for top in ("0", "1000", "-1", "x"):
                response = await client.get("/v1.0/users", params={"$top": top})
                assert response.status_code == 400, top
                assert "innerError" in response.json()["error"]
            over = await client.get("/v1.0/users", params={"$top": "1000"})
            assert "between 1 and 999" in over.json()["error"]["message"]
            assert (await client.get("/v1.0/users", params={"$top": "999"})).status_code == 200

    run(scenario())


def test_users_paging_follows_next_link() -> None:
    tenant = Tenant(domain=DOMAIN)
    for index in range(7):
        tenant.add_user(SeedUser(f"u{index}@{DOMAIN}", f"User {index}"))

    async def scenario() -> None:
        async with graph(tenant) as client:
            url = "/v1.0/users?$top=3&$select=userPrincipalName"
            pages = []
            while url:
                body = (await client.get(url)).json()
                pages.append([v["userPrincipalName"] for v in body["value"]])
                url = body.get("@odata.nextLink")
                if url:
                    assert url.startswith("https://graph.test/v1.0/users?$skiptoken=")
            assert [len(page) for page in pages] == [3, 3, 1]
            assert len({upn for page in pages for upn in page}) == 7
            assert all(len(set(page)) == len(page) for page in pages)

    run(scenario())


def test_get_user_by_id_and_upn(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            user_id = tenant.user_id(ALICE)
            by_upn = await client.get(f"/v1.0/users/{ALICE.upper()}")
            assert by_upn.status_code == 200
            assert by_upn.json()["id"] == user_id
            by_id = await client.get(f"/v1.0/users/{user_id}", params={"$select": "mail"})
            assert by_id.json()["mail"] == ALICE
            missing = await client.get("/v1.0/users/nobody@contoso.example")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "Request_ResourceNotFound"

    run(scenario())
