"""Retention policies: how long archived versions are kept, by workload, location and age.

A policy applies to one workload (mail, files, calendar, contacts or teams), in all
locations or in listed ones (mailboxes, OneDrives, sites, teams). It measures age from
the version's own date or from the time the tenant deleted the item. The own date is the
received time of mail, the modified time of files and contacts, the end of a calendar
event and the creation time of a Teams channel message. An event counts from its end so
that a meeting planned far ahead is not purged before it happens, and a series master
from the end of its recurrence range. A contact counts from its last change because it
stays in use however old it is. A channel message counts from its creation, so all its
edits expire together. A Teams message that a user deleted counts as deleted from then,
although Graph still returns it with its body emptied.

A ``delete`` policy makes versions older than its ``days`` eligible for purge. A ``keep``
policy protects versions younger than its ``days`` from every delete policy, so the
longest retention wins. Active legal holds protect versions regardless of any policy.

Policies are stored like cases: each under a lake state key ``retention/policy/<id>``,
each change appended to the ``retention_policies`` table and to the audit trail in the
same commit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from m365lake.discovery import audit
from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.custodians import resolve_custodian
from m365lake.discovery.errors import CaseNotFoundError, InvalidRequestError
from m365lake.discovery.records import check_actor, custodian_id_for, new_id, utc_now
from m365lake.lake import Lake, Transaction

logger = logging.getLogger(__name__)

POLICY_PREFIX = "retention/policy/"

Workload = Literal["mail", "files", "calendar", "contacts", "teams"]
Basis = Literal["item_date", "deleted"]
Action = Literal["keep", "delete"]
WORKLOADS: tuple[Workload, ...] = ("mail", "files", "calendar", "contacts", "teams")
BASES: tuple[Basis, ...] = ("item_date", "deleted")
ACTIONS: tuple[Action, ...] = ("keep", "delete")

POLICY_SET = "retention.policy.set"
POLICY_REMOVE = "retention.policy.remove"

# Location kinds that each workload accepts, as custodian kinds.
_LOCATION_KINDS = {
    "mail": ("mailbox",),
    "files": ("onedrive", "site"),
    "calendar": ("mailbox",),
    "contacts": ("mailbox",),
    "teams": ("team",),
}


@dataclass(frozen=True)
class RetentionPolicy:
    """One retention rule; see the module docstring for how rules combine."""

    policy_id: str
    name: str
    workload: Workload
    locations: tuple[str, ...] | None
    """Location ids such as ``mailbox:<id>``, ``onedrive:<drive id>``, ``site:<id>``,
    ``team:<id>``; None for every location of the workload."""
    basis: Basis
    """``item_date``: the version's own date (see the module docstring); ``deleted``:
    tenant deletion."""
    action: Action
    days: int
    created_at: datetime
    created_by: str

    def to_state(self) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["created_at"] = self.created_at.isoformat()
        value["locations"] = list(self.locations) if self.locations is not None else None
        return value

    @classmethod
    def from_state(cls, value: dict[str, Any]) -> RetentionPolicy:
        locations = value.get("locations")
        return cls(
            policy_id=value["policy_id"],
            name=value["name"],
            workload=value["workload"],
            locations=tuple(locations) if locations is not None else None,
            basis=value["basis"],
            action=value["action"],
            days=int(value["days"]),
            created_at=datetime.fromisoformat(value["created_at"]),
            created_by=value["created_by"],
        )

    def row(self, *, change: str, status: str, actor: str) -> dict[str, Any]:
        value = dataclasses.asdict(self)
        value["locations"] = list(self.locations) if self.locations is not None else None
        return {**value, "change": change, "status": status, "actor": actor}


def _choice(label: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidRequestError(f"invalid {label} {value!r}: use one of {', '.join(allowed)}")


def _resolve_locations(
    lake: Lake, workload: str, locations: Sequence[tuple[str, str]] | None
) -> tuple[str, ...] | None:
    if locations is None:
        return None
    if not locations:
        raise InvalidRequestError(
            "the policy's location list is empty: name locations, or none for all locations"
        )
    resolved = []
    for kind, reference in locations:
        if kind not in _LOCATION_KINDS[workload]:
            raise InvalidRequestError(
                f"a {workload} policy cannot apply to a {kind} location; use "
                f"{' or '.join(_LOCATION_KINDS[workload])} locations"
            )
        item = resolve_custodian(lake, kind, reference)
        resolved.append(custodian_id_for(item.kind, item.container_id))
    return tuple(dict.fromkeys(resolved))


def add_policy(
    lake: Lake,
    *,
    actor: str,
    name: str,
    workload: str,
    action: str,
    days: int,
    basis: str = "item_date",
    locations: Sequence[tuple[str, str]] | None = None,
) -> RetentionPolicy:
    """Add a retention policy and return it.

    ``locations`` lists (kind, reference) pairs as for case custodians: ``mailbox`` for
    mail, calendar and contacts, ``onedrive`` or ``site`` for files, ``team`` for teams.
    They are validated against the lake. None applies the policy to every location of
    the workload.
    """
    actor = check_actor(actor)
    _choice("workload", workload, WORKLOADS)
    _choice("action", action, ACTIONS)
    _choice("age basis", basis, BASES)
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise InvalidRequestError(f"invalid number of days {days!r}: give a whole number >= 0")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise InvalidRequestError("the policy name is empty: give the policy a name")
    resolved = _resolve_locations(lake, workload, locations)

    def work(tx: Transaction) -> tuple[RetentionPolicy, dict[str, int]]:
        policy = RetentionPolicy(
            policy_id=new_id("p"),
            name=name,
            workload=workload,  # type: ignore[arg-type]
            locations=resolved,
            basis=basis,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
            days=days,
            created_at=utc_now(),
            created_by=actor,
        )
        row = policy.row(change="added", status="active", actor=actor)
        tx.write_rows("retention_policies", [row], partition={})
        tx.set_state(POLICY_PREFIX + policy.policy_id, policy.to_state())
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=POLICY_SET,
            parameters=policy.to_state(),
            counts={},
        )
        return policy, {"retention_policies": 1}

    policy = commit_with_retry(lake, kind="retention", container=None, work=work)
    logger.info("added retention policy %s (%s)", policy.policy_id, policy.name)
    return policy


def remove_policy(lake: Lake, policy_id: str, *, actor: str, reason: str) -> RetentionPolicy:
    """Remove a retention policy; ``reason`` is mandatory and goes into the audit trail."""
    actor = check_actor(actor)
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise InvalidRequestError(f"removing policy {policy_id!r} needs a reason")

    def work(tx: Transaction) -> tuple[RetentionPolicy, dict[str, int]]:
        value = lake.state(POLICY_PREFIX + policy_id)
        if value is None:
            raise CaseNotFoundError(
                f"no retention policy {policy_id!r} in the lake at {lake.location}. List the "
                "policies with `m365lake retention policies`"
            )
        policy = RetentionPolicy.from_state(value)
        row = policy.row(change="removed", status="removed", actor=actor)
        tx.write_rows("retention_policies", [row], partition={})
        tx.set_state(POLICY_PREFIX + policy_id, None)
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=POLICY_REMOVE,
            parameters={"policy_id": policy_id, "reason": reason},
            counts={},
        )
        return policy, {"retention_policies": 1}

    return commit_with_retry(lake, kind="retention", container=None, work=work)


def list_policies(lake: Lake) -> list[RetentionPolicy]:
    """Return the active retention policies ordered by workload, action and id."""
    policies = [
        RetentionPolicy.from_state(value) for value in lake.state_items(POLICY_PREFIX).values()
    ]
    return sorted(policies, key=lambda policy: (policy.workload, policy.action, policy.policy_id))
