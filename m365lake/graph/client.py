"""The async Graph client: tokens, retries, per-mailbox concurrency, paging and delta."""

from __future__ import annotations

import asyncio
import json as json_module
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from m365lake.config import ENV_GRAPH_URL, GraphSettings
from m365lake.errors import GraphError, GraphRequestError, GraphTransientError, ThrottledError
from m365lake.graph.auth import BearerTokens, TokenProvider, TokenSource
from m365lake.graph.errors import RETRYABLE_STATUSES, THROTTLING_STATUSES, error_for_response
from m365lake.graph.limits import MailboxLimiter, SleepFunction
from m365lake.graph.paging import DeltaPage, PageCursor
from m365lake.graph.redact import install_httpx_log_redaction, redact_url
from m365lake.graph.retry import RETRYABLE_EXCEPTIONS, backoff_delay, parse_retry_after
from m365lake.graph.tls import build_ssl_context, certificate_verification_error

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "NONISV|m365lake|m365lake/0.1"
QueryParams = Mapping[str, str | int]


@dataclass
class GraphStats:
    """Counters for one client's lifetime, read into run records and asset metadata."""

    requests: int = 0
    """HTTP requests sent to Graph, retries included."""
    retries: int = 0
    """Requests sent again after a retryable status, a transport error or a 401."""
    throttled: int = 0
    """429 and 503 responses."""
    throttle_wait_seconds: float = 0.0
    """Seconds of wall-clock time during which at least one request waited after a 429 or
    503. Waits that overlap, such as those of concurrent requests, count once."""
    bytes_received: int = 0
    """Response body bytes as received on the wire (before content decoding)."""


