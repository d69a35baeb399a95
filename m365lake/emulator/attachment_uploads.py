"""Outlook attachment upload sessions: ``createUploadSession`` and its upload URL.

The upload URL imitates Outlook's (``/api/v2.0/Users('u')/Messages('m')/
AttachmentSessions('s')?authtoken=...``): the token in the query is the credential, so
a request that also sends an Authorization header is rejected with 401. Ranges must
arrive in order, each at most 4 MB; ``NextExpectedRanges`` is a single start offset, as
Outlook reports it. The last range attaches the file and returns 201 with a Location.
Each range extends the session's expiry; an expired or cancelled session is a 404.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import mail_compose, mapping, serialize
from m365lake.emulator.incoming_bytes import incoming_bytes_of
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GraphHTTPError, json_response

logger = logging.getLogger(__name__)

MIN_SESSION_BYTES = 3_000_000
"""Outlook rejects sessions for smaller files with
ErrorAttachmentSizeShouldNotBeLessThanMinimumSize.
NOTE: Microsoft does not say whether "3 MB" means 3,000,000 or 3 MiB; the lower value is used."""
MAX_SESSION_BYTES = 150 * 1024 * 1024
MAX_FRAGMENT_BYTES = 4 * 1024 * 1024
DEFAULT_LIFETIME_SECONDS = 900.0

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")
_UPLOAD_PATH = "/api/v2.0/Users/{user}/Messages/{message}/AttachmentSessions/{session}"


@dataclass
class _Session:
    session_id: str
    user_id: str
    message_id: str
    app_id: str
    attachment: mail_compose.NewAttachment
    size: int
    expires_at: float
    data: bytearray = field(default_factory=bytearray)


class AttachmentUploads:
    """Open upload sessions of one emulator app; thread-safe."""

    def __init__(
        self,
        lifetime_seconds: float = DEFAULT_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def create(
        self, request: Request, *, user_id: str, message_id: str, app_id: str, item: Any
    ) -> dict[str, Any]:
        """Open a session for ``item`` (an attachmentItem); return the uploadSession JSON."""
        attachment, size = _attachment_item(item)
        session_id = secrets.token_urlsafe(24)
        session = _Session(
            session_id=session_id,
            user_id=user_id,
            message_id=message_id,
            app_id=app_id,
            attachment=attachment,
            size=size,
            expires_at=self.clock() + self.lifetime_seconds,
        )
        with self._lock:
            self._sessions[session_id] = session
        base = str(request.base_url).rstrip("/")
        url = (
            f"{base}/api/v2.0/Users('{user_id}')/Messages('{message_id}')"
            f"/AttachmentSessions('{session_id}')?authtoken={self._token(session_id)}"
        )
        return {
            "uploadUrl": url,
            "expirationDateTime": _timestamp(session.expires_at),
            "nextExpectedRanges": ["0-"],
        }

    def session(self, request: Request) -> _Session:
        """Return the live session the upload URL names, or raise 401/404."""
        if "authorization" in request.headers:
            raise GraphHTTPError(
                401,
                "InvalidAuthenticationToken",
                "The upload URL is pre-authenticated; send no Authorization header to it.",
            )
        session_id = request.path_params["session"]
        token = request.query_params.get("authtoken", "")
        if not hmac.compare_digest(token, self._token(session_id)):
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "The authtoken is not valid.")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self.clock():
                del self._sessions[session_id]
                session = None
        if session is None:
            raise GraphHTTPError(
                404, "ErrorItemNotFound", "The upload session was not found or has expired."
            )
        return session

    def extend(self, session: _Session) -> None:
        session.expires_at = self.clock() + self.lifetime_seconds

    def close(self, session: _Session) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)

    def _token(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()


_CREATE_LOCK = threading.Lock()


def uploads_of(app: Any) -> AttachmentUploads:
    """Return the app's upload sessions, creating the store on first use."""
    with _CREATE_LOCK:
        uploads = getattr(app.state, "attachment_uploads", None)
        if uploads is None:
            uploads = AttachmentUploads()
            app.state.attachment_uploads = uploads
    assert isinstance(uploads, AttachmentUploads)
    return uploads


