"""GraphClient against httpx.MockTransport: paging, delta, retries, errors, concurrency, logs."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from m365lake.config import GraphSettings
from m365lake.errors import (
    AccessDeniedError,
    AuthenticationError,
    GraphRequestError,
    GraphTransientError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    SyncStateExpiredError,
    ThrottledError,
)
from m365lake.graph import AccessToken, DeltaPage, GraphClient

GRAPH = "https://graph.test/v1.0"
SECRET = "client-secret-value-never-logged"


class FakeTokens:
    """Token source that hands out numbered tokens and records forced refreshes."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        self.calls.append(force_refresh)
        return AccessToken(f"access-token-{len(self.calls)}", time.time() + 3600)

    def close(self) -> None:
        pass


class RecordedSleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


Handler = Callable[[httpx.Request], Any]


def make_client(
    handler: Handler, *, max_retries: int = 8, max_concurrent: int = 4
) -> tuple[GraphClient, FakeTokens, RecordedSleeps]:
    settings = GraphSettings(
        tenant_id="tenant",
        client_id="client",
        client_secret=SECRET,
        graph_url=GRAPH,
        max_concurrent_per_mailbox=max_concurrent,
    )
    tokens = FakeTokens()
    sleeps = RecordedSleeps()
    client = GraphClient(
        settings,
        transport=httpx.MockTransport(handler),
        max_retries=max_retries,
        token_provider=tokens,
        sleep=sleeps,
    )
    return client, tokens, sleeps


def graph_error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "innerError": {}}}
    merged = {"request-id": f"req-{status}", **(headers or {})}
    return httpx.Response(status, json=body, headers=merged)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


# ---- paging and delta -----------------------------------------------------------------


def test_iter_pages_follows_next_links_verbatim() -> None:
    second = f"{GRAPH}/users?$top=2&$skiptoken=RFNwdAIAAQAAAB8%3D"
    third = f"{GRAPH}/me/mailfolders('AQMk%3D%3D')/messages?$skiptoken=a%2Bb=="
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            return httpx.Response(
                200, json={"value": [{"id": "1"}, {"id": "2"}], "@odata.nextLink": second}
            )
        if len(requests) == 2:
            return httpx.Response(200, json={"value": [{"id": "3"}], "@odata.nextLink": third})
        return httpx.Response(200, json={"value": [{"id": "4"}]})

    async def scenario() -> list[dict[str, Any]]:
        client, _, _ = make_client(handler)
        async with client:
            return await collect(
                client.iter_pages(
                    "/users",
                    params={"$top": 2, "$select": "id"},
                    headers={"ConsistencyLevel": "eventual", "Prefer": "odata.maxpagesize=2"},
                )
            )

    pages = run(scenario())
    assert [item["id"] for page in pages for item in page["value"]] == ["1", "2", "3", "4"]
    assert requests[0].url.params["$top"] == "2"
    assert requests[0].url.params["$select"] == "id"
    assert str(requests[1].url) == second
    assert str(requests[2].url) == third
    assert (
        requests[2].url.raw_path
        == b"/v1.0/me/mailfolders('AQMk%3D%3D')/messages?$skiptoken=a%2Bb=="
    )
    for request in requests:
        assert request.headers["ConsistencyLevel"] == "eventual"
        assert request.headers["Prefer"] == "odata.maxpagesize=2"
        assert request.headers["Authorization"] == "Bearer access-token-1"


