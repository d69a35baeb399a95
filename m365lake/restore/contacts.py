"""Contacts restore: select, plan (folders by id mapping, collisions), carry out, verify.

The restore runner uses ``select_contacts``, ``plan_contacts_restore``,
``run_contacts_restore`` and ``verify_contacts_restore``.
"""

from __future__ import annotations

from m365lake.restore.contacts_execute import run_contacts_restore, verify_contacts_restore
from m365lake.restore.contacts_plan import (
    ContactPlannedItem,
    plan_contacts_restore,
    select_contacts,
)

__all__ = [
    "ContactPlannedItem",
    "plan_contacts_restore",
    "run_contacts_restore",
    "select_contacts",
    "verify_contacts_restore",
]
