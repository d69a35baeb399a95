"""Seeded fault injection: random transient Graph errors and one-shot injected errors.

A fixed ``seed`` gives the same sequence of decisions for the same sequence of requests,
so a failing run can be replayed. Under concurrency the order of requests, and with it the
mapping of decisions to requests, can still vary.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

# Graph error code and message per status, as Graph and the services behind it send them.
TRANSIENT_ERRORS: dict[int, tuple[str, str]] = {
    429: ("TooManyRequests", "Please retry again later."),
    500: ("InternalServerError", "An internal server error occurred. Please retry."),
    502: ("BadGateway", "The gateway received an invalid response from the service."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
    504: ("GatewayTimeout", "The service did not respond in time."),
}


@dataclass(frozen=True)
class Fault:
    """One error to return instead of serving the request."""

    status: int
    code: str
    message: str
    retry_after: str | None = None


@dataclass
class _Injection:
    pattern: re.Pattern[str]
    fault: Fault
    remaining: int


@dataclass
class FaultPlan:
    """A plan of failures: which requests fail, and with what error.

    ``rate`` is the probability that a request whose path matches ``path_pattern`` fails
    with a status drawn from ``statuses``. 429 and 503 carry a ``Retry-After`` drawn from
    ``retry_after_values`` (None means the header is left out); 500, 502 and 504 carry none.
    ``max_consecutive`` caps failures in a row for one method and path, so a client with
    that many retries always gets through.
    """

    seed: int = 0
    rate: float = 0.0
    statuses: tuple[int, ...] = (429, 503, 500, 502, 504)
    retry_after_values: tuple[str | None, ...] = ("0.05", "0.2", "1", None)
    path_pattern: str = r"^/v1\.0/"
    max_consecutive: int = 3
    _random: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _injections: list[_Injection] = field(init=False, repr=False, default_factory=list)
    _streaks: dict[tuple[str, str], int] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in TRANSIENT_ERRORS]
        if unknown:
            raise ValueError(
                f"unsupported fault statuses {unknown}; choose from {sorted(TRANSIENT_ERRORS)}"
            )
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {self.rate}")
        self._random = random.Random(self.seed)
        self._compiled = re.compile(self.path_pattern)

    def inject(
        self,
        *,
        path_pattern: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` requests whose path matches ``path_pattern`` fail."""
        default_code, default_message = TRANSIENT_ERRORS.get(status, ("BadRequest", "Injected."))
        fault = Fault(status, code or default_code, message or default_message, retry_after)
        with self._lock:
            self._injections.append(_Injection(re.compile(path_pattern), fault, times))

    def injected_fault(self, path: str) -> Fault | None:
        """Consume and return the first pending injection matching ``path``."""
        with self._lock:
            for injection in self._injections:
                if injection.remaining > 0 and injection.pattern.search(path):
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                    return injection.fault
        return None

    def random_fault(self, method: str, path: str) -> Fault | None:
        """Decide whether this request fails at random; draws from the seeded generator."""
        if self.rate <= 0.0 or not self._compiled.search(path):
            return None
        with self._lock:
            key = (method, path)
            streak = self._streaks.get(key, 0)
            roll = self._random.random()
            status = self._random.choice(self.statuses)
            retry_after = self._random.choice(self.retry_after_values)
            if roll >= self.rate or streak >= self.max_consecutive:
                self._streaks.pop(key, None)
                return None
            self._streaks[key] = streak + 1
        code, message = TRANSIENT_ERRORS[status]
        return Fault(status, code, message, retry_after if status in (429, 503) else None)
