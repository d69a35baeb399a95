"""Exchange's upload volume limit per app and mailbox: bytes received in a sliding window.

Exchange Online throttles an app that sends a mailbox more than 150 MB in 5 minutes
(earlier limits were 15 MB in 30 seconds) with 429 "Application is over its
IncomingBytes limit." Message creates, attachment POSTs and upload ranges count.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from m365lake.emulator.throttling import throttled

DEFAULT_LIMIT_BYTES = 150 * 1024 * 1024
DEFAULT_WINDOW_SECONDS = 300.0


class IncomingBytes:
    """Charges request bodies to (app, mailbox) and rejects those over the window's budget."""

    def __init__(
        self,
        limit_bytes: int = DEFAULT_LIMIT_BYTES,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_bytes = limit_bytes
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._received: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    def charge(self, app_id: str, mailbox_id: str, size: int) -> None:
        """Record ``size`` bytes, or raise 429 ApplicationThrottled when they do not fit."""
        now = self._clock()
        with self._lock:
            received = self._received.setdefault((app_id, mailbox_id), deque())
            while received and received[0][0] <= now - self.window_seconds:
                received.popleft()
            used = sum(amount for _, amount in received)
            if received and used + size > self.limit_bytes:
                wait = received[0][0] + self.window_seconds - now
                raise throttled("IncomingBytes", max(1, math.ceil(wait)))
            received.append((now, size))


_CREATE_LOCK = threading.Lock()


def incoming_bytes_of(app: Any) -> IncomingBytes:
    """Return the app's upload volume tracker, creating it on first use."""
    with _CREATE_LOCK:
        tracker = getattr(app.state, "incoming_bytes", None)
        if tracker is None:
            tracker = IncomingBytes()
            app.state.incoming_bytes = tracker
    assert isinstance(tracker, IncomingBytes)
    return tracker
