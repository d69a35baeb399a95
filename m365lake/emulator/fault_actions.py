"""Carry out a ``FaultAction`` on one request inside the emulator's front door.

Error actions send their error response at once. Resync actions change the tenant's sync
state and let the request through, so the route itself returns 410. Broken-connection actions
wrap the ASGI ``send``: the route runs as usual and its response is cut, padded or stalled
on the way out. A response left incomplete makes uvicorn close the connection, so the
client sees a body shorter than announced.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from m365lake.emulator.auth import WWW_AUTHENTICATE
from m365lake.emulator.faults import FaultAction, FaultPlan
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GraphHTTPError, error_response

logger = logging.getLogger(__name__)


async def apply_random_action(
    plan: FaultPlan, tenant: Tenant, request: Request, scope: Scope, receive: Receive, send: Send
) -> Send | None:
    """Draw and carry out the plan's action for this request.

    Returns the ``send`` to serve the request with, or None when a response was sent.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    query = scope.get("query_string", b"").decode("latin-1")
    action = plan.random_action(
        scope["method"],
        scope["path"],
        query,
        token.strip() if scheme.lower() == "bearer" and token.strip() else None,
    )
    if action is None:
        return send
    logger.info("fault injected on %s %s: %s", scope["method"], scope["path"], action.kind)
    if action.fault is not None:
        fault = action.fault
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if action.kind == "token":
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        error = GraphHTTPError(fault.status, fault.code, fault.message, headers=headers)
        await error_response(request, error)(scope, receive, send)
        return None
    if action.kind == "sync_state":
        _expire_mailbox(tenant, action.target)
        return send
    if action.kind == "drive_resync":
        _expire_drive(tenant, action.target, action.code)
        return send
    if action.kind == "slow" and action.fraction < 0.5:
        await asyncio.sleep(plan.slow_seconds)
        return send
    return _BrokenSend(send, action, plan.slow_seconds)


def _expire_mailbox(tenant: Tenant, user_key: str | None) -> None:
    user = tenant.resolve_user(user_key or "")
    if user is not None and user.has_mailbox:
        tenant.expire_sync_state(user.user.user_principal_name)


def _expire_drive(tenant: Tenant, drive_id: str | None, code: str | None) -> None:
    if drive_id is None or tenant.drive_info(drive_id) is None:
        return
    tenant.expire_drive_delta(drive_id, code or "resyncChangesApplyDifferences")


class _BrokenSend:
    """An ASGI ``send`` that cuts, pads or stalls the response body once."""

    def __init__(self, send: Send, action: FaultAction, slow_seconds: float) -> None:
        self._send = send
        self._action = action
        self._slow_seconds = slow_seconds
        self._done = False
        """True once the fault has struck; a cut response sends nothing more."""
        self._cut = False

    async def __call__(self, message: Message) -> None:
        if self._cut:
            return
        if message["type"] == "http.response.start" and self._action.kind == "truncate":
            message = {**message, "headers": _padded_length(message.get("headers", []))}
        if message["type"] != "http.response.body" or self._done:
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        kind = self._action.kind
        if kind == "truncate":
            # The whole body goes out, but the announced length is larger, and the
            # response never completes.
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
            if not more:
                self._done = self._cut = True
            return
        keep = int(len(body) * self._action.fraction)
        await self._send({"type": "http.response.body", "body": body[:keep], "more_body": True})
        self._done = True
        if kind == "reset":
            self._cut = True
            return
        await asyncio.sleep(self._slow_seconds)
        await self._send({"type": "http.response.body", "body": body[keep:], "more_body": more})


PADDING_BYTES = 17
"""Bytes a truncated response announces beyond the body it sends."""


def _padded_length(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Return the headers with ``Content-Length`` raised by ``PADDING_BYTES``.

    A chunked response has no length to raise. It is truncated all the same, because it
    never sends its last chunk.
    """
    return [
        (name, str(int(value) + PADDING_BYTES).encode())
        if name.lower() == b"content-length"
        else (name, value)
        for name, value in headers
    ]
