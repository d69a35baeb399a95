"""The emulator's ASGI app: login endpoints plus the Graph routes, behind one middleware.

The middleware does what Graph's front door does for every request: assign a request id,
echo ``client-request-id``, apply injected and random faults, check the bearer token,
apply Exchange's per-mailbox throttling, and record the request for tests.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from m365lake.emulator import (
    auth,
    routes_calendar,
    routes_calendar_write,
    routes_contacts,
    routes_delta,
    routes_drive_write,
    routes_drives,
    routes_folders,
    routes_mail_write,
    routes_messages,
    routes_sites,
    routes_teams,
    routes_users,
)
from m365lake.emulator.concurrency import ConcurrencyGauge, MailboxRendezvous
from m365lake.emulator.downloads import DOWNLOAD_PATH, DownloadService
from m365lake.emulator.fault_actions import apply_random_action
from m365lake.emulator.faults import Fault, FaultPlan
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GraphHTTPError, error_response
from m365lake.emulator.sharepoint_throttling import (
    SharePointThrottle,
    is_sharepoint_path,
    request_cost,
)
from m365lake.emulator.teams_throttling import TeamsThrottle
from m365lake.emulator.throttling import MailboxThrottle, ThrottleScope
from m365lake.emulator.upload_sessions import UPLOAD_PATH, UploadSessionStore

logger = logging.getLogger(__name__)

# Requests Exchange counts against a mailbox: everything below /users/{id}/ that is mail,
# calendar or contacts.
_MAILBOX_PATH = re.compile(
    r"^/v1\.0/users/([^/]+)/"
    r"(?:mailfolders|messages|calendars?|events|calendarview|contactfolders|contacts)",
    re.IGNORECASE,
)
# OData key syntax, as in Graph's own links: users('id')/mailfolders('id') = users/id/...
_KEY_SEGMENT = re.compile(r"([A-Za-z]+)\('([^'/]*)'\)")


@dataclass
class EmulatorOptions:
    """Behaviour knobs of one emulator app; defaults follow Exchange Online's limits."""

    token_lifetime_seconds: int = 3599
    mailbox_requests_per_window: int = 10_000
    mailbox_window_seconds: float = 600
    mailbox_concurrency: int = 4
    throttle_scope: ThrottleScope = "mailbox"
    faults: FaultPlan | None = None
    latency_seconds: float = 0.0
    """Delay in seconds added to each mail request inside its concurrency slot, so tests
    can make requests overlap."""
    download_url_lifetime_seconds: float = 3600
    """Lifetime of pre-authenticated download URLs; SharePoint's last about an hour."""
    sharepoint_ru_per_minute: int = 1_000_000
    """Per-app SharePoint resource units per minute. Real tenants get 1,250 to 6,250
    (``sharepoint_throttling.RU_PER_MINUTE_BY_LICENCES``); the default never throttles."""
    sharepoint_ru_per_day: int = 1_000_000_000
    """Per-app SharePoint resource units per 24 hours (real: 1.2M to 6M)."""
    sharepoint_blocked: bool = False
    """Reject every SharePoint request with 503, as for an app blocked for abuse."""
    throttle_time_scale: float = 1.0
    """Shrink the Exchange and SharePoint windows and their budgets by this factor, so a
    benchmark sees many windows in minutes at the real ceiling (requests per second)."""
    mailbox_rendezvous: int = 0
    """Hold mail requests until this many mailboxes have sent one (0: off), so tests can
    make backups of different mailboxes overlap; see ``MailboxRendezvous``."""
    mailbox_rendezvous_timeout_seconds: float = 30
    """Below the 60 s read timeout of m365lake's Graph client, so a held request never times out."""
    drive_simple_upload_max_bytes: int = 4 * 1024 * 1024
    """Largest body of a simple drive upload (PUT .../content). Graph v1.0 documents
    4 MB; newer pages say 250 MB."""
    upload_session_lifetime_seconds: float = 3600
    """Time a drive upload session stays open after its creation or last fragment."""
    teams_channel_requests_per_second: int = 1_000_000
    """Teams requests per second per app and team or channel. The real limit is 4
    (``teams_throttling.REAL_CHANNEL_REQUESTS_PER_SECOND``); the default never throttles."""
    teams_app_requests_per_10_seconds: int = 1_000_000_000
    """Teams requests per 10 seconds per app, tenant-wide (real: 15,000)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the emulator saw it; ``mailbox`` is the user id of a mail request."""

    method: str
    path: str
    query: str
    status: int
    mailbox: str | None
    time: float
    request_id: str = ""
    client_request_id: str | None = None


