"""Mail folder listing: ``mailFolders``, one folder by id or well-known name, ``childFolders``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context, records, serialize
from m365lake.emulator.protocol import (
    absolute_link,
    json_response,
    parse_select,
    parse_skip,
    parse_top,
    preferred_page_size,
    select_properties,
)
from m365lake.emulator.records import FolderInfo, UserInfo

OUTLOOK_DEFAULT_PAGE = 10
# NOTE: Graph documents $top 1..1000 for messages; mailFolders is assumed to share that limit.
OUTLOOK_MAX_PAGE = 1000


def root_parent_id(user: UserInfo) -> str:
    """Return the parent id Exchange reports for msgfolderroot (the mailbox's hidden root)."""
    return records.derive_id(records.FOLDER_PREFIX, user.id, "mailbox-root")


def page_collection(request: Request, items: list[Any], context_fragment: str) -> dict[str, Any]:
    """Page an Outlook collection with ``$top``/``$skip``; the nextLink repeats the query."""
    params = request.query_params
    size = parse_top(params.get("$top"), maximum=OUTLOOK_MAX_PAGE, default=0)
    if size == 0:
        preferred = preferred_outlook_page_size(request)
        size = preferred or OUTLOOK_DEFAULT_PAGE
    skip = parse_skip(params.get("$skip"))
    base = str(request.base_url).rstrip("/")
    payload: dict[str, Any] = {
        "@odata.context": f"{base}/v1.0/$metadata#{context_fragment}",
        "value": items[skip : skip + size],
    }
    if skip + size < len(items):
        query = {k: v for k, v in params.items() if k != "$skip"}
        query["$skip"] = str(skip + size)
        payload["@odata.nextLink"] = absolute_link(request, request.url.path, query)
    return payload


def preferred_outlook_page_size(request: Request) -> int | None:
    size = preferred_page_size(request)
    return None if size is None else max(1, min(size, OUTLOOK_MAX_PAGE))


def _folder_list(
    request: Request, user: UserInfo, folders: list[FolderInfo], parent_id: str
) -> Response:
    include_hidden = request.query_params.get("includeHiddenFolders", "").lower() == "true"
    select = parse_select(
        request.query_params.get("$select"), serialize.FOLDER_PROPERTIES, "mailFolder"
    )
    shaped = [
        select_properties(
            serialize.folder_json(f, root_parent=root_parent_id(user)), select, ("id",)
        )
        for f in folders
        if f.parent_id == parent_id and (include_hidden or not f.is_hidden)
    ]
    return json_response(page_collection(request, shaped, f"users('{user.id}')/mailFolders"))


async def list_top_folders(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    folders = context.tenant_of(request).folders(user.id)
    root = folders[0]
    return _folder_list(request, user, folders, root.id)


async def list_child_folders(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    parent = context.folder_or_404(request, user, request.path_params["folder"])
    folders = context.tenant_of(request).folders(user.id)
    return _folder_list(request, user, folders, parent.id)


async def get_folder(request: Request) -> Response:
    user = context.mailbox_user(request, full_access=False)
    folder = context.folder_or_404(request, user, request.path_params["folder"])
    select = parse_select(
        request.query_params.get("$select"), serialize.FOLDER_PROPERTIES, "mailFolder"
    )
    body = select_properties(
        serialize.folder_json(folder, root_parent=root_parent_id(user)), select, ("id",)
    )
    base = str(request.base_url).rstrip("/")
    return json_response(
        {"@odata.context": f"{base}/v1.0/$metadata#users('{user.id}')/mailFolders/$entity", **body}
    )


routes = [
    *[Route(p, list_top_folders) for p in context.path_variants("/v1.0/users/{user}/mailFolders")],
    *[
        Route(p, list_child_folders)
        for p in context.path_variants("/v1.0/users/{user}/mailFolders/{folder}/childFolders")
    ],
    *[
        Route(p, get_folder)
        for p in context.path_variants("/v1.0/users/{user}/mailFolders/{folder}")
    ],
]
