"""GraphClient writes: JSON and raw bodies, POST retry safety, upload fragments without a token."""

from __future__ import annotations

import json

import httpx
import pytest

from m365lake.errors import AccessDeniedError, GraphRequestError, GraphTransientError
from m365lake.graph import UploadResponse
from tests.unit.test_graph_client import graph_error, make_client, run


def test_send_json_posts_body_and_returns_created_object() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "folder-1", "displayName": "Projects"})

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            return await client.send_json(
                "POST", "/users/u1/mailFolders", json={"displayName": "Projects"}, mailbox="u1"
            )

    assert run(scenario()) == {"id": "folder-1", "displayName": "Projects"}
    assert seen[0].method == "POST"
    assert seen[0].headers["Content-Type"] == "application/json"
    assert seen[0].headers["Authorization"].startswith("Bearer ")
    assert json.loads(seen[0].content) == {"displayName": "Projects"}


def test_send_json_returns_none_for_no_content() -> None:
    async def scenario() -> object:
        client, _, _ = make_client(lambda request: httpx.Response(204))
        async with client:
            return await client.send_json("DELETE", "/users/u1/messages/m1")

    assert run(scenario()) is None


def test_send_content_sends_raw_bytes_with_content_type() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "item-1"})

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            return await client.send_content(
                "PUT",
                "/drives/d1/items/root:/a.txt:/content",
                b"hello",
                content_type="application/octet-stream",
                params={"@microsoft.graph.conflictBehavior": "fail"},
            )

    assert run(scenario()) == {"id": "item-1"}
    assert seen[0].content == b"hello"
    assert seen[0].url.params["@microsoft.graph.conflictBehavior"] == "fail"


def test_post_is_retried_after_throttling() -> None:
    statuses = iter([429, 503, 201])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 201:
            return httpx.Response(201, json={"id": "m1"})
        return graph_error(status, "ApplicationThrottled", {"Retry-After": "2"})

    async def scenario() -> tuple[object, list[float]]:
        client, _, sleeps = make_client(handler)
        async with client:
            created = await client.send_json("POST", "/users/u1/messages", json={})
        return created, sleeps.calls

    created, waits = run(scenario())
    assert created == {"id": "m1"}
    assert waits == [2.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_not_resent_after_server_error(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return graph_error(status, "generalException")

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.send_json("POST", "/users/u1/messages", json={"subject": "x"})

    with pytest.raises(GraphTransientError):
        run(scenario())
    assert calls == ["POST"]


def test_put_is_retried_after_a_server_error() -> None:
    statuses = iter([502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json={"id": "item-1"})
        return graph_error(status, "generalException")

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            return await client.send_content(
                "PUT", "/drives/d1/items/i1/content", b"x", content_type="text/plain"
            )

    assert run(scenario()) == {"id": "item-1"}


def test_post_with_lost_response_is_not_sent_again() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadError("connection reset by peer", request=request)

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.send_json("POST", "/users/u1/mailFolders", json={"displayName": "A"})

    with pytest.raises(GraphTransientError, match="not sent again"):
        run(scenario())
    assert calls == ["POST"]


def test_post_refused_connection_is_sent_again() -> None:
    outcomes = iter(["refused", "ok"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(outcomes) == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(201, json={"id": "f1"})

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            return await client.send_json("POST", "/users/u1/mailFolders", json={})

    assert run(scenario()) == {"id": "f1"}


def test_conflict_raises_request_error_with_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(409, "ErrorFolderExists")

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.send_json("POST", "/users/u1/mailFolders", json={"displayName": "A"})

    with pytest.raises(GraphRequestError) as caught:
        run(scenario())
    assert caught.value.status == 409
    assert caught.value.code == "ErrorFolderExists"


def test_denied_write_names_the_read_write_permission() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(403, "ErrorAccessDenied")

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.send_json("POST", "/users/u1/mailFolders/f1/messages", json={})

    with pytest.raises(AccessDeniedError, match=r"Mail\.ReadWrite"):
        run(scenario())


def test_upload_fragment_sends_no_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            202, json={"expirationDateTime": "2026-12-05T10:00:00Z", "nextExpectedRanges": ["4-"]}
        )

    async def scenario() -> object:
        client, tokens, _ = make_client(handler)
        async with client:
            response = await client.upload_fragment(
                "https://graph.test/v1.0/upload/session-1?tempauth=SECRET",
                b"abcd",
                start=0,
                total=10,
            )
        assert tokens.calls == []
        return response

    response = run(scenario())
    request = seen[0]
    assert request.method == "PUT"
    assert "Authorization" not in request.headers
    assert request.headers["Content-Range"] == "bytes 0-3/10"
    assert request.headers["Content-Length"] == "4"
    assert response.status == 202
    assert not response.complete
    assert response.json == {
        "expirationDateTime": "2026-12-05T10:00:00Z",
        "nextExpectedRanges": ["4-"],
    }


def test_upload_fragment_retries_same_range() -> None:
    ranges: list[str] = []
    outcomes = iter(["reset", "done"])

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers["Content-Range"])
        if next(outcomes) == "reset":
            raise httpx.ReadError("connection reset by peer", request=request)
        return httpx.Response(
            201, json={"id": "att-1"}, headers={"Location": "https://x.test/Attachments('a')"}
        )

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            return await client.upload_fragment("https://up.test/s", b"xyz", start=7, total=10)

    response = run(scenario())
    assert ranges == ["bytes 7-9/10", "bytes 7-9/10"]
    assert response.complete
    assert response.headers["Location"].endswith("('a')")


def test_upload_overlap_raises_with_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(416, "fragmentOverlap")

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.upload_fragment("https://up.test/s", b"xyz", start=0, total=3)

    with pytest.raises(GraphRequestError) as caught:
        run(scenario())
    assert caught.value.status == 416


def test_upload_status_and_cancel_send_no_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"nextExpectedRanges": ["327680-"]})

    async def scenario() -> object:
        client, _, _ = make_client(handler)
        async with client:
            status = await client.upload_status("https://graph.test/v1.0/upload/s")
            await client.cancel_upload("https://graph.test/v1.0/upload/s")
        return status

    assert run(scenario()) == {"nextExpectedRanges": ["327680-"]}
    assert [request.method for request in seen] == ["GET", "DELETE"]
    assert all("Authorization" not in request.headers for request in seen)


@pytest.mark.parametrize(
    ("status", "body", "complete"),
    [
        (202, {"nextExpectedRanges": ["10-"]}, False),
        (200, {"NextExpectedRanges": ["4194304"]}, False),
        (200, {"id": "item-1", "name": "f.bin"}, True),
        (201, {"id": "item-1"}, True),
        (201, None, True),
    ],
)
def test_upload_completion_by_workload(status: int, body: object, complete: bool) -> None:
    response = UploadResponse(status, body if isinstance(body, dict) else None, httpx.Headers())

    assert response.complete is complete
