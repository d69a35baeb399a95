"""``GET /users`` and ``GET /users/{id | userPrincipalName}``."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context, serialize
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_select,
    parse_top,
    select_properties,
)

USERS_DEFAULT_PAGE = 100
USERS_MAX_PAGE = 999
# The $filter forms the emulator understands; Graph supports many more on users.
_FILTER = re.compile(
    r"^\s*(accountEnabled)\s+eq\s+(true|false)\s*$"
    r"|^\s*(userPrincipalName|mail)\s+eq\s+'([^']*)'\s*$",
    re.IGNORECASE,
)


def _filter_predicate(raw: str | None) -> Any:
    if raw is None:
        return lambda user: True
    match = _FILTER.match(raw)
    if match is None:
        # NOTE: only `accountEnabled eq true|false` and `userPrincipalName|mail eq '…'`
        # are emulated; Graph accepts more filters than this.
        raise GraphHTTPError(
            400,
            "Request_UnsupportedQuery",
            f"Unsupported or invalid query filter clause specified: '{raw}'.",
        )
    if match.group(1):
        wanted = match.group(2).lower() == "true"
        return lambda user: user["accountEnabled"] is wanted
    field, value = match.group(3), match.group(4).lower()
    key = "userPrincipalName" if field.lower() == "userprincipalname" else "mail"
    return lambda user: (user[key] or "").lower() == value


async def list_users(request: Request) -> Response:
    tenant = context.directory_reader(request)
    params = request.query_params
    skiptoken = params.get("$skiptoken")
    if skiptoken is not None:
        state = decode_token(skiptoken, name="$skiptoken")
        select, top, filter_text, offset = state["s"], state["t"], state["f"], state["o"]
    else:
        select = parse_select(params.get("$select"), serialize.USER_PROPERTIES, "user")
        top = parse_top(
            params.get("$top"),
            maximum=USERS_MAX_PAGE,
            default=USERS_DEFAULT_PAGE,
            code="Request_BadRequest",
        )
        filter_text, offset = params.get("$filter"), 0

    keep = _filter_predicate(filter_text)
    users = [serialize.user_json(info) for info in tenant.users()]
    users = [user for user in users if keep(user)]

    page = users[offset : offset + top]
    shaped = [
        select_properties(user, select, ())
        if select is not None
        else {key: user[key] for key in serialize.USER_DEFAULT}
        for user in page
    ]

    base = str(request.base_url).rstrip("/")
    payload: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#users", "value": shaped}
    if offset + top < len(users):
        token = encode_token({"s": select, "t": top, "f": filter_text, "o": offset + top})
        payload["@odata.nextLink"] = absolute_link(request, "/v1.0/users", {"$skiptoken": token})
    return json_response(payload)


async def get_user(request: Request) -> Response:
    tenant = context.directory_reader(request)
    key = request.path_params["user"]
    info = tenant.resolve_user(key)
    if info is None:
        raise GraphHTTPError(
            404,
            "Request_ResourceNotFound",
            f"Resource '{key}' does not exist or one of its queried reference-property objects "
            "are not present.",
        )
    select = parse_select(request.query_params.get("$select"), serialize.USER_PROPERTIES, "user")
    user = serialize.user_json(info)
    shaped = (
        select_properties(user, select, ())
        if select is not None
        else {key: user[key] for key in serialize.USER_DEFAULT}
    )
    base = str(request.base_url).rstrip("/")
    return json_response({"@odata.context": f"{base}/v1.0/$metadata#users/$entity", **shaped})


routes = [
    Route("/v1.0/users", list_users),
    Route("/v1.0/users/{user}", get_user),
]
