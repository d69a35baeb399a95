"""Drive upload sessions: fragments, status, cancel, expiry, conflicts and deferred commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.upload_sessions import FRAGMENT_UNIT
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import ALICE, BASE, graph, run

DATA = bytes(range(256)) * (3 * FRAGMENT_UNIT // 256) + b"tail bytes"
"""Three full 320 KiB units and a short last fragment."""


@pytest.fixture
def writable(drive_tenant: Tenant) -> Tenant:
    drive_tenant.app.roles.append("Files.ReadWrite.All")
    return drive_tenant


def drive_url(tenant: Tenant) -> str:
    return f"/v1.0/drives/{tenant.drive_id_for('onedrive', ALICE)}"


def root_id(tenant: Tenant) -> str:
    info = tenant.drive_info(tenant.drive_id_for("onedrive", ALICE))
    assert info is not None
    return info.root_id


@asynccontextmanager
async def session_client(
    tenant: Tenant, options: EmulatorOptions | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Yield a Graph client and an anonymous client for upload URLs on the same app."""
    async with graph(tenant, options) as client:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as anonymous:
            yield client, anonymous


async def open_session(
    client: httpx.AsyncClient,
    tenant: Tenant,
    name: str,
    item: dict[str, Any] | None = None,
    **body: Any,
) -> str:
    response = await client.post(
        f"{drive_url(tenant)}/items/{root_id(tenant)}:/{name}:/createUploadSession",
        json={"item": item or {}, **body},
    )
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["nextExpectedRanges"] == ["0-"]
    assert session["expirationDateTime"].endswith("Z")
    url: str = session["uploadUrl"]
    return url


async def put_range(
    anonymous: httpx.AsyncClient, url: str, start: int, end: int, data: bytes = DATA
) -> httpx.Response:
    return await anonymous.put(
        url,
        content=data[start:end],
        headers={"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"},
    )


def inner_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["innerError"]["code"]
    return code


