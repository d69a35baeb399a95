"""The audit trail: a hash-chained, append-only record of every compliance action.

Each event is one row of the ``audit_events`` table. Its ``hash`` is the SHA-256 of the
UTF-8 bytes of a canonical JSON object (keys sorted, no whitespace, non-ASCII kept)::

    {"action", "actor", "at", "case_id", "counts", "event_id", "parameters",
     "prev_hash", "run_id", "seq", "v": 1}

where ``at`` is ISO 8601 in UTC with microseconds, ``parameters`` and ``counts`` are the
canonical JSON texts stored in the row, and ``prev_hash`` is the previous event's
``hash`` (null for event 1). Editing, dropping or reordering an event therefore breaks a
hash or a link that ``check_audit_chain`` recomputes.

The lake state key ``discovery/audit/head`` contains the sequence number and hash of the
newest event and is rewritten by every commit that appends one. Two writers that append
at once both update it, so the lake rejects the later commit (CommitConflictError) and
``record_event`` retries from the new head instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.records import check_actor, utc_now
from m365lake.lake import Lake, Transaction

logger = logging.getLogger(__name__)

AUDIT_HEAD_KEY = "discovery/audit/head"
AUDIT_COMPACTION_PREFIX = "discovery/audit/compaction/"
"""State keys ``<prefix><period>`` written by each audit compaction commit, naming the
commit that first wrote each event it merged (``audit_compaction``)."""
CHAIN_FORMAT = 1
"""Version of the canonical form; stored in every hashed object as ``v``."""

# Actions recorded by this package and the other compliance modules.
CASE_CREATE = "case.create"
CASE_CLOSE = "case.close"
CUSTODIAN_ADD = "custodian.add"
CUSTODIAN_REMOVE = "custodian.remove"
SEARCH_SAVE = "search.save"
SEARCH_DELETE = "search.delete"
SEARCH = "search"
HOLD = "hold"
RELEASE = "release"
EXPORT = "export"
RESTORE = "restore"
PURGE = "purge"
AUDIT_COMPACT = "audit.compact"

_ACTION = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class AuditEvent:
    """One audit event as stored in ``audit_events``."""

    seq: int
    event_id: str
    at: datetime
    actor: str
    action: str
    case_id: str | None
    parameters: str
    """Canonical JSON text of the action's parameters."""
    counts: str
    """Canonical JSON text of the result counts, e.g. ``{"hits":12}``."""
    prev_hash: str | None
    hash: str
    run_id: str

    def parameters_dict(self) -> dict[str, Any]:
        value = json.loads(self.parameters)
        return value if isinstance(value, dict) else {"value": value}

    def counts_dict(self) -> dict[str, int]:
        value = json.loads(self.counts)
        return value if isinstance(value, dict) else {}

    def row(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "case_id": self.case_id,
            "parameters": self.parameters,
            "counts": self.counts,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "run_id": self.run_id,
        }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def canonical_json(value: Any) -> str:
    """Return ``value`` as canonical JSON: keys sorted, no whitespace, non-ASCII kept.

    Datetimes become ISO 8601 in UTC and sets become sorted lists.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    )


def format_timestamp(moment: datetime) -> str:
    """Return ``moment`` in the canonical form: ISO 8601, UTC, microseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(row: Mapping[str, Any]) -> str:
    """Return the SHA-256 of an event row's canonical form (every column but ``hash``)."""
    document = {
        "v": CHAIN_FORMAT,
        "seq": row["seq"],
        "event_id": row["event_id"],
        "at": format_timestamp(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "case_id": row["case_id"],
        "parameters": row["parameters"],
        "counts": row["counts"],
        "prev_hash": row["prev_hash"],
        "run_id": row["run_id"],
    }
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def check_action(action: str) -> str:
    if not isinstance(action, str) or not _ACTION.match(action):
        raise ValueError(
            f"invalid audit action {action!r}: use 1-64 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter (for example 'export' or 'case.create')"
        )
    return action


def _check_counts(counts: Mapping[str, int]) -> dict[str, int]:
    checked = {}
    for name, value in counts.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"audit counts must map names to integers, got {name!r}: {value!r}")
        checked[name] = value
    return checked


# The head written by an earlier append in the same transaction, which the lake state
# does not show until the commit.
_pending_heads: weakref.WeakKeyDictionary[Transaction, tuple[int, str]] = (
    weakref.WeakKeyDictionary()
)


def audit_head(lake: Lake) -> tuple[int, str | None]:
    """Return the sequence number and hash of the newest committed event (0, None if none)."""
    head = lake.state(AUDIT_HEAD_KEY)
    if not isinstance(head, dict):
        return 0, None
    return int(head["seq"]), str(head["hash"])


def append_event(
    tx: Transaction,
    lake: Lake,
    *,
    actor: str,
    action: str,
    parameters: Mapping[str, Any],
    counts: Mapping[str, int],
    case_id: str | None = None,
) -> AuditEvent:
    """Write the next audit event into the open transaction ``tx`` of ``lake``.

    The event becomes visible with the transaction's commit, so an action and its audit
    event land together or not at all. The commit conflicts with any concurrent append;
    the caller retries the whole transaction (``commit_with_retry`` does).
    """
    try:
        parameters_text = canonical_json(dict(parameters))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"audit parameters of {action!r} are not JSON-serialisable: {error}"
        ) from None
    pending = _pending_heads.get(tx)
    seq, prev_hash = pending if pending is not None else audit_head(lake)
    row: dict[str, Any] = {
        "seq": seq + 1,
        "event_id": str(uuid.uuid4()),
        "at": utc_now(),
        "actor": check_actor(actor),
        "action": check_action(action),
        "case_id": case_id,
        "parameters": parameters_text,
        "counts": canonical_json(_check_counts(counts)),
        "prev_hash": prev_hash,
        "run_id": tx.run_id,
    }
    row["hash"] = event_hash(row)
    tx.write_rows("audit_events", [row], partition={})
    tx.set_state(AUDIT_HEAD_KEY, {"seq": row["seq"], "hash": row["hash"]})
    _pending_heads[tx] = (row["seq"], row["hash"])
    return AuditEvent(**row)


def record_event(
    lake: Lake,
    actor: str,
    action: str,
    parameters: Mapping[str, Any],
    counts: Mapping[str, int],
    *,
    case_id: str | None = None,
) -> AuditEvent:
    """Append one audit event in its own commit and return it.

    For actions that write nothing else to the lake (a search, an export to a folder
    outside it). ``actor`` names the person or service account, ``parameters`` must be
    JSON-serialisable (datetimes and sets are converted) and ``counts`` maps result
    names to integers. Actions that also write rows call ``append_event`` inside their
    own transaction instead.
    """

    def work(tx: Transaction) -> tuple[AuditEvent, dict[str, int]]:
        event = append_event(
            tx,
            lake,
            actor=actor,
            action=action,
            parameters=parameters,
            counts=counts,
            case_id=case_id,
        )
        return event, {"audit_events": 1}

    event = commit_with_retry(lake, kind="audit", container=None, work=work)
    logger.info("recorded audit event %d: %s by %s", event.seq, event.action, event.actor)
    return event
