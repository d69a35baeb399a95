"""Sites listing and search, site drives, and SharePoint resource-unit throttling."""

from __future__ import annotations

import re

import pytest

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.protocol import GraphHTTPError
from m365lake.emulator.seed import SeedSite
from m365lake.emulator.sharepoint_throttling import SharePointThrottle, request_cost
from tests.emulator.conftest import graph, run

SITE_ID = re.compile(r"^contoso\.sharepoint\.com,[0-9a-f-]{36},[0-9a-f-]{36}$")


def test_sites_list_and_get(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            sites = (await client.get("/v1.0/sites")).json()["value"]
            assert [s["name"] for s in sites] == ["finance", "legal"]
            for site in sites:
                assert SITE_ID.match(site["id"])
                assert site["webUrl"] == f"https://contoso.sharepoint.com/sites/{site['name']}"
            legal = next(s for s in sites if s["name"] == "legal")
            site_body = (await client.get(f"/v1.0/sites/{legal['id']}")).json()
            assert site_body["displayName"] == "Legal"
            assert site_body["siteCollection"]["hostname"] == "contoso.sharepoint.com"
            drives = (await client.get(f"/v1.0/sites/{legal['id']}/drives")).json()["value"]
            assert sorted(d["name"] for d in drives) == ["Contracts", "Documents"]
            assert {d["driveType"] for d in drives} == {"documentLibrary"}
            contracts = next(d for d in drives if d["name"] == "Contracts")
            children = await client.get(f"/v1.0/drives/{contracts['id']}/root/children")
            assert [c["name"] for c in children.json()["value"]] == ["2024"]
            missing = await client.get("/v1.0/sites/contoso.sharepoint.com,x,y")
            assert missing.status_code == 404

    run(scenario())


def test_sites_search(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            found = (await client.get("/v1.0/sites", params={"search": "finance"})).json()
            assert [s["name"] for s in found["value"]] == ["finance"]
            everything = (await client.get("/v1.0/sites", params={"search": "*"})).json()
            assert len(everything["value"]) == 2
            nothing = (await client.get("/v1.0/sites", params={"search": "zzz"})).json()
            assert nothing["value"] == []

    run(scenario())


def test_get_all_sites_paged(drive_tenant: Tenant) -> None:
    for index in range(5):
        drive_tenant.add_site(SeedSite(f"team{index}", f"Team {index}"))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url: str | None = "/v1.0/sites/getAllSites?$top=3"
            names: list[str] = []
            while url:
                body = (await client.get(url)).json()
                names += [s["name"] for s in body["value"]]
                url = body.get("@odata.nextLink")
                if url:
                    assert "$skiptoken=" in url
            assert len(names) == 7
            assert len(set(names)) == 7

    run(scenario())


def test_sites_need_sites_role(drive_tenant: Tenant) -> None:
    drive_tenant.app.roles = ["Files.Read.All"]

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            response = await client.get("/v1.0/sites")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "accessDenied"

    run(scenario())


def test_request_costs() -> None:
    assert request_cost("GET", "/v1.0/drives/b!x/items/01A", "") == 1
    assert request_cost("GET", "/v1.0/drives/b!x/root/delta", "") == 2
    assert request_cost("GET", "/v1.0/drives/b!x/root/delta", "token=abc") == 1
    assert request_cost("GET", "/v1.0/drives/b!x/items/01A/children", "") == 2
    assert request_cost("GET", "/v1.0/drives/b!x/items/01A", "$expand=permissions") == 5
    assert request_cost("PUT", "/v1.0/drives/b!x/items/01A/content", "") == 2
    assert request_cost("GET", "/_download/abc", "") == 1


def test_throttle_windows_and_headers() -> None:
    now = [1000.0]
    throttle = SharePointThrottle(per_minute=10, per_day=1000, clock=lambda: now[0])
    assert throttle.charge("app", 2) == {}
    assert throttle.charge("app", 5) == {}
    headers = throttle.charge("app", 1)
    assert headers["RateLimit-Limit"] == "10"
    assert headers["RateLimit-Remaining"] == "2"
    assert headers["RateLimit-Reset"] == "60"
    now[0] += 30
    throttle.charge("app", 2)
    with pytest.raises(GraphHTTPError) as throttled:
        throttle.charge("app", 1)
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "30"
    now[0] += 31
    assert throttle.charge("app", 1) == {}


def test_throttling_through_the_app(drive_tenant: Tenant) -> None:
    options = EmulatorOptions(sharepoint_ru_per_minute=5)

    async def scenario() -> None:
        async with graph(drive_tenant, options) as client:
            drive = drive_tenant.drive_id_for("site", "legal", "Documents")
            statuses = []
            for _ in range(4):
                response = await client.get(f"/v1.0/drives/{drive}/root/children")
                statuses.append(response.status_code)
            assert statuses == [200, 200, 429, 429]
            assert response.json()["error"]["code"] == "activityLimitReached"
            assert response.headers["Retry-After"].isdigit()
            mail = await client.get("/v1.0/users")
            assert mail.status_code == 200

    run(scenario())


def test_rate_limit_headers_through_the_app(drive_tenant: Tenant) -> None:
    options = EmulatorOptions(sharepoint_ru_per_minute=10)

    async def scenario() -> None:
        async with graph(drive_tenant, options) as client:
            drive = drive_tenant.drive_id_for("site", "legal", "Documents")
            quiet = await client.get(f"/v1.0/drives/{drive}/root")
            assert "RateLimit-Limit" not in quiet.headers
            for _ in range(7):
                warned = await client.get(f"/v1.0/drives/{drive}/root")
            assert warned.status_code == 200
            assert warned.headers["RateLimit-Limit"] == "10"
            assert warned.headers["RateLimit-Remaining"] == "2"

    run(scenario())


def test_blocked_app_gets_503(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant, EmulatorOptions(sharepoint_blocked=True)) as client:
            response = await client.get("/v1.0/sites")
            assert response.status_code == 503
            assert response.headers["Retry-After"].isdigit()

    run(scenario())


def test_site_name_is_not_an_id(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            by_name = await client.get("/v1.0/sites/legal")
            assert by_name.status_code == 404
            drive = await client.get("/v1.0/sites/legal/drive")
            assert drive.status_code == 404

    run(scenario())
