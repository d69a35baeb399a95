"""Teams routes: teams, groups, channels, channel messages, replies, delta, hosted contents.

Listing channel messages, their replies, delta and hosted contents are Teams protected
APIs: besides ChannelMessage.Read.All, Microsoft must approve the app for them, so the
app registration's ``protected_apis_approved`` switch gates them with a 403.

Paging and delta tokens are opaque base64url JSON. A delta token contains the channel
(``t``, ``c``), the watermark ``w`` of the last round and the upper bound ``p`` of the
current one. It also contains the offset ``o``, the page size ``n``, ``$expand=replies``
as ``e``, the ``$filter`` time ``f`` and the tenant's Teams sync generation ``g``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context
from m365lake.emulator.auth import require_role
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_top,
)
from m365lake.emulator.teams import ChannelInfo, ChatMessageInfo, TeamInfo
from m365lake.emulator.teams_json import (
    channel_json,
    group_json,
    hosted_content_json,
    message_json,
    team_json,
)

TEAM_READ_ROLES = (
    "Team.ReadBasic.All",
    "TeamSettings.Read.All",
    "TeamSettings.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
GROUP_READ_ROLES = (
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
CHANNEL_READ_ROLES = (
    "Channel.ReadBasic.All",
    "ChannelSettings.Read.All",
    "ChannelSettings.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
MESSAGE_READ_ROLES = ("ChannelMessage.Read.All",)
PROTECTED_API_MESSAGE = (
    "Invoked API requires Protected API access in application-only context when not using "
    "Resource Specific Consent. Visit https://docs.microsoft.com/en-us/graph/teams-protected-apis "
    "for more details."
)

MESSAGE_MAX_PAGE = 50
MESSAGE_DEFAULT_PAGE = 20
TEAMS_DEFAULT_PAGE = 100
TEAMS_MAX_PAGE = 999
EXPANDED_REPLIES = 1000
"""Replies inlined by ``$expand=replies``; more come through ``replies@odata.nextLink``."""

_FILTER = re.compile(r"^\s*lastModifiedDateTime\s+gt\s+(\S+)\s*$")
# The one group filter the Teams docs give for listing teams through /groups.
_TEAM_GROUPS_FILTER = re.compile(
    r"^\s*resourceProvisioningOptions/Any\(x:\s*x\s+eq\s+'Team'\)\s*$", re.IGNORECASE
)


# ---- access ---------------------------------------------------------------------------


def _teams_tenant(request: Request, roles: tuple[str, ...]) -> Tenant:
    claims = context.claims_of(request)
    require_role(
        claims,
        roles,
        "Forbidden",
        f"Missing role permissions on the request. API requires one of '{', '.join(roles)}'.",
    )
    return context.tenant_of(request)


def _charge(request: Request, scope: str) -> None:
    app_id = str(context.claims_of(request).get("appid"))
    request.app.state.teams_throttle.charge(app_id, scope)


def _team(request: Request, roles: tuple[str, ...]) -> tuple[Tenant, TeamInfo]:
    tenant = _teams_tenant(request, roles)
    key = request.path_params["team"]
    _charge(request, key.lower())
    team = tenant.team_info(key)
    if team is None:
        raise GraphHTTPError(404, "NotFound", f"No team found with Group Id {key}")
    return tenant, team


def _channel(request: Request, *, messages: bool) -> tuple[Tenant, ChannelInfo]:
    roles = MESSAGE_READ_ROLES if messages else CHANNEL_READ_ROLES
    tenant = _teams_tenant(request, roles)
    if messages and not tenant.app.protected_apis_approved:
        raise GraphHTTPError(403, "Forbidden", PROTECTED_API_MESSAGE)
    team_key, channel_key = request.path_params["team"], request.path_params["channel"]
    _charge(request, f"{team_key.lower()}/{channel_key}")
    channel = tenant.channel_info(team_key, channel_key)
    if channel is None:
        raise GraphHTTPError(404, "NotFound", "Channel or team not found.")
    return tenant, channel


def _message_or_404(tenant: Tenant, channel: ChannelInfo, request: Request) -> ChatMessageInfo:
    params = request.path_params
    message = tenant.channel_message(
        channel.team_id, channel.id, params["message"], params.get("reply")
    )
    if message is None:
        raise GraphHTTPError(404, "NotFound", "Message not found.")
    return message


# ---- helpers ----------------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _context(request: Request, fragment: str) -> str:
    return f"{_base(request)}/v1.0/$metadata#{fragment}"


def _reject_unknown_options(request: Request, allowed: set[str]) -> None:
    for name in request.query_params:
        if name.startswith("$") and name.lower() not in allowed:
            raise GraphHTTPError(
                400, "BadRequest", f"Query option '{name}' is not supported for this request."
            )


def _expand_replies(request: Request, raw: str | None = None) -> bool:
    value = request.query_params.get("$expand") if raw is None else raw
    if value is None or value == "":
        return False
    if value.strip().lower() != "replies":
        raise GraphHTTPError(
            400, "BadRequest", f"Expand of '{value}' is not supported; only 'replies' is."
        )
    return True


def _offset_state(request: Request) -> dict[str, Any]:
    token = request.query_params.get("$skiptoken")
    return {} if token is None else decode_token(token, name="$skiptoken")


def _message_with_replies(
    tenant: Tenant, request: Request, message: ChatMessageInfo, path: str
) -> dict[str, Any]:
    document = message_json(message, _base(request))
    replies = tenant.replies_of(message.team_id, message.channel_id, message.id)
    document["replies@odata.context"] = _context(request, "replies")
    document["replies"] = [
        message_json(reply, _base(request)) for reply in replies[:EXPANDED_REPLIES]
    ]
    if len(replies) > EXPANDED_REPLIES:
        token = encode_token({"o": EXPANDED_REPLIES, "n": MESSAGE_MAX_PAGE})
        document["replies@odata.nextLink"] = absolute_link(
            request, f"{path}/{message.id}/replies", {"$skiptoken": token}
        )
    return document


def _page(
    request: Request,
    items: list[dict[str, Any]],
    offset: int,
    size: int,
    fragment: str,
    state: dict[str, Any],
) -> Response:
    chunk = items[offset : offset + size]
    page: dict[str, Any] = {"@odata.context": _context(request, fragment)}
    if offset + size < len(items):
        token = encode_token({**state, "o": offset + size, "n": size})
        page["@odata.nextLink"] = absolute_link(request, request.url.path, {"$skiptoken": token})
    page["value"] = chunk
    return json_response(page)


# ---- teams, groups and channels ----------------------------------------------------------


async def list_teams(request: Request) -> Response:
    tenant = _teams_tenant(request, TEAM_READ_ROLES)
    _charge(request, "")
    _reject_unknown_options(request, {"$top", "$skiptoken", "$select"})
    state = _offset_state(request)
    size = state.get("n") or parse_top(
        request.query_params.get("$top"), maximum=TEAMS_MAX_PAGE, default=TEAMS_DEFAULT_PAGE
    )
    selected = state.get("s") or request.query_params.get("$select")
    teams = _project([team_json(team) for team in tenant.teams()], selected)
    return _page(request, teams, int(state.get("o", 0)), int(size), "teams", {"s": selected})


async def get_team(request: Request) -> Response:
    _, team = _team(request, TEAM_READ_ROLES)
    return json_response({"@odata.context": _context(request, "teams/$entity"), **team_json(team)})


async def list_groups(request: Request) -> Response:
    tenant = context.tenant_of(request)
    require_role(
        context.claims_of(request),
        GROUP_READ_ROLES,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    _reject_unknown_options(request, {"$top", "$skiptoken", "$select", "$filter"})
    state = _offset_state(request)
    size = state.get("n") or parse_top(
        request.query_params.get("$top"), maximum=TEAMS_MAX_PAGE, default=TEAMS_DEFAULT_PAGE
    )
    raw_filter = state.get("f") or request.query_params.get("$filter")
    if raw_filter and not _TEAM_GROUPS_FILTER.match(str(raw_filter)):
        raise GraphHTTPError(
            400,
            "Request_UnsupportedQuery",
            "The emulator supports only $filter=resourceProvisioningOptions/Any(x:x eq 'Team') "
            "on /groups.",
        )
    found = [group for group in tenant.groups() if group.is_team or not raw_filter]
    selected = state.get("s") or request.query_params.get("$select")
    groups = _project([group_json(group) for group in found], selected)
    offset = int(state.get("o", 0))
    return _page(request, groups, offset, int(size), "groups", {"s": selected, "f": raw_filter})


def _project(items: list[dict[str, Any]], selected: Any) -> list[dict[str, Any]]:
    """Apply ``$select``: keep ``id`` and the named properties; an unknown name is a 400."""
    if not selected:
        return items
    names = [name.strip() for name in str(selected).split(",") if name.strip()]
    known = set(items[0]) if items else set(names)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise GraphHTTPError(
            400, "BadRequest", f"Could not find a property named '{unknown[0]}' on this type."
        )
    return [{name: item.get(name) for name in ["id", *names]} for item in items]


async def list_channels(request: Request) -> Response:
    tenant, team = _team(request, CHANNEL_READ_ROLES)
    channels = [channel_json(channel) for channel in tenant.channels_of(team.id)]
    return json_response(
        {"@odata.context": _context(request, f"teams('{team.id}')/channels"), "value": channels}
    )


async def get_channel(request: Request) -> Response:
    _, channel = _channel(request, messages=False)
    return json_response(
        {"@odata.context": _context(request, "channels/$entity"), **channel_json(channel)}
    )


# ---- messages and replies ----------------------------------------------------------------


async def list_messages(request: Request) -> Response:
    tenant, channel = _channel(request, messages=True)
    _reject_unknown_options(request, {"$top", "$skiptoken", "$expand"})
    state = _offset_state(request)
    size = state.get("n") or parse_top(
        request.query_params.get("$top"), maximum=MESSAGE_MAX_PAGE, default=MESSAGE_DEFAULT_PAGE
    )
    expand = bool(state["e"]) if "e" in state else _expand_replies(request)
    path = request.url.path
    roots = tenant.root_messages(channel.team_id, channel.id)
    items = [
        _message_with_replies(tenant, request, message, path)
        if expand
        else message_json(message, _base(request))
        for message in roots
    ]
    return _page(request, items, int(state.get("o", 0)), int(size), "messages", {"e": expand})


async def get_message(request: Request) -> Response:
    tenant, channel = _channel(request, messages=True)
    message = _message_or_404(tenant, channel, request)
    return json_response(
        {
            "@odata.context": _context(request, "messages/$entity"),
            **message_json(message, _base(request)),
        }
    )


async def list_replies(request: Request) -> Response:
    tenant, channel = _channel(request, messages=True)
    _reject_unknown_options(request, {"$top", "$skiptoken"})
    state = _offset_state(request)
    size = state.get("n") or parse_top(
        request.query_params.get("$top"), maximum=MESSAGE_MAX_PAGE, default=MESSAGE_DEFAULT_PAGE
    )
    message_id = request.path_params["message"]
    try:
        replies = tenant.replies_of(channel.team_id, channel.id, message_id)
    except KeyError:
        raise GraphHTTPError(404, "NotFound", "Message not found.") from None
    items = [message_json(reply, _base(request)) for reply in replies]
    return _page(request, items, int(state.get("o", 0)), int(size), "replies", {})


# ---- delta -------------------------------------------------------------------------------


def _delta_state(request: Request, channel: ChannelInfo, tenant: Tenant) -> dict[str, Any]:
    params = request.query_params
    skip, delta = params.get("$skiptoken"), params.get("$deltatoken")
    if skip is not None or delta is not None:
        name = "$skiptoken" if skip is not None else "$deltatoken"
        state = decode_token(skip if skip is not None else str(delta), name=name)
        if (state.get("t"), state.get("c")) != (channel.team_id, channel.id):
            raise GraphHTTPError(400, "BadRequest", f"The {name} belongs to another channel.")
        if state.get("g") != tenant.teams_delta_generation():
            # NOTE: Graph's chatMessage delta page names no error for a dead token, so
            # this is the generic delta response (410 Gone, resyncRequired).
            raise GraphHTTPError(
                410, "resyncRequired", "The delta token is no longer valid; start a new sync."
            )
        if delta is not None:
            # A new round: changes after the last round's upper bound, up to now.
            state = {**state, "w": state["p"], "p": tenant.current_teams_seq(), "o": 0}
        return state
    _reject_unknown_options(request, {"$top", "$skip", "$filter", "$expand"})
    since = None
    raw_filter = params.get("$filter")
    if raw_filter is not None:
        match = _FILTER.match(raw_filter)
        if match is None:
            raise GraphHTTPError(
                400,
                "BadRequest",
                "Only lastModifiedDateTime with the 'gt' operator is supported in $filter.",
            )
        since = _parse_time(match.group(1))
    skip_count = params.get("$skip", "0")
    if not skip_count.isdigit():
        raise GraphHTTPError(400, "BadRequest", f"Invalid value '{skip_count}' for $skip.")
    return {
        "t": channel.team_id,
        "c": channel.id,
        "w": 0,
        "p": tenant.current_teams_seq(),
        "o": int(skip_count),
        "n": parse_top(params.get("$top"), maximum=MESSAGE_MAX_PAGE, default=MESSAGE_DEFAULT_PAGE),
        "e": _expand_replies(request),
        "f": since.isoformat() if since else None,
        "g": tenant.teams_delta_generation(),
    }


def _parse_time(raw: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise GraphHTTPError(
            400, "BadRequest", f"The value '{raw}' in $filter is not a valid DateTimeOffset."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _thread_modified(tenant: Tenant, root: ChatMessageInfo) -> datetime:
    replies = tenant.replies_of(root.team_id, root.channel_id, root.id)
    return max([root.modified_at, *(reply.modified_at for reply in replies)])


async def message_delta(request: Request) -> Response:
    tenant, channel = _channel(request, messages=True)
    state = _delta_state(request, channel, tenant)
    roots = tenant.channel_changes(
        channel.team_id, channel.id, int(state["w"]), int(state["p"]), datetime.now(UTC)
    )
    if state.get("f"):
        since = datetime.fromisoformat(str(state["f"]))
        roots = [root for root in roots if _thread_modified(tenant, root) > since]
    offset, size = int(state["o"]), int(state["n"])
    path = request.url.path
    base = path.rsplit("/delta", 1)[0]
    chunk = roots[offset : offset + size]
    page: dict[str, Any] = {"@odata.context": _context(request, "Collection(chatMessage)")}
    if offset + size < len(roots):
        token = encode_token({**state, "o": offset + size})
        page["@odata.nextLink"] = absolute_link(request, path, {"$skiptoken": token})
    else:
        page["@odata.deltaLink"] = absolute_link(
            request, path, {"$deltatoken": encode_token(state)}
        )
    page["value"] = [
        _message_with_replies(tenant, request, root, base)
        if state.get("e")
        else message_json(root, _base(request))
        for root in chunk
    ]
    return json_response(page)


# ---- hosted contents ----------------------------------------------------------------------


def _hosted_message(request: Request) -> tuple[Tenant, ChatMessageInfo]:
    tenant, channel = _channel(request, messages=True)
    return tenant, _message_or_404(tenant, channel, request)


async def list_hosted_contents(request: Request) -> Response:
    _, message = _hosted_message(request)
    return json_response(
        {
            "@odata.context": _context(request, "hostedContents"),
            "value": [hosted_content_json(hosted_id) for hosted_id in message.hosted_ids],
        }
    )


def _hosted_bytes(request: Request) -> tuple[bytes, str]:
    tenant, message = _hosted_message(request)
    found = tenant.hosted_content(
        message.team_id, message.channel_id, message.id, request.path_params["hosted"]
    )
    if found is None:
        raise GraphHTTPError(404, "NotFound", "Hosted content not found.")
    return found


async def get_hosted_content(request: Request) -> Response:
    _hosted_bytes(request)
    return json_response(
        {
            "@odata.context": _context(request, "hostedContents/$entity"),
            **hosted_content_json(request.path_params["hosted"]),
        }
    )


async def get_hosted_content_value(request: Request) -> Response:
    content, content_type = _hosted_bytes(request)
    return Response(content, media_type=content_type)


_CHANNEL = "/v1.0/teams/{team}/channels/{channel}"
_MESSAGE = _CHANNEL + "/messages/{message}"
_REPLY = _MESSAGE + "/replies/{reply}"

routes = [
    Route("/v1.0/teams", list_teams),
    Route("/v1.0/groups", list_groups),
    Route("/v1.0/teams/{team}", get_team),
    Route("/v1.0/teams/{team}/channels", list_channels),
    Route(_CHANNEL, get_channel),
    Route(_CHANNEL + "/messages", list_messages),
    Route(_CHANNEL + "/messages/delta", message_delta),
    Route(_MESSAGE, get_message),
    Route(_MESSAGE + "/replies", list_replies),
    Route(_REPLY, get_message),
    *(
        route
        for prefix in (_MESSAGE, _REPLY)
        for route in (
            Route(prefix + "/hostedContents", list_hosted_contents),
            Route(prefix + "/hostedContents/{hosted}", get_hosted_content),
            Route(prefix + "/hostedContents/{hosted}/$value", get_hosted_content_value),
        )
    ),
]
