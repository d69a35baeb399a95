"""Contact routes: folder listing and delta, contact listing and delta, and the writes a
restore needs (create a folder, create a contact).

Reads need Contacts.Read or Contacts.ReadWrite; writes need Contacts.ReadWrite. The front
door counts every path here against the mailbox, like mail.

A delta round is pinned to the change sequence at its first page, as in mail delta. Tokens
are opaque base64url JSON: kind ``k`` (``cf`` folders, ``c`` contacts), user, folder,
watermark ``w``, upper bound ``p``, cursor ``c``, ``$select`` ``s`` and the sync-state
generation ``g``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context
from m365lake.emulator.auth import require_role
from m365lake.emulator.contact_json import (
    CONTACT_PROPERTIES,
    FOLDER_PROPERTIES,
    check_contact_body,
    contact_json,
    folder_json,
)
from m365lake.emulator.contact_store import ContactFolderInfo, ContactInfo
from m365lake.emulator.mail_writes import FolderExistsError
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_select,
    preferred_page_size,
    select_properties,
)
from m365lake.emulator.records import Tombstone, UserInfo
from m365lake.emulator.routes_folders import OUTLOOK_DEFAULT_PAGE, page_collection
from m365lake.emulator.routes_mail_write import read_json

READ_ROLES = ("Contacts.Read", "Contacts.ReadWrite")
WRITE_ROLES = ("Contacts.ReadWrite",)

DELTA_MAX_PAGE = 200
"""Largest contact delta page. NOTE: Graph documents no limit; about 200 per page has been
observed for contacts whatever ``odata.maxpagesize`` asked for."""


def contact_user(request: Request, *, write: bool = False) -> UserInfo:
    """Resolve ``{user}`` of a contact route, enforcing the Contacts roles and the mailbox."""
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


def _folder_or_404(request: Request, user: UserInfo) -> ContactFolderInfo:
    folder = context.tenant_of(request).resolve_contact_folder(
        user.id, request.path_params["folder"]
    )
    if folder is None:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return folder


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# ---- folders ----------------------------------------------------------------------------


def _child_folders(request: Request, user: UserInfo, parent_id: str) -> Response:
    select = parse_select(request.query_params.get("$select"), FOLDER_PROPERTIES, "contactFolder")
    folders = context.tenant_of(request).contact_folders(user.id)
    shaped = [
        select_properties(folder_json(folder), select, ("id",))
        for folder in folders
        if folder.parent_id == parent_id and not folder.is_default
    ]
    fragment = f"users('{user.id}')/contactFolders"
    return json_response(page_collection(request, shaped, fragment))


async def list_folders(request: Request) -> Response:
    user = contact_user(request)
    default = context.tenant_of(request).default_contact_folder(user.id)
    return _child_folders(request, user, default.id)


async def list_child_folders(request: Request) -> Response:
    user = contact_user(request)
    return _child_folders(request, user, _folder_or_404(request, user).id)


async def get_folder(request: Request) -> Response:
    user = contact_user(request)
    folder = _folder_or_404(request, user)
    select = parse_select(request.query_params.get("$select"), FOLDER_PROPERTIES, "contactFolder")
    body = select_properties(folder_json(folder), select, ("id",))
    entity = f"{_base(request)}/v1.0/$metadata#users('{user.id}')/contactFolders/$entity"
    return json_response({"@odata.context": entity, **body})


# ---- contacts ---------------------------------------------------------------------------


def _contact_list(request: Request, user: UserInfo, folder_id: str) -> Response:
    select = parse_select(request.query_params.get("$select"), CONTACT_PROPERTIES, "contact")
    contacts = context.tenant_of(request).contacts_in(user.id, folder_id)
    shaped = [
        select_properties(contact_json(contact), select, ("@odata.etag", "id"))
        for contact in contacts
    ]
    return json_response(page_collection(request, shaped, f"users('{user.id}')/contacts"))


async def list_folder_contacts(request: Request) -> Response:
    user = contact_user(request)
    return _contact_list(request, user, _folder_or_404(request, user).id)


async def list_default_contacts(request: Request) -> Response:
    user = contact_user(request)
    default = context.tenant_of(request).default_contact_folder(user.id)
    return _contact_list(request, user, default.id)


async def get_contact(request: Request) -> Response:
    user = contact_user(request)
    contact = context.tenant_of(request).find_contact(user.id, request.path_params["contact"])
    if contact is None:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    select = parse_select(request.query_params.get("$select"), CONTACT_PROPERTIES, "contact")
    body = select_properties(contact_json(contact), select, ("@odata.etag", "id"))
    entity = f"{_base(request)}/v1.0/$metadata#users('{user.id}')/contacts/$entity"
    return json_response({"@odata.context": entity, **body})


# ---- delta ------------------------------------------------------------------------------


def _round_state(request: Request, kind: str, user: UserInfo, folder_id: str) -> dict[str, Any]:
    params = request.query_params
    raw = params.get("$skiptoken") or params.get("$deltatoken")
    tenant = context.tenant_of(request)
    if raw is None:
        for unsupported in ("$filter", "$orderby", "$expand", "$top", "$search", "changeType"):
            # NOTE: the contact delta pages document only $select and odata.maxpagesize.
            # A loud 400 keeps a client from reading a full round as a filtered one.
            if unsupported in params:
                raise GraphHTTPError(
                    400,
                    "BadRequest",
                    f"The emulator does not support '{unsupported}' on contact delta; remove it.",
                )
        allowed, entity = (
            (CONTACT_PROPERTIES, "contact") if kind == "c" else (FOLDER_PROPERTIES, "contactFolder")
        )
        return {
            "k": kind,
            "u": user.id,
            "f": folder_id,
            "w": 0,
            "p": None,
            "c": 0,
            "s": parse_select(params.get("$select"), allowed, entity),
            "g": tenant.sync_generation(user.id),
        }
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


def _initial_link(request: Request, state: dict[str, Any]) -> str:
    """Return the first delta request of a new round with the same ``$select``."""
    params = {"$select": ",".join(state["s"])} if state.get("s") else {}
    return absolute_link(request, _delta_path(state), params)


def _delta_path(state: dict[str, Any]) -> str:
    if state["k"] == "c":
        return f"/v1.0/users/{state['u']}/contactFolders/{state['f']}/contacts/delta"
    return f"/v1.0/users/{state['u']}/contactFolders/delta"


def _page_size(request: Request) -> int:
    return max(1, min(preferred_page_size(request) or OUTLOOK_DEFAULT_PAGE, DELTA_MAX_PAGE))


def _delta_payload(
    request: Request,
    state: dict[str, Any],
    values: list[dict[str, Any]],
    cursor: int | None,
    upto: int,
) -> dict[str, Any]:
    entity = "contact" if state["k"] == "c" else "contactFolder"
    payload: dict[str, Any] = {
        "@odata.context": f"{_base(request)}/v1.0/$metadata#Collection({entity})",
        "value": values,
    }
    if cursor is not None:
        token = encode_token({**state, "p": upto, "c": cursor})
        link = absolute_link(request, _delta_path(state), {"$skiptoken": token})
        payload["@odata.nextLink"] = link
    else:
        token = encode_token({**state, "w": upto, "p": None, "c": 0})
        link = absolute_link(request, _delta_path(state), {"$deltatoken": token})
        payload["@odata.deltaLink"] = link
    return payload


async def folder_delta(request: Request) -> Response:
    user = contact_user(request)
    tenant = context.tenant_of(request)
    state = _round_state(request, "cf", user, "")
    upto = state["p"] if state["p"] is not None else tenant.current_seq()
    events, cursor = tenant.contact_folder_changes(
        user.id, after=state["w"], upto=upto, cursor=state["c"], limit=_page_size(request)
    )
    values: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Tombstone):
            values.append({"id": event.immutable_id, "@removed": {"reason": "deleted"}})
            continue
        values.append(select_properties(folder_json(event), state["s"], ("id",)))
    return json_response(_delta_payload(request, state, values, cursor, upto))


async def contact_delta(request: Request) -> Response:
    user = contact_user(request)
    folder = _folder_or_404(request, user)
    tenant = context.tenant_of(request)
    state = _round_state(request, "c", user, folder.id)
    upto = state["p"] if state["p"] is not None else tenant.current_seq()
    events, cursor = tenant.contact_changes(
        user.id,
        folder.id,
        after=state["w"],
        upto=upto,
        cursor=state["c"],
        limit=_page_size(request),
    )
    values: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, Tombstone):
            values.append({"id": event.immutable_id, "@removed": {"reason": "deleted"}})
            continue
        assert isinstance(event, ContactInfo)
        values.append(select_properties(contact_json(event), state["s"], ("@odata.etag", "id")))
    return json_response(_delta_payload(request, state, values, cursor, upto))


# ---- writes -----------------------------------------------------------------------------


async def _create_folder(request: Request, user: UserInfo, parent_id: str | None) -> Response:
    body = await read_json(request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphHTTPError(
            400, "ErrorInvalidParameter", "The displayName of a new folder must not be empty."
        )
    try:
        folder = context.tenant_of(request).create_contact_folder(user.id, parent_id, name)
    except FolderExistsError:
        raise GraphHTTPError(
            409, "ErrorFolderExists", "A folder with the specified name already exists."
        ) from None
    entity = f"{_base(request)}/v1.0/$metadata#users('{user.id}')/contactFolders/$entity"
    return json_response({"@odata.context": entity, **folder_json(folder)}, 201)


async def create_top_folder(request: Request) -> Response:
    return await _create_folder(request, contact_user(request, write=True), None)


async def create_child_folder(request: Request) -> Response:
    user = contact_user(request, write=True)
    return await _create_folder(request, user, _folder_or_404(request, user).id)


async def _create_contact(request: Request, user: UserInfo, folder_id: str) -> Response:
    properties = check_contact_body(await read_json(request))
    contact = context.tenant_of(request).create_contact(user.id, folder_id, properties)
    entity = f"{_base(request)}/v1.0/$metadata#users('{user.id}')/contacts/$entity"
    return json_response({"@odata.context": entity, **contact_json(contact)}, 201)


async def create_folder_contact(request: Request) -> Response:
    user = contact_user(request, write=True)
    return await _create_contact(request, user, _folder_or_404(request, user).id)


async def create_default_contact(request: Request) -> Response:
    user = contact_user(request, write=True)
    default = context.tenant_of(request).default_contact_folder(user.id)
    return await _create_contact(request, user, default.id)


async def delete_contact(request: Request) -> Response:
    user = contact_user(request, write=True)
    try:
        context.tenant_of(request).remove_contact(user.id, request.path_params["contact"])
    except KeyError:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        ) from None
    return Response(status_code=204)


def _variants(path: str) -> list[str]:
    """Return ``path`` and its lower-case-segment twin: Graph segment names ignore case."""
    lowered = path.replace("contactFolders", "contactfolders").replace(
        "childFolders", "childfolders"
    )
    return [path] if lowered == path else [path, lowered]


_USER = "/v1.0/users/{user}"
_FOLDER = _USER + "/contactFolders/{folder}"


def _routes(path: str, endpoint: Any, method: str = "GET") -> list[Route]:
    return [Route(variant, endpoint, methods=[method]) for variant in _variants(path)]


routes = [
    *_routes(_USER + "/contactFolders/delta", folder_delta),
    *_routes(_USER + "/contactFolders", list_folders),
    *_routes(_USER + "/contactFolders", create_top_folder, "POST"),
    *_routes(_FOLDER + "/contacts/delta", contact_delta),
    *_routes(_FOLDER + "/contacts", list_folder_contacts),
    *_routes(_FOLDER + "/contacts", create_folder_contact, "POST"),
    *_routes(_FOLDER + "/childFolders", list_child_folders),
    *_routes(_FOLDER + "/childFolders", create_child_folder, "POST"),
    *_routes(_FOLDER, get_folder),
    *_routes(_USER + "/contacts", list_default_contacts),
    *_routes(_USER + "/contacts", create_default_contact, "POST"),
    *_routes(_USER + "/contacts/{contact}", get_contact),
    *_routes(_USER + "/contacts/{contact}", delete_contact, "DELETE"),
]
