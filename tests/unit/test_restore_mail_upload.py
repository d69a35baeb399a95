"""Attachment upload sessions from the restore side, against the in-process emulator."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx

from m365lake.config import GraphSettings
from m365lake.emulator import Tenant, build_app
from m365lake.emulator.seed import SeedTenant, SeedUser
from m365lake.graph import GraphClient
from m365lake.graph.auth import AccessToken
from m365lake.restore.mail_execute import upload_attachment

BASE = "https://graph.test"
UPN = "alice@contoso.example"
CONTENT = bytes(range(256)) * (14 * 1024)  # 3.5 MiB: two ranges of at most 3 MiB


class AppTokens:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        return AccessToken(self.token, time.time() + 3600)

    def close(self) -> None:
        pass


class LosesFirstUploadResponse(httpx.AsyncBaseTransport):
    """Serves every request, but drops the response of the first upload range."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "PUT" and "AttachmentSessions" in str(request.url) and not self.lost:
            await response.aread()
            self.lost += 1
            raise httpx.ReadError("connection reset after the range was stored", request=request)
        return response


async def _no_sleep(_: float) -> None:
    return None


def test_upload_resumes_after_lost_range_response() -> None:
    seed = SeedTenant(domain="contoso.example")
    seed.users = [SeedUser(UPN, "Alice Adams", mail=UPN)]
    tenant = Tenant.from_seed(seed)
    tenant.app.roles.append("Mail.ReadWrite")
    app = build_app(tenant)
    user = tenant.user_id(UPN)

    async def scenario() -> tuple[str | None, bytes, int]:
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
        transport = LosesFirstUploadResponse(asgi)
        async with GraphClient(
            settings, transport=transport, token_provider=AppTokens(token), sleep=_no_sleep
        ) as graph:
            created = await graph.send_json(
                "POST",
                f"/users/{user}/mailFolders/inbox/messages",
                json={
                    "subject": "big",
                    "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
                },
            )
            assert created is not None
            message_url = f"/users/{user}/messages/{created['id']}"
            session = await graph.send_json(
                "POST",
                message_url + "/attachments/createUploadSession",
                json={
                    "AttachmentItem": {
                        "attachmentType": "file",
                        "name": "big.bin",
                        "size": len(CONTENT),
                    }
                },
            )
            assert session is not None
            attachment_id = await upload_attachment(graph, session["uploadUrl"], CONTENT)
            value = await graph.get_bytes(f"{message_url}/attachments/{attachment_id}/$value")
        return attachment_id, value, transport.lost

    attachment_id, value, lost = asyncio.run(scenario())
    assert lost == 1
    statuses = [r.status for r in app.state.requests.snapshot() if r.method == "PUT"]
    assert statuses == [200, 416, 201]
    assert attachment_id is not None
    assert hashlib.sha256(value).hexdigest() == hashlib.sha256(CONTENT).hexdigest()
