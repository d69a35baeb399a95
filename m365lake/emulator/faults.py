"""Seeded fault injection: random Graph errors, broken connections and lost server state.

A ``FaultPlan`` decides per request whether it fails and how. The kinds are:

- ``error``: a transient Graph error (429, 500, 502, 503, 504). 429 and 503 carry a
  ``Retry-After`` of integer or fractional seconds, or none. Storms are runs of requests
  in which 429 or 503 is far more likely, as when a tenant's budget runs out.
- ``reset``: the connection closes partway through the response body.
- ``truncate``: the response announces a ``Content-Length`` larger than the body it sends,
  then the connection closes.
- ``slow``: the response stalls for ``slow_seconds`` before its headers or in its body,
  so a client with a shorter read timeout gives up.
- ``token``: a bearer token that was valid gets 401 ``InvalidAuthenticationToken``, and so
  does every later request that carries it, as when a token expires or is revoked mid-run.
- ``download_expired``: a pre-authenticated download URL gets 401 from then on.
- ``sync_state``: Exchange loses a mailbox's sync state, so the delta request carrying a
  token gets 410 ``SyncStateNotFound``, mid-round when it is a nextLink.
- ``drive_resync``: a drive's delta tokens die, so the request gets 410 with a
  ``resyncChanges…`` code and a ``Location`` to enumerate again.

A fixed ``seed`` gives the same sequence of decisions for the same sequence of requests,
so a failing run can be replayed. Under concurrency the order of requests, and with it the
mapping of decisions to requests, can still vary.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

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


ActionKind = Literal[
    "error",
    "reset",
    "truncate",
    "slow",
    "token",
    "download_expired",
    "sync_state",
    "drive_resync",
]

DRIVE_RESYNC_CODES = ("resyncChangesApplyDifferences", "resyncChangesUploadDifferences")

_MAIL_DELTA = re.compile(
    r"^/v1\.0/users/([^/]+)/mailfolders(?:/[^/]+/messages)?/delta$", re.IGNORECASE
)
_DRIVE_DELTA = re.compile(r"^/v1\.0/drives/([^/]+)/root/delta$", re.IGNORECASE)
_DOWNLOAD = "/_download/"


@dataclass(frozen=True)
class FaultAction:
    """A fault taken on one request, instead of serving it or while serving it."""

    kind: ActionKind
    fault: Fault | None = None
    """The error response of an ``error``, ``token`` or ``download_expired`` action."""
    fraction: float = 0.5
    """For ``reset``, ``truncate`` and ``slow``: how far into the body the break comes
    (0 to 1). ``slow`` with a fraction under 0.5 stalls before the headers instead."""
    target: str | None = None
    """The mailbox user key (``sync_state``) or drive id (``drive_resync``)."""
    code: str | None = None
    """The resync code of a ``drive_resync``."""


@dataclass
class FaultPlan:
    """A plan of failures: which requests fail, and with what error.

    ``rate`` is the probability that a request whose path matches ``path_pattern`` fails
    with a status drawn from ``statuses``. 429 and 503 carry a ``Retry-After`` drawn from
    ``retry_after_values`` (None means the header is left out); 500, 502 and 504 carry none.
    ``max_consecutive`` caps failures in a row for one method and path, so a client with
    that many retries always gets through.

    The other ``*_rate`` fields are probabilities of the kinds of fault the module
    docstring lists, drawn from a second generator seeded from ``seed``. All of them are 0
    by default, and while they are 0 nothing is drawn from that generator, so a seed gives
    the same errors as a plan with ``rate`` alone.
    """

    seed: int = 0
    rate: float = 0.0
    statuses: tuple[int, ...] = (429, 503, 500, 502, 504)
    retry_after_values: tuple[str | None, ...] = ("0.05", "0.2", "1", None)
    path_pattern: str = r"^/v1\.0/"
    max_consecutive: int = 3
    storm_rate: float = 0.0
    """Probability that a request starts a storm of 429 or 503 responses."""
    storm_requests: int = 20
    """Requests that one storm lasts."""
    storm_intensity: float = 0.6
    """Probability that a request during a storm is throttled."""
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 5.0
    """Length of a stall: longer than the client's read timeout, to make it give up."""
    token_expiry_rate: float = 0.0
    download_expiry_rate: float = 0.0
    sync_state_rate: float = 0.0
    drive_resync_rate: float = 0.0
    _random: random.Random = field(init=False, repr=False)
    _chaos: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _injections: list[_Injection] = field(init=False, repr=False, default_factory=list)
    _streaks: dict[tuple[str, str], int] = field(init=False, repr=False, default_factory=dict)
    _storm: tuple[int, int, str | None] | None = field(init=False, repr=False, default=None)
    """Requests left in the current storm, its status and its Retry-After."""
    _revoked_tokens: set[str] = field(init=False, repr=False, default_factory=set)
    _expired_downloads: set[str] = field(init=False, repr=False, default_factory=set)
    counts: Counter[str] = field(init=False, default_factory=Counter)
    """Faults applied so far, by kind (storm errors as ``storm``) and by error status, as
    ``error-429``."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in TRANSIENT_ERRORS]
        if unknown:
            raise ValueError(
                f"unsupported fault statuses {unknown}; choose from {sorted(TRANSIENT_ERRORS)}"
            )
        rates = {name: getattr(self, name) for name in _RATE_FIELDS}
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.storm_requests < 1:
            raise ValueError(f"storm_requests must be at least 1, got {self.storm_requests}")
        if self.slow_seconds < 0:
            raise ValueError(f"slow_seconds must be zero or more, got {self.slow_seconds}")
        self._random = random.Random(self.seed)
        self._chaos = random.Random(f"faults-{self.seed}")
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
            self.counts[f"error-{status}"] += 1
        code, message = TRANSIENT_ERRORS[status]
        return Fault(status, code, message, retry_after if status in (429, 503) else None)

    def random_action(
        self, method: str, path: str, query: str = "", token: str | None = None
    ) -> FaultAction | None:
        """Decide what happens to this request, if anything; draws from the seeded generators.

        ``token`` is the request's bearer token. A token or download URL that an earlier
        action expired fails again on every later request.
        """
        if token is not None and token in self._revoked_tokens:
            return FaultAction("token", _expired_token_fault())
        if path.startswith(_DOWNLOAD) and path in self._expired_downloads:
            return FaultAction("download_expired", _expired_download_fault())
        if not self._compiled.search(path):
            return None
        action = self._chaos_action(method, path, query, token)
        if action is not None:
            return action
        fault = self.random_fault(method, path)
        return None if fault is None else FaultAction("error", fault)

    def _chaos_action(
        self, method: str, path: str, query: str, token: str | None
    ) -> FaultAction | None:
        if not any(getattr(self, name) > 0 for name in _CHAOS_RATE_FIELDS):
            return None
        with self._lock:
            key = (method, path)
            streak = self._streaks.get(key, 0)
            action = None if streak >= self.max_consecutive else self._draw(path, query, token)
            if action is None:
                return None
            # Resyncs change server state and let the request through, so they do not
            # count towards the cap on failures in a row.
            if action.kind not in ("sync_state", "drive_resync"):
                self._streaks[key] = streak + 1
            # The only errors drawn here are those of storms.
            self.counts["storm" if action.kind == "error" else action.kind] += 1
            if action.fault is not None and action.kind == "error":
                self.counts[f"error-{action.fault.status}"] += 1
            return action

    def _draw(self, path: str, query: str, token: str | None) -> FaultAction | None:
        """Draw one action under the lock; every call draws the same count of numbers."""
        rolls = [self._chaos.random() for _ in range(8)]
        fraction = self._chaos.random()
        storm_status = self._chaos.choice((429, 503))
        storm_retry_after = self._chaos.choice(self.retry_after_values)
        resync_code = self._chaos.choice(DRIVE_RESYNC_CODES)

        storm_fault = self._storm_fault(rolls[0], rolls[1], storm_status, storm_retry_after)
        if storm_fault is not None:
            return FaultAction("error", storm_fault)
        download = path.startswith(_DOWNLOAD)
        has_token = "token=" in query.lower()
        mail_delta = _MAIL_DELTA.match(path)
        drive_delta = _DRIVE_DELTA.match(path)
        if mail_delta and has_token and rolls[2] < self.sync_state_rate:
            return FaultAction("sync_state", target=mail_delta.group(1))
        if drive_delta and has_token and rolls[2] < self.drive_resync_rate:
            return FaultAction("drive_resync", target=drive_delta.group(1), code=resync_code)
        if download and rolls[3] < self.download_expiry_rate:
            self._expired_downloads.add(path)
            return FaultAction("download_expired", _expired_download_fault())
        if not download and token is not None and rolls[3] < self.token_expiry_rate:
            self._revoked_tokens.add(token)
            return FaultAction("token", _expired_token_fault())
        if rolls[4] < self.reset_rate:
            return FaultAction("reset", fraction=fraction)
        if rolls[5] < self.truncate_rate:
            return FaultAction("truncate", fraction=fraction)
        if rolls[6] < self.slow_rate:
            return FaultAction("slow", fraction=fraction)
        return None

    def _storm_fault(
        self, start_roll: float, hit_roll: float, status: int, retry_after: str | None
    ) -> Fault | None:
        if self._storm is None and start_roll < self.storm_rate:
            self._storm = (self.storm_requests, status, retry_after)
        if self._storm is None:
            return None
        left, status, retry_after = self._storm
        self._storm = (left - 1, status, retry_after) if left > 1 else None
        if hit_roll >= self.storm_intensity:
            return None
        code, message = TRANSIENT_ERRORS[status]
        return Fault(status, code, message, retry_after)


_RATE_FIELDS = (
    "rate",
    "storm_rate",
    "storm_intensity",
    "reset_rate",
    "truncate_rate",
    "slow_rate",
    "token_expiry_rate",
    "download_expiry_rate",
    "sync_state_rate",
    "drive_resync_rate",
)

_CHAOS_RATE_FIELDS = tuple(name for name in _RATE_FIELDS if name not in ("rate", "storm_intensity"))


def _expired_token_fault() -> Fault:
    return Fault(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")


def _expired_download_fault() -> Fault:
    return Fault(
        401,
        "unauthenticated",
        "The download URL has expired. Request the item again for a fresh URL.",
    )


_FLOAT_SETTINGS = frozenset({*_RATE_FIELDS, "slow_seconds"})
_INT_SETTINGS = frozenset({"storm_requests", "max_consecutive"})
FAULT_SETTINGS = tuple(
    sorted({*_FLOAT_SETTINGS, *_INT_SETTINGS, "statuses", "retry_after_values", "path_pattern"})
)
"""Names that ``plan_from_settings`` accepts."""


def plan_from_settings(seed: int, settings: dict[str, str]) -> FaultPlan:
    """Build a FaultPlan from ``NAME=VALUE`` texts, as the emulator command takes them.

    Rates and ``slow_seconds`` are numbers, ``storm_requests`` and ``max_consecutive``
    integers, ``statuses`` a comma-separated list of statuses, and ``retry_after_values`` a
    comma-separated list of header values in which ``none`` leaves the header out. Raises
    ValueError naming the setting when a name or value is invalid.
    """
    values: dict[str, object] = {}
    for name, text in settings.items():
        if name not in FAULT_SETTINGS:
            raise ValueError(
                f"unknown fault setting {name!r}; the settings are: {', '.join(FAULT_SETTINGS)}"
            )
        try:
            values[name] = _setting_value(name, text)
        except (ValueError, re.error) as error:
            raise ValueError(f"fault setting {name}={text!r} is invalid: {error}") from None
    return FaultPlan(seed=seed, **values)  # type: ignore[arg-type]


def _setting_value(name: str, text: str) -> object:
    if name in _FLOAT_SETTINGS:
        return float(text)
    if name in _INT_SETTINGS:
        return int(text)
    parts = [part.strip() for part in text.split(",")]
    if name == "statuses":
        return tuple(int(part) for part in parts if part)
    if name == "retry_after_values":
        return tuple(None if part.lower() == "none" else part for part in parts)
    re.compile(text)
    return text
