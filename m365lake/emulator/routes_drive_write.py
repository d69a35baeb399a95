"""Drive write routes: small uploads, upload sessions, folder creation, PATCH and DELETE.

Routes exist under every drive prefix of ``routes_drives``. Items are addressed by id,
new files by parent id and name (``/items/{parent}:/{name}:/content``). The upload URL
of a session (``/_upload/{session}?tempauth=...``) is pre-authenticated: it rejects an
Authorization header with 401, as SharePoint may.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context
from m365lake.emulator.auth import require_role
from m365lake.emulator.drive_json import QUOTA_TOTAL_BYTES, ctag, etag, item_json
from m365lake.emulator.drive_writes import (
    CONFLICT_BEHAVIORS,
    ConflictBehavior,
    FileSystemInfo,
    NameConflictError,
)
from m365lake.emulator.drives import DriveInfo, ItemInfo, check_item_name
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GraphHTTPError, json_response
from m365lake.emulator.routes_drives import DRIVE_PREFIXES, Handler, resolve_drive, resolve_item
from m365lake.emulator.upload_sessions import UPLOAD_PATH, UploadSession, UploadSessionStore

FILES_WRITE_ROLES = (
    "Files.ReadWrite.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
)
CONFLICT_PARAMETER = "@microsoft.graph.conflictBehavior"


# ---- shared checks ---------------------------------------------------------------------


def _writer(request: Request) -> tuple[Tenant, DriveInfo]:
    tenant, drive = resolve_drive(request)
    require_role(
        context.claims_of(request),
        FILES_WRITE_ROLES,
        "accessDenied",
        "Access denied: writing to a drive needs Files.ReadWrite.All or Sites.ReadWrite.All.",
    )
    return tenant, drive


def _target_folder(request: Request, tenant: Tenant, drive: DriveInfo, key: str) -> ItemInfo:
    folder_id = drive.root_id if key.lower() == "root" else key
    info = tenant.item_info(drive.id, folder_id)
    if info is None:
        raise GraphHTTPError(404, "itemNotFound", f"The parent item {key!r} was not found.")
    if not info.is_folder:
        raise GraphHTTPError(400, "invalidRequest", f"The parent item {key!r} is not a folder.")
    return info


def _conflict(raw: object, default: ConflictBehavior | None) -> ConflictBehavior | None:
    if raw is None:
        return default
    for behavior in CONFLICT_BEHAVIORS:
        if raw == behavior:
            return behavior
    raise GraphHTTPError(
        400,
        "invalidRequest",
        f"Invalid {CONFLICT_PARAMETER} {raw!r}: use one of {', '.join(CONFLICT_BEHAVIORS)}.",
    )


def _parse_time(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise GraphHTTPError(
            400, "invalidRequest", f"fileSystemInfo.{field} {value!r} is not an ISO 8601 UTC time."
        )
    return parsed


def _file_system_info(raw: object) -> FileSystemInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise GraphHTTPError(400, "invalidRequest", "fileSystemInfo must be a JSON object.")
    return FileSystemInfo(
        created_at=_parse_time(raw.get("createdDateTime"), "createdDateTime"),
        modified_at=_parse_time(raw.get("lastModifiedDateTime"), "lastModifiedDateTime"),
    )


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphHTTPError(400, "invalidRequest", "The request body must be a JSON object.")
    return body


def _name_error(error: ValueError) -> GraphHTTPError:
    if isinstance(error, NameConflictError):
        return GraphHTTPError(
            409,
            "nameAlreadyExists",
            f"The specified item name already exists. Name: {error.name}",
        )
    return GraphHTTPError(400, "invalidRequest", f"The provided name is not allowed: {error}")


def _check_if_match(request: Request, existing: ItemInfo | None) -> None:
    """Apply ``If-Match`` (eTag or cTag) and ``If-None-Match: *`` with 412 on failure."""
    if_match = request.headers.get("if-match")
    if if_match is not None and (
        existing is None or if_match.strip() not in (etag(existing), ctag(existing), "*")
    ):
        raise GraphHTTPError(
            412, "preconditionFailed", "The If-Match value does not match the item's eTag."
        )
    if request.headers.get("if-none-match", "").strip() == "*" and existing is not None:
        raise GraphHTTPError(412, "preconditionFailed", "An item with this name already exists.")


def _item_response(
    request: Request, tenant: Tenant, drive: DriveInfo, info: ItemInfo, status: int
) -> Response:
    context_url = f"{str(request.base_url).rstrip('/')}/v1.0/$metadata#driveItems/$entity"
    return json_response(
        {"@odata.context": context_url, **item_json(tenant, request, drive, info)}, status
    )


def _existing_child(tenant: Tenant, drive: DriveInfo, parent_id: str, name: str) -> ItemInfo | None:
    for child in tenant.children_of(drive.id, parent_id):
        if child.name.casefold() == name.casefold():
            return child
    return None


# ---- small uploads ---------------------------------------------------------------------


async def _small_body(request: Request) -> bytes:
    limit: int = request.app.state.options.drive_simple_upload_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = await request.body()
    if len(body) > limit:
        raise _too_large(len(body), limit)
    return body


def _too_large(size: int, limit: int) -> GraphHTTPError:
    # NOTE: Graph documents the 4 MB limit but not the error code it returns above it.
    return GraphHTTPError(
        413,
        "requestEntityTooLarge",
        f"The request body has {size} bytes, above the {limit}-byte limit of a simple "
        "upload; use an upload session (createUploadSession) for larger files.",
    )


async def put_new_content(request: Request) -> Response:
    """``PUT /items/{parent}:/{name}:/content``: create or (by default) replace by name."""
    tenant, drive = _writer(request)
    parent = _target_folder(request, tenant, drive, request.path_params["item"])
    conflict = _conflict(request.query_params.get(CONFLICT_PARAMETER), "replace")
    assert conflict is not None
    name = request.path_params["name"]
    _check_if_match(request, _existing_child(tenant, drive, parent.id, name))
    body = await _small_body(request)
    try:
        info, created = tenant.put_drive_file(drive.id, parent.id, name, body, conflict=conflict)
    except KeyError as error:
        raise GraphHTTPError(404, "itemNotFound", str(error)) from None
    except ValueError as error:
        raise _name_error(error) from None
    return _item_response(request, tenant, drive, info, 201 if created else 200)


async def put_existing_content(request: Request) -> Response:
    """``PUT /items/{id}/content``: replace the content of an existing file."""
    tenant, drive = _writer(request)
    _, _, item = resolve_item(request)
    if item.is_folder or item.package_type is not None:
        raise GraphHTTPError(400, "invalidRequest", "Only a file's content can be replaced.")
    _check_if_match(request, item)
    body = await _small_body(request)
    info = tenant.replace_drive_file_content(drive.id, item.id, body)
    return _item_response(request, tenant, drive, info, 200)


# ---- folders, PATCH and DELETE ---------------------------------------------------------


async def create_child(request: Request) -> Response:
    """``POST /items/{parent}/children``: create a folder; repeating it returns 200."""
    tenant, drive = _writer(request)
    parent = _target_folder(request, tenant, drive, request.path_params.get("item", "root"))
    body = await _json_body(request)
    name = body.get("name")
    if not isinstance(name, str):
        raise GraphHTTPError(400, "invalidRequest", "The new item needs a 'name' string.")
    if "folder" not in body:
        raise GraphHTTPError(
            400,
            "invalidRequest",
            "Only folders can be created here (send a 'folder' facet); upload files with PUT "
            "or an upload session.",
        )
    conflict = _conflict(
        body.get(CONFLICT_PARAMETER, request.query_params.get(CONFLICT_PARAMETER)), None
    )
    try:
        info, created = tenant.create_drive_folder(
            drive.id,
            parent.id,
            name,
            conflict=conflict,
            file_system_info=_file_system_info(body.get("fileSystemInfo")),
        )
    except ValueError as error:
        raise _name_error(error) from None
    return _item_response(request, tenant, drive, info, 201 if created else 200)


async def patch_item(request: Request) -> Response:
    """``PATCH /items/{id}``: rename, move (``parentReference.id``) or re-date an item."""
    tenant, drive = _writer(request)
    _, _, item = resolve_item(request)
    _check_if_match(request, item)
    body = await _json_body(request)
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise GraphHTTPError(400, "invalidRequest", "'name' must be a string.")
    new_parent = (body.get("parentReference") or {}).get("id")
    try:
        if new_parent is not None and new_parent != item.parent_id:
            tenant.move_item(item.id, _target_folder(request, tenant, drive, new_parent).id)
        info = tenant.update_drive_item(
            drive.id,
            item.id,
            name=name,
            file_system_info=_file_system_info(body.get("fileSystemInfo")),
        )
    except ValueError as error:
        raise _name_error(error) from None
    return _item_response(request, tenant, drive, info, 200)


async def delete_item(request: Request) -> Response:
    tenant, _ = _writer(request)
    _, _, item = resolve_item(request)
    if item.is_root:
        raise GraphHTTPError(400, "invalidRequest", "The drive root cannot be deleted.")
    _check_if_match(request, item)
    tenant.delete_item(item.id)
    return Response(status_code=204)


# ---- upload sessions -------------------------------------------------------------------


def _sessions(request: Request) -> UploadSessionStore:
    store: UploadSessionStore = request.app.state.upload_sessions
    return store


async def _open_session(
    request: Request,
    tenant: Tenant,
    drive: DriveInfo,
    parent: ItemInfo,
    name: str,
    existing: ItemInfo | None,
    default_conflict: ConflictBehavior,
) -> Response:
    body = await _json_body(request)
    item = body.get("item") or {}
    if not isinstance(item, dict):
        raise GraphHTTPError(400, "invalidRequest", "'item' must be a JSON object.")
    conflict = _conflict(
        item.get(CONFLICT_PARAMETER, request.query_params.get(CONFLICT_PARAMETER)),
        default_conflict,
    )
    assert conflict is not None
    _check_if_match(request, existing)
    file_size = item.get("fileSize")
    if isinstance(file_size, int) and file_size > QUOTA_TOTAL_BYTES - drive.used_bytes:
        raise GraphHTTPError(
            507,
            "quotaLimitReached",
            f"The file of {file_size} bytes does not fit in the drive's remaining quota.",
        )
    session = _sessions(request).create(
        drive_id=drive.id,
        parent_id=parent.id,
        name=name,
        conflict=conflict,
        file_system_info=_file_system_info(item.get("fileSystemInfo")),
        defer_commit=bool(body.get("deferCommit", False)),
        total=file_size if isinstance(file_size, int) else None,
    )
    upload_url = (
        f"{str(request.base_url).rstrip('/')}{UPLOAD_PATH}{session.id}?tempauth={session.secret}"
    )
    return json_response(
        {
            "@odata.context": f"{str(request.base_url).rstrip('/')}/v1.0/$metadata"
            "#microsoft.graph.uploadSession",
            "uploadUrl": upload_url,
            "expirationDateTime": session.expiration_text(),
            "nextExpectedRanges": ["0-"],
        }
    )


async def create_session_by_name(request: Request) -> Response:
    """``POST /items/{parent}:/{name}:/createUploadSession``."""
    tenant, drive = _writer(request)
    parent = _target_folder(request, tenant, drive, request.path_params["item"])
    name = request.path_params["name"]
    try:
        check_item_name(name)
    except ValueError as error:
        raise _name_error(error) from None
    existing = _existing_child(tenant, drive, parent.id, name)
    # NOTE: Graph does not document the default conflict behaviour of an upload session;
    # the emulator uses ``fail`` so that a client never overwrites by accident.
    return await _open_session(request, tenant, drive, parent, name, existing, "fail")


async def create_session_for_item(request: Request) -> Response:
    """``POST /items/{id}/createUploadSession``: new content for an existing file."""
    tenant, drive = _writer(request)
    _, _, item = resolve_item(request)
    if item.is_folder or item.parent_id is None:
        raise GraphHTTPError(400, "invalidRequest", "Upload sessions write files, not folders.")
    parent = _target_folder(request, tenant, drive, item.parent_id)
    return await _open_session(request, tenant, drive, parent, item.name, item, "replace")


def _session_of(request: Request) -> UploadSession:
    authorization = request.headers.get("authorization", "").strip()
    if authorization:
        raise GraphHTTPError(
            401,
            "unauthenticated",
            "The upload URL is pre-authenticated; send fragments without an Authorization header.",
        )
    return _sessions(request).find(
        request.path_params["session"], request.query_params.get("tempauth", "")
    )


def _status_json(session: UploadSession) -> dict[str, Any]:
    return {
        "expirationDateTime": session.expiration_text(),
        "nextExpectedRanges": session.next_expected_ranges(),
    }


def _commit(request: Request, session: UploadSession) -> Response:
    tenant: Tenant = request.app.state.tenant
    store = _sessions(request)
    try:
        info, created = tenant.put_drive_file(
            session.drive_id,
            session.parent_id,
            session.name,
            bytes(session.data),
            conflict=session.conflict,
            file_system_info=session.file_system_info,
        )
    except KeyError:
        store.remove(session.id)
        raise GraphHTTPError(
            404, "itemNotFound", "The folder the upload session writes to no longer exists."
        ) from None
    except ValueError as error:
        # The session stays open, so the client may commit again after fixing the clash.
        raise _name_error(error) from None
    store.remove(session.id)
    drive = tenant.drive_info(session.drive_id)
    assert drive is not None
    return _item_response(request, tenant, drive, info, 201 if created else 200)


async def upload_fragment(request: Request) -> Response:
    session = _session_of(request)
    body = await request.body()
    _sessions(request).accept(session, request.headers.get("content-range"), body)
    if session.complete and not session.defer_commit:
        return _commit(request, session)
    return json_response(_status_json(session), 202)


async def upload_status(request: Request) -> Response:
    return json_response(_status_json(_session_of(request)))


async def cancel_upload(request: Request) -> Response:
    session = _session_of(request)
    _sessions(request).remove(session.id)
    return Response(status_code=204)


async def commit_upload(request: Request) -> Response:
    """Empty ``POST`` to the upload URL: complete a ``deferCommit`` session."""
    session = _session_of(request)
    if not session.complete:
        raise GraphHTTPError(
            400,
            "invalidRequest",
            f"The upload is incomplete: {session.received} of {session.total} bytes received.",
            inner_code="uploadSessionIncomplete",
        )
    return _commit(request, session)


async def commit_from_source_url(request: Request) -> Response:
    """``PUT /items/{parent}:/{name}:`` with ``@microsoft.graph.sourceUrl``: commit a session.

    This is how a client recovers from a name clash at the last fragment: it commits the
    uploaded bytes again under new metadata (name, conflict behaviour) without sending
    them again.
    """
    tenant, drive = _writer(request)
    parent = _target_folder(request, tenant, drive, request.path_params["item"])
    body = await _json_body(request)
    source_url = body.get("@microsoft.graph.sourceUrl")
    if not isinstance(source_url, str):
        raise GraphHTTPError(
            400,
            "invalidRequest",
            "Send '@microsoft.graph.sourceUrl' with the upload session URL; the emulator "
            "creates items by PUT only from upload sessions.",
        )
    location = urlsplit(source_url)
    if not location.path.startswith(UPLOAD_PATH):
        raise GraphHTTPError(400, "invalidRequest", "The sourceUrl is not an upload session URL.")
    secret = parse_qs(location.query).get("tempauth", [""])[0]
    session = _sessions(request).find(location.path[len(UPLOAD_PATH) :], secret)
    if session.drive_id != drive.id:
        raise GraphHTTPError(400, "invalidRequest", "The upload session belongs to another drive.")
    if not session.complete:
        raise GraphHTTPError(
            400,
            "invalidRequest",
            f"The upload is incomplete: {session.received} of {session.total} bytes received.",
            inner_code="uploadSessionIncomplete",
        )
    name = body.get("name", request.path_params["name"])
    if not isinstance(name, str):
        raise GraphHTTPError(400, "invalidRequest", "'name' must be a string.")
    try:
        check_item_name(name)
    except ValueError as error:
        raise _name_error(error) from None
    _check_if_match(request, _existing_child(tenant, drive, parent.id, name))
    # NOTE: Graph documents no default here; the emulator uses PUT's default, replace.
    conflict = _conflict(
        body.get(CONFLICT_PARAMETER, request.query_params.get(CONFLICT_PARAMETER)), "replace"
    )
    assert conflict is not None
    session.parent_id, session.name, session.conflict = parent.id, name, conflict
    return _commit(request, session)


# ---- routing ---------------------------------------------------------------------------

_WRITE_ROUTES: tuple[tuple[str, Handler, str], ...] = (
    ("/items/{item}:/{name}:/content", put_new_content, "PUT"),
    ("/items/{item}:/{name}:/createUploadSession", create_session_by_name, "POST"),
    ("/items/{item}:/{name}:", commit_from_source_url, "PUT"),
    ("/items/{item}/content", put_existing_content, "PUT"),
    ("/items/{item}/createUploadSession", create_session_for_item, "POST"),
    ("/items/{item}/children", create_child, "POST"),
    ("/root/children", create_child, "POST"),
    ("/items/{item}", patch_item, "PATCH"),
    ("/items/{item}", delete_item, "DELETE"),
)

routes = [
    Route(f"{UPLOAD_PATH}{{session}}", upload_fragment, methods=["PUT"]),
    Route(f"{UPLOAD_PATH}{{session}}", upload_status, methods=["GET"]),
    Route(f"{UPLOAD_PATH}{{session}}", cancel_upload, methods=["DELETE"]),
    Route(f"{UPLOAD_PATH}{{session}}", commit_upload, methods=["POST"]),
    *[
        Route(prefix + suffix, handler, methods=[method])
        for prefix in DRIVE_PREFIXES
        for suffix, handler, method in _WRITE_ROUTES
    ],
]
