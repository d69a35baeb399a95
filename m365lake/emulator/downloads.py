"""Pre-authenticated download URLs (``/_download/{state}?tempauth={signature}``) and cut-off
download faults.

A download token is base64url JSON (drive, item, content version, expiry) plus an
HMAC-SHA256 signature with a key made per app, so it needs no Authorization header and
cannot be forged or reused on another emulator instance. An expired or forged token gets
401 ``unauthenticated`` because the credential inside the URL no longer authenticates, and
the client must request the item again for a fresh URL.
NOTE: Graph documents only that these URLs are short-lived, not the status an expired one
returns, so 401 is the emulator's choice.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from m365lake.emulator.protocol import GraphHTTPError, decode_token, encode_token

logger = logging.getLogger(__name__)

DOWNLOAD_PATH = "/_download/"
CHUNK_BYTES = 64 * 1024


class BrokenDownload(ConnectionError):
    """Raised inside the app to drop the connection midway through a download body."""


@dataclass
class _Break:
    item_id: str
    after_bytes: int
    remaining: int


class DownloadService:
    """Signs and checks download tokens; keeps the pending broken-download faults."""

    def __init__(self, lifetime_seconds: float) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._breaks: list[_Break] = []

    def url(self, request: Request, drive_id: str, item_id: str, content_version: int) -> str:
        state = {
            "d": drive_id,
            "i": item_id,
            "v": content_version,
            "e": round(time.time() + self.lifetime_seconds, 3),
        }
        payload = encode_token(state)
        signature = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        base = str(request.base_url).rstrip("/")
        # SharePoint puts the credential of its download URLs in the tempauth parameter;
        # keeping it in the query lets the client's log redaction treat both alike.
        return f"{base}{DOWNLOAD_PATH}{payload}?tempauth={signature}"

    def check(self, payload: str, signature: str) -> dict[str, Any]:
        """Return the state of a valid download URL; raise 401 when forged or expired."""
        expected = hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not payload or not hmac.compare_digest(signature, expected):
            raise GraphHTTPError(401, "unauthenticated", "The download URL is not valid.")
        state = decode_token(payload, name="download")
        if float(state.get("e", 0)) < time.time():
            raise GraphHTTPError(
                401,
                "unauthenticated",
                "The download URL has expired. Request the item again for a fresh URL.",
            )
        return state

    def inject_broken_download(self, item_id: str, after_bytes: int, times: int = 1) -> None:
        """Make the next ``times`` downloads of ``item_id`` drop the connection after N bytes.

        The response still announces the full ``Content-Length`` (or range), so the client
        sees a body shorter than promised and can resume with a ``Range`` request.
        """
        if after_bytes < 0 or times < 1:
            raise ValueError("after_bytes must be >= 0 and times >= 1")
        with self._lock:
            self._breaks.append(_Break(item_id, after_bytes, times))

    def take_break(self, item_id: str) -> int | None:
        with self._lock:
            for pending in self._breaks:
                if pending.item_id == item_id:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._breaks.remove(pending)
                    return pending.after_bytes
        return None


class BodyResponse(Response):
    """A response that sends its body in chunks and can drop the connection midway."""

    def __init__(
        self,
        body: bytes,
        *,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
        break_after: int | None,
    ) -> None:
        super().__init__(b"", status_code=status_code, headers=headers, media_type=media_type)
        self.payload = body
        self.break_after = break_after
        self.headers["content-length"] = str(len(body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        limit = len(self.payload) if self.break_after is None else self.break_after
        sent = 0
        while sent < limit:
            chunk = self.payload[sent : min(sent + CHUNK_BYTES, limit)]
            sent += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.break_after is not None:
            logger.info("download cut off after %d of %d bytes", sent, len(self.payload))
            raise BrokenDownload(f"download cut off after {sent} bytes (injected fault)")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
