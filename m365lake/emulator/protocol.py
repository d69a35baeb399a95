"""Graph wire conventions: error bodies, JSON responses, opaque link tokens, query options."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

GRAPH_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
GRAPH_RESOURCE = "https://graph.microsoft.com"


class GraphHTTPError(Exception):
    """A Graph error response: raised by route code, rendered by the app's handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        inner_code: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.inner_code = inner_code


def utc_now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_body(
    code: str,
    message: str,
    *,
    request_id: str,
    client_request_id: str | None,
    inner_code: str | None = None,
) -> dict[str, Any]:
    """Return the Graph error JSON, with the ``innerError`` keys live services send."""
    inner: dict[str, Any] = {"date": utc_now_text(), "request-id": request_id}
    inner["client-request-id"] = client_request_id or request_id
    if inner_code is not None:
        inner["code"] = inner_code
    return {"error": {"code": code, "message": message, "innerError": inner}}


def error_response(request: Request, error: GraphHTTPError) -> Response:
    body = error_body(
        error.code,
        error.message,
        request_id=request_id_of(request),
        client_request_id=request.headers.get("client-request-id"),
        inner_code=error.inner_code,
    )
    return Response(
        json.dumps(body), status_code=error.status, headers=error.headers, media_type=GRAPH_JSON
    )


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type=GRAPH_JSON)


# ---- opaque link tokens ---------------------------------------------------------------


def encode_token(state: dict[str, Any]) -> str:
    """Return ``state`` as an opaque base64url token (no padding) for a skip or delta token."""
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *, name: str) -> dict[str, Any]:
    """Parse a token made by ``encode_token``; a mangled one is a 400, as in Graph."""
    try:
        padded = token + "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphHTTPError(
            400, "BadRequest", f"The {name} value is not a valid token: it could not be parsed."
        ) from exc
    if not isinstance(state, dict):
        raise GraphHTTPError(400, "BadRequest", f"The {name} value is not a valid token.")
    return state


def absolute_link(request: Request, path: str, params: dict[str, str]) -> str:
    """Build a link on the same scheme and host as ``request`` (Graph links are absolute)."""
    base = str(request.base_url).rstrip("/")
    query = urlencode(params, safe="$=,'")
    return f"{base}{path}?{query}" if query else f"{base}{path}"


# ---- query options ---------------------------------------------------------------------

_SELECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def parse_select(raw: str | None, allowed: frozenset[str], entity: str) -> list[str] | None:
    """Return the ``$select`` property list, or None when absent; unknown names are a 400."""
    if raw is None:
        return None
    names = [part.strip() for part in raw.split(",") if part.strip()]
    for name in names:
        if not _SELECT_NAME.match(name) or name not in allowed:
            raise GraphHTTPError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
            )
    return names


def parse_top(raw: str | None, *, maximum: int, default: int, code: str = "BadRequest") -> int:
    """Return ``$top`` within 1..maximum; Graph rejects values outside that range with 400."""
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GraphHTTPError(
            400, "BadRequest", f"Invalid value '{raw}' for $top query option found."
        ) from None
    if not 1 <= value <= maximum:
        raise GraphHTTPError(
            400,
            code,
            f"Invalid page size specified: '{value}'. Must be between 1 and {maximum} inclusive.",
        )
    return value


def parse_skip(raw: str | None) -> int:
    if raw is None:
        return 0
    if not raw.isdigit():
        raise GraphHTTPError(400, "BadRequest", f"Invalid value '{raw}' for $skip query option.")
    return int(raw)


_PREFER_PAGE_SIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_PREFER_IMMUTABLE = re.compile(r'IdType\s*=\s*"?ImmutableId"?', re.IGNORECASE)


def preferred_page_size(request: Request) -> int | None:
    match = None
    for value in request.headers.getlist("prefer"):
        match = _PREFER_PAGE_SIZE.search(value) or match
    return int(match.group(1)) if match else None


def wants_immutable_ids(request: Request) -> bool:
    return any(_PREFER_IMMUTABLE.search(v) for v in request.headers.getlist("prefer"))


def select_properties(
    full: dict[str, Any], selected: list[str] | None, always: tuple[str, ...]
) -> dict[str, Any]:
    """Keep ``always`` keys (id, annotations) plus the selected properties, in that order."""
    if selected is None:
        return full
    kept = {key: full[key] for key in always if key in full}
    for name in selected:
        kept[name] = full.get(name)
    return kept
