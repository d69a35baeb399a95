"""Outlook delta: per-folder message delta and the flat mail-folder hierarchy delta.

A round is pinned to the change sequence value at its first page (``p`` in the token), so
changes made while a client pages go to the next round instead of being lost. Tokens are
opaque base64url JSON: kind, user, folder, watermark ``w``, upper bound ``p``, cursor ``c``,
``$select`` ``s``, page size ``n``, the id type ``i`` and the sync-state generation ``g``.
"""

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
    preferred_page_size,
    wants_immutable_ids,
)
from m365lake.emulator.records import FolderInfo, MessageInfo, Tombstone, UserInfo
from m365lake.emulator.routes_folders import OUTLOOK_DEFAULT_PAGE, OUTLOOK_MAX_PAGE, root_parent_id

_RECEIVED_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)


def _round_state(request: Request, kind: str, user: UserInfo, folder_id: str) -> dict[str, Any]:
    """Return the token state for this request: from $skiptoken/$deltatoken, or a new round."""
    params = request.query_params
    raw = params.get("$skiptoken") or params.get("$deltatoken")
    tenant = context.tenant_of(request)
    if raw is None:
        entity = "message" if kind == "m" else "mailFolder"
        allowed = serialize.MESSAGE_PROPERTIES if kind == "m" else serialize.FOLDER_PROPERTIES
        state = {
            "k": kind,
            "u": user.id,
            "f": folder_id,
            "w": 0,
            "p": None,
            "c": 0,
            "s": parse_select(params.get("$select"), allowed, entity),
            "n": parse_top(params.get("$top"), maximum=OUTLOOK_MAX_PAGE, default=0) or None,
            "i": wants_immutable_ids(request),
            "g": tenant.sync_generation(user.id),
            "r": _received_filter(params.get("$filter")) if kind == "m" else None,
        }
        _check_orderby(params.get("$orderby"))
        for unsupported in ("changeType", "$expand"):
            # NOTE: Graph supports these on message delta, but the emulator does not. A loud
            # 400 keeps a client from reading a full round as a filtered one.
            if unsupported in params:
                raise GraphHTTPError(
                    400,
                    "BadRequest",
                    f"The emulator does not support '{unsupported}' on delta; remove it.",
                )
        return state
    state = decode_token(raw, name="$skiptoken" if "$skiptoken" in params else "$deltatoken")
    if state.get("k") != kind or state.get("u") != user.id or state.get("f") != folder_id:
        raise GraphHTTPError(
            400, "BadRequest", "The delta token was issued for another folder or mailbox."
        )
    generation = tenant.sync_generation(user.id)
    if state.get("g") != generation:
        raise GraphHTTPError(
            410,
            "SyncStateNotFound",
            f"The sync state generation is not found; generation={state.get('g')};"
            f"[highest={generation}]. Restart the synchronization without a token.",
            headers={"Location": _initial_link(request, state)},
        )
    return state


def _received_filter(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    match = _RECEIVED_FILTER.match(raw)
    if match is None:
        raise GraphHTTPError(
            400,
            "ErrorInvalidUrlQueryFilter",
            "Message delta supports only '$filter=receivedDateTime ge|gt {value}'.",
        )
    return [match.group(1).lower(), match.group(2).rstrip("Z") + "Z"]


def _check_orderby(raw: str | None) -> None:
    if raw is not None and raw.strip().lower() != "receiveddatetime desc":
        raise GraphHTTPError(
            400,
            "ErrorInvalidUrlQuery",
            "Message delta supports only '$orderby=receivedDateTime desc'.",
        )


def _page_size(request: Request, state: dict[str, Any]) -> int:
    preferred = preferred_page_size(request)
    size = preferred or state.get("n") or OUTLOOK_DEFAULT_PAGE
    return max(1, min(int(size), OUTLOOK_MAX_PAGE))


def _path(state: dict[str, Any]) -> str:
    if state["k"] == "m":
        return f"/v1.0/users/{state['u']}/mailFolders/{state['f']}/messages/delta"
    return f"/v1.0/users/{state['u']}/mailFolders/delta"


def _initial_link(request: Request, state: dict[str, Any]) -> str:
    params = {"$select": ",".join(state["s"])} if state.get("s") else {}
    return absolute_link(request, _path(state), params)


def _respond(
    request: Request, state: dict[str, Any], events: list[Any], cursor: int | None, upto: int
) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    entity = "message" if state["k"] == "m" else "mailFolder"
    payload: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#Collection({entity})"}
    payload["value"] = events
    if cursor is not None:
        token = encode_token({**state, "p": upto, "c": cursor})
        payload["@odata.nextLink"] = absolute_link(request, _path(state), {"$skiptoken": token})
    else:
        token = encode_token({**state, "w": upto, "p": None, "c": 0})
        payload["@odata.deltaLink"] = absolute_link(request, _path(state), {"$deltatoken": token})
    return payload


def _received_ok(item: dict[str, Any], condition: list[str] | None) -> bool:
    if condition is None:
        return True
    operator, value = condition
    received = str(item.get("receivedDateTime") or "")
    return received >= value if operator == "ge" else received > value


async def message_delta(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    folder = context.folder_or_404(request, user, request.path_params["folder"])
    tenant = context.tenant_of(request)
    state = _round_state(request, "m", user, folder.id)
    upto = state["p"] if state["p"] is not None else tenant.current_seq()
    events, cursor = tenant.message_changes(
        user.id,
        folder.id,
        after=state["w"],
        upto=upto,
        cursor=state["c"],
        limit=_page_size(request, state),
    )
    immutable = wants_immutable_ids(request)
    values: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Tombstone):
            tombstone_id = event.immutable_id if immutable else event.rest_id
            values.append(
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": tombstone_id,
                    "@removed": {"reason": "deleted"},
                }
            )
            continue
        assert isinstance(event, MessageInfo)
        full = serialize.message_json(tenant, event, immutable=immutable)
        if not _received_ok(full, state.get("r")):
            continue
        item = serialize.selected_message(full, state["s"], event)
        values.append({"@odata.type": "#microsoft.graph.message", **item})
    return json_response(_respond(request, state, values, cursor, upto))


async def folder_delta(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    tenant = context.tenant_of(request)
    state = _round_state(request, "f", user, "")
    upto = state["p"] if state["p"] is not None else tenant.current_seq()
    events, cursor = tenant.folder_changes(
        user.id, after=state["w"], upto=upto, cursor=state["c"], limit=_page_size(request, state)
    )
    values: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Tombstone):
            values.append({"id": event.immutable_id, "@removed": {"reason": "deleted"}})
            continue
        assert isinstance(event, FolderInfo)
        full = serialize.folder_json(event, root_parent=root_parent_id(user))
        if state["s"] is not None:
            full = {"id": full["id"], **{name: full.get(name) for name in state["s"]}}
        values.append({"@odata.type": "#microsoft.graph.mailFolder", **full})
    return json_response(_respond(request, state, values, cursor, upto))


routes = [
    *[
        Route(p, folder_delta)
        for p in context.path_variants("/v1.0/users/{user}/mailFolders/delta")
    ],
    *[
        Route(p, message_delta)
        for p in context.path_variants("/v1.0/users/{user}/mailFolders/{folder}/messages/delta")
    ],
]