@dataclass
class RequestLog:
    """Thread-safe list of handled requests."""

    _records: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def build_app(tenant: Tenant, options: EmulatorOptions | None = None) -> Starlette:
    """Return the emulator app for ``tenant``; ``app.state`` contains its issuer, log and faults."""
    options = options or EmulatorOptions()
    app = Starlette(
        routes=[
            *auth.routes,
            *routes_users.routes,
            *routes_delta.routes,
            *routes_folders.routes,
            *routes_messages.routes,
            *routes_mail_write.routes,
            *routes_calendar.routes,
            *routes_calendar_write.routes,
            *routes_sites.routes,
            *routes_drives.routes,
            *routes_drive_write.routes,
            *routes_teams.routes,
            *routes_contacts.routes,
        ],
        exception_handlers={
            GraphHTTPError: _graph_error_handler,
            HTTPException: _http_error_handler,
        },
    )
    app.state.tenant = tenant
    app.state.options = options
    app.state.issuer = auth.TokenIssuer(tenant, lifetime_seconds=options.token_lifetime_seconds)
    app.state.faults = options.faults or FaultPlan()
    app.state.requests = RequestLog()
    app.state.concurrency = ConcurrencyGauge()
    app.state.rendezvous = (
        MailboxRendezvous(options.mailbox_rendezvous, options.mailbox_rendezvous_timeout_seconds)
        if options.mailbox_rendezvous > 1
        else None
    )
    app.state.throttle = MailboxThrottle(
        concurrency=options.mailbox_concurrency,
        requests_per_window=options.mailbox_requests_per_window,
        window_seconds=options.mailbox_window_seconds,
        scope=options.throttle_scope,
        time_scale=options.throttle_time_scale,
    )
    app.state.downloads = DownloadService(options.download_url_lifetime_seconds)
    app.state.upload_sessions = UploadSessionStore(options.upload_session_lifetime_seconds)
    app.state.sharepoint_throttle = SharePointThrottle(
        per_minute=options.sharepoint_ru_per_minute,
        per_day=options.sharepoint_ru_per_day,
        blocked=options.sharepoint_blocked,
        time_scale=options.throttle_time_scale,
    )
    app.state.teams_throttle = TeamsThrottle(
        channel_per_second=options.teams_channel_requests_per_second,
        app_per_10_seconds=options.teams_app_requests_per_10_seconds,
    )
    app.add_middleware(GraphFrontDoor, state=app.state)
    return app


async def _graph_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GraphHTTPError)
    return error_response(request, exc)


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    segment = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if exc.status_code == 404:
        # Graph returns 400, not 404, for an unknown URL segment.
        error = GraphHTTPError(
            400, "BadRequest", f"Resource not found for the segment '{segment}'."
        )
    elif exc.status_code == 405:
        error = GraphHTTPError(
            405, "BadRequest", f"The HTTP method '{request.method}' is not supported here."
        )
    else:
        error = GraphHTTPError(exc.status_code, "BadRequest", str(exc.detail))
    return error_response(request, error)


