"""Calendar writes for restore (Calendars.ReadWrite): calendars, events, occurrences, attachments.

PATCH on an occurrence id changes that occurrence only, which makes it an exception of its
series; DELETE on an occurrence id cancels it. Both follow Outlook.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import calendar_json, context
from m365lake.emulator.calendar_store import CalendarExistsError, EventInputError
from m365lake.emulator.protocol import GraphHTTPError, json_response
from m365lake.emulator.routes_calendar import calendar_or_404, calendar_user, event_or_404
from m365lake.emulator.routes_mail_write import read_json

_NOT_FOUND = "The specified object was not found in the store."


def _entity(request: Request, user_id: str, fragment: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/v1.0/$metadata#users('{user_id}')/{fragment}/$entity"


async def create_calendar(request: Request) -> Response:
    user = calendar_user(request, write=True)
    document = await read_json(request)
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GraphHTTPError(400, "ErrorInvalidRequest", "A calendar needs a non-empty 'name'.")
    try:
        calendar = context.tenant_of(request).create_calendar(user.id, name)
    except CalendarExistsError:
        raise GraphHTTPError(
            409, "ErrorFolderExists", "A folder with the specified name already exists."
        ) from None
    return json_response(
        {
            "@odata.context": _entity(request, user.id, "calendars"),
            **calendar_json.calendar_json(calendar, user.user),
        },
        status=201,
    )


async def create_event(request: Request) -> Response:
    user = calendar_user(request, write=True)
    calendar = calendar_or_404(request, user)
    document = await read_json(request)
    try:
        view = context.tenant_of(request).create_event(user.id, calendar.id, document)
    except EventInputError as error:
        raise GraphHTTPError(400, "ErrorInvalidRequest", str(error)) from None
    return json_response(
        {
            "@odata.context": _entity(request, user.id, "events"),
            **calendar_json.event_json(view, user.user),
        },
        status=201,
    )


async def patch_event(request: Request) -> Response:
    user = calendar_user(request, write=True)
    event_or_404(request, user)
    document = await read_json(request)
    try:
        view = context.tenant_of(request).update_event(
            user.id, request.path_params["event"], document
        )
    except KeyError:
        raise GraphHTTPError(404, "ErrorItemNotFound", _NOT_FOUND) from None
    except EventInputError as error:
        raise GraphHTTPError(400, "ErrorInvalidRequest", str(error)) from None
    return json_response(
        {
            "@odata.context": _entity(request, user.id, "events"),
            **calendar_json.event_json(view, user.user),
        }
    )


async def delete_event(request: Request) -> Response:
    user = calendar_user(request, write=True)
    try:
        context.tenant_of(request).delete_event(user.id, request.path_params["event"])
    except KeyError:
        raise GraphHTTPError(404, "ErrorItemNotFound", _NOT_FOUND) from None
    return Response(status_code=204)


async def add_event_attachment(request: Request) -> Response:
    user = calendar_user(request, write=True)
    view = event_or_404(request, user)
    document = await read_json(request)
    if document.get("@odata.type") != "#microsoft.graph.fileAttachment":
        raise GraphHTTPError(
            400,
            "ErrorInvalidRequest",
            "The emulator accepts only '#microsoft.graph.fileAttachment' on events.",
        )
    if view.kind not in ("singleInstance", "seriesMaster"):
        # NOTE: Outlook lets an occurrence get its own attachment (making it an
        # exception); the emulator does not model attachments of exceptions.
        raise GraphHTTPError(
            400, "ErrorInvalidRequest", "The emulator adds attachments to singles and masters only."
        )
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise GraphHTTPError(400, "ErrorInvalidRequest", "A file attachment needs a 'name'.")
    try:
        content = base64.b64decode(str(document.get("contentBytes") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise GraphHTTPError(
            400, "ErrorInvalidRequest", "contentBytes is not valid base64."
        ) from None
    attachment = context.tenant_of(request).add_event_attachment(
        user.id,
        view.id,
        name=name,
        content_type=str(document.get("contentType") or "application/octet-stream"),
        content=content,
        is_inline=bool(document.get("isInline", False)),
    )
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#attachments/$entity",
            **calendar_json.attachment_json(attachment, with_content=False),
        },
        status=201,
    )


_USER = "/v1.0/users/{user}"
routes = [
    Route(_USER + "/calendars", create_calendar, methods=["POST"]),
    Route(_USER + "/events", create_event, methods=["POST"]),
    Route(_USER + "/calendar/events", create_event, methods=["POST"]),
    Route(_USER + "/calendars/{calendar}/events", create_event, methods=["POST"]),
    Route(_USER + "/events/{event}", patch_event, methods=["PATCH"]),
    Route(_USER + "/events/{event}", delete_event, methods=["DELETE"]),
    Route(_USER + "/events/{event}/attachments", add_event_attachment, methods=["POST"]),
]