def _attachment_item(item: Any) -> tuple[mail_compose.NewAttachment, int]:
    if not isinstance(item, dict):
        raise GraphHTTPError(400, "ErrorInvalidRequest", "The body needs an 'AttachmentItem'.")
    if str(item.get("attachmentType", "file")).lower() != "file":
        raise GraphHTTPError(
            400, "ErrorInvalidRequest", "Upload sessions attach files only (attachmentType file)."
        )
    size = item.get("size")
    if not isinstance(size, int) or size < 0:
        raise GraphHTTPError(400, "ErrorInvalidRequest", "AttachmentItem.size must be an integer.")
    if size < MIN_SESSION_BYTES:
        raise GraphHTTPError(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        )
    if size > MAX_SESSION_BYTES:
        raise GraphHTTPError(
            400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
        )
    attachment = mail_compose.NewAttachment(
        kind="file",
        name=str(item.get("name") or "Untitled attachment"),
        content_type=item.get("contentType") or None,
        content=b"",
        is_inline=bool(item.get("isInline")),
        content_id=item.get("contentId") or None,
    )
    return attachment, size


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(session: _Session) -> dict[str, Any]:
    return {
        "ExpirationDateTime": _timestamp(session.expires_at),
        "NextExpectedRanges": [str(len(session.data))],
    }


async def put_range(request: Request) -> Response:
    uploads = uploads_of(request.app)
    session = uploads.session(request)
    first, last, total = _content_range(request.headers.get("content-range", ""), session)
    if last - first + 1 > MAX_FRAGMENT_BYTES:
        raise GraphHTTPError(
            413, "RequestEntityTooLarge", "Each range of an upload session must be at most 4MB."
        )

    throttle = request.app.state.throttle
    slot = throttle.acquire(session.app_id, session.user_id)
    try:
        data = await request.body()
    finally:
        throttle.release(slot)
    if len(data) != last - first + 1:
        raise GraphHTTPError(
            400,
            "ErrorInvalidRequest",
            f"The body has {len(data)} bytes but Content-Range names {last - first + 1}.",
        )
    incoming_bytes_of(request.app).charge(session.app_id, session.user_id, len(data))
    if first != len(session.data):
        reason = (
            "overlaps with data already uploaded"
            if first < len(session.data)
            else ("leaves a gap after the data already uploaded")
        )
        raise GraphHTTPError(
            416,
            "invalidRange",
            f"The range starting at {first} {reason}; the next expected range starts at "
            f"{len(session.data)}.",
        )

    session.data.extend(data)
    uploads.extend(session)
    if len(session.data) < total:
        return json_response(_status(session))
    uploads.close(session)
    return _attach(request, session)


def _attach(request: Request, session: _Session) -> Response:
    tenant: Tenant = request.app.state.tenant
    info = tenant.find_message(session.user_id, session.message_id)
    if info is None:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The message of this upload session no longer exists."
        )
    attachment = mail_compose.NewAttachment(
        kind="file",
        name=session.attachment.name,
        content_type=session.attachment.content_type,
        content=bytes(session.data),
        is_inline=session.attachment.is_inline,
        content_id=session.attachment.content_id,
    )
    updated = tenant.replace_message_mime(
        session.user_id, info.immutable_id, mail_compose.add_attachment(info.mime, attachment)
    )
    index = len(mapping.mime_attachments(updated.mime)) - 1
    attachment_id = serialize.attachment_id(updated, index)
    base = str(request.base_url).rstrip("/")
    location = (
        f"{base}/v1.0/users('{session.user_id}')/messages('{updated.rest_id}')"
        f"/attachments('{attachment_id}')"
    )
    logger.debug("upload session %s attached %d bytes", session.session_id, len(session.data))
    return Response(status_code=201, headers={"Location": location})


def _content_range(raw: str, session: _Session) -> tuple[int, int, int]:
    match = _CONTENT_RANGE.match(raw)
    if match is None:
        raise GraphHTTPError(
            400, "ErrorInvalidRequest", f"Content-Range '{raw}' is not 'bytes first-last/total'."
        )
    first, last, total = (int(value) for value in match.groups())
    if last < first or total != session.size or last >= total:
        raise GraphHTTPError(
            400,
            "ErrorInvalidRequest",
            f"Content-Range '{raw}' does not fit the session's size of {session.size} bytes.",
        )
    return first, last, total


async def get_status(request: Request) -> Response:
    return json_response(_status(uploads_of(request.app).session(request)))


async def cancel(request: Request) -> Response:
    uploads = uploads_of(request.app)
    uploads.close(uploads.session(request))
    return Response(status_code=204)


routes = [
    Route(_UPLOAD_PATH, put_range, methods=["PUT"]),
    Route(_UPLOAD_PATH, get_status, methods=["GET"]),
    Route(_UPLOAD_PATH, cancel, methods=["DELETE"]),
]
