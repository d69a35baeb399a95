"""Calendar reads: calendars, events, series instances, calendarView and its v1.0 delta.

``/events`` lists single events and series masters only; occurrences and exceptions come
from ``/instances`` or ``/calendarView``, both bounded by ``startDateTime`` and
``endDateTime``. The calendarView delta of v1.0 is bounded the same way and rejects
``$select``. Its tokens are opaque base64url JSON: kind, user, calendar, window, watermark
``w``, round bound ``p``, cursor ``x`` and the sync-state generation ``g``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import calendar_json, context
from m365lake.emulator.auth import require_role
from m365lake.emulator.calendar_records import Calendar, EventView
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_select,
    select_properties,
)
from m365lake.emulator.records import UserInfo
from m365lake.emulator.routes_folders import (
    OUTLOOK_DEFAULT_PAGE,
    OUTLOOK_MAX_PAGE,
    page_collection,
    preferred_outlook_page_size,
)

READ_ROLES = ("Calendars.Read", "Calendars.ReadWrite")
WRITE_ROLES = ("Calendars.ReadWrite",)

_NOT_FOUND = "The specified object was not found in the store."


def calendar_user(request: Request, *, write: bool = False) -> UserInfo:
    """Resolve ``{user}`` for a calendar route, enforcing the Calendars.* roles."""
    require_role(
        context.claims_of(request),
        WRITE_ROLES if write else READ_ROLES,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
    key = request.path_params["user"]
    user = context.tenant_of(request).resolve_user(key)
    if user is None:
        raise GraphHTTPError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
    if not user.has_mailbox:
        raise GraphHTTPError(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    return user


def calendar_or_404(request: Request, user: UserInfo) -> Calendar:
    tenant = context.tenant_of(request)
    key = request.path_params.get("calendar")
    if key is None:
        return tenant.default_calendar(user.id)
    found = next((c for c in tenant.calendars(user.id) if c.id == key), None)
    if found is None:
        raise GraphHTTPError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def event_or_404(request: Request, user: UserInfo) -> EventView:
    view = context.tenant_of(request).event_view(user.id, request.path_params["event"])
    if view is None:
        raise GraphHTTPError(404, "ErrorItemNotFound", _NOT_FOUND)
    return view


def _query(request: Request, name: str) -> str | None:
    # Graph matches the window parameters without regard to case (its docs use both).
    wanted = name.lower()
    for key, value in request.query_params.items():
        if key.lower() == wanted:
            return value
    return None


def parse_window_value(raw: str, name: str) -> datetime:
    text = raw.strip().replace(" ", "+")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GraphHTTPError(
            400, "ErrorInvalidParameter", f"The value '{raw}' of parameter '{name}' is invalid."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def window_of(request: Request) -> tuple[datetime, datetime]:
    raw_start, raw_end = _query(request, "startDateTime"), _query(request, "endDateTime")
    if raw_start is None or raw_end is None:
        raise GraphHTTPError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    start = parse_window_value(raw_start, "StartDateTime")
    end = parse_window_value(raw_end, "EndDateTime")
    if end <= start:
        raise GraphHTTPError(
            400, "ErrorInvalidParameter", "EndDateTime must be later than StartDateTime."
        )
    return start, end


def _event_values(request: Request, user: UserInfo, views: list[Any]) -> list[dict[str, Any]]:
    select = parse_select(request.query_params.get("$select"), EVENT_PROPERTIES, "event")
    return [
        select_properties(calendar_json.event_json(view, user.user), select, ("@odata.etag", "id"))
        for view in views
    ]


def _events_page(
    request: Request, user: UserInfo, views: list[EventView], fragment: str
) -> Response:
    payload = page_collection(request, views, fragment)
    payload["value"] = _event_values(request, user, payload["value"])
    return json_response(payload)


# ---- calendars --------------------------------------------------------------------------


async def list_calendars(request: Request) -> Response:
    user = calendar_user(request)
    tenant = context.tenant_of(request)
    select = parse_select(
        request.query_params.get("$select"), calendar_json.CALENDAR_PROPERTIES, "calendar"
    )
    shaped = [
        select_properties(calendar_json.calendar_json(c, user.user), select, ("id",))
        for c in tenant.calendars(user.id)
    ]
    return json_response(page_collection(request, shaped, f"users('{user.id}')/calendars"))


async def get_calendar(request: Request) -> Response:
    user = calendar_user(request)
    calendar = calendar_or_404(request, user)
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#users('{user.id}')/calendars/$entity",
            **calendar_json.calendar_json(calendar, user.user),
        }
    )


# ---- events -----------------------------------------------------------------------------


async def list_events(request: Request) -> Response:
    user = calendar_user(request)
    tenant = context.tenant_of(request)
    calendar_id = None
    if "calendar" in request.path_params or request.url.path.lower().endswith("/calendar/events"):
        calendar_id = calendar_or_404(request, user).id
    views = tenant.calendar_events(user.id, calendar_id)
    return _events_page(request, user, views, f"users('{user.id}')/events")


async def get_event(request: Request) -> Response:
    user = calendar_user(request)
    view = event_or_404(request, user)
    select = parse_select(request.query_params.get("$select"), EVENT_PROPERTIES, "event")
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#users('{user.id}')/events/$entity",
            **select_properties(
                calendar_json.event_json(view, user.user), select, ("@odata.etag", "id")
            ),
        }
    )


async def list_instances(request: Request) -> Response:
    user = calendar_user(request)
    view = event_or_404(request, user)
    start, end = window_of(request)
    views: list[EventView] = []
    if view.kind == "seriesMaster":
        views = context.tenant_of(request).instances(user.id, view.id, start, end)
    return _events_page(request, user, views, f"users('{user.id}')/events('{view.id}')/instances")


async def calendar_view(request: Request) -> Response:
    user = calendar_user(request)
    calendar_id = calendar_or_404(request, user).id if "calendar" in request.path_params else None
    start, end = window_of(request)
    views = context.tenant_of(request).calendar_view(user.id, calendar_id, start, end)
    return _events_page(request, user, views, f"users('{user.id}')/calendarView")


# ---- calendarView delta -----------------------------------------------------------------


def _delta_state(request: Request, user: UserInfo, calendar_id: str) -> dict[str, Any]:
    params = request.query_params
    raw = params.get("$skiptoken") or params.get("$deltatoken")
    tenant = context.tenant_of(request)
    if raw is None:
        if "$select" in params:
            raise GraphHTTPError(
                400,
                "ErrorInvalidUrlQuery",
                "The query option '$select' is not supported on calendarView delta.",
            )
        start, end = window_of(request)
        return {
            "k": "cv",
            "u": user.id,
            "c": calendar_id,
            "s": start.isoformat(),
            "e": end.isoformat(),
            "w": 0,
            "p": None,
            "x": None,
            "g": tenant.calendar_generation(user.id),
        }
    state = decode_token(raw, name="$skiptoken" if "$skiptoken" in params else "$deltatoken")
    if state.get("k") != "cv" or state.get("u") != user.id or state.get("c") != calendar_id:
        raise GraphHTTPError(
            400, "BadRequest", "The delta token was issued for another calendar or mailbox."
        )
    generation = tenant.calendar_generation(user.id)
    if state.get("g") != generation:
        raise GraphHTTPError(
            410,
            "SyncStateNotFound",
            f"The sync state generation is not found; generation={state.get('g')};"
            f"[highest={generation}]. Restart the synchronization without a token.",
        )
    return state


async def calendar_view_delta(request: Request) -> Response:
    user = calendar_user(request)
    calendar_id = calendar_or_404(request, user).id if "calendar" in request.path_params else ""
    tenant = context.tenant_of(request)
    state = _delta_state(request, user, calendar_id)
    upto = state["p"] if state["p"] is not None else tenant.current_seq()
    size = preferred_outlook_page_size(request) or OUTLOOK_DEFAULT_PAGE
    cursor = tuple(state["x"]) if state["x"] else None
    changes, next_cursor = tenant.calendar_changes(
        user.id,
        calendar_id or None,
        datetime.fromisoformat(state["s"]),
        datetime.fromisoformat(state["e"]),
        after=state["w"],
        upto=upto,
        cursor=cursor,
        limit=max(1, min(size, OUTLOOK_MAX_PAGE)),
    )
    values: list[dict[str, Any]] = []
    for change in changes:
        if isinstance(change, str):
            values.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": change,
                    "@removed": {"reason": "deleted"},
                }
            )
        else:
            values.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    **calendar_json.event_json(change, user.user),
                }
            )
    path = request.url.path
    base = str(request.base_url).rstrip("/")
    payload: dict[str, Any] = {
        "@odata.context": f"{base}/v1.0/$metadata#Collection(event)",
        "value": values,
    }
    if next_cursor is not None:
        token = encode_token({**state, "p": upto, "x": list(next_cursor)})
        payload["@odata.nextLink"] = absolute_link(request, path, {"$skiptoken": token})
    else:
        token = encode_token({**state, "w": upto, "p": None, "x": None})
        payload["@odata.deltaLink"] = absolute_link(request, path, {"$deltatoken": token})
    return json_response(payload)


# ---- attachments ------------------------------------------------------------------------


async def list_event_attachments(request: Request) -> Response:
    user = calendar_user(request)
    view = event_or_404(request, user)
    select = request.query_params.get("$select")
    with_content = select is None or "contentBytes" in select
    attachments = view.master.attachments if view.kind != "occurrence" else []
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#attachments",
            "value": [
                calendar_json.attachment_json(a, with_content=with_content) for a in attachments
            ],
        }
    )


def _attachment_or_404(request: Request) -> Any:
    user = calendar_user(request)
    view = event_or_404(request, user)
    wanted = request.path_params["attachment"]
    for attachment in view.master.attachments:
        if attachment.id == wanted:
            return attachment
    raise GraphHTTPError(404, "ErrorItemNotFound", _NOT_FOUND)


async def get_event_attachment(request: Request) -> Response:
    attachment = _attachment_or_404(request)
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "@odata.context": f"{base}/v1.0/$metadata#attachments/$entity",
            **calendar_json.attachment_json(attachment, with_content=True),
        }
    )


async def get_event_attachment_value(request: Request) -> Response:
    attachment = _attachment_or_404(request)
    return Response(attachment.content, headers={"Content-Type": attachment.content_type})


EVENT_PROPERTIES = frozenset(
    {
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "categories",
        "transactionId",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "iCalUId",
        "reminderMinutesBeforeStart",
        "isReminderOn",
        "hasAttachments",
        "subject",
        "bodyPreview",
        "importance",
        "sensitivity",
        "isAllDay",
        "isCancelled",
        "isOrganizer",
        "responseRequested",
        "seriesMasterId",
        "showAs",
        "type",
        "webLink",
        "onlineMeetingUrl",
        "isOnlineMeeting",
        "onlineMeetingProvider",
        "allowNewTimeProposals",
        "isDraft",
        "hideAttendees",
        "responseStatus",
        "body",
        "start",
        "end",
        "originalStart",
        "location",
        "locations",
        "recurrence",
        "attendees",
        "organizer",
        "onlineMeeting",
        "id",
    }
)

_USER = "/v1.0/users/{user}"
routes = [
    Route(_USER + "/calendars", list_calendars, methods=["GET"]),
    Route(_USER + "/calendar", get_calendar, methods=["GET"]),
    Route(_USER + "/calendars/{calendar}", get_calendar, methods=["GET"]),
    Route(_USER + "/events", list_events, methods=["GET"]),
    Route(_USER + "/calendar/events", list_events, methods=["GET"]),
    Route(_USER + "/calendars/{calendar}/events", list_events, methods=["GET"]),
    Route(_USER + "/events/{event}", get_event, methods=["GET"]),
    Route(_USER + "/events/{event}/instances", list_instances, methods=["GET"]),
    *[
        Route(_USER + prefix + view, calendar_view, methods=["GET"])
        for prefix in ("", "/calendars/{calendar}")
        for view in ("/calendarView", "/calendarview")
    ],
    *[
        Route(_USER + prefix + view + "/delta", calendar_view_delta, methods=["GET"])
        for prefix in ("", "/calendars/{calendar}")
        for view in ("/calendarView", "/calendarview")
    ],
    Route(_USER + "/events/{event}/attachments", list_event_attachments, methods=["GET"]),
    Route(
        _USER + "/events/{event}/attachments/{attachment}", get_event_attachment, methods=["GET"]
    ),
    Route(
        _USER + "/events/{event}/attachments/{attachment}/$value",
        get_event_attachment_value,
        methods=["GET"],
    ),
]
