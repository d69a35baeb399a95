"""Exchange Online's per-app, per-mailbox limits: concurrent requests and a request budget.

Exchange counts per (app id, mailbox): at most 4 requests in flight and 10,000 requests per
10-minute window. Microsoft's documentation has also described the concurrency limit as per
app across mailboxes, so the scope is configurable.

``time_scale`` shrinks the window and the budget by the same factor, so a benchmark sees
several windows in minutes while the ceiling (requests per second) stays the real one.
Retry-After stays in whole seconds, at least 1, as Exchange sends it: the rate of retries
against the budget is then the real one, as long as the scaled window lasts many seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from m365lake.emulator.protocol import GraphHTTPError

ThrottleScope = Literal["mailbox", "app"]


class MailboxThrottle:
    """Admits or rejects mailbox requests; ``release`` must follow every successful ``acquire``."""

    def __init__(
        self,
        *,
        concurrency: int,
        requests_per_window: int,
        window_seconds: float,
        scope: ThrottleScope = "mailbox",
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale < 1:
            raise ValueError(f"time_scale must be 1 or more, not {time_scale}")
        self.concurrency = concurrency
        self.requests_per_window = max(1, round(requests_per_window / time_scale))
        self.window_seconds = window_seconds / time_scale
        self.time_scale = time_scale
        self.scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str | None], int] = {}
        self._recent: dict[tuple[str, str | None], deque[float]] = {}

    def key(self, app_id: str, mailbox_id: str) -> tuple[str, str | None]:
        return (app_id, mailbox_id if self.scope == "mailbox" else None)

    def acquire(self, app_id: str, mailbox_id: str) -> tuple[str, str | None]:
        """Take a concurrency slot and charge the budget, or raise 429 ``ApplicationThrottled``."""
        key = self.key(app_id, mailbox_id)
        now = self._clock()
        with self._lock:
            recent = self._recent.setdefault(key, deque())
            while recent and recent[0] <= now - self.window_seconds:
                recent.popleft()
            if len(recent) >= self.requests_per_window:
                wait = recent[0] + self.window_seconds - now
                raise throttled("RequestsPerWindow", max(1, math.ceil(wait)))
            # NOTE: rejected requests are charged too, as SharePoint documents for its limits.
            # Whether Exchange charges them is not documented.
            recent.append(now)
            if self._in_flight.get(key, 0) >= self.concurrency:
                raise throttled("MailboxConcurrency", 1)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return key

    def release(self, key: tuple[str, str | None]) -> None:
        with self._lock:
            remaining = self._in_flight.get(key, 0) - 1
            if remaining > 0:
                self._in_flight[key] = remaining
            else:
                self._in_flight.pop(key, None)

    @property
    def ceiling_per_second(self) -> float:
        """Maximum sustained requests per second of one key: the budget over the window."""
        return self.requests_per_window / self.window_seconds

    def in_flight(self, app_id: str, mailbox_id: str) -> int:
        with self._lock:
            return self._in_flight.get(self.key(app_id, mailbox_id), 0)


def throttled(limit: str, retry_after_seconds: int) -> GraphHTTPError:
    return GraphHTTPError(
        429,
        "ApplicationThrottled",
        f"Application is over its {limit} limit.",
        headers={"Retry-After": str(retry_after_seconds)},
    )
