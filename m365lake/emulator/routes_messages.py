"""Messages: listing, one message, its MIME (``$value``), and its attachments."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context, mapping, serialize
from m365lake.emulator.protocol import (
    GraphHTTPError,
    json_response,
    parse_select,
    select_properties,
    wants_immutable_ids,
)
from m365lake.emulator.records import MessageInfo
from m365lake.emulator.routes_folders import page_collection


def _messages_page(request: Request, messages: list[MessageInfo], fragment: str) -> Response:
    tenant = context.tenant_of(request)
    select = parse_select(
        request.query_params.get("$select"), serialize.MESSAGE_PROPERTIES, "message"
    )
    immutable = wants_immutable_ids(request)
    # Page first so only the returned messages get parsed.
    payload = page_collection(request, list(messages), fragment)
    payload["value"] = [
        serialize.selected_message(
            serialize.message_json(tenant, info, immutable=immutable), select, info
        )
        for info in payload["value"]
    ]
    return json_response(payload)


async def list_folder_messages(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    folder = context.folder_or_404(request, user, request.path_params["folder"])
    messages = context.tenant_of(request).messages_in(user.id, folder.id)
    return _messages_page(
        request, messages, f"users('{user.id}')/mailFolders('{folder.id}')/messages"
    )


async def list_mailbox_messages(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    messages = context.tenant_of(request).messages_in(user.id, None)
    return _messages_page(request, messages, f"users('{user.id}')/messages")


async def get_message(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    info = context.message_or_404(request, user, request.path_params["message"])
    select = parse_select(
        request.query_params.get("$select"), serialize.MESSAGE_PROPERTIES, "message"
    )
    full = serialize.message_json(
        context.tenant_of(request), info, immutable=wants_immutable_ids(request)
    )
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#users('{user.id}')/messages/$entity",
            **serialize.selected_message(full, select, info),
        }
    )


async def get_message_mime(request: Request) -> Response:
    user = context.mailbox_user(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    # Graph documents `Content-Type: text/plain` for MIME; the bytes are sent as stored.
    return Response(info.mime, headers={"Content-Type": "text/plain"})


def _attachments(
    request: Request,
) -> tuple[MessageInfo, list[mapping.MimeAttachment]]:
    user = context.mailbox_user(request)
    info = context.message_or_404(request, user, request.path_params["message"])
    return info, mapping.mime_attachments(info.mime)


def _find_attachment(
    request: Request,
) -> tuple[MessageInfo, int, mapping.MimeAttachment]:
    info, attachments = _attachments(request)
    wanted = request.path_params["attachment"]
    for index, attachment in enumerate(attachments):
        if serialize.attachment_id(info, index) == wanted:
            return info, index, attachment
    raise GraphHTTPError(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )


async def list_attachments(request: Request) -> Response:
    info, attachments = _attachments(request)
    select = parse_select(
        request.query_params.get("$select"), serialize.ATTACHMENT_PROPERTIES, "attachment"
    )
    with_content = select is None or "contentBytes" in select
    values: list[dict[str, Any]] = [
        select_properties(
            serialize.attachment_json(info, index, attachment, with_content=with_content),
            select,
            ("@odata.type", "@odata.mediaContentType", "id"),
        )
        for index, attachment in enumerate(attachments)
    ]
    base = str(request.base_url).rstrip("/")
    return json_response({"@odata.context": f"{base}/v1.0/$metadata#attachments", "value": values})


async def get_attachment(request: Request) -> Response:
    info, index, attachment = _find_attachment(request)
    body = serialize.attachment_json(info, index, attachment, with_content=True)
    base = str(request.base_url).rstrip("/")
    return json_response({"@odata.context": f"{base}/v1.0/$metadata#attachments/$entity", **body})


async def get_attachment_value(request: Request) -> Response:
    _, _, attachment = _find_attachment(request)
    if attachment.kind == "item":
        return Response(attachment.content, headers={"Content-Type": "text/plain"})
    content_type = attachment.content_type or "application/octet-stream"
    return Response(attachment.content, headers={"Content-Type": content_type})


_USER = "/v1.0/users/{user}"
_FOLDER_MESSAGE = _USER + "/mailFolders/{folder}/messages/{message}"
routes = [
    *[
        Route(p, list_folder_messages)
        for p in context.path_variants(_USER + "/mailFolders/{folder}/messages")
    ],
    Route(_USER + "/messages", list_mailbox_messages),
    Route(_USER + "/messages/{message}", get_message),
    *[Route(p, get_message) for p in context.path_variants(_FOLDER_MESSAGE)],
    Route(_USER + "/messages/{message}/$value", get_message_mime),
    *[Route(p + "/$value", get_message_mime) for p in context.path_variants(_FOLDER_MESSAGE)],
    Route(_USER + "/messages/{message}/attachments", list_attachments),
    Route(_USER + "/messages/{message}/attachments/{attachment}", get_attachment),
    Route(_USER + "/messages/{message}/attachments/{attachment}/$value", get_attachment_value),
]
