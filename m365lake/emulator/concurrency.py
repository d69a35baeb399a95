"""Requests in flight at the emulator's front door, and the maximum seen per mailbox and overall.

Requests are counted from the moment the front door receives them until their response
is sent, before any throttling decision. The maxima therefore show what clients sent at
once, including requests the emulator then rejected with 429, so a test can check that a
client kept within a limit rather than only that the emulator enforced it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConcurrencyPeaks:
    """Maximum concurrency the emulator saw since it started or was last reset."""

    overall: int = 0
    """Graph requests in flight at once, mail or not."""
    mailboxes: int = 0
    """Distinct mailboxes with mail requests in flight at once."""
    per_mailbox: dict[str, int] = field(default_factory=dict)
    """Mail requests in flight at once, by mailbox (user id)."""


class ConcurrencyGauge:
    """Thread-safe counter of in-flight requests that keeps its maxima."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._overall = 0
        self._by_mailbox: Counter[str] = Counter()
        self._peak_overall = 0
        self._peak_mailboxes = 0
        self._peak_by_mailbox: dict[str, int] = {}

    def enter(self, mailbox: str | None) -> None:
        """Count a request that arrived; ``mailbox`` is the user id of a mail request."""
        with self._lock:
            self._overall += 1
            self._peak_overall = max(self._peak_overall, self._overall)
            if mailbox is None:
                return
            self._by_mailbox[mailbox] += 1
            self._peak_by_mailbox[mailbox] = max(
                self._peak_by_mailbox.get(mailbox, 0), self._by_mailbox[mailbox]
            )
            self._peak_mailboxes = max(self._peak_mailboxes, len(self._by_mailbox))

    def exit(self, mailbox: str | None) -> None:
        """Count a request whose response was sent or whose connection closed."""
        with self._lock:
            self._overall -= 1
            if mailbox is None:
                return
            self._by_mailbox[mailbox] -= 1
            if self._by_mailbox[mailbox] <= 0:
                del self._by_mailbox[mailbox]

    def peaks(self) -> ConcurrencyPeaks:
        with self._lock:
            return ConcurrencyPeaks(
                overall=self._peak_overall,
                mailboxes=self._peak_mailboxes,
                per_mailbox=dict(self._peak_by_mailbox),
            )

    def reset(self) -> None:
        """Start the maxima again from the requests in flight now."""
        with self._lock:
            self._peak_overall = self._overall
            self._peak_mailboxes = len(self._by_mailbox)
            self._peak_by_mailbox = dict(self._by_mailbox)


class MailboxRendezvous:
    """Delays mail requests until requests for ``mailboxes`` distinct mailboxes have arrived.

    Backups of different mailboxes started together then overlap by construction rather
    than by timing. The gate opens once and stays open; after ``timeout_seconds`` it opens
    anyway, so a client that never sends the other mailboxes' requests is only delayed.
    """

    def __init__(self, mailboxes: int, timeout_seconds: float) -> None:
        self.mailboxes = mailboxes
        self.timeout_seconds = timeout_seconds
        self._seen: set[str] = set()
        self._open: asyncio.Event | None = None

    async def wait(self, mailbox: str) -> None:
        # Created here because the event must belong to the server's event loop.
        if self._open is None:
            self._open = asyncio.Event()
        if self._open.is_set():
            return
        self._seen.add(mailbox)
        if len(self._seen) >= self.mailboxes:
            self._open.set()
            return
        try:
            await asyncio.wait_for(self._open.wait(), self.timeout_seconds)
        except TimeoutError:
            logger.warning(
                "mail requests of %d mailbox(es) arrived within %.0f s, not the %d awaited; "
                "letting requests through",
                len(self._seen),
                self.timeout_seconds,
                self.mailboxes,
            )
            self._open.set()
