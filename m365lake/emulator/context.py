"""Lookups every Graph route starts with: the tenant, the caller's roles, the mailbox."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from m365lake.emulator.auth import require_role
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GraphHTTPError
from m365lake.emulator.records import FolderInfo, MessageInfo, UserInfo

DIRECTORY_READ_ROLES = (
    "User.Read.All",
    "User.ReadWrite.All",
    "User.ReadBasic.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
)
MAIL_FULL_ROLES = ("Mail.Read", "Mail.ReadWrite")
# Mail.ReadBasic.All lists messages but withholds body, attachments and MIME.
MAIL_BASIC_ROLES = (*MAIL_FULL_ROLES, "Mail.ReadBasic", "Mail.ReadBasic.All")


def tenant_of(request: Request) -> Tenant:
    tenant: Tenant = request.app.state.tenant
    return tenant


def claims_of(request: Request) -> dict[str, Any]:
    claims: dict[str, Any] = request.scope["state"]["claims"]
    return claims


def directory_reader(request: Request) -> Tenant:
    require_role(
        claims_of(request),
        DIRECTORY_READ_ROLES,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    return tenant_of(request)


def mailbox_user(request: Request, *, full_access: bool = True) -> UserInfo:
    """Resolve ``{user}`` for a mail route, enforcing the Mail.* roles and the mailbox."""
    require_role(
        claims_of(request),
        MAIL_FULL_ROLES if full_access else MAIL_BASIC_ROLES,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
    key = request.path_params["user"]
    user = tenant_of(request).resolve_user(key)
    if user is None:
        raise GraphHTTPError(
            404,
            "ErrorInvalidUser",
            f"The requested user '{key}' is invalid.",
        )
    if not user.has_mailbox:
        raise GraphHTTPError(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    return user


def folder_or_404(request: Request, user: UserInfo, key: str) -> FolderInfo:
    folder = tenant_of(request).resolve_folder(user.id, key)
    if folder is None:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return folder


def message_or_404(request: Request, user: UserInfo, key: str) -> MessageInfo:
    message = tenant_of(request).find_message(user.id, key)
    if message is None:
        raise GraphHTTPError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return message


def path_variants(path: str) -> list[str]:
    """Return ``path`` and its lower-case-segment twin: Graph segment names ignore case."""
    lowered = path.replace("mailFolders", "mailfolders").replace("childFolders", "childfolders")
    return [path] if lowered == path else [path, lowered]
