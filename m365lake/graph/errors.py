"""Translation of failed Graph responses into m365lake's exception tree, in one place.

The status code picks the class. The OData ``error.code`` refines it where Graph reuses a
status for different causes, such as a 404 for a missing item or for a user without a mailbox.
Codes are compared case-insensitively because Outlook and OneDrive spell the same code
differently (``SyncStateNotFound`` against ``syncStateNotFound``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from m365lake.errors import (
    AccessDeniedError,
    AuthenticationError,
    GraphError,
    GraphRequestError,
    GraphTransientError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    SyncStateExpiredError,
    ThrottledError,
)
from m365lake.graph.redact import redact_url

THROTTLING_STATUSES = frozenset({429, 503})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Codes meaning that a delta or paging token is no longer valid and the container must be
# enumerated again.
SYNC_STATE_CODES = frozenset(
    code.lower()
    for code in (
        "SyncStateNotFound",  # Outlook delta: 410 once the token left Exchange's cache.
        "syncStateNotFound",  # Generic Graph spelling, used for directory and OneDrive delta.
        "resyncRequired",  # Generic Graph code: the delta token is no longer valid.
        "resyncApplyDifferences",  # OneDrive inner code of a 410.
        "resyncUploadDifferences",  # OneDrive inner code of a 410.
        "resyncChangesApplyDifferences",  # driveItem delta 410: trust the server, with deletes.
        "resyncChangesUploadDifferences",  # driveItem delta 410: keep both sides.
    )
)

# Codes meaning that the user exists but has no Exchange Online mailbox. Graph returns
# MailboxNotEnabledForRESTAPI with 404 for unlicensed, on-premises or soft-deleted mailboxes.
# The code is matched at any status except 401 and 403, which are mapped first.
MAILBOX_NOT_ENABLED_CODES = frozenset({"mailboxnotenabledforrestapi"})

# Application permissions to name in a 403 message, matched on the request path in this
# order (a channel's /messages must match Teams before mail).
_PERMISSION_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/(teams|channels|chats)\b", re.IGNORECASE), "ChannelMessage.Read.All"),
    (re.compile(r"/(messages|mailfolders)\b", re.IGNORECASE), "Mail.Read"),
    (re.compile(r"/(drives?|sites|items)\b", re.IGNORECASE), "Files.Read.All or Sites.Read.All"),
    (re.compile(r"/(events|calendars?|calendarview)\b", re.IGNORECASE), "Calendars.Read"),
    (re.compile(r"/(contacts|contactfolders)\b", re.IGNORECASE), "Contacts.Read"),
    (re.compile(r"/(users|groups)\b", re.IGNORECASE), "User.Read.All"),
)


def odata_error(body: bytes) -> tuple[str | None, str | None]:
    """Return ``(code, message)`` of a Graph error body, or ``(None, None)`` if it has none.

    Graph puts a more specific code in ``error.innerError.code`` for some OneDrive
    failures. The inner code replaces the top-level one only when it is a resync code.
    """
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    inner = error.get("innerError") or error.get("innererror")
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    if isinstance(inner_code, str) and inner_code.lower() in SYNC_STATE_CODES:
        code = inner_code
    return code, message


def error_for_response(response: httpx.Response, *, retry_after: float | None = None) -> GraphError:
    """Build the exception for a final (not retried) error ``response`` whose body was read."""
    status = response.status_code
    code, graph_message = odata_error(response.content)
    method = response.request.method
    url = redact_url(response.request.url)
    request_id = response.headers.get("request-id")
    context: dict[str, Any] = {
        "method": method,
        "url": url,
        "status": status,
        "code": code,
        "request_id": request_id,
    }
    summary = f"{method} {url} returned {status}" + (f" {code}" if code else "")
    if graph_message:
        # Graph's messages usually end with a full stop, and the advice below adds its own.
        summary += f": {graph_message.rstrip().rstrip('.')}"
    lowered = (code or "").lower()

    if status == 410 or lowered in SYNC_STATE_CODES:
        return SyncStateExpiredError(
            f"{summary}. The delta token expired; drop it and enumerate the container again",
            location=response.headers.get("location"),
            **context,
        )
    if status in THROTTLING_STATUSES:
        # 429 ApplicationThrottled (Outlook MailboxConcurrency), TooManyRequests (generic);
        # 503 serviceNotAvailable, which SharePoint also uses for throttling.
        return ThrottledError(
            f"{summary}. Graph kept throttling after every retry; lower the concurrency or "
            "run again later",
            retry_after=retry_after,
            **context,
        )
    if status >= 500:
        return GraphTransientError(
            f"{summary}. Graph kept failing after every retry; run again later", **context
        )
    if status == 401:
        # InvalidAuthenticationToken: expired, malformed or wrong-audience token. The client
        # has already retried once with a fresh token when this is raised.
        return AuthenticationError(
            f"{summary}. Graph rejected a freshly issued token; check that the app registration "
            "belongs to this tenant and that the Graph URL matches its cloud",
            **context,
        )
    if status == 403:
        # ErrorAccessDenied (mail, also when an application access policy excludes the
        # mailbox), Authorization_RequestDenied (directory), accessDenied (drives).
        return AccessDeniedError(f"{summary}. {_permission_hint(url, method)}", **context)
    if lowered in MAILBOX_NOT_ENABLED_CODES:
        return MailboxNotEnabledError(
            f"{summary}. The user has no Exchange Online mailbox (unlicensed, on-premises or "
            "inactive); skip this user",
            **context,
        )
    if status == 404:
        # ErrorItemNotFound (Outlook), itemNotFound (drives), Request_ResourceNotFound (directory).
        return ItemNotFoundError(f"{summary}. The item was deleted or never existed", **context)
    return GraphRequestError(f"{summary}. Retrying the same request will not help", **context)


# Restores write; the read permissions above do not allow that.
_WRITE_PERMISSIONS = {
    "Mail.Read": "Mail.ReadWrite",
    "Files.Read.All or Sites.Read.All": "Files.ReadWrite.All or Sites.ReadWrite.All",
    "Calendars.Read": "Calendars.ReadWrite",
    "Contacts.Read": "Contacts.ReadWrite",
}


def _permission_hint(path: str, method: str = "GET") -> str:
    permission = next((name for pattern, name in _PERMISSION_HINTS if pattern.search(path)), None)
    if permission is not None and method not in ("GET", "HEAD"):
        permission = _WRITE_PERMISSIONS.get(permission, permission)
    if permission is None:
        return "Grant the app the application permission this API needs, with admin consent"
    hint = f"Grant the app the {permission} application permission with admin consent"
    if permission.startswith("Mail."):
        hint += ", and check that no application access policy excludes this mailbox"
    return hint
