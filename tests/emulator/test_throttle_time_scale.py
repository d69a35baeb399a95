"""The throttles' time scale: shorter windows and smaller budgets at the real ceiling."""

from __future__ import annotations

import pytest

from m365lake.emulator.protocol import GraphHTTPError
from m365lake.emulator.sharepoint_throttling import SharePointThrottle
from m365lake.emulator.throttling import MailboxThrottle


def test_scaled_mailbox_keeps_real_ceiling() -> None:
    now = [0.0]
    real = MailboxThrottle(concurrency=4, requests_per_window=10_000, window_seconds=600)
    scaled = MailboxThrottle(
        concurrency=4,
        requests_per_window=10_000,
        window_seconds=600,
        time_scale=60,
        clock=lambda: now[0],
    )
    assert scaled.window_seconds == 10
    assert scaled.requests_per_window == 167
    assert scaled.ceiling_per_second == pytest.approx(real.ceiling_per_second, rel=0.01)

    for _ in range(167):
        scaled.release(scaled.acquire("app", "mailbox"))
    now[0] = 2.5
    with pytest.raises(GraphHTTPError) as rejected:
        scaled.acquire("app", "mailbox")
    # The budget frees up when the first request leaves the 10 s window, 7.5 s later.
    # Retry-After stays in whole seconds, as the real service sends it.
    assert rejected.value.headers["Retry-After"] == "8"
    now[0] = 10.0
    scaled.release(scaled.acquire("app", "mailbox"))


def test_unscaled_mailbox_whole_seconds() -> None:
    now = [0.0]
    throttle = MailboxThrottle(
        concurrency=4, requests_per_window=1, window_seconds=600, clock=lambda: now[0]
    )
    throttle.release(throttle.acquire("app", "mailbox"))
    now[0] = 0.5
    with pytest.raises(GraphHTTPError) as rejected:
        throttle.acquire("app", "mailbox")
    assert rejected.value.headers["Retry-After"] == "600"


def test_scaled_concurrency_wait() -> None:
    throttle = MailboxThrottle(
        concurrency=1, requests_per_window=10_000, window_seconds=600, time_scale=100
    )
    throttle.acquire("app", "mailbox")
    with pytest.raises(GraphHTTPError) as rejected:
        throttle.acquire("app", "mailbox")
    # One real second, so retries come as often as against Exchange itself.
    assert rejected.value.headers["Retry-After"] == "1"


def test_scaled_sharepoint_budgets() -> None:
    now = [0.0]
    throttle = SharePointThrottle(
        per_minute=1_250, per_day=1_200_000, time_scale=60, clock=lambda: now[0]
    )
    assert (throttle.per_minute, throttle.minute_seconds) == (21, 1.0)
    assert throttle.per_day == 20_000
    assert throttle.ceiling_per_second == 21
    for _ in range(21):
        throttle.charge("app", 1)
    now[0] = 0.25
    with pytest.raises(GraphHTTPError) as rejected:
        throttle.charge("app", 1)
    assert rejected.value.status == 429
    # The 0.75 s wait is rounded up to a whole second, because rejected calls are
    # charged and retries must not come 60 times as often as against SharePoint.
    assert rejected.value.headers["Retry-After"] == "1"
    now[0] = 0.999
    with pytest.raises(GraphHTTPError) as again:
        throttle.charge("app", 1)
    assert again.value.headers["RateLimit-Reset"] == "1"
    now[0] = 2.0
    # The rejected calls were charged at 0.25 s and 0.999 s and have left the window too.
    assert throttle.charge("app", 1) == {}


def test_time_scale_below_one_rejected() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        MailboxThrottle(concurrency=4, requests_per_window=1, window_seconds=1, time_scale=0.5)
    with pytest.raises(ValueError, match="time_scale"):
        SharePointThrottle(per_minute=1, per_day=1, time_scale=0)
