"""GraphClient and msal against the HTTPS tenant emulator, through settings only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.model import Tenant
from m365lake.emulator.server import EmulatorServer
from m365lake.errors import SyncStateExpiredError
from m365lake.graph import DeltaPage, GraphClient


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tenant = Tenant.from_seed(generate_tenant(users=2, messages_per_user=12))
    with EmulatorServer(tenant, tmp_path_factory.mktemp("emulator")) as server:
        yield server


async def inbox_round(graph: GraphClient, url: str, user_id: str) -> list[DeltaPage]:
    return [
        page
        async for page in graph.delta(
            url,
            params={"$select": "subject"} if "$deltatoken" not in url else None,
            headers={"Prefer": "odata.maxpagesize=5"},
            mailbox=user_id,
        )
    ]


def test_emulator_paging_delta_and_throttling(emulator: EmulatorServer) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[DeltaPage], list[DeltaPage], Any]:
        async with GraphClient(emulator.settings()) as graph:
            users = [
                user
                async for page in graph.iter_pages("/users", params={"$top": 1})
                for user in page["value"]
            ]
            user_id = users[0]["id"]
            initial_url = f"/users/{user_id}/mailFolders/inbox/messages/delta"
            first = await inbox_round(graph, initial_url, user_id)
            emulator.inject(path_pattern="/messages/delta", status=429, retry_after="0.05")
            assert first[-1].delta_link is not None
            second = await inbox_round(graph, first[-1].delta_link, user_id)
            return users, first, second, graph.stats

    users, first, second, stats = asyncio.run(scenario())
    assert len(users) == 2
    assert len(first) > 1
    assert all(page.delta_link is None for page in first[:-1])
    assert sum(len(page.items) for page in first) > 0
    assert second[-1].delta_link is not None
    assert sum(len(page.items) for page in second) == 0
    assert stats.throttled == 1
    assert stats.throttle_wait_seconds == pytest.approx(0.05)


def test_emulator_expired_delta_token(emulator: EmulatorServer) -> None:
    async def scenario() -> None:
        async with GraphClient(emulator.settings()) as graph:
            user_id = emulator.tenant.user_ids()[0]
            url = f"/users/{user_id}/mailFolders/inbox/messages/delta"
            first = await inbox_round(graph, url, user_id)
            emulator.tenant.expire_sync_state()
            assert first[-1].delta_link is not None
            await inbox_round(graph, first[-1].delta_link, user_id)

    with pytest.raises(SyncStateExpiredError) as caught:
        asyncio.run(scenario())
    assert caught.value.status == 410
