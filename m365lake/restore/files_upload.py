"""Upload archived file content to a drive: a simple PUT up to 4 MiB, else an upload session.

Content is streamed from the blob store one chunk at a time, so a 50 MB file never sits
in memory twice: at most one fragment and one chunk are held. The last fragment is sent
only after the blob's SHA-256 has been checked, so damaged archive content is never
committed to the tenant. Fragments are multiples of 320 KiB, as Graph requires of every
fragment but the last. After a failed fragment the upload reads ``nextExpectedRanges``
from the session and resumes there. A session that is gone is started again. A name
taken when the last fragment commits leaves the session open, so its bytes can be
committed by ``sourceUrl`` or discarded instead of being uploaded again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from m365lake.catalog import connect
from m365lake.errors import (
    GraphRequestError,
    GraphTransientError,
    ItemNotFoundError,
    LakeError,
    RestoreError,
)
from m365lake.graph import GraphClient
from m365lake.lake import Lake

logger = logging.getLogger(__name__)

FRAGMENT_UNIT = 320 * 1024
"""Every upload fragment but the last must be a multiple of 320 KiB (327,680 bytes)."""
FRAGMENT_BYTES = 32 * FRAGMENT_UNIT
"""10 MiB fragments, inside Graph's recommended 5 to 10 MiB and under its 60 MiB limit."""
SIMPLE_UPLOAD_MAX_BYTES = 4 * 1024 * 1024
"""Largest file sent with one PUT; Graph v1.0 documents 4 MB for simple uploads."""
MAX_RESUMES = 5
"""Times one upload resumes from ``nextExpectedRanges`` before it fails."""
CONFLICT_PARAMETER = "@microsoft.graph.conflictBehavior"

SOURCE_URL_PARAMETER = "@microsoft.graph.sourceUrl"

ChunkSource = Callable[[], Iterator[bytes]]
"""Opens the content from its first byte; called again to resume after a failure."""


class NameTakenAtCommitError(GraphRequestError):
    """Graph has every byte of an upload session, but the name was taken at commit (409).

    The session is left open so the caller can commit the stored bytes under another
    conflict behaviour (``commit_stored``) or discard them (``GraphClient.cancel_upload``)
    instead of sending the file again.
    """

    def __init__(self, error: GraphRequestError, upload_url: str) -> None:
        super().__init__(
            str(error),
            method=error.method,
            url=error.url,
            status=error.status,
            code=error.code,
            request_id=error.request_id,
        )
        self.upload_url = upload_url


def fragment_ranges(
    total: int, start: int, fragment_bytes: int = FRAGMENT_BYTES
) -> list[tuple[int, int]]:
    """Return the (first, last) byte of each fragment from ``start`` to the end of ``total``.

    Every fragment but the last has ``fragment_bytes``, which must be a positive multiple
    of 320 KiB.
    """
    if fragment_bytes <= 0 or fragment_bytes % FRAGMENT_UNIT:
        raise ValueError(
            f"fragment size {fragment_bytes} is not a positive multiple of 320 KiB "
            f"({FRAGMENT_UNIT} bytes)"
        )
    if not 0 <= start <= total:
        raise ValueError(f"start {start} is outside the {total}-byte file")
    return [
        (first, min(first + fragment_bytes, total) - 1)
        for first in range(start, total, fragment_bytes)
    ]


def next_offset(status: dict[str, Any]) -> int | None:
    """Return the first byte Graph still expects, from ``nextExpectedRanges``; None if none."""
    ranges = status.get("nextExpectedRanges") or []
    starts = []
    for text in ranges:
        first = str(text).split("-", 1)[0].strip()
        if first.isdigit():
            starts.append(int(first))
    return min(starts) if starts else None


async def fragments(
    open_chunks: ChunkSource, start: int, fragment_bytes: int = FRAGMENT_BYTES
) -> AsyncIterator[tuple[int, bytes]]:
    """Yield (offset, bytes) fragments of the content from ``start``.

    A fragment is yielded only once a byte after it has been read, so the last one comes
    after the source is exhausted and has checked its hash. Reading runs in a worker
    thread because blob reads decompress.
    """
    iterator = open_chunks()
    position = 0
    offset = start
    buffer = bytearray()
    while True:
        chunk = await asyncio.to_thread(next, iterator, None)
        if chunk is None:
            break
        if position + len(chunk) <= start:
            position += len(chunk)
            continue
        if position < start:
            chunk = chunk[start - position :]
            position = start
        position += len(chunk)
        buffer += chunk
        while len(buffer) > fragment_bytes:
            yield offset, bytes(buffer[:fragment_bytes])
            del buffer[:fragment_bytes]
            offset += fragment_bytes
    if buffer:
        yield offset, bytes(buffer)


