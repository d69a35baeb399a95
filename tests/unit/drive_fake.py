"""A fake OneDrive served through httpx.MockTransport, with download faults.

It serves ``root/delta`` (with paging, tokens, deleted facets and 410), item GETs,
``/content`` (302 to a pre-authenticated host) and ranged downloads on that host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx

from m365lake.config import GraphSettings
from m365lake.graph import AccessToken, GraphClient
from m365lake.quickxor import quickxor_b64
from m365lake.sources.drive_list import Drive

GRAPH = "https://graph.test/v1.0"
DOWNLOAD_HOST = "https://download.test"
DRIVE_ID = "b!drive"
PAGE_SIZE = 3


class FakeTokens:
    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        return AccessToken("access-token", time.time() + 3600)

    def close(self) -> None:
        pass


class BrokenStream(httpx.AsyncByteStream):
    """A body that sends ``data`` and then fails as a reset connection does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by peer")


class FakeDrive:
    """One drive's items, change log and content, plus switches for faults."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.content: dict[str, bytes] = {}
        self.deleted: set[str] = set()
        self.log: list[str] = []
        self.version = 0
        self.requests: list[httpx.Request] = []
        self.break_after: dict[str, int] = {}
        """Item id → bytes sent before the next download of it breaks (once)."""
        self.revoke_after_break = False
        """When set, a download URL stops working (401) once its transfer broke."""
        self.revoked: set[str] = set()
        self.reported_hash: dict[str, str] = {}
        """Item id → a QuickXorHash to report instead of the real one."""
        self.expire_delta = False
        self.ignore_range = False
        self.urls_issued = 0
        self._put("root", {"id": "root", "name": "root", "root": {}, "folder": {}}, None)

    # ---- changes --------------------------------------------------------------------

    def _put(self, item_id: str, item: dict[str, Any], parent: str | None) -> None:
        if parent is not None:
            item["parentReference"] = {"driveId": DRIVE_ID, "id": parent}
        else:
            item["parentReference"] = {"driveId": DRIVE_ID}
        self.items[item_id] = item
        self.touch(item_id)

    def touch(self, item_id: str) -> None:
        self.version += 1
        self.items[item_id]["eTag"] = f'"{{{item_id}}},{self.version}"'
        self.log.append(item_id)

    def add_folder(self, item_id: str, name: str, parent: str = "root") -> None:
        self._put(item_id, {"id": item_id, "name": name, "folder": {"childCount": 0}}, parent)

    def add_file(self, item_id: str, name: str, data: bytes, parent: str = "root") -> None:
        self.content[item_id] = data
        self._put(item_id, {"id": item_id, "name": name}, parent)
        self._describe_content(item_id)

    def set_content(self, item_id: str, data: bytes) -> None:
        self.content[item_id] = data
        self._describe_content(item_id)
        self.touch(item_id)

    def _describe_content(self, item_id: str) -> None:
        data = self.content[item_id]
        item = self.items[item_id]
        item["size"] = len(data)
        item["cTag"] = f'"c:{{{item_id}}},{self.version}"'
        item["file"] = {
            "mimeType": "application/octet-stream",
            "hashes": {"quickXorHash": quickxor_b64(data)},
        }

    def rename(self, item_id: str, name: str) -> None:
        self.items[item_id]["name"] = name
        self.touch(item_id)

    def move(self, item_id: str, parent: str) -> None:
        self.items[item_id]["parentReference"]["id"] = parent
        self.touch(item_id)

    def delete(self, item_id: str) -> None:
        for child_id, child in list(self.items.items()):
            if child["parentReference"].get("id") == item_id and child_id not in self.deleted:
                self.delete(child_id)
        self.deleted.add(item_id)
        self.log.append(item_id)

    def live_paths(self) -> dict[str, str]:
        return {
            item_id: self.path(item_id) for item_id in self.items if item_id not in self.deleted
        }

    def path(self, item_id: str) -> str:
        names = []
        current = self.items[item_id]
        while "root" not in current:
            names.append(current["name"])
            current = self.items[current["parentReference"]["id"]]
        return "/".join(reversed(names))

    # ---- HTTP -----------------------------------------------------------------------

    def item_json(self, item_id: str) -> dict[str, Any]:
        if item_id in self.deleted:
            parent = self.items[item_id]["parentReference"]
            return {"id": item_id, "deleted": {"state": "deleted"}, "parentReference": parent}
        item = {**self.items[item_id]}
        if item_id in self.reported_hash:
            item["file"] = {**item["file"], "hashes": {"quickXorHash": self.reported_hash[item_id]}}
        return item

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "download.test":
            return self.download(request)
        path = request.url.path.removeprefix("/v1.0")
        prefix = f"/drives/{DRIVE_ID}"
        if path == f"{prefix}/root/delta":
            return self.delta(request)
        if path.startswith(f"{prefix}/items/") and path.endswith("/content"):
            item_id = path.split("/")[4]
            if item_id in self.deleted or item_id not in self.items:
                return _error(404, "itemNotFound")
            self.urls_issued += 1
            location = f"{DOWNLOAD_HOST}/{item_id}/{self.urls_issued}?tempauth=signed"
            return httpx.Response(302, headers={"Location": location})
        if path.startswith(f"{prefix}/items/"):
            item_id = path.split("/")[4]
            if item_id in self.deleted or item_id not in self.items:
                return _error(404, "itemNotFound")
            return httpx.Response(200, json=self.item_json(item_id))
        return _error(404, "itemNotFound")

    def delta(self, request: httpx.Request) -> httpx.Response:
        query = {key: values[0] for key, values in parse_qs(request.url.query.decode()).items()}
        token = query.get("token")
        skip = int(query.get("skip", "0"))
        snapshot = int(query.get("snapshot", len(self.log)))
        if token is not None and self.expire_delta:
            self.expire_delta = False
            body = {"error": {"code": "resyncRequired", "message": "resync"}}
            headers = {"Location": f"{GRAPH}/drives/{DRIVE_ID}/root/delta?restart=1"}
            return httpx.Response(410, json=body, headers=headers)
        if token is None:
            mode = "full=1"
            ids = [item_id for item_id in self.items if item_id not in self.deleted]
        else:
            mode = f"token={token}"
            changed = self.log[int(token) : snapshot]
            # The latest state of each changed item, in the order of its last change.
            ids = list(dict.fromkeys(reversed(changed)))[::-1]
        base = f"{GRAPH}/drives/{DRIVE_ID}/root/delta"
        body: dict[str, Any] = {
            "value": [self.item_json(item_id) for item_id in ids[skip : skip + PAGE_SIZE]]
        }
        if skip + PAGE_SIZE < len(ids):
            body["@odata.nextLink"] = f"{base}?{mode}&snapshot={snapshot}&skip={skip + PAGE_SIZE}"
        else:
            body["@odata.deltaLink"] = f"{base}?token={snapshot}"
        return httpx.Response(200, json=body)

    def download(self, request: httpx.Request) -> httpx.Response:
        _, item_id, nonce = request.url.path.split("/")
        if "authorization" in request.headers:
            return _error(400, "tokenSentToDownloadHost")
        if nonce in self.revoked:
            return _error(401, "unauthenticated")
        data = self.content[item_id]
        start = 0
        header = request.headers.get("range")
        status = 200
        headers: dict[str, str] = {}
        if header and not self.ignore_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if item_id in self.break_after:
            sent = self.break_after.pop(item_id)
            if self.revoke_after_break:
                self.revoked.add(nonce)
            return httpx.Response(status, headers=headers, stream=BrokenStream(body[:sent]))
        return httpx.Response(status, headers=headers, content=body)


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code}})


def make_graph(fake: FakeDrive) -> GraphClient:
    settings = GraphSettings(
        tenant_id="tenant", client_id="client", client_secret="secret", graph_url=GRAPH
    )

    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    return GraphClient(
        settings,
        transport=httpx.MockTransport(fake.handler),
        token_provider=FakeTokens(),
        sleep=no_sleep,
    )


DRIVE = Drive(
    drive_id=DRIVE_ID,
    drive_type="business",
    name="OneDrive",
    owner_kind="user",
    owner_id="user-1",
    owner_name="adele@contoso.example",
)