def test_delta_sets_delta_link_on_last_page_only() -> None:
    next_link = f"{GRAPH}/users/u1/mailFolders/inbox/messages/delta?$skiptoken=SKIP1"
    delta_link = f"{GRAPH}/users/u1/mailFolders/inbox/messages/delta?$deltatoken=DELTA1"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "$skiptoken" not in str(request.url):
            return httpx.Response(200, json={"value": [{"id": "m1"}], "@odata.nextLink": next_link})
        return httpx.Response(
            200,
            json={
                "value": [{"id": "m2", "@removed": {"reason": "deleted"}}],
                "@odata.deltaLink": delta_link,
            },
        )

    async def scenario() -> list[DeltaPage]:
        client, _, _ = make_client(handler)
        async with client:
            return await collect(
                client.delta(
                    "/users/u1/mailFolders/inbox/messages/delta",
                    params={"$select": "subject"},
                    headers={"Prefer": 'IdType="ImmutableId"'},
                    mailbox="u1",
                )
            )

    pages = run(scenario())
    assert len(pages) == 2
    assert pages[0].items == [{"id": "m1"}]
    assert pages[0].delta_link is None
    assert pages[0].next_link == next_link
    assert pages[1].items[0]["@removed"] == {"reason": "deleted"}
    assert pages[1].delta_link == delta_link
    assert pages[1].next_link is None
    assert seen[1].headers["Prefer"] == 'IdType="ImmutableId"'
    assert "$select" not in str(seen[1].url)