class GraphClient:
    """Async Microsoft Graph client; use ``async with GraphClient(settings) as graph``.

    ``url`` arguments are paths relative to ``settings.graph_url`` (``"/users"``) or
    absolute links, which are requested verbatim. Requests with the same ``mailbox`` key
    share one ``asyncio.Semaphore(settings.max_concurrent_per_mailbox)``, because Exchange
    Online throttles an app above four concurrent requests per mailbox.

    ``timeout`` overrides ``settings.request_timeout_seconds``.
    ``token_provider`` and ``sleep`` replace the msal provider and ``asyncio.sleep``,
    so tests run without a login endpoint and retries without waiting.
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 8,
        timeout: float | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        token_provider: TokenSource | None = None,
        sleep: SleepFunction = asyncio.sleep,
    ) -> None:
        install_httpx_log_redaction()
        self.settings = settings
        self.stats = GraphStats()
        self._max_retries = max_retries
        self._sleep = sleep
        ssl_context = build_ssl_context(settings.ca_bundle)
        self._tokens = BearerTokens(
            token_provider or TokenProvider(settings, ssl_context=ssl_context)
        )
        self._limits = MailboxLimiter(settings.max_concurrent_per_mailbox, sleep)
        self._throttled_until = 0.0
        """Monotonic time at which the latest throttling wait counted in ``stats`` ends."""
        self._graph_origin = _origin(httpx.URL(settings.graph_url))
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=ssl_context,
            timeout=httpx.Timeout(timeout or settings.request_timeout_seconds),
            headers={"User-Agent": user_agent},
            # Drive content requests return 302 to a pre-authenticated URL. httpx drops the
            # Authorization header when a redirect leaves the origin.
            follow_redirects=True,
        )

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._tokens.source.close()

    # ---- public requests ------------------------------------------------------------

    async def get_json(
        self,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
    ) -> dict[str, Any]:
        """GET ``url`` and return the JSON object of the response."""
        response, _ = await self._send("GET", url, params=params, headers=headers, mailbox=mailbox)
        document = self._json_or_none(response)
        if document is None:
            raise self._unexpected_body(response, "is empty")
        return document

    async def iter_pages(
        self,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield each page of a collection, following ``@odata.nextLink`` verbatim.

        ``params`` go on the first request only, because nextLinks embed them. ``headers``
        such as ``Prefer`` and ``ConsistencyLevel`` are sent on every page.
        """
        cursor = PageCursor(url)
        while not cursor.done:
            page = await self.get_json(
                cursor.url,
                params=params if cursor.first_request else None,
                headers=headers,
                mailbox=mailbox,
            )
            cursor.update(page)
            yield page

    async def delta(
        self,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
    ) -> AsyncIterator[DeltaPage]:
        """Yield the pages of one delta round; the last carries ``delta_link``.

        ``url`` is the initial delta URL or a stored deltaLink. Raises
        ``SyncStateExpiredError`` (with ``location`` when Graph sent one) if the token died.
        """
        cursor = PageCursor(url)
        while not cursor.done:
            page = await self.get_json(
                cursor.url,
                params=params if cursor.first_request else None,
                headers=headers,
                mailbox=mailbox,
            )
            items = cursor.update(page)
            yield DeltaPage(items, delta_link=cursor.delta_link, next_link=cursor.next_link)

    async def get_bytes(
        self, url: str, *, headers: Mapping[str, str] | None = None, mailbox: str | None = None
    ) -> bytes:
        """GET ``url`` and return the body, such as a message's MIME from ``/$value``."""
        response, _ = await self._send("GET", url, params=None, headers=headers, mailbox=mailbox)
        return response.content

    @asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, mailbox: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Open ``url`` for streaming; the response body is unread.

        Retries cover the request up to the response headers only. The mailbox slot stays
        taken until the block exits, so a long download counts against the concurrency limit.
        """
        response, slot = await self._send(
            "GET", url, params=None, headers=headers, mailbox=mailbox, stream=True
        )
        try:
            yield response
        finally:
            self.stats.bytes_received += response.num_bytes_downloaded
            await response.aclose()
            if slot is not None:
                slot.release()

    async def send_json(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
    ) -> dict[str, Any] | None:
        """Send ``json`` (or no body) with ``method``; return the JSON object or None.

        None means 204 or an empty body. Failed requests raise the same errors as a GET;
        see ``_send`` for which methods are sent again after which failures.
        """
        content = None if json is None else _json_bytes(json)
        merged = dict(headers or {})
        if content is not None:
            merged.setdefault("Content-Type", "application/json")
        return await self.send_content(
            method, url, content, params=params, headers=merged, mailbox=mailbox
        )

    async def send_content(
        self,
        method: str,
        url: str,
        content: bytes | None,
        *,
        content_type: str | None = None,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        mailbox: str | None = None,
    ) -> dict[str, Any] | None:
        """Send a raw body, such as a small file's bytes or base64 MIME; like ``send_json``."""
        merged = dict(headers or {})
        if content_type is not None:
            merged["Content-Type"] = content_type
        response, _ = await self._send(
            method, url, params=params, headers=merged, mailbox=mailbox, content=content
        )
        return self._json_or_none(response)

    async def upload_fragment(
        self, upload_url: str, data: bytes, *, start: int, total: int
    ) -> UploadResponse:
        """PUT one fragment to a pre-authenticated upload URL; no Authorization header.

        Graph returns 202 while more bytes are expected, and 200 or 201 when complete.
        A 416 or 404 raises GraphRequestError or ItemNotFoundError: read
        ``nextExpectedRanges`` again with ``upload_status`` and resume, or start a new
        session.
        """
        if not data:
            raise ValueError("an upload fragment must hold at least one byte")
        end = start + len(data) - 1
        response, _ = await self._send(
            "PUT",
            upload_url,
            params=None,
            headers={"Content-Range": f"bytes {start}-{end}/{total}"},
            mailbox=None,
            content=data,
            authorize=False,
        )
        return UploadResponse(response.status_code, self._json_or_none(response), response.headers)

    async def upload_status(self, upload_url: str) -> dict[str, Any]:
        """Return an upload session's state (``nextExpectedRanges``, ``expirationDateTime``)."""
        response, _ = await self._send(
            "GET", upload_url, params=None, headers=None, mailbox=None, authorize=False
        )
        return self._json_or_none(response) or {}

    async def cancel_upload(self, upload_url: str) -> None:
        """Delete an upload session so its fragments are discarded."""
        await self._send(
            "DELETE", upload_url, params=None, headers=None, mailbox=None, authorize=False
        )

    # ---- the retry loop -------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None,
        headers: Mapping[str, str] | None,
        mailbox: str | None,
        stream: bool = False,
        content: bytes | None = None,
        authorize: bool = True,
    ) -> tuple[httpx.Response, asyncio.Semaphore | None]:
        """Send a request until it succeeds or fails for good.

        Return the response and, when streaming, the still-acquired mailbox slot, which the
        caller must release. ``authorize=False`` sends no token, for pre-authenticated
        upload URLs.

        A POST is not idempotent: when its response is lost or Graph returns 500, 502 or
        504, the item may exist already, so it is not sent again and the caller decides.
        429 and 503 mean Graph refused the request before doing it, so every method is
        retried after those.
        """
        target = self._resolve(url)
        idempotent = method != "POST"
        retry = 0
        token_refreshed = False
        rejected_token: str | None = None
        # Monotonic time at which this request's last throttling wait ends, so the next
        # wait of the same request is counted after it, not over it.
        throttled_until = 0.0

        while True:
            await self._limits.wait_while_paused(mailbox)
            try:
                token = await self._tokens.get(rejected=rejected_token) if authorize else ""
            except GraphTransientError as exc:
                if retry >= self._max_retries:
                    raise
                # A throttled login server said how long to wait; otherwise back off.
                wait = exc.retry_after if isinstance(exc, ThrottledError) else None
                await self._back_off(retry, f"token request failed ({exc.code or exc})", wait=wait)
                retry += 1
                continue
            rejected_token = None
            request = self._http.build_request(
                method,
                target,
                params=params,
                headers=self._headers(target, headers, token if authorize else None),
                content=content,
            )

            slot = self._limits.slot(mailbox)
            if slot is not None:
                await slot.acquire()
            try:
                response, failure, elapsed_ms = await self._exchange(request, stream)
            except BaseException:
                if slot is not None:
                    slot.release()
                raise
            self.stats.requests += 1
            keep_slot = stream and response is not None and response.is_success
            if slot is not None and not keep_slot:
                slot.release()

            if failure is not None:
                logger.info(
                    "%s %s failed: %s (%s) elapsed_ms=%d",
                    method,
                    redact_url(request.url),
                    type(failure).__name__,
                    failure,
                    elapsed_ms,
                )
                verification = certificate_verification_error(failure, request.url.host)
                if verification is not None:
                    raise verification from failure
                if not idempotent and not isinstance(failure, _NOT_SENT_EXCEPTIONS):
                    raise GraphTransientError(
                        f"{method} {redact_url(request.url)} failed with "
                        f"{type(failure).__name__}: {failure}; it was not sent again because "
                        "Graph may have carried it out. Check the target, then run again",
                        method=method,
                        url=redact_url(request.url),
                    ) from failure
                if retry >= self._max_retries:
                    raise GraphTransientError(
                        f"{method} {redact_url(request.url)} failed {retry + 1} times, last with "
                        f"{type(failure).__name__}: {failure}. Check the network and "
                        f"{ENV_GRAPH_URL}, then run again",
                        method=method,
                        url=redact_url(request.url),
                    ) from failure
                await self._back_off(retry, type(failure).__name__)
                retry += 1
                continue

            assert response is not None
            self._log_response(response, elapsed_ms)
            if response.is_success:
                if not stream:
                    self.stats.bytes_received += response.num_bytes_downloaded
                return response, slot if keep_slot else None

            status = response.status_code
            if status in THROTTLING_STATUSES:
                self.stats.throttled += 1
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if status == 401 and not token_refreshed and authorize:
                logger.info(
                    "%s %s returned 401; requesting a new token", method, redact_url(request.url)
                )
                token_refreshed = True
                rejected_token = token
                self.stats.retries += 1
                continue
            retryable = status in RETRYABLE_STATUSES and (
                idempotent or status in THROTTLING_STATUSES
            )
            if retryable and retry < self._max_retries:
                throttled_until = await self._wait_to_retry(
                    response, retry, retry_after, mailbox, throttled_until
                )
                retry += 1
                continue
            raise error_for_response(response, retry_after=retry_after)

    async def _exchange(
        self, request: httpx.Request, stream: bool
    ) -> tuple[httpx.Response | None, Exception | None, float]:
        """Send one request and read its body unless streaming a success."""
        started = time.monotonic()
        response: httpx.Response | None = None
        try:
            response = await self._http.send(request, stream=True)
            if not stream or not response.is_success:
                await response.aread()
        except RETRYABLE_EXCEPTIONS as exc:
            if response is not None:
                await response.aclose()
            return None, exc, (time.monotonic() - started) * 1000
        except httpx.HTTPError as exc:
            if response is not None:
                await response.aclose()
            raise GraphRequestError(
                f"{request.method} {redact_url(request.url)} failed: {type(exc).__name__}: {exc}",
                method=request.method,
                url=redact_url(request.url),
            ) from exc
        except BaseException:
            if response is not None:
                await response.aclose()
            raise
        return response, None, (time.monotonic() - started) * 1000

    async def _wait_to_retry(
        self,
        response: httpx.Response,
        retry: int,
        retry_after: float | None,
        mailbox: str | None,
        not_before: float,
    ) -> float:
        """Wait before the next try; return when a throttling wait ends (else ``not_before``).

        ``not_before`` is when this request's previous throttling wait ended.
        """
        status = response.status_code
        wait = retry_after if retry_after is not None else backoff_delay(retry)
        if status not in THROTTLING_STATUSES:
            await self._back_off(retry, f"status {status}", wait=wait)
            return not_before

        self.stats.retries += 1
        ends = self._count_throttle_wait(wait, not_before)
        logger.info(
            "throttled: %s %s status=%s retry_after=%s wait_s=%.3f retry=%d/%d request_id=%s",
            response.request.method,
            redact_url(response.request.url),
            status,
            response.headers.get("retry-after"),
            wait,
            retry + 1,
            self._max_retries,
            response.headers.get("request-id"),
        )
        if mailbox is None:
            await self._sleep(wait)
        else:
            # The retry waits at the top of the loop, together with every other request
            # to this mailbox.
            self._limits.pause(mailbox, wait)
        return ends

    def _count_throttle_wait(self, wait: float, not_before: float) -> float:
        """Add the part of a throttling wait that no earlier wait covers; return its end.

        The wait starts now, or at ``not_before`` when the same request is still in an
        earlier wait, as it is when a test replaces ``sleep`` with one that returns at once.
        """
        start = max(time.monotonic(), not_before)
        end = start + wait
        self.stats.throttle_wait_seconds += max(0.0, end - max(start, self._throttled_until))
        self._throttled_until = max(self._throttled_until, end)
        return end

    async def _back_off(self, retry: int, reason: str, *, wait: float | None = None) -> None:
        delay = backoff_delay(retry) if wait is None else wait
        self.stats.retries += 1
        logger.info(
            "retrying after %s: wait_s=%.3f retry=%d/%d",
            reason,
            delay,
            retry + 1,
            self._max_retries,
        )
        await self._sleep(delay)

    # ---- helpers --------------------------------------------------------------------

    def _resolve(self, url: str) -> str:
        if url.startswith(("https://", "http://")):
            return url
        if not url.startswith("/"):
            url = "/" + url
        return self.settings.graph_url + url

    def _headers(
        self, target: str, headers: Mapping[str, str] | None, token: str | None
    ) -> dict[str, str]:
        merged = dict(headers or {})
        merged["client-request-id"] = str(uuid.uuid4())
        # Only Graph itself gets the token: links to other hosts (download URLs) are
        # pre-authenticated and must not receive it.
        if token is not None and _origin(httpx.URL(target)) == self._graph_origin:
            merged["Authorization"] = f"Bearer {token}"
        return merged

    def _log_response(self, response: httpx.Response, elapsed_ms: float) -> None:
        logger.info(
            "%s %s status=%s request_id=%s elapsed_ms=%d",
            response.request.method,
            redact_url(response.request.url),
            response.status_code,
            response.headers.get("request-id"),
            elapsed_ms,
        )

    def _json_or_none(self, response: httpx.Response) -> dict[str, Any] | None:
        if response.status_code == 204 or not response.content:
            return None
        try:
            document = response.json()
        except ValueError as exc:
            raise self._unexpected_body(response, "is not JSON") from exc
        if not isinstance(document, dict):
            raise self._unexpected_body(response, "is not a JSON object")
        return document

    @staticmethod
    def _unexpected_body(response: httpx.Response, problem: str) -> GraphError:
        url = redact_url(response.request.url)
        method = response.request.method
        return GraphRequestError(
            f"{method} {url} returned {response.status_code} with a body that {problem} "
            f"(Content-Type {response.headers.get('content-type')!r}); check that "
            f"{ENV_GRAPH_URL} points at Microsoft Graph",
            method=method,
            url=url,
            status=response.status_code,
            request_id=response.headers.get("request-id"),
        )


@dataclass(frozen=True)
class UploadResponse:
    """Response of an upload URL to one fragment."""

    status: int
    """HTTP status of the fragment; see ``complete`` for what each workload sends."""
    json: dict[str, Any] | None
    """``nextExpectedRanges`` while incomplete; the created item or attachment at the end."""
    headers: httpx.Headers
    """Outlook names the created attachment in ``Location``."""

    @property
    def complete(self) -> bool:
        """Whether the upload is finished.

        OneDrive returns 202 until the last fragment and then 200 or 201. Outlook returns
        200 and ``NextExpectedRanges`` for every fragment but the last, and 201 and
        ``Location`` for the last.
        """
        if self.status == 201:
            return True
        if self.status != 200:
            return False
        document = self.json or {}
        return not (document.get("nextExpectedRanges") or document.get("NextExpectedRanges"))


# A connection refused or a connect timeout means the request never reached Graph, so even
# a POST is safe to send again.
_NOT_SENT_EXCEPTIONS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)


def _json_bytes(document: Any) -> bytes:
    return json_module.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port
