"""Fault kinds beyond plain errors: broken bodies, stalls, expired tokens and lost sync state."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.emulator import EmulatorOptions, EmulatorServer, FaultPlan, Tenant, build_app
from m365lake.emulator.fault_actions import PADDING_BYTES
from m365lake.emulator.faults import plan_from_settings
from tests.emulator.conftest import ALICE, fetch_token, follow_delta, graph, run


@pytest.fixture
def served(tenant: Tenant, tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, tmp_path / "state") as server:
        yield server


def _https_client(server: EmulatorServer, timeout: float = 10.0) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=str(server.ca_bundle))
    return httpx.AsyncClient(base_url=server.authority_host, verify=context, timeout=timeout)


async def _authorized(server: EmulatorServer, client: httpx.AsyncClient) -> None:
    response = await fetch_token(client, server.tenant)
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"


def test_reset_cuts_body_then_next_request_passes(served: EmulatorServer) -> None:
    served.app.state.faults = FaultPlan(seed=1, reset_rate=1.0, max_consecutive=1)

    async def scenario() -> None:
        async with _https_client(served) as client:
            await _authorized(served, client)
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/v1.0/users")
            assert (await client.get("/v1.0/users")).status_code == 200

    run(scenario())
    assert served.app.state.faults.counts["reset"] == 1


def test_truncate_announces_more_than_it_sends(served: EmulatorServer) -> None:
    served.app.state.faults = FaultPlan(seed=1, truncate_rate=1.0, max_consecutive=1)

    async def scenario() -> None:
        async with _https_client(served) as client:
            await _authorized(served, client)
            async with client.stream("GET", "/v1.0/users") as response:
                announced = int(response.headers["Content-Length"])
                received = bytearray()
                with pytest.raises(httpx.RemoteProtocolError):
                    async for chunk in response.aiter_raw():
                        received += chunk
            whole = await client.get("/v1.0/users")
            assert announced == len(whole.content) + PADDING_BYTES
            assert bytes(received) == whole.content

    run(scenario())


def test_slow_response_outlasts_client_timeout(served: EmulatorServer) -> None:
    served.app.state.faults = FaultPlan(seed=1, slow_rate=1.0, slow_seconds=1.0, max_consecutive=1)

    async def scenario() -> None:
        async with _https_client(served, timeout=0.3) as client:
            await _authorized(served, client)
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/v1.0/users")
            assert (await client.get("/v1.0/users")).status_code == 200

    run(scenario())
    assert served.app.state.faults.counts["slow"] == 1


def test_expired_token_stays_rejected(tenant: Tenant) -> None:
    app = build_app(
        tenant, EmulatorOptions(faults=FaultPlan(token_expiry_rate=1.0, max_consecutive=1))
    )

    async def scenario() -> None:
        async with graph(tenant, app=app) as client:
            first = await client.get("/v1.0/users")
            assert first.status_code == 401
            assert first.json()["error"]["code"] == "InvalidAuthenticationToken"
            assert first.headers["WWW-Authenticate"].startswith("Bearer")
            again = await client.get("/v1.0/users")
            assert again.status_code == 401
            fresh = (await fetch_token(client, tenant)).json()["access_token"]
            assert fresh != client.headers["Authorization"].split()[1]
            renewed = await client.get("/v1.0/users", headers={"Authorization": f"Bearer {fresh}"})
            assert renewed.status_code == 200

    run(scenario())


def test_sync_state_lost_mid_round(tenant: Tenant) -> None:
    app = build_app(tenant)
    headers = {"Prefer": "odata.maxpagesize=3"}

    async def scenario() -> None:
        async with graph(tenant, app=app) as client:
            first = await client.get(
                f"/v1.0/users/{ALICE}/mailFolders/inbox/messages/delta", headers=headers
            )
            next_link = first.json()["@odata.nextLink"]
            app.state.faults = FaultPlan(sync_state_rate=1.0)
            lost = await client.get(next_link, headers=headers)
            assert lost.status_code == 410
            assert lost.json()["error"]["code"] == "SyncStateNotFound"
            app.state.faults = FaultPlan()
            pages, _ = await follow_delta(
                client, f"/v1.0/users/{ALICE}/mailFolders/inbox/messages/delta", headers
            )
            assert sum(len(page) for page in pages) == 12

    run(scenario())


def test_drive_resync_mid_round(drive_tenant: Tenant) -> None:
    app = build_app(drive_tenant)
    drive = drive_tenant.drive_id_for("onedrive", ALICE)

    async def scenario() -> None:
        async with graph(drive_tenant, app=app) as client:
            _, delta_link = await follow_delta(client, f"/v1.0/drives/{drive}/root/delta")
            app.state.faults = FaultPlan(seed=3, drive_resync_rate=1.0)
            gone = await client.get(delta_link)
            assert gone.status_code == 410
            assert gone.json()["error"]["code"] in (
                "resyncChangesApplyDifferences",
                "resyncChangesUploadDifferences",
            )
            app.state.faults = FaultPlan()
            pages, _ = await follow_delta(client, gone.headers["Location"])
            names = {item["name"] for page in pages for item in page}
            assert {"notes.txt", "plan.csv", "x.bin"} <= names

    run(scenario())


def test_expired_download_url_stays_expired(drive_tenant: Tenant) -> None:
    drive = drive_tenant.drive_id_for("onedrive", ALICE)
    item = next(i for i, (p, _, _) in drive_tenant.live_files(drive).items() if p == ("notes.txt",))
    plan = FaultPlan(download_expiry_rate=1.0, path_pattern=r"^/_download/", max_consecutive=1)
    app = build_app(drive_tenant, EmulatorOptions(faults=plan))

    async def scenario() -> None:
        async with graph(drive_tenant, app=app) as client:
            location = (await client.get(f"/v1.0/drives/{drive}/items/{item}/content")).headers[
                "Location"
            ]
            for _ in range(2):
                expired = await client.get(location)
                assert expired.status_code == 401
                assert expired.json()["error"]["code"] == "unauthenticated"

    run(scenario())


def test_storm_throttles_a_run_of_requests(tenant: Tenant) -> None:
    plan = FaultPlan(
        seed=5, storm_rate=1.0, storm_requests=6, storm_intensity=1.0, max_consecutive=10
    )
    app = build_app(tenant, EmulatorOptions(faults=plan))

    async def scenario() -> list[httpx.Response]:
        async with graph(tenant, app=app) as client:
            return [await client.get("/v1.0/users") for _ in range(6)]

    responses = run(scenario())
    statuses = {response.status_code for response in responses}
    assert len(statuses) == 1
    assert statuses <= {429, 503}
    assert len({response.headers.get("Retry-After") for response in responses}) == 1


def _actions(plan: FaultPlan) -> list[Any]:
    paths = ["/v1.0/users", "/v1.0/users/a/mailFolders/b/messages/delta", "/_download/x"]
    return [
        plan.random_action("GET", paths[index % 3], "$skiptoken=1", token="t")
        for index in range(60)
    ]


def test_actions_are_seeded() -> None:
    rates: dict[str, Any] = {
        "rate": 0.2,
        "storm_rate": 0.05,
        "reset_rate": 0.1,
        "truncate_rate": 0.1,
        "slow_rate": 0.1,
        "sync_state_rate": 0.1,
        "path_pattern": r"^/v1\.0/|^/_download/",
    }
    first = _actions(FaultPlan(seed=9, **rates))
    assert first == _actions(FaultPlan(seed=9, **rates))
    assert first != _actions(FaultPlan(seed=10, **rates))
    kinds = {action.kind for action in first if action is not None}
    assert {"error", "reset", "truncate", "slow", "sync_state"} <= kinds


def test_plan_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="reset_rate must be between 0 and 1"):
        FaultPlan(reset_rate=2.0)
    with pytest.raises(ValueError, match="storm_requests"):
        FaultPlan(storm_requests=0)


def test_plan_from_settings_parses_values() -> None:
    plan = plan_from_settings(
        4,
        {
            "rate": "0.1",
            "storm_requests": "7",
            "statuses": "429,503",
            "retry_after_values": "0.5, none",
            "path_pattern": "^/_download/",
        },
    )

    assert plan.seed == 4
    assert plan.rate == 0.1
    assert plan.storm_requests == 7
    assert plan.statuses == (429, 503)
    assert plan.retry_after_values == ("0.5", None)
    assert plan.path_pattern == "^/_download/"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bogus": "1"}, "unknown fault setting 'bogus'; the settings are: "),
        ({"rate": "often"}, "fault setting rate='often' is invalid"),
        ({"rate": "2"}, "rate must be between 0 and 1"),
        ({"path_pattern": "("}, "fault setting path_pattern='(' is invalid"),
        ({"statuses": "418"}, "unsupported fault statuses"),
    ],
)
def test_plan_from_settings_rejects_invalid(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_from_settings(0, settings)


def test_emulator_serve_rejects_unknown_fault() -> None:
    result = CliRunner().invoke(main, ["emulator", "serve", "--fault", "sometimes=1"])

    assert result.exit_code == 2
    assert "unknown fault setting 'sometimes'" in result.output
    assert "reset_rate" in result.output