class GraphFrontDoor:
    """Pure ASGI middleware, so streamed bodies stay inside the concurrency slot."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        request = Request(scope)
        client_request_id = request.headers.get("client-request-id")
        # Only the part before an item path (``items/{id}:/{name}:``) is Graph syntax; a
        # file name such as ``Budget('draft').xlsx`` after it must stay as it is.
        graph_part, colon, item_path = scope["path"].partition(":/")
        path: str = _KEY_SEGMENT.sub(r"\1/\2", graph_part) + colon + item_path
        scope["path"] = path
        status_holder = {"status": 500}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                headers.append((b"client-request-id", (client_request_id or request_id).encode()))
                for name, value in scope["state"].get("extra_headers", {}).items():
                    headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        mailbox = self._mailbox_of(path)
        # Login endpoints are not Graph traffic; download URLs are, though they carry no token.
        counted = path.startswith(("/v1.0/", DOWNLOAD_PATH))
        if counted:
            self.state.concurrency.enter(mailbox)
        try:
            await self._serve(scope, receive, send_with_headers, request, path, mailbox)
        finally:
            if counted:
                self.state.concurrency.exit(mailbox)
            record = RequestRecord(
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                status=status_holder["status"],
                mailbox=mailbox,
                time=time.time(),
                request_id=request_id,
                client_request_id=client_request_id,
            )
            self.state.requests.append(record)
            logger.debug("%s %s -> %d", record.method, path, record.status)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: Request,
        path: str,
        mailbox: str | None,
    ) -> None:
        """Serve one request; ``mailbox`` is the user id Exchange would count it against."""
        faults: FaultPlan = self.state.faults
        injected = faults.injected_fault(path)
        if injected is not None:
            await _send_fault(request, injected, scope, receive, send)
            return
        if path.startswith((DOWNLOAD_PATH, UPLOAD_PATH)):
            # Download and upload URLs carry their own credential; SharePoint still
            # charges them.
            faulty_send = await apply_random_action(
                faults, self.state.tenant, request, scope, receive, send
            )
            if faulty_send is None:
                return
            if self._charge_sharepoint(scope, request, self.state.tenant.app.client_id, path):
                await self.app(scope, receive, faulty_send)
            else:
                await scope["state"].pop("rejection")(scope, receive, send)
            return
        if not path.startswith("/v1.0/"):
            await self.app(scope, receive, send)
            return

        try:
            claims = self.state.issuer.authenticate(request)
        except GraphHTTPError as exc:
            logger.info("rejected %s %s: %s", scope["method"], path, exc.message)
            await error_response(request, exc)(scope, receive, send)
            return
        scope["state"]["claims"] = claims
        faulty_send = await apply_random_action(
            faults, self.state.tenant, request, scope, receive, send
        )
        if faulty_send is None:
            return
        send = faulty_send

        app_id = str(claims.get("appid"))
        if is_sharepoint_path(path) and not self._charge_sharepoint(scope, request, app_id, path):
            await scope["state"].pop("rejection")(scope, receive, send)
            return

        if mailbox is None:
            await self.app(scope, receive, send)
            return

        if self.state.rendezvous is not None:
            await self.state.rendezvous.wait(mailbox)
        try:
            if mailbox in self.state.tenant.app.blocked_mailboxes:
                raise GraphHTTPError(
                    403,
                    "ErrorAccessDenied",
                    "Access to OData is disabled for this mailbox by an application access policy.",
                )
            slot = self.state.throttle.acquire(app_id, mailbox)
        except GraphHTTPError as exc:
            logger.info("rejected %s for mailbox %s: %s", path, mailbox, exc.message)
            await error_response(request, exc)(scope, receive, send)
            return

        try:
            if self.state.options.latency_seconds > 0:
                await asyncio.sleep(self.state.options.latency_seconds)
            await self.app(scope, receive, send)
        finally:
            self.state.throttle.release(slot)

    def _charge_sharepoint(self, scope: Scope, request: Request, app_id: str, path: str) -> bool:
        """Charge SharePoint resource units; on rejection store the error and return False."""
        query = scope.get("query_string", b"").decode("latin-1")
        cost = request_cost(scope["method"], path, query)
        try:
            headers = self.state.sharepoint_throttle.charge(app_id, cost)
        except GraphHTTPError as exc:
            logger.info(
                "SharePoint throttled %s %s: %d %s", scope["method"], path, exc.status, exc.code
            )
            scope["state"]["rejection"] = error_response(request, exc)
            return False
        scope["state"]["extra_headers"] = headers
        return True

    def _mailbox_of(self, path: str) -> str | None:
        match = _MAILBOX_PATH.match(path)
        if match is None:
            return None
        user = self.state.tenant.resolve_user(match.group(1))
        return None if user is None else str(user.id)


async def _send_fault(
    request: Request, fault: Fault, scope: Scope, receive: Receive, send: Send
) -> None:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
    error = GraphHTTPError(fault.status, fault.code, fault.message, headers=headers)
    logger.info("fault injected on %s: %d %s", request.url.path, fault.status, fault.code)
    await error_response(request, error)(scope, receive, send)