def test_session_upload_in_fragments(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(
                client,
                writable,
                "big.bin",
                {
                    "@microsoft.graph.conflictBehavior": "fail",
                    "fileSystemInfo": {
                        "createdDateTime": "2001-10-01T08:00:00Z",
                        "lastModifiedDateTime": "2001-10-26T17:30:00Z",
                    },
                },
            )
            first = await put_range(anonymous, url, 0, 2 * FRAGMENT_UNIT)
            assert first.status_code == 202
            assert first.json()["nextExpectedRanges"] == [f"{2 * FRAGMENT_UNIT}-"]
            status = await anonymous.get(url)
            assert status.json()["nextExpectedRanges"] == [f"{2 * FRAGMENT_UNIT}-"]
            final = await put_range(anonymous, url, 2 * FRAGMENT_UNIT, len(DATA))
            assert final.status_code == 201, final.text
            body = final.json()
            assert body["size"] == len(DATA)
            assert body["file"]["hashes"]["quickXorHash"] == quickxor_b64(DATA)
            assert body["fileSystemInfo"] == {
                "createdDateTime": "2001-10-01T08:00:00Z",
                "lastModifiedDateTime": "2001-10-26T17:30:00Z",
            }
            drive = writable.drive_id_for("onedrive", ALICE)
            assert writable.file_content(drive, body["id"]) == DATA
            finished = await anonymous.get(url)
            assert finished.status_code == 404

    run(scenario())


def test_fragment_rules(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(client, writable, "rules.bin")
            uneven = await put_range(anonymous, url, 0, FRAGMENT_UNIT + 1)
            assert uneven.status_code == 400
            assert inner_code(uneven) == "fragmentLengthMismatch"
            skipped = await put_range(anonymous, url, FRAGMENT_UNIT, 2 * FRAGMENT_UNIT)
            assert skipped.status_code == 416
            assert inner_code(skipped) == "fragmentOutOfOrder"
            assert (await put_range(anonymous, url, 0, FRAGMENT_UNIT)).status_code == 202
            overlap = await put_range(anonymous, url, 0, FRAGMENT_UNIT)
            assert overlap.status_code == 416
            assert overlap.json()["error"]["code"] == "invalidRange"
            assert inner_code(overlap) == "fragmentOverlap"
            other_total = await anonymous.put(
                url,
                content=b"x" * FRAGMENT_UNIT,
                headers={"Content-Range": f"bytes {FRAGMENT_UNIT}-{2 * FRAGMENT_UNIT - 1}/9999999"},
            )
            assert other_total.status_code == 400
            no_range = await anonymous.put(url, content=b"x")
            assert no_range.status_code == 400
            # The session still expects the second unit after all those rejections.
            status = await anonymous.get(url)
            assert status.json()["nextExpectedRanges"] == [f"{FRAGMENT_UNIT}-"]

    run(scenario())


def test_upload_url_rejects_authorization(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(client, writable, "auth.bin")
            with_token = await put_range(client, url, 0, FRAGMENT_UNIT)
            assert with_token.status_code == 401
            assert with_token.json()["error"]["code"] == "unauthenticated"
            forged = await anonymous.get(url.replace("tempauth=", "tempauth=x"))
            assert forged.status_code == 404

    run(scenario())


def test_cancel_and_expiry(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(client, writable, "cancel.bin")
            assert (await anonymous.delete(url)).status_code == 204
            gone = await put_range(anonymous, url, 0, FRAGMENT_UNIT)
            assert gone.status_code == 404
            assert inner_code(gone) == "uploadSessionNotFound"
            url = await open_session(client, writable, "expire.bin")
            assert (await put_range(anonymous, url, 0, FRAGMENT_UNIT)).status_code == 202
            client.app.state.upload_sessions.expire_all()  # type: ignore[attr-defined]
            expired = await anonymous.get(url)
            assert expired.status_code == 404

    run(scenario())


def test_session_lifetime_option(writable: Tenant) -> None:
    options = EmulatorOptions(upload_session_lifetime_seconds=0)

    async def scenario() -> None:
        async with session_client(writable, options) as (client, anonymous):
            url = await open_session(client, writable, "short.bin")
            assert (await anonymous.get(url)).status_code == 404
            without_source = await client.put(
                f"{drive_url(writable)}/items/{root_id(writable)}:/other.bin:", json={}
            )
            assert without_source.status_code == 400

    run(scenario())


def test_name_clash_at_commit(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(
                client, writable, "race.bin", {"@microsoft.graph.conflictBehavior": "fail"}
            )
            # Another writer takes the name while the session is open.
            taken = await client.put(
                f"{drive_url(writable)}/items/{root_id(writable)}:/race.bin:/content",
                content=b"other",
            )
            assert taken.status_code == 201
            final = await put_range(anonymous, url, 0, len(DATA))
            assert final.status_code == 409
            assert final.json()["error"]["code"] == "nameAlreadyExists"
            # The uploaded bytes can still be committed under a new name, without resending.
            recovered = await client.put(
                f"{drive_url(writable)}/items/{root_id(writable)}:/race.bin:",
                json={
                    "name": "race recovered.bin",
                    "@microsoft.graph.conflictBehavior": "fail",
                    "@microsoft.graph.sourceUrl": url,
                },
            )
            assert recovered.status_code == 201, recovered.text
            assert recovered.json()["name"] == "race recovered.bin"
            assert recovered.json()["size"] == len(DATA)
            assert (await anonymous.get(url)).status_code == 404

            url = await open_session(
                client, writable, "race.bin", {"@microsoft.graph.conflictBehavior": "rename"}
            )
            renamed = await put_range(anonymous, url, 0, len(DATA))
            assert renamed.status_code == 201
            assert renamed.json()["name"] == "race 1.bin"

            url = await open_session(
                client, writable, "race.bin", {"@microsoft.graph.conflictBehavior": "replace"}
            )
            replaced = await put_range(anonymous, url, 0, len(DATA))
            assert replaced.status_code == 200
            assert replaced.json()["id"] == taken.json()["id"]
            assert replaced.json()["size"] == len(DATA)

    run(scenario())


def test_deferred_commit(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            url = await open_session(client, writable, "later.bin", deferCommit=True)
            early = await anonymous.post(url)
            assert early.status_code == 400
            assert inner_code(early) == "uploadSessionIncomplete"
            done = await put_range(anonymous, url, 0, len(DATA))
            assert done.status_code == 202
            assert done.json()["nextExpectedRanges"] == []
            drive = writable.drive_id_for("onedrive", ALICE)
            names = {c.name for c in writable.children_of(drive, root_id(writable))}
            assert "later.bin" not in names
            committed = await anonymous.post(url)
            assert committed.status_code == 201
            assert committed.json()["name"] == "later.bin"

    run(scenario())


def test_session_for_existing_item(writable: Tenant) -> None:
    async def scenario() -> None:
        async with session_client(writable) as (client, anonymous):
            drive = writable.drive_id_for("onedrive", ALICE)
            notes = next(
                c for c in writable.children_of(drive, root_id(writable)) if c.is_folder is False
            )
            stale = await client.post(
                f"{drive_url(writable)}/items/{notes.id}/createUploadSession",
                headers={"If-Match": '"{00000000-0000-0000-0000-000000000000},1"'},
            )
            assert stale.status_code == 412
            response = await client.post(
                f"{drive_url(writable)}/items/{notes.id}/createUploadSession"
            )
            url = response.json()["uploadUrl"]
            final = await put_range(anonymous, url, 0, len(DATA))
            assert final.status_code == 200
            assert final.json()["id"] == notes.id
            assert writable.file_content(drive, notes.id) == DATA

    run(scenario())


def test_quota_check_on_file_size(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            response = await client.post(
                f"{drive_url(writable)}/items/{root_id(writable)}:/huge.bin:/createUploadSession",
                json={"item": {"fileSize": 2 * 1024**4}},
            )
            assert response.status_code == 507
            assert response.json()["error"]["code"] == "quotaLimitReached"

    run(scenario())


def test_fragments_charged_as_sharepoint_units(writable: Tenant) -> None:
    # Creating the session costs 2 RU and each fragment 2 RU: the third request is over 5.
    options = EmulatorOptions(sharepoint_ru_per_minute=5)

    async def scenario() -> None:
        async with session_client(writable, options) as (client, anonymous):
            url = await open_session(client, writable, "metered.bin")
            assert (await put_range(anonymous, url, 0, FRAGMENT_UNIT)).status_code == 202
            throttled = await put_range(anonymous, url, FRAGMENT_UNIT, 2 * FRAGMENT_UNIT)
            assert throttled.status_code == 429
            assert "Retry-After" in throttled.headers

    run(scenario())
