"""Pure pieces of the Graph client: error mapping, Retry-After, redaction, paging state."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from m365lake.errors import (
    AccessDeniedError,
    AuthenticationError,
    GraphError,
    GraphRequestError,
    GraphTransientError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    SyncStateExpiredError,
    Terminal,
    ThrottledError,
    Transient,
)
from m365lake.graph.errors import error_for_response, odata_error
from m365lake.graph.paging import PageCursor
from m365lake.graph.redact import redact_url
from m365lake.graph.retry import MAX_RETRY_AFTER_SECONDS, backoff_delay, parse_retry_after


def response(
    status: int,
    code: str | None,
    *,
    path: str = "/v1.0/users/u1/messages",
    method: str = "GET",
) -> httpx.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": "m"}} if code else {}
    request = httpx.Request(method, f"https://graph.test{path}?$skiptoken=SECRETSKIP")
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"request-id": "rid", "Location": "https://graph.test/fresh"},
        request=request,
    )


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ErrorInvalidIdMalformed", GraphRequestError),
        (400, "syncStateNotFound", SyncStateExpiredError),
        (400, "resyncRequired", SyncStateExpiredError),
        (401, "InvalidAuthenticationToken", AuthenticationError),
        (403, "ErrorAccessDenied", AccessDeniedError),
        (403, "Authorization_RequestDenied", AccessDeniedError),
        (403, "accessDenied", AccessDeniedError),
        (404, "ErrorItemNotFound", ItemNotFoundError),
        (404, "itemNotFound", ItemNotFoundError),
        (404, "MailboxNotEnabledForRESTAPI", MailboxNotEnabledError),
        (404, None, ItemNotFoundError),
        (409, "nameAlreadyExists", GraphRequestError),
        (410, "SyncStateNotFound", SyncStateExpiredError),
        (410, "resyncChangesApplyDifferences", SyncStateExpiredError),
        (410, None, SyncStateExpiredError),
        (429, "ApplicationThrottled", ThrottledError),
        (429, "TooManyRequests", ThrottledError),
        (500, "generalException", GraphTransientError),
        (502, None, GraphTransientError),
        (503, "serviceNotAvailable", ThrottledError),
        (504, None, GraphTransientError),
    ],
)
def test_error_for_response_maps_status_and_code(
    status: int, code: str | None, expected: type[GraphError]
) -> None:
    error = error_for_response(response(status, code))
    assert type(error) is expected
    assert error.status == status
    assert error.code == code
    assert error.request_id == "rid"
    assert "SECRETSKIP" not in str(error)
    assert "SECRETSKIP" not in str(error.url)


def test_retryability_is_in_the_type() -> None:
    assert isinstance(error_for_response(response(429, "TooManyRequests")), Transient)
    assert isinstance(error_for_response(response(410, "SyncStateNotFound")), Transient)
    assert isinstance(error_for_response(response(403, "ErrorAccessDenied")), Terminal)
    assert isinstance(error_for_response(response(404, "ErrorItemNotFound")), Terminal)


def test_sync_state_error_carries_location() -> None:
    error = error_for_response(response(410, "SyncStateNotFound"))
    assert isinstance(error, SyncStateExpiredError)
    assert error.location == "https://graph.test/fresh"


def test_graph_message_full_stop_not_doubled() -> None:
    request = httpx.Request("GET", "https://graph.test/v1.0/drives/d/root/delta")
    body = {"error": {"code": "resyncChangesApplyDifferences", "message": "Resync required. "}}
    reply = httpx.Response(410, content=json.dumps(body).encode(), request=request)

    message = str(error_for_response(reply))

    assert "Resync required. The delta token expired" in message
    assert ".." not in message


@pytest.mark.parametrize(
    ("path", "permission"),
    [
        ("/v1.0/users/u1/mailFolders/inbox/messages", "Mail.Read"),
        ("/v1.0/drives/b!x/items/root/children", "Files.Read.All"),
        ("/v1.0/users", "User.Read.All"),
        ("/v1.0/teams/t/channels/c/messages", "ChannelMessage.Read.All"),
    ],
)
def test_access_denied_names_permission(path: str, permission: str) -> None:
    assert permission in str(error_for_response(response(403, "accessDenied", path=path)))


@pytest.mark.parametrize(
    ("method", "path", "read", "write"),
    [
        ("POST", "/v1.0/users/u1/mailFolders/f1/messages", "Mail.Read ", "Mail.ReadWrite"),
        (
            "PUT",
            "/v1.0/drives/b!x/items/root:/a.txt:/content",
            "Files.Read.All ",
            "Files.ReadWrite.All",
        ),
        ("POST", "/v1.0/users/u1/calendars/c1/events", "Calendars.Read ", "Calendars.ReadWrite"),
        ("PATCH", "/v1.0/users/u1/events/e1", "Calendars.Read ", "Calendars.ReadWrite"),
        ("POST", "/v1.0/users/u1/events/e1/attachments", "Calendars.Read ", "Calendars.ReadWrite"),
        ("DELETE", "/v1.0/users/u1/events/e1", "Calendars.Read ", "Calendars.ReadWrite"),
        (
            "POST",
            "/v1.0/users/u1/contactFolders/f1/contacts",
            "Contacts.Read ",
            "Contacts.ReadWrite",
        ),
    ],
)
def test_denied_write_names_the_read_write_permission(
    method: str, path: str, read: str, write: str
) -> None:
    message = str(error_for_response(response(403, "accessDenied", path=path, method=method)))

    assert write in message
    assert read not in message


@pytest.mark.parametrize(
    ("path", "read"),
    [
        ("/v1.0/users/u1/calendarView", "Calendars.Read "),
        ("/v1.0/users/u1/contactFolders/f1/contacts", "Contacts.Read "),
    ],
)
def test_denied_read_names_the_read_permission(path: str, read: str) -> None:
    assert read in str(error_for_response(response(403, "accessDenied", path=path)))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", (None, None)),
        (b"not json", (None, None)),
        (b"[1]", (None, None)),
        (b'{"error": "x"}', (None, None)),
        (b'{"error": {"code": "itemNotFound", "message": "gone"}}', ("itemNotFound", "gone")),
        (
            b'{"error": {"code": "invalidRequest", "innerError": {"code": "resyncRequired"}}}',
            ("resyncRequired", None),
        ),
    ],
)
def test_odata_error_parsing(body: bytes, expected: tuple[str | None, str | None]) -> None:
    assert odata_error(body) == expected


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("2.128", 2.128),
        ("3", 3.0),
        (" 10 ", 10.0),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
        ("86400", MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_delay_is_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    for retry in range(12):
        ceiling = min(60.0, 2.0**retry)
        samples = [backoff_delay(retry, rng=rng) for _ in range(200)]
        assert min(samples) >= 0.0
        assert max(samples) <= ceiling
        assert max(samples) > ceiling / 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://g.test/v1.0/users?$top=5", "/v1.0/users?$top=5"),
        ("https://g.test/v1.0/users?$top=5&$skiptoken=abc", "/v1.0/users?$top=5&$skiptoken=***"),
        ("https://g.test/v1.0/d?$deltatoken=abc%3D", "/v1.0/d?$deltatoken=***"),
        (
            "https://sp.test/download.aspx?UniqueId=1&tempauth=eyJ0",
            "/download.aspx?UniqueId=1&tempauth=***",
        ),
        ("https://b.test/blob?sv=1&sig=abc", "/blob?sv=1&sig=***"),
        ("https://g.test/x?state=" + "A" * 60, "/x?state=***"),
        (
            "https://g.test/x?$select=id,subject&$filter=isRead eq false",
            "/x?$select=id,subject&$filter=isRead%20eq%20false",
        ),
        ("https://g.test/v1.0/users", "/v1.0/users"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("pages", "expected_links", "expected_delta"),
    [
        ([{"value": []}], [], None),
        (
            [{"value": [1], "@odata.nextLink": "https://g/a?$skiptoken=1"}, {"value": [2]}],
            ["https://g/a?$skiptoken=1"],
            None,
        ),
        (
            [
                {"value": [], "@odata.nextLink": "https://g/a?$skiptoken=1"},
                {"value": [], "@odata.deltaLink": "https://g/a?$deltatoken=2"},
            ],
            ["https://g/a?$skiptoken=1"],
            "https://g/a?$deltatoken=2",
        ),
        (
            [{"value": [1], "@odata.deltaLink": "https://g/a?$deltatoken=2"}],
            [],
            "https://g/a?$deltatoken=2",
        ),
        (
            [
                {"value": [1], "@odata.nextLink": "https://g/n", "@odata.deltaLink": "https://g/d"},
                {"value": []},
            ],
            ["https://g/n"],
            None,
        ),
    ],
)
def test_page_cursor_link_shapes(
    pages: list[dict[str, Any]], expected_links: list[str], expected_delta: str | None
) -> None:
    cursor = PageCursor("https://g/start")
    requested = []
    for page in pages:
        assert not cursor.done
        requested.append(cursor.url)
        cursor.update(page)
    assert cursor.done
    assert requested[1:] == expected_links
    assert cursor.delta_link == expected_delta
    assert cursor.pages == len(pages)


def test_page_cursor_rejects_page_without_value() -> None:
    with pytest.raises(GraphRequestError, match="without a 'value' array"):
        PageCursor("https://g/start").update({"id": "single entity"})


def test_page_cursor_rejects_self_link() -> None:
    cursor = PageCursor("https://g/a?$skiptoken=1")
    with pytest.raises(GraphRequestError, match="returned itself"):
        cursor.update({"value": [], "@odata.nextLink": "https://g/a?$skiptoken=1"})
