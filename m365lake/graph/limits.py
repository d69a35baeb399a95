"""Per-mailbox request limits: concurrency slots and pauses after throttling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

SleepFunction = Callable[[float], Awaitable[None]]


class MailboxLimiter:
    """Concurrency slots and throttling pauses shared by all requests to one mailbox.

    Mailbox keys are compared case-insensitively, so a UPN and its lower-case form share
    a slot. A user id and the same user's UPN do not.
    """

    def __init__(self, max_concurrent: int, sleep: SleepFunction) -> None:
        self._max_concurrent = max_concurrent
        self._sleep = sleep
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._paused_until: dict[str, float] = {}

    def slot(self, mailbox: str | None) -> asyncio.Semaphore | None:
        """Return the mailbox's semaphore, or None for requests outside any mailbox."""
        if mailbox is None:
            return None
        key = mailbox.lower()
        slot = self._slots.get(key)
        if slot is None:
            slot = asyncio.Semaphore(self._max_concurrent)
            self._slots[key] = slot
        return slot

    def pause(self, mailbox: str, seconds: float) -> None:
        """Hold every request to ``mailbox`` for ``seconds``, extending any current pause.

        Exchange counts throttled requests against the same budget, so one 429 pauses
        all workers on the mailbox and not only the request that received it.
        """
        key = mailbox.lower()
        until = time.monotonic() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    async def wait_while_paused(self, mailbox: str | None) -> None:
        """Sleep once for the rest of the mailbox's pause, if one is running."""
        if mailbox is None:
            return
        until = self._paused_until.get(mailbox.lower())
        if until is None:
            return
        remaining = until - time.monotonic()
        if remaining > 0:
            await self._sleep(remaining)
