"""Download one drive item's content into the lake, resuming broken transfers.

``GET /drives/{d}/items/{i}/content`` returns 302 with a short-lived pre-authenticated
URL, which the client follows without sending the token there. When the connection breaks
mid-body, the download continues from the last byte received with ``Range: bytes=N-`` on
that URL. When the URL has expired (401, 403, 404 or 410 from its host), a fresh one is
requested from ``/content`` and the download continues from the same offset.
``ContentSink`` computes SHA-256 and QuickXorHash over the bytes as they arrive, on a
worker thread when the content is larger than the lake's inline threshold.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from m365lake.errors import GraphError, GraphRequestError, GraphTransientError
from m365lake.graph import GraphClient
from m365lake.graph.retry import RETRYABLE_EXCEPTIONS
from m365lake.lake import ContentRef, Lake
from m365lake.sources.drive_sink import ContentSink

log = logging.getLogger(__name__)

MAX_RESUMES = 5
"""Broken connections and expired URLs tolerated for one download."""

EXPIRED_URL_STATUSES = frozenset({401, 403, 404, 410})
"""Statuses from a pre-authenticated download host that mean its URL is no longer valid."""

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-\d+/(\d+|\*)$")


class ContentMismatchError(Exception):
    """The downloaded bytes do not match the size or QuickXorHash Graph reported."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """``hashMismatch`` or ``sizeMismatch``, recorded in the failures table."""


@dataclass(frozen=True)
class Download:
    """Content stored in the lake by one download."""

    content: ContentRef
    quickxor_hash: str
    bytes_received: int
    """Bytes received over the network, resumed transfers included."""
    new_blob: bool
    resumes: int


def _start_offset(status: int, content_range: str | None, requested: int) -> int:
    """Return the offset of the first body byte of a (possibly ranged) response."""
    if status != 206:
        # The server may ignore Range and send everything; the caller skips what it has.
        return 0
    match = _CONTENT_RANGE.match(content_range or "")
    if match is None:
        raise GraphRequestError(
            f"a ranged download returned 206 with an invalid Content-Range {content_range!r}"
        )
    start = int(match.group(1))
    if start > requested:
        raise GraphRequestError(
            f"a ranged download from byte {requested} returned bytes from {start} on"
        )
    return start


def _from_download_host(error: GraphError) -> bool:
    """Return whether the failed request went to the URL a ``/content`` 302 pointed at.

    The first attempt requests ``/content`` and follows its redirect, so an expired URL
    fails that attempt too. GraphClient retries a 401 once with a new token, which
    fetches a fresh URL that can expire as well. ``error.url`` is the path of the request
    that failed, and only Graph's own ``/content`` path ends in ``/content``.
    """
    return error.url is not None and not error.url.partition("?")[0].endswith("/content")


async def download_content(
    graph: GraphClient,
    lake: Lake,
    drive_id: str,
    item_id: str,
    *,
    expected_size: int | None,
    expected_quickxor: str | None,
    max_resumes: int = MAX_RESUMES,
) -> Download:
    """Download the content of one item into the lake and check it against Graph's hashes.

    Raises ContentMismatchError when the size or QuickXorHash differs from ``expected_*``
    (nothing is stored then), and GraphError when Graph or the download host fails for good.
    """
    content_url = f"/drives/{drive_id}/items/{item_id}/content"
    url = content_url
    offset = 0
    received = 0
    resumes = 0
    sink = ContentSink(lake)
    try:
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else None
            try:
                async with graph.stream(url, headers=headers) as response:
                    if response.history:
                        # Resume on the pre-authenticated URL the 302 pointed at.
                        url = str(response.url)
                    position = _start_offset(
                        response.status_code, response.headers.get("content-range"), offset
                    )
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                        if position < offset:
                            skip = min(offset - position, len(chunk))
                            position += skip
                            chunk = chunk[skip:]
                        if not chunk:
                            continue
                        await sink.write(chunk)
                        position += len(chunk)
                        offset = position
                break
            except RETRYABLE_EXCEPTIONS as error:
                resumes += 1
                if resumes > max_resumes:
                    raise GraphTransientError(
                        f"download of item {item_id} in drive {drive_id} broke {resumes} "
                        f"times, last with {type(error).__name__}: {error}"
                    ) from error
                log.info(
                    "download of item %s broke at byte %d (%s); resuming",
                    item_id,
                    offset,
                    type(error).__name__,
                )
            except GraphError as error:
                on_download_host = url != content_url or _from_download_host(error)
                if error.status not in EXPIRED_URL_STATUSES or not on_download_host:
                    raise
                resumes += 1
                if resumes > max_resumes:
                    raise
                log.info(
                    "download URL of item %s returned %s; requesting a fresh one",
                    item_id,
                    error.status,
                )
                url = content_url

        actual_quickxor = await sink.quickxor_b64()
        if expected_size is not None and offset != expected_size:
            raise ContentMismatchError(
                f"item {item_id} in drive {drive_id}: downloaded {offset} bytes but Graph "
                f"reports a size of {expected_size}",
                reason="sizeMismatch",
            )
        if expected_quickxor is not None and actual_quickxor != expected_quickxor:
            raise ContentMismatchError(
                f"item {item_id} in drive {drive_id}: the download has QuickXorHash "
                f"{actual_quickxor} but Graph reports {expected_quickxor}",
                reason="hashMismatch",
            )
        content, new_blob = await sink.commit()
    except BaseException:
        sink.abort()
        raise
    return Download(content, actual_quickxor, received, new_blob, resumes)
