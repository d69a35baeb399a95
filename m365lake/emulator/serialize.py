"""Graph JSON for users, mail folders, messages and attachments."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any
from urllib.parse import quote

from m365lake.emulator import mapping, records
from m365lake.emulator.model import Tenant
from m365lake.emulator.records import FolderInfo, MessageInfo, UserInfo

USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
USER_PROPERTIES = frozenset(
    (
        *USER_DEFAULT,
        "accountEnabled",
        "assignedLicenses",
        "mailNickname",
        "userType",
        "proxyAddresses",
        "otherMails",
        "usageLocation",
        "createdDateTime",
    )
)
FOLDER_PROPERTIES = frozenset(
    (
        "id",
        "displayName",
        "parentFolderId",
        "childFolderCount",
        "unreadItemCount",
        "totalItemCount",
        "isHidden",
    )
)
MESSAGE_PROPERTIES = frozenset(
    (
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "categories",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
        "internetMessageId",
        "subject",
        "bodyPreview",
        "importance",
        "parentFolderId",
        "conversationId",
        "conversationIndex",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "isRead",
        "isDraft",
        "webLink",
        "inferenceClassification",
        "body",
        "uniqueBody",
        "sender",
        "from",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "flag",
        "internetMessageHeaders",
    )
)
# Returned only when $select names them, as in Graph.
MESSAGE_SELECT_ONLY = frozenset(("uniqueBody", "internetMessageHeaders"))
ATTACHMENT_PROPERTIES = frozenset(
    (
        "id",
        "name",
        "contentType",
        "size",
        "isInline",
        "lastModifiedDateTime",
        "contentBytes",
        "contentId",
        "contentLocation",
    )
)


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_json(info: UserInfo) -> dict[str, Any]:
    user = info.user
    given, _, surname = user.display_name.partition(" ")
    return {
        "id": info.id,
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": given or None,
        "jobTitle": None,
        "mail": user.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": surname or None,
        "userPrincipalName": user.user_principal_name,
        "accountEnabled": user.account_enabled,
        "assignedLicenses": [],
        "mailNickname": user.user_principal_name.split("@")[0],
        "userType": "Member",
        "proxyAddresses": [f"SMTP:{user.mail}"] if user.mail else [],
        "otherMails": [],
        "usageLocation": None,
        "createdDateTime": "2020-01-01T00:00:00Z",
    }


def folder_json(info: FolderInfo, *, root_parent: str) -> dict[str, Any]:
    return {
        "id": info.id,
        "displayName": info.display_name,
        "parentFolderId": info.parent_id or root_parent,
        "childFolderCount": info.child_folder_count,
        "unreadItemCount": info.unread_item_count,
        "totalItemCount": info.total_item_count,
        "isHidden": info.is_hidden,
    }


def message_json(tenant: Tenant, info: MessageInfo, *, immutable: bool) -> dict[str, Any]:
    """Return every message property, with ids of the requested kind."""
    properties = tenant.cached_properties(info.immutable_id)
    if properties is None:
        properties = mapping.message_properties(info.mime, received_at=info.received_at)
        tenant.cache_properties(info.immutable_id, properties)
    message_id = info.immutable_id if immutable else info.rest_id
    received = properties.get("receivedDateTime") or timestamp(info.created_at)
    modified = max(timestamp(info.modified_at), received)
    body = {
        "@odata.etag": f'W/"{info.change_key}"',
        "id": message_id,
        "createdDateTime": received,
        "lastModifiedDateTime": modified,
        "changeKey": info.change_key,
        "categories": list(info.categories),
        "receivedDateTime": received,
        "parentFolderId": info.folder_id,
        "conversationIndex": None,
        "isRead": info.is_read,
        "isDraft": info.is_draft,
        "webLink": "https://outlook.office365.com/owa/?ItemID="
        + quote(message_id, safe="")
        + "&exvsurl=1&viewmodel=ReadMessageItem",
        "inferenceClassification": "focused",
        "flag": {"flagStatus": "notFlagged"},
    }
    for key, value in properties.items():
        if key not in (
            "id",
            "isRead",
            "isDraft",
            "categories",
            "receivedDateTime",
            "parentFolderId",
        ):
            body[key] = value
    return body


def selected_message(
    full: dict[str, Any], select: list[str] | None, info: MessageInfo
) -> dict[str, Any]:
    """Apply ``$select`` to a message: id and ``@odata.etag`` always stay."""
    if select is None:
        return {k: v for k, v in full.items() if k not in MESSAGE_SELECT_ONLY}
    kept: dict[str, Any] = {"@odata.etag": full["@odata.etag"], "id": full["id"]}
    for name in select:
        if name == "uniqueBody":
            kept[name] = full.get("body")
        elif name == "internetMessageHeaders":
            kept[name] = _headers(info.mime)
        else:
            kept[name] = full.get(name)
    return kept


def _headers(mime: bytes) -> list[dict[str, str]]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(mime)
    return [{"name": name, "value": str(value)} for name, value in parsed.items()]


def attachment_id(info: MessageInfo, index: int) -> str:
    return records.derive_id(records.ATTACHMENT_PREFIX, info.immutable_id, str(index))


def attachment_json(
    info: MessageInfo, index: int, attachment: mapping.MimeAttachment, *, with_content: bool
) -> dict[str, Any]:
    common = {
        "id": attachment_id(info, index),
        "lastModifiedDateTime": timestamp(info.modified_at),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": attachment.size,
        "isInline": attachment.is_inline,
    }
    if attachment.kind == "item":
        return {"@odata.type": "#microsoft.graph.itemAttachment", **common}
    body = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": attachment.content_type or "application/octet-stream",
        **common,
        "contentId": attachment.content_id,
        "contentLocation": None,
    }
    if with_content:
        body["contentBytes"] = base64.b64encode(attachment.content).decode()
    return body
