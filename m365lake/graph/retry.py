"""How long to wait before retrying a Graph request."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

# Transport failures worth another attempt: connect/read/write errors, timeouts, and
# RemoteProtocolError, which httpx raises for a connection closed mid-body.
RETRYABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

MAX_BACKOFF_SECONDS = 60.0
BASE_BACKOFF_SECONDS = 1.0
# Outlook's budget window is 10 minutes, so a longer Retry-After is honoured but capped
# at 15 minutes to keep a bad header from stalling a run for hours.
MAX_RETRY_AFTER_SECONDS = 900.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait in seconds that a ``Retry-After`` header requests, or None.

    Graph sends integer or fractional seconds (its throttling guide shows ``2.128``), and
    RFC 9110 also allows an HTTP-date. Invalid and negative values give None, so the caller
    falls back to backoff. A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until(text, now)
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def backoff_delay(
    retry_number: int,
    *,
    base: float = BASE_BACKOFF_SECONDS,
    cap: float = MAX_BACKOFF_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Return a full-jitter exponential backoff: uniform in [0, min(cap, base * 2**n)].

    ``retry_number`` counts from 0 for the first retry.
    """
    ceiling = min(cap, base * 2 ** min(retry_number, 32))
    return (rng or random).uniform(0.0, ceiling)


def _seconds_until(text: str, now: datetime | None) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())
