"""Drive upload sessions from the restore side when a fragment's response is lost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from m365lake.config import GraphSettings
from m365lake.emulator import Tenant, build_app
from m365lake.emulator.seed import SeedTenant, SeedUser
from m365lake.graph import GraphClient
from m365lake.graph.auth import AccessToken
from m365lake.restore.files_upload import FRAGMENT_UNIT, FileTimes, upload_in_session

BASE = "https://graph.test"
UPN = "alice@contoso.example"
CONTENT = bytes(range(256)) * (3 * FRAGMENT_UNIT // 256) + b"last bytes"


class AppTokens:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        return AccessToken(self.token, time.time() + 3600)

    def close(self) -> None:
        pass


class LosesSecondFragmentResponse(httpx.AsyncBaseTransport):
    """Serves every request, but drops the response to the second fragment it sends."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.fragments = 0
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT" and "/_upload/" in str(request.url):
            self.fragments += 1
            if self.fragments == 2:
                await response.aread()
                self.lost += 1
                raise httpx.ReadError("connection reset after the fragment was stored")
        return response


async def _no_sleep(_: float) -> None:
    return None


def test_upload_resumes_after_lost_fragment_response() -> None:
    tenant = Tenant.from_seed(SeedTenant(users=[SeedUser(UPN, "Alice", mail=UPN)]))
    tenant.app.roles.append("Files.ReadWrite.All")
    app = build_app(tenant)
    drive_id = tenant.drive_id_for("onedrive", UPN)
    info = tenant.drive_info(drive_id)
    assert info is not None

    async def scenario() -> tuple[dict[str, Any], int]:
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url=BASE) as client:
            response = await client.post(
                f"/{tenant.tenant_id}/oauth2/v2.0/token",
                data={
                    "client_id": tenant.app.client_id,
                    "client_secret": tenant.app.client_secret,
                    "grant_type": "client_credentials",
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
            token = response.json()["access_token"]
        settings = GraphSettings(
            tenant_id=tenant.tenant_id, client_id="c", client_secret="s", graph_url=BASE + "/v1.0"
        )
        transport = LosesSecondFragmentResponse(asgi)
        async with GraphClient(
            settings, transport=transport, token_provider=AppTokens(token), sleep=_no_sleep
        ) as graph:
            item = await upload_in_session(
                graph,
                f"/drives/{drive_id}/items/{info.root_id}:/resumed.bin:/createUploadSession",
                name="resumed.bin",
                size=len(CONTENT),
                source=lambda: iter([CONTENT]),
                conflict="fail",
                times=FileTimes(None, datetime(2004, 4, 4, tzinfo=UTC)),
                fragment_bytes=FRAGMENT_UNIT,
            )
        return item, transport.lost

    item, lost = asyncio.run(scenario())

    assert lost == 1
    assert tenant.file_content(drive_id, item["id"]) == CONTENT
    assert item["fileSystemInfo"]["lastModifiedDateTime"] == "2004-04-04T00:00:00Z"
    uploads = [
        (r.method, r.status)
        for r in app.state.requests.snapshot()
        if r.path.startswith("/_upload/")
    ]
    # The second fragment was stored but its answer lost: sending it again overlaps (416),
    # the status read says where to go on, and the upload finishes from there.
    assert uploads == [
        ("PUT", 202),
        ("PUT", 202),
        ("PUT", 416),
        ("GET", 200),
        ("PUT", 202),
        ("PUT", 201),
    ]
