"""Cases, custodians, saved searches and holds as stored in the lake's state.

Every record lives under one lake state key, and each change also appends a row with the
whole record to the matching table, so DuckDB reads the history and the state contains the
current value. The keys of one case share the prefix ``discovery/case/<case_id>``; the
case record itself is at that prefix, which every change of the case rewrites with a new
``revision``. Two concurrent changes of one case therefore update the same key, and the
lake rejects the second commit with CommitConflictError instead of letting both land.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from m365lake.discovery.errors import InvalidRequestError

STATE_PREFIX = "discovery/case/"

CustodianKind = Literal["mailbox", "onedrive", "site", "team"]
CUSTODIAN_KINDS: tuple[CustodianKind, ...] = ("mailbox", "onedrive", "site", "team")

HoldKind = Literal["custodian", "query"]

_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` unchanged, or raise InvalidRequestError naming the accepted form."""
    if not isinstance(case_id, str) or not _CASE_ID.match(case_id):
        raise InvalidRequestError(
            f"invalid case id {case_id!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example CASE-2024-017)"
        )
    return case_id


def check_actor(actor: str) -> str:
    """Return ``actor`` stripped, or raise InvalidRequestError when it is empty."""
    text = actor.strip() if isinstance(actor, str) else ""
    if not text:
        raise InvalidRequestError(
            "the actor is empty: every case change and audit event names the person or "
            "service account that made it"
        )
    return text


def new_id(prefix: str) -> str:
    """Return a random id such as ``h-3f9a1c2e4b7d`` (48 random bits)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def case_key(case_id: str) -> str:
    return f"{STATE_PREFIX}{case_id}"


def custodian_key(case_id: str, custodian_id: str) -> str:
    return f"{STATE_PREFIX}{case_id}/custodian/{custodian_id}"


def search_key(case_id: str, search_id: str) -> str:
    return f"{STATE_PREFIX}{case_id}/search/{search_id}"


def hold_key(case_id: str, hold_id: str) -> str:
    return f"{STATE_PREFIX}{case_id}/hold/{hold_id}"


def custodian_id_for(kind: CustodianKind, container_id: str) -> str:
    """Return the custodian id ``<kind>:<container id>``, e.g. ``mailbox:8f3e…``."""
    return f"{kind}:{container_id}"


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _from_json(kind: Any, value: Any) -> Any:
    text = str(kind)
    if value is not None and "datetime" in text:
        return datetime.fromisoformat(value)
    if value is not None and "tuple" in text:
        return tuple(value)
    return value


Record = TypeVar("Record", "Case", "Custodian", "SavedSearch", "Hold")


def to_state(record: Case | Custodian | SavedSearch | Hold) -> dict[str, Any]:
    """Return the JSON form of a record, as stored under its state key."""
    return {name: _to_json(value) for name, value in asdict(record).items()}


def from_state(cls: type[Record], value: dict[str, Any]) -> Record:
    """Rebuild a record from its state value (the inverse of ``to_state``)."""
    return cls(
        **{field.name: _from_json(field.type, value.get(field.name)) for field in fields(cls)}
    )


def to_row(
    record: Case | Custodian | SavedSearch | Hold, *, change: str, actor: str, **extra: Any
) -> dict[str, Any]:
    """Return the table row of a record after ``change`` made by ``actor``."""
    row = {name: value for name, value in asdict(record).items()}
    for name, value in row.items():
        if isinstance(value, tuple):
            row[name] = list(value)
    return {**row, "change": change, "actor": actor, **extra}


@dataclass(frozen=True)
class Case:
    """An e-discovery case: custodians, saved searches and holds gathered under one id."""

    case_id: str
    name: str
    description: str | None
    status: Literal["open", "closed"]
    revision: int
    """Number of changes made to the case, the creation included."""
    created_at: datetime
    created_by: str
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None


@dataclass(frozen=True)
class Custodian:
    """A mailbox, OneDrive, SharePoint site or Teams team whose content belongs to a case.

    A mailbox brings its mail, calendar events and contacts; a team brings the
    messages of all its channels.
    """

    case_id: str
    custodian_id: str
    kind: CustodianKind
    container_id: str
    """The mailbox id, drive id, site id or team id."""
    label: str | None
    """A readable name: the user principal name, the OneDrive owner, the site URL or the
    team's display name."""
    requested_as: str
    """The reference that was given when the custodian was added."""
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class SavedSearch:
    """A KQL query saved with a case."""

    case_id: str
    search_id: str
    name: str
    kql: str
    validated: bool
    """Whether the KQL parser accepted the query; False when no parser was installed."""
    saved_at: datetime
    saved_by: str


@dataclass(frozen=True)
class Hold:
    """A legal hold: while active, no purge removes a version that it covers.

    A custodian hold covers every version of every item of its custodians. A query hold
    covers the items that match ``kql``, within its custodians or, when ``custodian_ids``
    is None, anywhere in the lake. ``date_start`` (inclusive) and ``date_end``
    (exclusive) narrow either kind to versions whose own date falls in the range: the
    received time of mail (the sent time when none was recorded), the modified time of
    files and contacts, the end of an event and the creation time of a channel message.
    """

    case_id: str
    hold_id: str
    name: str | None
    kind: HoldKind
    custodian_ids: tuple[str, ...] | None
    kql: str | None
    date_start: datetime | None
    date_end: datetime | None
    status: Literal["active", "released"]
    placed_at: datetime
    placed_by: str
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"
