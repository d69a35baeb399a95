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


# One query parameter inside free text, such as a Location header in a trace line.
_QUERY_PAIR = re.compile(r"([?&])([^=&\s'\"]+)=([^&\s'\"]+)")


def redact_text(text: str) -> str:
    """Redact token-like query values of every URL in ``text``, like ``redact_query``."""

    def replace(match: re.Match[str]) -> str:
        separator, name, value = match.groups()
        if _SECRET_NAME.search(name) or _TOKEN_LIKE_VALUE.match(value):
            value = REDACTED
        return f"{separator}{name}={value}"

    return _QUERY_PAIR.sub(replace, text)


class HttpcoreTraceRedactionFilter(logging.Filter):
    """Log filter that redacts URLs in httpcore's DEBUG trace lines.

    Those lines print response headers, so a 302 to a pre-authenticated download URL
    would show its ``tempauth`` in the ``Location`` header.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# httpcore logs its traces under these names; a filter on a parent logger would not see
# records logged on a child.
_HTTPCORE_LOGGERS = (
    "httpcore.connection",
    "httpcore.connection_pool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


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
    """Attach the redaction filters to the httpx and httpcore loggers once per process."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, HttpxUrlRedactionFilter) for f in httpx_logger.filters):
        httpx_logger.addFilter(HttpxUrlRedactionFilter())
    for name in _HTTPCORE_LOGGERS:
        core_logger = logging.getLogger(name)
        if not any(isinstance(f, HttpcoreTraceRedactionFilter) for f in core_logger.filters):
            core_logger.addFilter(HttpcoreTraceRedactionFilter())
