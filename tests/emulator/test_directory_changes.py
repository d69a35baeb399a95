"""Users leaving the directory: a disabled account stays listed, a deleted one is gone."""

from __future__ import annotations

from m365lake.emulator import Tenant
from tests.emulator.conftest import ALICE, BOB, graph, run


def test_disabled_user_keeps_mailbox(tenant: Tenant) -> None:
    tenant.disable_user(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            listed = await client.get(
                "/v1.0/users", params={"$select": "userPrincipalName,accountEnabled"}
            )
            enabled = {
                user["userPrincipalName"]: user["accountEnabled"] for user in listed.json()["value"]
            }
            assert enabled[ALICE] is False
            assert enabled[BOB] is True

            folders = await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders")
            assert folders.status_code == 200

    run(scenario())


def test_deleted_user_not_found(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    tenant.delete_user(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            listed = await client.get("/v1.0/users")
            upns = {user["userPrincipalName"] for user in listed.json()["value"]}
            assert ALICE not in upns
            assert BOB in upns

            user = await client.get(f"/v1.0/users/{alice}")
            assert user.status_code == 404
            assert user.json()["error"]["code"] == "Request_ResourceNotFound"

            folders = await client.get(f"/v1.0/users/{alice}/mailFolders")
            assert folders.status_code == 404

    run(scenario())