# ---- archived content ------------------------------------------------------------------


def inline_contents(lake: Lake, hashes: set[str]) -> dict[str, bytes]:
    """Return the inline (Parquet) content of each hash that the archive stores inline."""
    if not hashes:
        return {}
    with connect(lake) as db:
        rows = db.execute(
            "SELECT content_sha256, any_value(content_inline) FROM drive_items_rows "
            "WHERE content_sha256 IN (SELECT unnest(?)) AND content_inline IS NOT NULL "
            "GROUP BY content_sha256",
            [sorted(hashes)],
        ).fetchall()
    return {str(sha256): bytes(data) for sha256, data in rows}


def content_source(lake: Lake, sha256: str, inline: bytes | None) -> ChunkSource:
    """Return a ``ChunkSource`` for archived content, inline or from the blob store."""
    if inline is not None:
        checked = lake.read_content(sha256, inline)
        return lambda: iter([checked])
    return lambda: lake.blobs.read_chunks(sha256)


# ---- uploads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileTimes:
    created_at: datetime | None
    modified_at: datetime | None

    def file_system_info(self) -> dict[str, str]:
        info = {}
        if self.created_at is not None:
            info["createdDateTime"] = _graph_time(self.created_at)
        if self.modified_at is not None:
            info["lastModifiedDateTime"] = _graph_time(self.modified_at)
        return info


def _graph_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _by_name(drive_id: str, parent_id: str, name: str, action: str) -> str:
    return f"/drives/{drive_id}/items/{parent_id}:/{quote(name, safe='')}:/{action}"


async def upload_file(
    graph: GraphClient,
    drive_id: str,
    parent_id: str,
    name: str,
    *,
    size: int,
    source: ChunkSource,
    conflict: str,
    times: FileTimes,
    fragment_bytes: int = FRAGMENT_BYTES,
) -> dict[str, Any]:
    """Upload one file into ``parent_id`` as ``name``; return the driveItem Graph created.

    ``conflict`` is ``fail``, ``rename`` or ``replace``. A 409 from Graph (the name is
    taken under ``fail``) raises GraphRequestError with ``status`` 409 for the caller.
    From an upload session it is a NameTakenAtCommitError, and its session stays open.
    """
    if size <= SIMPLE_UPLOAD_MAX_BYTES:
        return await _put_small(graph, drive_id, parent_id, name, source, conflict, times)
    return await upload_in_session(
        graph,
        _by_name(drive_id, parent_id, name, "createUploadSession"),
        name=name,
        size=size,
        source=source,
        conflict=conflict,
        times=times,
        fragment_bytes=fragment_bytes,
    )


async def _put_small(
    graph: GraphClient,
    drive_id: str,
    parent_id: str,
    name: str,
    source: ChunkSource,
    conflict: str,
    times: FileTimes,
) -> dict[str, Any]:
    data = b"".join(await asyncio.to_thread(lambda: list(source())))
    item = await graph.send_content(
        "PUT",
        _by_name(drive_id, parent_id, name, "content"),
        data,
        content_type="application/octet-stream",
        params={CONFLICT_PARAMETER: conflict},
    )
    if item is None:
        raise RestoreError(f"the upload of {name!r} returned no driveItem; check the target drive")
    info = times.file_system_info()
    if not info:
        return item
    # A simple PUT takes no fileSystemInfo, so the original times are set afterwards.
    dated = await graph.send_json(
        "PATCH", f"/drives/{drive_id}/items/{item['id']}", json={"fileSystemInfo": info}
    )
    return dated or item