def test_delta_continues_past_empty_page() -> None:
    links = [f"{GRAPH}/d?$skiptoken=P{n}" for n in range(3)]
    pages_by_url = {
        f"{GRAPH}/d": {"value": [{"id": "a"}], "@odata.nextLink": links[0]},
        links[0]: {"value": [], "@odata.nextLink": links[1]},
        links[1]: {"value": [{"id": "b"}], "@odata.deltaLink": f"{GRAPH}/d?$deltatoken=D"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages_by_url[str(request.url)])

    async def scenario() -> list[DeltaPage]:
        client, _, _ = make_client(handler)
        async with client:
            return await collect(client.delta("/d"))

    pages = run(scenario())
    assert [len(page.items) for page in pages] == [1, 0, 1]
    assert pages[-1].delta_link == f"{GRAPH}/d?$deltatoken=D"


def test_delta_expired_token_raises_with_location() -> None:
    fresh = f"{GRAPH}/users/u1/mailFolders/inbox/messages/delta"

    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(410, "SyncStateNotFound", {"Location": fresh})

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await collect(
                client.delta(f"{GRAPH}/users/u1/mailFolders/inbox/messages/delta?$deltatoken=OLD")
            )

    with pytest.raises(SyncStateExpiredError) as caught:
        run(scenario())
    assert caught.value.location == fresh
    assert caught.value.status == 410
    assert caught.value.code == "SyncStateNotFound"
    assert "OLD" not in str(caught.value)


# ---- Retry-After and backoff ----------------------------------------------------------


def throttle_then_ok(retry_after: str | None, status: int = 429) -> Handler:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return graph_error(status, "ApplicationThrottled", headers)
        return httpx.Response(200, json={"ok": True}, headers={"request-id": "req-ok"})

    return handler


@pytest.mark.parametrize(("header", "expected"), [("2.128", 2.128), ("3", 3.0), ("0", 0.0)])
def test_retry_after_seconds_honoured(header: str, expected: float) -> None:
    async def scenario() -> tuple[GraphClient, RecordedSleeps]:
        client, _, sleeps = make_client(throttle_then_ok(header))
        async with client:
            assert await client.get_json("/users") == {"ok": True}
        return client, sleeps

    client, sleeps = run(scenario())
    assert len(sleeps.calls) == 1
    assert sleeps.calls[0] == pytest.approx(expected, abs=0.05)
    assert client.stats.throttled == 1
    assert client.stats.retries == 1
    assert client.stats.requests == 2
    assert client.stats.throttle_wait_seconds == pytest.approx(expected)


def test_retry_after_http_date_honoured() -> None:
    header = email.utils.formatdate(time.time() + 30, usegmt=True)

    async def scenario() -> RecordedSleeps:
        client, _, sleeps = make_client(throttle_then_ok(header))
        async with client:
            await client.get_json("/users")
        return sleeps

    sleeps = run(scenario())
    assert len(sleeps.calls) == 1
    assert 27.0 <= sleeps.calls[0] <= 30.0


def test_retry_after_absent_uses_backoff() -> None:
    async def scenario() -> RecordedSleeps:
        client, _, sleeps = make_client(throttle_then_ok(None, status=503))
        async with client:
            await client.get_json("/users")
        return sleeps

    sleeps = run(scenario())
    assert len(sleeps.calls) == 1
    assert 0.0 <= sleeps.calls[0] <= 1.0


def test_throttling_exhaustion_raises_throttled_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(429, "ApplicationThrottled", {"Retry-After": "7"})

    async def scenario() -> GraphClient:
        client, _, _ = make_client(handler, max_retries=3)
        async with client:
            with pytest.raises(ThrottledError) as caught:
                await client.get_json("/users/u1/messages", mailbox="u1")
        assert caught.value.retry_after == 7.0
        assert caught.value.status == 429
        assert caught.value.code == "ApplicationThrottled"
        assert caught.value.request_id == "req-429"
        return client

    client = run(scenario())
    assert client.stats.requests == 4
    assert client.stats.retries == 3
    assert client.stats.throttled == 4
    assert client.stats.throttle_wait_seconds == pytest.approx(21.0)


def test_backoff_grows_without_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(500, "generalException")

    async def scenario() -> RecordedSleeps:
        client, _, sleeps = make_client(handler, max_retries=8)
        async with client:
            with pytest.raises(GraphTransientError):
                await client.get_json("/users")
        return sleeps

    sleeps = run(scenario())
    assert len(sleeps.calls) == 8
    for retry, delay in enumerate(sleeps.calls):
        assert 0.0 <= delay <= min(60.0, 2**retry)


def test_server_errors_are_retried() -> None:
    statuses = iter([500, 502, 504, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status == 200:
            return httpx.Response(200, json={"value": []})
        return graph_error(status, "generalException")

    async def scenario() -> GraphClient:
        client, _, _ = make_client(handler)
        async with client:
            assert await client.get_json("/users") == {"value": []}
        return client

    client = run(scenario())
    assert client.stats.retries == 3
    assert client.stats.throttled == 0


class BrokenStream(httpx.AsyncByteStream):
    """A body that stops half-way, as when a connection is reset mid-response."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"value": ['
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )


def test_connection_errors_are_retried() -> None:
    outcomes = ["reset", "incomplete", "timeout", "ok"]
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = outcomes[calls["n"]]
        calls["n"] += 1
        if outcome == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if outcome == "timeout":
            raise httpx.ConnectTimeout("timed out", request=request)
        if outcome == "incomplete":
            return httpx.Response(
                200, stream=BrokenStream(), headers={"Content-Type": "application/json"}
            )
        return httpx.Response(200, content=b"MIME-Version: 1.0\r\n\r\nbody")

    async def scenario() -> tuple[bytes, GraphClient]:
        client, _, _ = make_client(handler)
        async with client:
            body = await client.get_bytes("/users/u1/messages/m1/$value", mailbox="u1")
        return body, client

    body, client = run(scenario())
    assert body == b"MIME-Version: 1.0\r\n\r\nbody"
    assert client.stats.requests == 4
    assert client.stats.retries == 3


def test_connection_error_exhaustion_raises_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async def scenario() -> None:
        client, _, _ = make_client(handler, max_retries=2)
        async with client:
            await client.get_json("/users")

    with pytest.raises(GraphTransientError) as caught:
        run(scenario())
    assert "ConnectError" in str(caught.value)
    assert "3 times" in str(caught.value)


def test_unretryable_transport_error_frees_mailbox_slot() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.LocalProtocolError("illegal header value")
        return httpx.Response(200, json={"id": "m1"})

    async def scenario() -> dict[str, Any]:
        client, _, _ = make_client(handler, max_concurrent=1)
        async with client:
            with pytest.raises(GraphRequestError, match="LocalProtocolError"):
                await client.get_json("/users/u1/messages/m1", mailbox="u1")
            return await asyncio.wait_for(client.get_json("/users/u1/messages/m1", mailbox="u1"), 1)

    assert run(scenario()) == {"id": "m1"}
    assert calls["n"] == 2


# ---- authentication -------------------------------------------------------------------


def test_401_refreshes_token_once() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return graph_error(401, "InvalidAuthenticationToken")
        return httpx.Response(200, json={"id": "u1"})

    async def scenario() -> FakeTokens:
        client, tokens, sleeps = make_client(handler)
        async with client:
            assert await client.get_json("/users/u1") == {"id": "u1"}
        assert sleeps.calls == []
        return tokens

    tokens = run(scenario())
    assert seen == ["Bearer access-token-1", "Bearer access-token-2"]
    assert tokens.calls == [False, True]


def test_second_401_raises_authentication_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(401, "InvalidAuthenticationToken")

    async def scenario() -> FakeTokens:
        client, tokens, _ = make_client(handler)
        async with client:
            with pytest.raises(AuthenticationError) as caught:
                await client.get_json("/users")
        assert caught.value.code == "InvalidAuthenticationToken"
        return tokens

    tokens = run(scenario())
    assert tokens.calls == [False, True]


def test_token_not_sent_to_other_hosts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"file bytes")

    async def scenario() -> bytes:
        client, _, _ = make_client(handler)
        async with client:
            return await client.get_bytes(
                "https://tenant.sharepoint.test/download.aspx?tempauth=SECRETAUTH"
            )

    assert run(scenario()) == b"file bytes"
    assert "Authorization" not in seen[0].headers


# ---- error mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected", "hint"),
    [
        (403, "ErrorAccessDenied", AccessDeniedError, "Mail.Read"),
        (404, "ErrorItemNotFound", ItemNotFoundError, "deleted"),
        (404, "MailboxNotEnabledForRESTAPI", MailboxNotEnabledError, "no Exchange Online mailbox"),
        (410, "SyncStateNotFound", SyncStateExpiredError, "enumerate the container again"),
    ],
)
def test_status_and_code_map_to_errors(
    status: int, code: str, expected: type[Exception], hint: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(status, code)

    async def scenario() -> None:
        client, _, sleeps = make_client(handler)
        async with client:
            try:
                await client.get_json("/users/u1/mailFolders/inbox/messages", mailbox="u1")
            finally:
                assert sleeps.calls == []

    with pytest.raises(expected) as caught:
        run(scenario())
    error = caught.value
    assert error.status == status  # type: ignore[attr-defined]
    assert error.code == code  # type: ignore[attr-defined]
    assert error.request_id == f"req-{status}"  # type: ignore[attr-defined]
    assert hint in str(error)


# ---- concurrency ----------------------------------------------------------------------


def test_per_mailbox_concurrency_never_exceeds_limit() -> None:
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        mailbox = request.url.path.split("/")[3]
        in_flight[mailbox] = in_flight.get(mailbox, 0) + 1
        peak[mailbox] = max(peak.get(mailbox, 0), in_flight[mailbox])
        await asyncio.sleep(0.01)
        in_flight[mailbox] -= 1
        return httpx.Response(200, json={"id": "m"})

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            jobs = [
                client.get_json(f"/users/{mailbox}/messages/m{n}", mailbox=mailbox)
                for n in range(20)
                for mailbox in ("alice", "bob")
            ]
            await asyncio.gather(*jobs)

    run(scenario())
    assert peak == {"alice": 4, "bob": 4}


def test_stream_holds_mailbox_slot_until_closed() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        # A stream body, as from a real connection, so num_bytes_downloaded counts it.
        return httpx.Response(200, stream=httpx.ByteStream(b"x" * 1000))

    async def scenario() -> GraphClient:
        client, _, _ = make_client(handler, max_concurrent=1)
        async with client:
            async with client.stream("/users/u1/messages/m1/$value", mailbox="u1") as response:
                chunks = [chunk async for chunk in response.aiter_bytes()]
                assert b"".join(chunks) == b"x" * 1000
                blocked = asyncio.ensure_future(client.get_bytes("/users/u1/x", mailbox="u1"))
                await asyncio.sleep(0.01)
                assert not blocked.done()
            assert await blocked == b"x" * 1000
        return client

    client = run(scenario())
    assert client.stats.bytes_received == 2000


def test_throttling_pauses_other_requests_to_same_mailbox() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return graph_error(429, "ApplicationThrottled", {"Retry-After": "5"})
        return httpx.Response(200, json={})

    async def scenario() -> RecordedSleeps:
        client, _, sleeps = make_client(handler)
        async with client:
            await client.get_json("/users/a/messages", mailbox="a")
            assert sleeps.calls == [pytest.approx(5.0, abs=0.5)]
            await client.get_json("/users/b/messages", mailbox="b")
            assert len(sleeps.calls) == 1
            await client.get_json("/users/a/messages", mailbox="a")
        return sleeps

    sleeps = run(scenario())
    assert len(sleeps.calls) == 2
    assert 0 < sleeps.calls[1] <= 5.0


# ---- logging --------------------------------------------------------------------------


def test_logs_throttling_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    next_link = f"{GRAPH}/users/u1/messages?$skiptoken=SKIPTOKENVALUE123"
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(
                200,
                json={"value": [], "@odata.nextLink": next_link},
                headers={"request-id": "rid-1"},
            )
        if calls["n"] == 2:
            return graph_error(429, "ApplicationThrottled", {"Retry-After": "2.128"})
        return httpx.Response(
            200,
            json={"value": [], "@odata.deltaLink": f"{GRAPH}/x?$deltatoken=DELTATOKENVALUE"},
            headers={"request-id": "rid-3"},
        )

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await collect(client.delta("/users/u1/messages", mailbox="u1"))

    # The CLI lowers the httpx logger to WARNING, and CLI tests that run in this process
    # leave it there, so its level is set here too.
    caplog.set_level(logging.INFO, logger="httpx")
    with caplog.at_level(logging.INFO):
        run(scenario())

    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(httpx_lines) == 3
    assert "https://graph.test/v1.0/users/u1/messages?$skiptoken=***" in httpx_lines[1]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("m365lake.graph")]
    throttle_lines = [m for m in messages if m.startswith("throttled")]
    assert len(throttle_lines) == 1
    assert "retry_after=2.128" in throttle_lines[0]
    assert "status=429" in throttle_lines[0]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    request_lines = [m for m in messages if "elapsed_ms=" in m]
    assert len(request_lines) == 3
    assert "request_id=rid-1" in request_lines[0]
    assert "GET /v1.0/users/u1/messages?$skiptoken=*** status=429" in request_lines[1]
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("SKIPTOKENVALUE123", "DELTATOKENVALUE", "access-token-", SECRET, "Bearer"):
        assert secret not in text


def test_non_json_body_raises_request_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"<html>proxy login</html>", headers={"Content-Type": "text/html"}
        )

    async def scenario() -> None:
        client, _, _ = make_client(handler)
        async with client:
            await client.get_json("/users")

    with pytest.raises(GraphRequestError, match="is not JSON") as caught:
        run(scenario())
    assert caught.value.status == 200
    assert json.dumps(caught.value.attrs())


def test_concurrent_throttle_waits_count_once() -> None:
    seen: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path not in seen:
            seen.add(request.url.path)
            return graph_error(429, "ApplicationThrottled", {"Retry-After": "2"})
        return httpx.Response(200, json={"ok": True})

    async def scenario() -> GraphClient:
        client, _, _ = make_client(handler)
        async with client:
            await asyncio.gather(
                client.get_json("/users/a/messages", mailbox="a"),
                client.get_json("/users/b/messages", mailbox="b"),
                client.get_json("/drives/d/root/delta"),
            )
        return client

    client = run(scenario())
    assert client.stats.throttled == 3
    assert 2.0 <= client.stats.throttle_wait_seconds < 3.0
