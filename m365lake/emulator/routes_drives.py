"""Drive routes: drives, items, children, delta, content, versions and download URLs.

Every drive route exists under ``/drives/{drive}``, ``/users/{user}/drive`` and
``/sites/{site}/drive`` (the site's default library). Drive delta tokens are opaque
base64url JSON: drive ``d``, watermark ``w``, upper bound ``p`` of the current round,
cursor ``c``, page size ``n``, ``$select`` ``s`` and the drive's sync generation ``g``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from m365lake.emulator import context
from m365lake.emulator.auth import require_role
from m365lake.emulator.downloads import DOWNLOAD_PATH, BodyResponse, DownloadService
from m365lake.emulator.drive_json import (
    ITEM_PROPERTIES,
    ctag,
    drive_json,
    etag,
    item_json,
    select_item,
    tombstone_json,
    version_json,
)
from m365lake.emulator.drives import DriveInfo, DriveTombstone, ItemInfo
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_select,
    parse_top,
)

FILES_READ_ROLES = (
    "Files.Read.All",
    "Files.ReadWrite.All",
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
)
DELTA_DEFAULT_PAGE = 200
CHILDREN_DEFAULT_PAGE = 200
# NOTE: Graph documents no maximum $top for drive delta or children; 999 is an assumption.
DRIVE_MAX_PAGE = 999
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TIMESTAMP_TOKEN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z?$")


def files_reader(request: Request) -> Tenant:
    require_role(
        context.claims_of(request),
        FILES_READ_ROLES,
        "accessDenied",
        "Either scp or roles claim need to be present in the token.",
    )
    return context.tenant_of(request)


def _not_found(message: str = "The resource could not be found.") -> GraphHTTPError:
    return GraphHTTPError(404, "itemNotFound", message)


def resolve_drive(request: Request) -> tuple[Tenant, DriveInfo]:
    """Find the drive a route names by ``{drive}``, ``{user}`` or ``{site}``."""
    tenant = files_reader(request)
    params = request.path_params
    drive: DriveInfo | None
    if "drive" in params:
        drive = tenant.drive_info(params["drive"])
        if drive is None:
            raise _not_found("The drive could not be found.")
        if "site" in params:
            site = tenant.resolve_site(params["site"], by_name=False)
            if site is None or drive.site_id != site.id:
                raise _not_found("The drive could not be found.")
        return tenant, drive
    if "user" in params:
        user = tenant.resolve_user(params["user"])
        if user is None:
            raise GraphHTTPError(404, "itemNotFound", "The user could not be found.")
        drive = tenant.onedrive_of(user.id)
        if drive is None:
            raise GraphHTTPError(404, "ResourceNotFound", "User's mysite not found.")
        return tenant, drive
    site = tenant.resolve_site(params["site"], by_name=False)
    if site is None:
        raise _not_found("Requested site could not be found")
    libraries = tenant.drives_of_site(site.id)
    if not libraries:
        raise _not_found("The site has no document library.")
    default = next((d for d in libraries if d.library == "Documents"), libraries[0])
    return tenant, default


def resolve_item(request: Request) -> tuple[Tenant, DriveInfo, ItemInfo]:
    tenant, drive = resolve_drive(request)
    item_id = request.path_params.get("item", drive.root_id)
    if item_id.lower() == "root":
        item_id = drive.root_id
    info = tenant.item_info(drive.id, item_id)
    if info is None:
        raise _not_found("Item not found")
    return tenant, drive, info


def _context(request: Request, fragment: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/v1.0/$metadata#{fragment}"


# ---- drives and items ------------------------------------------------------------------


async def get_drive(request: Request) -> Response:
    tenant, drive = resolve_drive(request)
    return json_response(
        {"@odata.context": _context(request, "drives/$entity"), **drive_json(tenant, drive)}
    )


async def list_user_drives(request: Request) -> Response:
    tenant, drive = resolve_drive(request)
    return json_response(
        {"@odata.context": _context(request, "drives"), "value": [drive_json(tenant, drive)]}
    )


async def get_item(request: Request) -> Response:
    tenant, drive, info = resolve_item(request)
    select = parse_select(request.query_params.get("$select"), ITEM_PROPERTIES, "driveItem")
    body = select_item(item_json(tenant, request, drive, info), select)
    return json_response({"@odata.context": _context(request, "driveItems/$entity"), **body})


async def list_children(request: Request) -> Response:
    tenant, drive, folder = resolve_item(request)
    params = request.query_params
    raw = params.get("$skiptoken")
    if raw is not None:
        state = decode_token(raw, name="$skiptoken")
        select, top, offset = state["s"], state["t"], state["o"]
    else:
        select = parse_select(params.get("$select"), ITEM_PROPERTIES, "driveItem")
        top = parse_top(params.get("$top"), maximum=DRIVE_MAX_PAGE, default=CHILDREN_DEFAULT_PAGE)
        offset = 0
    if not folder.is_folder:
        return json_response({"@odata.context": _context(request, "driveItems"), "value": []})
    children = tenant.children_of(drive.id, folder.id)
    page = children[offset : offset + top]
    values = [select_item(item_json(tenant, request, drive, c), select) for c in page]
    payload: dict[str, Any] = {"@odata.context": _context(request, "driveItems"), "value": values}
    if offset + top < len(children):
        token = encode_token({"s": select, "t": top, "o": offset + top})
        payload["@odata.nextLink"] = absolute_link(request, request.url.path, {"$skiptoken": token})
    return json_response(payload)


async def list_versions(request: Request) -> Response:
    tenant, drive, info = resolve_item(request)
    if info.is_folder or info.package_type is not None:
        raise GraphHTTPError(400, "invalidRequest", "Versions are only kept for files.")
    versions = tenant.file_versions(drive.id, info.id)
    return json_response(
        {
            "@odata.context": _context(request, "driveItemVersions"),
            "value": [version_json(tenant, v) for v in versions],
        }
    )


# ---- content ---------------------------------------------------------------------------


def _check_downloadable(info: ItemInfo) -> None:
    if info.malware is not None:
        raise GraphHTTPError(
            403, "malwareDetected", "Malware detected in the file; the download is blocked."
        )
    if info.is_folder or info.package_type is not None:
        raise GraphHTTPError(404, "itemNotFound", "The item has no content stream to download.")


async def get_content(request: Request) -> Response:
    _, drive, info = resolve_item(request)
    _check_downloadable(info)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and if_none_match.strip() in (etag(info), ctag(info)):
        return Response(status_code=304, headers={"ETag": etag(info)})
    downloads: DownloadService = request.app.state.downloads
    url = downloads.url(request, drive.id, info.id, info.content_version)
    return RedirectResponse(url, status_code=302)


async def get_version_content(request: Request) -> Response:
    tenant, drive, info = resolve_item(request)
    _check_downloadable(info)
    label = request.path_params["version"]
    try:
        number = int(label.split(".")[0])
    except ValueError:
        raise _not_found("Version not found") from None
    if tenant.file_content(drive.id, info.id, number) is None:
        raise _not_found("Version not found")
    downloads: DownloadService = request.app.state.downloads
    return RedirectResponse(downloads.url(request, drive.id, info.id, number), status_code=302)


async def download(request: Request) -> Response:
    """Serve a pre-authenticated download URL: no Authorization needed, ``Range`` honoured."""
    downloads: DownloadService = request.app.state.downloads
    state = downloads.check(request.path_params["token"], request.query_params.get("tempauth", ""))
    tenant: Tenant = request.app.state.tenant
    drive_id, item_id = str(state["d"]), str(state["i"])
    content = tenant.file_content(drive_id, item_id, int(state["v"]))
    if content is None:
        raise _not_found("The file no longer exists.")
    info = tenant.item_info(drive_id, item_id)
    media_type = info.mime_type if info is not None else "application/octet-stream"
    total = len(content)
    status, body = 200, content
    headers = {"Accept-Ranges": "bytes"}
    if info is not None:
        headers["ETag"] = etag(info)
    requested = request.headers.get("range")
    if requested is not None:
        window = _parse_range(requested.strip(), total)
        if window is None:
            raise GraphHTTPError(
                416,
                "invalidRange",
                f"The requested range '{requested}' is not satisfiable for {total} bytes.",
                headers={"Content-Range": f"bytes */{total}"},
            )
        start, end = window
        status, body = 206, content[start : end + 1]
        headers["Content-Range"] = f"bytes {start}-{end}/{total}"
    return BodyResponse(
        body,
        status_code=status,
        headers=headers,
        media_type=media_type,
        break_after=downloads.take_break(item_id),
    )


def _parse_range(value: str, total: int) -> tuple[int, int] | None:
    """Return the (first, last) byte of a single ``bytes=`` range, or None if unsatisfiable."""
    match = _RANGE.match(value)
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first_text, last_text = match.groups()
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or total == 0:
            return None
        return max(0, total - suffix), total - 1
    first = int(first_text)
    last = int(last_text) if last_text else total - 1
    if first >= total or last < first:
        return None
    return first, min(last, total - 1)


# ---- delta -----------------------------------------------------------------------------


def _delta_state(request: Request, tenant: Tenant, drive: DriveInfo) -> dict[str, Any]:
    params = request.query_params
    raw = params.get("token")
    generation, code = tenant.drive_generation(drive.id)
    if raw is None or raw == "latest" or _TIMESTAMP_TOKEN.match(raw):
        state: dict[str, Any] = {
            "d": drive.id,
            "w": 0,
            "p": None,
            "c": 0,
            "n": parse_top(params.get("$top"), maximum=DRIVE_MAX_PAGE, default=DELTA_DEFAULT_PAGE),
            "s": parse_select(params.get("$select"), ITEM_PROPERTIES, "driveItem"),
            "g": generation,
        }
        if raw == "latest":
            state["w"] = tenant.current_drive_seq()
            state["latest"] = True
        elif raw is not None:
            moment = datetime.fromisoformat(raw.rstrip("Z")).replace(tzinfo=UTC)
            state["w"] = tenant.seq_at(drive.id, moment)
        return state
    state = decode_token(raw, name="token")
    if state.get("d") != drive.id:
        raise GraphHTTPError(400, "invalidRequest", "The delta token was issued for another drive.")
    if state.get("g") != generation:
        params_out: dict[str, str] = {}
        if state.get("s"):
            params_out["$select"] = ",".join(state["s"])
        raise GraphHTTPError(
            410,
            code,
            "Resync required. Replace any local items with the server's version "
            "(including deletes) if you're sure that the service was up to date with your "
            "local changes when you last sync'd. Upload any local changes that the server "
            "doesn't know about."
            if code == "resyncChangesApplyDifferences"
            else "Resync required. Upload any local items that the service did not return, "
            "and upload any files that differ from the server's version (keeping both "
            "copies if you're not sure which one is more up-to-date).",
            headers={"Location": absolute_link(request, request.url.path, params_out)},
        )
    return state


async def delta(request: Request) -> Response:
    tenant, drive = resolve_drive(request)
    state = _delta_state(request, tenant, drive)
    payload: dict[str, Any] = {"@odata.context": _context(request, "Collection(driveItem)")}
    if state.pop("latest", False):
        payload["value"] = []
        payload["@odata.deltaLink"] = absolute_link(
            request, request.url.path, {"token": encode_token(state)}
        )
        return json_response(payload)
    upto = state["p"] if state["p"] is not None else tenant.current_drive_seq()
    events, cursor = tenant.drive_changes(
        drive.id, after=state["w"], upto=upto, cursor=state["c"], limit=int(state["n"])
    )
    values: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, DriveTombstone):
            values.append(tombstone_json(drive, event))
        else:
            body = item_json(tenant, request, drive, event, in_delta=True)
            values.append(select_item(body, state["s"]))
    payload["value"] = values
    if cursor is not None:
        token = encode_token({**state, "p": upto, "c": cursor})
        payload["@odata.nextLink"] = absolute_link(request, request.url.path, {"token": token})
    else:
        token = encode_token({**state, "w": upto, "p": None, "c": 0})
        payload["@odata.deltaLink"] = absolute_link(request, request.url.path, {"token": token})
    return json_response(payload)


# ---- routing ---------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]
DRIVE_PREFIXES = (
    "/v1.0/drives/{drive}",
    "/v1.0/users/{user}/drive",
    "/v1.0/sites/{site}/drive",
    "/v1.0/sites/{site}/drives/{drive}",
)
_ITEM_ROUTES: tuple[tuple[str, Handler], ...] = (
    ("", get_drive),
    ("/root", get_item),
    ("/root/delta", delta),
    ("/root/children", list_children),
    ("/items/{item}", get_item),
    ("/items/{item}/children", list_children),
    ("/items/{item}/content", get_content),
    ("/items/{item}/versions", list_versions),
    ("/items/{item}/versions/{version}/content", get_version_content),
)

routes = [
    Route(f"{DOWNLOAD_PATH}{{token}}", download),
    Route("/v1.0/users/{user}/drives", list_user_drives),
    *[
        Route(prefix + suffix, handler)
        for prefix in DRIVE_PREFIXES
        for suffix, handler in _ITEM_ROUTES
    ],
]