async def upload_in_session(
    graph: GraphClient,
    create_url: str,
    *,
    name: str,
    size: int,
    source: ChunkSource,
    conflict: str,
    times: FileTimes,
    fragment_bytes: int = FRAGMENT_BYTES,
) -> dict[str, Any]:
    """Upload through an upload session, resuming from ``nextExpectedRanges`` after failures."""
    item: dict[str, Any] = {CONFLICT_PARAMETER: conflict, "name": name}
    info = times.file_system_info()
    if info:
        item["fileSystemInfo"] = info
    body = {"item": item}
    upload_url = await _create_session(graph, create_url, body, name)
    offset = 0
    resumes = 0
    while True:
        try:
            async for start, data in fragments(source, offset, fragment_bytes):
                response = await graph.upload_fragment(upload_url, data, start=start, total=size)
                if response.complete:
                    if response.json is None:
                        raise RestoreError(f"the upload of {name!r} completed without a driveItem")
                    return response.json
            raise RestoreError(
                f"the upload of {name!r} sent all {size} bytes but Graph did not complete it; "
                "check that the archived size matches the content"
            )
        except LakeError:
            # Damaged archive content: the last fragment was held back, so nothing is
            # committed, and the session is dropped rather than left to expire.
            await _cancel_quietly(graph, upload_url)
            raise
        except ItemNotFoundError:
            # The session expired or was lost: start a new one from the first byte.
            if resumes >= MAX_RESUMES:
                raise
            resumes += 1
            logger.info("upload session of %r is gone; starting a new one", name)
            # A proxy or a stale replica may have returned the 404, so the old session is
            # deleted in case it still exists and keeps bytes until it expires.
            await _cancel_quietly(graph, upload_url)
            upload_url = await _create_session(graph, create_url, body, name)
            offset = 0
        except (GraphTransientError, GraphRequestError) as error:
            # 416 means Graph has other bytes than this client sent, and a transient error
            # may have lost a fragment. A 409 (name taken) keeps the session for the caller,
            # and any other error ends it.
            if isinstance(error, GraphRequestError) and error.status == 409:
                raise NameTakenAtCommitError(error, upload_url) from error
            if isinstance(error, GraphRequestError) and error.status != 416:
                await _cancel_quietly(graph, upload_url)
                raise
            if resumes >= MAX_RESUMES:
                await _cancel_quietly(graph, upload_url)
                raise
            resumes += 1
            status = await graph.upload_status(upload_url)
            resumed = next_offset(status)
            if resumed is None:
                raise RestoreError(
                    f"the upload session of {name!r} expects no more bytes but did not "
                    "complete; run the restore again"
                ) from error
            logger.info(
                "resuming the upload of %r at byte %d after %s", name, resumed, type(error).__name__
            )
            offset = resumed


async def commit_stored(
    graph: GraphClient,
    drive_id: str,
    parent_id: str,
    name: str,
    *,
    upload_url: str,
    conflict: str,
) -> dict[str, Any]:
    """Commit the bytes an upload session already stores as ``name`` under ``conflict``.

    This recovers from a name clash at the last fragment without sending the file again:
    a ``PUT`` of the item with ``@microsoft.graph.sourceUrl`` set to the session's URL.
    """
    body = {"name": name, CONFLICT_PARAMETER: conflict, SOURCE_URL_PARAMETER: upload_url}
    url = f"/drives/{drive_id}/items/{parent_id}:/{quote(name, safe='')}:"
    item = await graph.send_json("PUT", url, json=body)
    if item is None:
        raise RestoreError(
            f"committing the uploaded bytes of {name!r} returned no driveItem; check the "
            "target drive and run the restore again"
        )
    return item


async def cancel_session(graph: GraphClient, upload_url: str) -> None:
    """Discard an upload session's bytes; a failure only leaves them until it expires."""
    await _cancel_quietly(graph, upload_url)


async def _create_session(
    graph: GraphClient, create_url: str, body: dict[str, Any], name: str
) -> str:
    try:
        session = await graph.send_json("POST", create_url, json=body)
    except GraphTransientError:
        # A lost createUploadSession response leaves at most an unused session behind,
        # which expires by itself, so asking again is safe.
        session = await graph.send_json("POST", create_url, json=body)
    if not session or "uploadUrl" not in session:
        raise RestoreError(f"Graph returned no uploadUrl for the upload session of {name!r}")
    return str(session["uploadUrl"])


async def _cancel_quietly(graph: GraphClient, upload_url: str) -> None:
    try:
        await graph.cancel_upload(upload_url)
    except (GraphTransientError, GraphRequestError, ItemNotFoundError) as error:
        logger.info("could not cancel an upload session: %s", type(error).__name__)
