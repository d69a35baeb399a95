"""Mail writes for restore: create folders and messages, add attachments, patch, delete.

Exchange caps every request body at 4 MB (413 here) and throttles writes like reads: the
front door counts these paths against the mailbox. Writes need the Mail.ReadWrite role.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import attachment_uploads, context, mail_compose, mapping, serialize
from m365lake.emulator.auth import require_role
from m365lake.emulator.incoming_bytes import incoming_bytes_of
from m365lake.emulator.mail_writes import FolderExistsError
from m365lake.emulator.protocol import GraphHTTPError, json_response, wants_immutable_ids
from m365lake.emulator.records import MessageInfo, UserInfo
from m365lake.emulator.routes_folders import root_parent_id

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Exchange rejects request bodies above 4 MB; upload sessions exist for larger content."""

WRITE_ROLES = ("Mail.ReadWrite",)
# Message properties a PATCH may change in the emulator. Graph accepts more (subject and
# body of drafts, flag, importance); they are rejected loudly instead of being dropped.
_PATCHABLE = frozenset(("isRead", "categories", "singleValueExtendedProperties"))


def writer(request: Request) -> UserInfo:
    """Resolve the mailbox of a write request and check the Mail.ReadWrite role."""
    user = context.mailbox_user(request)
    require_role(
        context.claims_of(request),
        WRITE_ROLES,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
    return user


def too_large() -> GraphHTTPError:
    return GraphHTTPError(
        413, "RequestEntityTooLarge", "The maximum request length supported is 4MB."
    )


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """Read the request body, rejecting it with 413 once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    user = context.tenant_of(request).resolve_user(request.path_params["user"])
    if user is not None:
        app_id = str(context.claims_of(request).get("appid"))
        incoming_bytes_of(request.app).charge(app_id, user.id, size)
    return b"".join(chunks)


async def read_json(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    try:
        document = json.loads(raw or b"{}")
    except ValueError:
        raise GraphHTTPError(400, "BadRequest", "Unable to read JSON request payload.") from None
    if not isinstance(document, dict):
        raise GraphHTTPError(400, "BadRequest", "The request body must be a JSON object.")
    return document


def _entity(request: Request, user: UserInfo, fragment: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/v1.0/$metadata#users('{user.id}')/{fragment}/$entity"


# ---- folders ----------------------------------------------------------------------------


async def _create_folder(request: Request, parent_id: str | None) -> Response:
    user = writer(request)
    body = await read_json(request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphHTTPError(
            400, "ErrorInvalidParameter", "The displayName of a new folder must not be empty."
        )
    hidden = bool(body.get("isHidden", False))
    try:
        folder = context.tenant_of(request).create_folder(user.id, parent_id, name, hidden=hidden)
    except FolderExistsError:
        raise GraphHTTPError(
            409, "ErrorFolderExists", "A folder with the specified name already exists."
        ) from None
    shaped = serialize.folder_json(folder, root_parent=root_parent_id(user))
    return json_response({"@odata.context": _entity(request, user, "mailFolders"), **shaped}, 201)


async def create_top_folder(request: Request) -> Response:
    return await _create_folder(request, None)


async def create_child_folder(request: Request) -> Response:
    user = context.mailbox_user(request)
    parent = context.folder_or_404(request, user, request.path_params["folder"])
    return await _create_folder(request, parent.id)


# ---- messages ---------------------------------------------------------------------------


def _message_response(request: Request, user: UserInfo, info: MessageInfo) -> Response:
    full = serialize.message_json(
        context.tenant_of(request), info, immutable=wants_immutable_ids(request)
    )
    shaped = serialize.selected_message(full, None, info)
    return json_response({"@odata.context": _entity(request, user, "messages"), **shaped}, 201)


async def _create_message(request: Request, folder_id: str) -> Response:
    user = writer(request)
    tenant = context.tenant_of(request)
    now = datetime.now(UTC)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "text/plain":
        mime = _decode_mime(await read_body(request))
        # A MIME create is always saved as a draft; only JSON can set the flags.
        info = tenant.create_message(
            user.id, folder_id, mime, is_read=True, is_draft=True, received_at=now
        )
    elif content_type in ("application/json", ""):
        composed = mail_compose.compose_message(await read_json(request), now=now)
        info = tenant.create_message(
            user.id,
            folder_id,
            composed.mime,
            is_read=composed.is_read,
            is_draft=composed.is_draft,
            received_at=composed.received_at or now,
            categories=composed.categories,
        )
    else:
        raise GraphHTTPError(
            415,
            "UnsupportedMediaType",
            f"Content-Type '{content_type}' is not supported; send application/json, or "
            "text/plain with base64 MIME.",
        )
    logger.debug(
        "created message %s in folder %s (draft=%s)", info.rest_id, folder_id, info.is_draft
    )
    return _message_response(request, user, info)


def _decode_mime(raw: bytes) -> bytes:
    try:
        mime = base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        mime = b""
    if not mime:
        raise GraphHTTPError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        )
    return mime


async def create_folder_message(request: Request) -> Response:
    user = context.mailbox_user(request)
    folder = context.folder_or_404(request, user, request.path_params["folder"])
    return await _create_message(request, folder.id)


async def create_draft(request: Request) -> Response:
    user = context.mailbox_user(request)
    drafts = context.folder_or_404(request, user, "drafts")
    return await _create_message(request, drafts.id)


async def patch_message(request: Request) -> Response:
    user = writer(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    body = await read_json(request)
    unsupported = sorted(set(body) - _PATCHABLE)
    if unsupported:
        raise GraphHTTPError(
            400,
            "ErrorInvalidPropertyRequest",
            f"The emulator cannot update {', '.join(unsupported)}; it updates "
            "isRead and categories.",
        )
    ignored = mail_compose.CREATION_ONLY_PROPERTIES & set(mail_compose.extended_properties(body))
    if ignored:
        # Exchange fixes message flags and the delivery and submit times at the first
        # save; a later PATCH leaves them unchanged.
        logger.debug("PATCH of creation-only properties %s ignored", sorted(ignored))
    categories = body.get("categories")
    updated = context.tenant_of(request).patch_message(
        user.id,
        info.immutable_id,
        is_read=bool(body["isRead"]) if "isRead" in body else None,
        categories=[str(c) for c in categories] if isinstance(categories, list) else None,
    )
    full = serialize.message_json(
        context.tenant_of(request), updated, immutable=wants_immutable_ids(request)
    )
    shaped = serialize.selected_message(full, None, updated)
    return json_response({"@odata.context": _entity(request, user, "messages"), **shaped})


async def delete_message(request: Request) -> Response:
    user = writer(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    context.tenant_of(request).remove_message(user.id, info.immutable_id)
    return Response(status_code=204)


# ---- attachments ------------------------------------------------------------------------


async def add_attachment(request: Request) -> Response:
    user = writer(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    attachment = mail_compose.parse_attachment(await read_json(request))
    tenant = context.tenant_of(request)
    updated = tenant.replace_message_mime(
        user.id, info.immutable_id, mail_compose.add_attachment(info.mime, attachment)
    )
    listed = mapping.mime_attachments(updated.mime)
    index = len(listed) - 1  # attachment ids count from 0, in listing order
    body = serialize.attachment_json(updated, index, listed[-1], with_content=True)
    base = str(request.base_url).rstrip("/")
    context_url = f"{base}/v1.0/$metadata#users('{user.id}')/messages('{info.rest_id}')/attachments"
    return json_response({"@odata.context": f"{context_url}/$entity", **body}, 201)


async def create_upload_session(request: Request) -> Response:
    user = writer(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    body = await read_json(request)
    session = attachment_uploads.uploads_of(request.app).create(
        request,
        user_id=user.id,
        message_id=info.immutable_id,
        app_id=str(context.claims_of(request).get("appid")),
        item=body.get("AttachmentItem") or body.get("attachmentItem"),
    )
    base = str(request.base_url).rstrip("/")
    return json_response(
        {"@odata.context": f"{base}/v1.0/$metadata#microsoft.graph.uploadSession", **session},
        201,
    )


_USER = "/v1.0/users/{user}"
_MESSAGE = _USER + "/messages/{message}"
_FOLDER_MESSAGE = _USER + "/mailFolders/{folder}/messages/{message}"

routes = [
    *[
        Route(p, create_top_folder, methods=["POST"])
        for p in context.path_variants(_USER + "/mailFolders")
    ],
    *[
        Route(p, create_child_folder, methods=["POST"])
        for p in context.path_variants(_USER + "/mailFolders/{folder}/childFolders")
    ],
    *[
        Route(p, create_folder_message, methods=["POST"])
        for p in context.path_variants(_USER + "/mailFolders/{folder}/messages")
    ],
    Route(_USER + "/messages", create_draft, methods=["POST"]),
    *[
        Route(p, patch_message, methods=["PATCH"])
        for p in (_MESSAGE, *context.path_variants(_FOLDER_MESSAGE))
    ],
    *[
        Route(p, delete_message, methods=["DELETE"])
        for p in (_MESSAGE, *context.path_variants(_FOLDER_MESSAGE))
    ],
    Route(_MESSAGE + "/attachments", add_attachment, methods=["POST"]),
    Route(_MESSAGE + "/attachments/createUploadSession", create_upload_session, methods=["POST"]),
    *attachment_uploads.routes,
]
