"""SharePoint and OneDrive throttling: resource units (RU) per app, per minute and per day.

Costs follow Microsoft's "Avoid getting throttled or blocked in SharePoint Online" guide.
A single-item GET, a delta call with a token and a file download cost 1 RU. Multi-item
queries (children, lists, delta without a token) and writes cost 2 RU. Any permission
operation, including ``$expand=permissions``, costs 5 RU. Rejected calls are charged
too. From 80% of the per-minute budget, responses carry ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (IETF draft-03 names).

``time_scale`` shrinks both windows and both budgets by the same factor, so a benchmark
crosses many minute windows in a short run while the ceiling in RU per second stays the
real one. Retry-After stays in whole seconds, at least 1: rejected calls are charged, so
retries must come as often as against the real service, not ``time_scale`` times as often.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable

from m365lake.emulator.protocol import GraphHTTPError

# Per-app budgets by the tenant's licence count (0-1k, 1k-5k, 5k-15k, 15k-50k, 50k+).
RU_PER_MINUTE_BY_LICENCES = (1_250, 2_500, 3_750, 5_000, 6_250)
RU_PER_DAY_BY_LICENCES = (1_200_000, 2_400_000, 3_600_000, 4_800_000, 6_000_000)
WARNING_FRACTION = 0.8
MINUTE = 60.0
DAY = 86_400.0

SHAREPOINT_PATH = re.compile(
    r"^/v1\.0/(?:drives|sites)(?:/|$)|^/v1\.0/users/[^/]+/drives?(?:/|$)|^/_download/|^/_upload/",
    re.IGNORECASE,
)
_LIST_PATH = re.compile(r"/(?:children|drives|versions|getAllSites)$|^/v1\.0/sites$", re.IGNORECASE)


def is_sharepoint_path(path: str) -> bool:
    return SHAREPOINT_PATH.search(path) is not None


def request_cost(method: str, path: str, query: str) -> int:
    """Return the RU cost of one request."""
    lowered = query.lower()
    if ("permissions" in lowered and "expand" in lowered) or "/permissions" in path:
        return 5
    if method.upper() != "GET":
        return 2
    if path.lower().endswith("/delta"):
        return 1 if "token=" in query else 2
    if _LIST_PATH.search(path):
        return 2
    return 1


class SharePointThrottle:
    """Sliding per-minute and per-day RU windows per app id; thread-safe."""

    def __init__(
        self,
        *,
        per_minute: int,
        per_day: int,
        blocked: bool = False,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale < 1:
            raise ValueError(f"time_scale must be 1 or more, not {time_scale}")
        self.per_minute = max(1, round(per_minute / time_scale))
        self.per_day = max(1, round(per_day / time_scale))
        self.minute_seconds = MINUTE / time_scale
        self.day_seconds = DAY / time_scale
        self.time_scale = time_scale
        self.blocked = blocked
        self._clock = clock
        self._lock = threading.Lock()
        # Per app: (time, cost) charges of the last day and of the last minute, with
        # running totals, so a charge costs constant time however many came before it.
        self._day: dict[str, deque[tuple[float, int]]] = {}
        self._minute: dict[str, deque[tuple[float, int]]] = {}
        self._day_used: dict[str, int] = {}
        self._minute_used: dict[str, int] = {}

    def charge(self, app_id: str, cost: int) -> dict[str, str]:
        """Charge ``cost`` RU; return RateLimit headers, or raise 429/503 with Retry-After."""
        if self.blocked:
            raise GraphHTTPError(
                503,
                "serviceNotAvailable",
                "The application is blocked for overusing SharePoint Online.",
                headers={"Retry-After": "300"},
            )
        now = self._clock()
        with self._lock:
            day_used = self._add(self._day, self._day_used, app_id, now, cost, self.day_seconds)
            minute_used = self._add(
                self._minute, self._minute_used, app_id, now, cost, self.minute_seconds
            )
            oldest_in_minute = self._minute[app_id][0][0]
        reset = self._seconds(oldest_in_minute + self.minute_seconds - now)
        if day_used > self.per_day:
            raise self._throttled(max(reset, self._seconds(3600 / self.time_scale)))
        if minute_used > self.per_minute:
            raise self._throttled(reset)
        if minute_used >= WARNING_FRACTION * self.per_minute:
            return {
                "RateLimit-Limit": str(self.per_minute),
                "RateLimit-Remaining": str(max(0, self.per_minute - minute_used)),
                "RateLimit-Reset": str(reset),
            }
        return {}

    @property
    def ceiling_per_second(self) -> float:
        """Maximum sustained RU per second of one app: the minute budget over the minute."""
        return self.per_minute / self.minute_seconds

    @staticmethod
    def _seconds(wait: float) -> int:
        """Round a wait up to whole seconds, at least 1, as SharePoint sends them."""
        return max(1, math.ceil(wait))

    @staticmethod
    def _add(
        windows: dict[str, deque[tuple[float, int]]],
        totals: dict[str, int],
        app_id: str,
        now: float,
        cost: int,
        width: float,
    ) -> int:
        """Drop charges older than ``width`` seconds, add this one and return the window's RU."""
        charges = windows.setdefault(app_id, deque())
        used = totals.get(app_id, 0)
        while charges and charges[0][0] <= now - width:
            used -= charges.popleft()[1]
        charges.append((now, cost))
        totals[app_id] = used + cost
        return totals[app_id]

    def _throttled(self, retry_after: int) -> GraphHTTPError:
        return GraphHTTPError(
            429,
            "activityLimitReached",
            "The request has been throttled.",
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(self.per_minute),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry_after),
            },
        )
