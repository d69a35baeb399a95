"""The vocabulary of a restore: conflict policy, target, plan lines, outcomes and the report."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class ConflictPolicy(StrEnum):
    """Action of a restore when the target already contains a live item of the same name."""

    SKIP = "skip"
    """Leave the live item alone and report the collision; the default."""
    RENAME = "rename"
    """Create the archived item beside the live one, under a new name for files."""
    REPLACE = "replace"
    """Replace the live item with the archived one."""


class Outcome(StrEnum):
    """Result of one planned item."""

    CREATED = "created"
    REPLACED = "replaced"
    RENAMED = "renamed"
    SKIPPED = "skipped"
    """A live item collided and the policy is skip."""
    ALREADY_PRESENT = "already_present"
    """An identical item is live at the target, or the ledger shows an earlier restore."""
    UNRESTORABLE = "unrestorable"
    """The archive cannot recreate the item (no content archived, a OneNote package, ...)."""
    FAILED = "failed"


@dataclass(frozen=True)
class RestoreTarget:
    """Destination of restored items; with every field None, their original location."""

    mailbox_id: str | None = None
    """Graph user id of another mailbox to restore mail into."""
    drive_id: str | None = None
    """Id of another drive (OneDrive or document library) to restore files into."""
    restore_folder: str | None = None
    """Name of a new top-level folder that receives everything, keeping paths below it."""

    @property
    def is_original(self) -> bool:
        return self.mailbox_id is None and self.drive_id is None and self.restore_folder is None


# SharePoint and OneDrive reject these characters in names; Outlook folders accept them,
# but one name that works everywhere keeps a restore's folders recognisable across workloads.
_UNSAFE_NAME_CHARACTERS = re.compile(r'[\\/:*?"<>|#%\x00-\x1f]')


def default_restore_folder(at: datetime | None = None) -> str:
    """Return a folder name such as ``Restored 2026-12-05 02-30-00 UTC`` for a restore at ``at``."""
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return f"Restored {moment:%Y-%m-%d %H-%M-%S} UTC"


def check_folder_name(name: str) -> str:
    """Return ``name`` stripped, raising ValueError when OneDrive or SharePoint would reject it."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("the restore folder name is empty; give a name or leave it out")
    bad = sorted(set(_UNSAFE_NAME_CHARACTERS.findall(stripped)))
    if bad:
        shown = " ".join(repr(character) for character in bad)
        raise ValueError(
            f"the restore folder name {name!r} contains {shown}, which SharePoint and OneDrive "
            'reject; use letters, digits, spaces and - _ . ( ) instead of \\ / : * ? " < > | # %'
        )
    if stripped.endswith("."):
        raise ValueError(f"the restore folder name {name!r} ends with '.', which OneDrive rejects")
    return stripped


@dataclass(frozen=True)
class PlannedItem:
    """One line of a restore plan: which archived version goes where, and what is expected."""

    workload: str
    """``mail`` or ``files``."""
    source_container: str
    """Mailbox id or drive id in the archive."""
    source_item_id: str
    source_version: str
    """SHA-256 of the archived MIME or file content; ``folder`` for folders."""
    source_path: str
    """Folder path or file path in the archive, for people reading the plan."""
    target_container: str
    target_path: str
    action: str
    """``create``, ``collision``, ``already_present``, ``unrestorable``, ``complete`` (finish
    an item an earlier restore created but did not complete) or ``failed`` (the target
    could not be checked)."""
    reason: str | None = None
    """The colliding live item, or why the item cannot be restored."""


@dataclass
class ItemResult:
    """The outcome of one planned item after the restore ran."""

    planned: PlannedItem
    outcome: Outcome
    target_item_id: str | None = None
    reason: str | None = None


@dataclass
class RestoreReport:
    """A restore's plan or result, item by item, with counts per outcome."""

    restore_id: str
    dry_run: bool
    policy: ConflictPolicy
    items: list[ItemResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Return the number of items per outcome, every outcome listed."""
        found = Counter(result.outcome.value for result in self.items)
        return {outcome.value: found.get(outcome.value, 0) for outcome in Outcome}


PLAN_OUTCOMES = {
    "create": Outcome.CREATED,
    "already_present": Outcome.ALREADY_PRESENT,
    "unrestorable": Outcome.UNRESTORABLE,
    "complete": Outcome.CREATED,
    "failed": Outcome.FAILED,
}


def planned_outcome(item: PlannedItem, policy: ConflictPolicy) -> Outcome:
    """Return the outcome a dry run reports for ``item`` under ``policy``."""
    if item.action == "collision":
        return {
            ConflictPolicy.SKIP: Outcome.SKIPPED,
            ConflictPolicy.RENAME: Outcome.RENAMED,
            ConflictPolicy.REPLACE: Outcome.REPLACED,
        }[policy]
    try:
        return PLAN_OUTCOMES[item.action]
    except KeyError:
        raise ValueError(
            f"unknown plan action {item.action!r}; expected create, collision, "
            "already_present, unrestorable, complete or failed"
        ) from None


class Severity(StrEnum):
    """How much a difference found by verification matters."""

    REWRITE = "rewrite"
    """A change Graph is known to make on upload, such as a rewritten header; tolerated."""
    MISMATCH = "mismatch"
    """The restored item differs from the archive in a way Graph does not explain."""
    MISSING = "missing"
    """The restored item could not be read back at all."""


@dataclass(frozen=True)
class VerifyFinding:
    """One difference between a restored item as read back and its archived version."""

    workload: str
    source_item_id: str
    target_item_id: str | None
    field: str
    """Name of the differing field: ``subject``, ``received_at``, ``attachment:<name>``, ..."""
    expected: str | None
    actual: str | None
    severity: Severity
