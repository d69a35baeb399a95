"""Drive upload sessions: the state behind pre-authenticated upload URLs.

A session collects the fragments of one file. Fragments must arrive in order, each under
60 MiB and, except the last, a multiple of 320 KiB, and each must declare the same total
size in ``Content-Range``. The upload URL carries its own credential (``tempauth``), so it
needs no Authorization header, and it stops working when the session expires, is
cancelled or has been committed.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from m365lake.emulator.drive_writes import ConflictBehavior, FileSystemInfo
from m365lake.emulator.protocol import GraphHTTPError

UPLOAD_PATH = "/_upload/"
FRAGMENT_UNIT = 320 * 1024
"""Every fragment but the last must be a multiple of 320 KiB (327,680 bytes)."""
MAX_FRAGMENT_BYTES = 60 * 1024 * 1024
"""Each fragment must be smaller than 60 MiB."""
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class UploadSession:
    """One file being uploaded; ``received`` bytes have arrived, in order, in ``data``."""

    id: str
    secret: str
    drive_id: str
    parent_id: str
    name: str
    conflict: ConflictBehavior
    file_system_info: FileSystemInfo | None
    defer_commit: bool
    expires_at: float
    total: int | None = None
    data: bytearray = field(default_factory=bytearray)

    @property
    def received(self) -> int:
        return len(self.data)

    @property
    def complete(self) -> bool:
        return self.total is not None and self.received == self.total

    def next_expected_ranges(self) -> list[str]:
        return [] if self.complete else [f"{self.received}-"]

    def expiration_text(self) -> str:
        moment = datetime.fromtimestamp(self.expires_at, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class UploadSessionStore:
    """Open upload sessions of one emulator app; thread-safe."""

    def __init__(self, lifetime_seconds: float, *, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, UploadSession] = {}

    def create(
        self,
        *,
        drive_id: str,
        parent_id: str,
        name: str,
        conflict: ConflictBehavior,
        file_system_info: FileSystemInfo | None,
        defer_commit: bool,
        total: int | None,
    ) -> UploadSession:
        session = UploadSession(
            id=str(uuid.uuid4()),
            secret=secrets.token_urlsafe(32),
            drive_id=drive_id,
            parent_id=parent_id,
            name=name,
            conflict=conflict,
            file_system_info=file_system_info,
            defer_commit=defer_commit,
            expires_at=self._clock() + self.lifetime_seconds,
            total=total,
        )
        with self._lock:
            self._sessions[session.id] = session
        return session

    def find(self, session_id: str, secret: str) -> UploadSession:
        """Return a live session; raise 404 for an unknown, expired or forged URL."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at <= self._clock():
                del self._sessions[session_id]
                session = None
        if session is None or not secrets.compare_digest(session.secret, secret):
            raise GraphHTTPError(
                404,
                "itemNotFound",
                "The upload session was not found: it expired, was cancelled or completed. "
                "Create a new upload session.",
                inner_code="uploadSessionNotFound",
            )
        return session

    def remove(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def expire_all(self) -> None:
        """Make every open session expire now, for tests of the 404 path."""
        with self._lock:
            self._sessions.clear()

    def open_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def accept(self, session: UploadSession, content_range: str | None, body: bytes) -> None:
        """Append one fragment, checking it against Graph's fragment rules."""
        start, end, total = _parse_content_range(content_range)
        length = len(body)
        if length != end - start + 1:
            raise GraphHTTPError(
                400,
                "invalidRequest",
                f"The fragment has {length} bytes but Content-Range {content_range!r} "
                f"declares {end - start + 1}.",
                inner_code="fragmentLengthMismatch",
            )
        if length >= MAX_FRAGMENT_BYTES:
            raise GraphHTTPError(
                400,
                "invalidRequest",
                f"The fragment has {length} bytes; fragments must be smaller than 60 MiB.",
                inner_code="maxFragmentLengthExceeded",
            )
        with self._lock:
            if session.total is not None and total != session.total:
                raise GraphHTTPError(
                    400,
                    "invalidRequest",
                    f"Content-Range declares a total of {total} bytes but the session's "
                    f"file has {session.total}.",
                    inner_code="fragmentLengthMismatch",
                )
            if end >= total:
                raise GraphHTTPError(
                    416,
                    "invalidRange",
                    f"The fragment ends at byte {end}, beyond the {total}-byte file.",
                    inner_code="invalidRange",
                )
            if start < session.received:
                raise GraphHTTPError(
                    416,
                    "invalidRange",
                    "The uploaded fragment overlaps with data that has already been received.",
                    inner_code="fragmentOverlap",
                )
            if start > session.received:
                raise GraphHTTPError(
                    416,
                    "invalidRange",
                    f"The fragment starts at byte {start} but the next expected byte is "
                    f"{session.received}; upload fragments in order.",
                    inner_code="fragmentOutOfOrder",
                )
            # NOTE: the real service may accept such a fragment and fail only at commit;
            # the emulator rejects it at once so a client bug shows where it happens.
            if end + 1 < total and length % FRAGMENT_UNIT:
                raise GraphHTTPError(
                    400,
                    "invalidRequest",
                    f"The fragment has {length} bytes; every fragment but the last must be "
                    f"a multiple of 320 KiB ({FRAGMENT_UNIT} bytes).",
                    inner_code="fragmentLengthMismatch",
                )
            session.total = total
            session.data.extend(body)
            session.expires_at = self._clock() + self.lifetime_seconds


def _parse_content_range(value: str | None) -> tuple[int, int, int]:
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        raise GraphHTTPError(
            400,
            "invalidRequest",
            f"Content-Range {value!r} is missing or invalid; send 'bytes first-last/total'.",
        )
    start, end, total = (int(group) for group in match.groups())
    if end < start:
        raise GraphHTTPError(
            416,
            "invalidRange",
            f"Content-Range {value!r} ends before it starts.",
            inner_code="invalidRange",
        )
    return start, end, total
