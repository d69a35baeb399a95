"""URL redaction for log lines: paging tokens and credentials never reach a log."""

from __future__ import annotations

import logging
import re

import httpx

REDACTED = "***"

# Query names whose values grant access or resume an enumeration: $skiptoken/$deltatoken
# in Graph links, tempauth in SharePoint download URLs, sig in Azure SAS URLs, and OAuth
# parameters such as client_secret, client_assertion, code and access_token.
_SECRET_NAME = re.compile(r"token|secret|assertion|sig|auth|key|password|^code$", re.IGNORECASE)

# A long run of base64/base64url characters looks like an opaque token even under an
# unexpected parameter name.
_TOKEN_LIKE_VALUE = re.compile(r"^[A-Za-z0-9+/_\-.%=]{40,}$")


def redact_url(url: httpx.URL | str) -> str:
    """Return the path and query of ``url`` with token-like query values replaced by ``***``."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    path = parsed.raw_path.decode("ascii", errors="replace")
    base, _, query = path.partition("?")
    if not query:
        return base
    return f"{base}?{redact_query(query)}"


def redact_query(query: str) -> str:
    """Redact the values of a raw (still percent-encoded) query string, keeping the names."""
    parts = []
    for pair in query.split("&"):
        name, separator, value = pair.partition("=")
        if separator and value and (_SECRET_NAME.search(name) or _TOKEN_LIKE_VALUE.match(value)):
            value = REDACTED
        parts.append(f"{name}{separator}{value}")
    return "&".join(parts)


class HttpxUrlRedactionFilter(logging.Filter):
    """Log filter that redacts request URLs in httpx's own "HTTP Request: ..." INFO lines.

    httpx logs every request URL in full, so an application that shows INFO logs would
    otherwise print ``$skiptoken``, ``$deltatoken`` and download ``tempauth`` values.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, httpx.URL) for arg in record.args
        ):
            record.args = tuple(
                f"{arg.scheme}://{arg.netloc.decode('ascii')}{redact_url(arg)}"
                if isinstance(arg, httpx.URL)
                else arg
                for arg in record.args
            )
        return True


def install_httpx_log_redaction() -> None:
    """Attach ``HttpxUrlRedactionFilter`` to the ``httpx`` logger once per process."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, HttpxUrlRedactionFilter) for f in httpx_logger.filters):
        httpx_logger.addFilter(HttpxUrlRedactionFilter())
