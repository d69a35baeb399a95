"""Teams throttling: requests per second per app and channel, and per app tenant-wide.

Microsoft's throttling-limits page gives these Teams limits. An app may send at most 4
requests per second per team or channel, and 15,000 requests per 10 seconds for any
Teams call. GET of a channel message allows 5 requests per second per app per tenant in
the 2021 text and 20 in newer versions; that limit is not emulated. A rejected request
is not counted, because the page does not say whether it is.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from m365lake.emulator.protocol import GraphHTTPError

REAL_CHANNEL_REQUESTS_PER_SECOND = 4
REAL_APP_REQUESTS_PER_10_SECONDS = 15_000


class TeamsThrottle:
    """Sliding windows keyed by app and by app plus team or channel; thread-safe."""

    def __init__(
        self,
        *,
        channel_per_second: int,
        app_per_10_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"channel": (channel_per_second, 1.0), "app": (app_per_10_seconds, 10.0)}
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, ...], deque[float]] = {}

    def charge(self, app_id: str, scope: str) -> None:
        """Count one request of ``app_id`` on ``scope`` (a team or channel id), or raise 429."""
        now = self._clock()
        keys = {("channel", app_id, scope): "channel", ("app", app_id): "app"}
        with self._lock:
            for key, kind in keys.items():
                limit, window = self._limits[kind]
                times = self._windows.setdefault(key, deque())
                while times and times[0] <= now - window:
                    times.popleft()
                if len(times) >= limit:
                    wait = max(1, math.ceil(times[0] + window - now))
                    raise GraphHTTPError(
                        429,
                        "TooManyRequests",
                        "Too many requests from this application to this resource; "
                        "please retry again later.",
                        headers={"Retry-After": str(wait)},
                    )
            for key in keys:
                self._windows[key].append(now)
