"""Calendar restore: select, plan (one line per single or series), carry out, verify.

The restore runner uses ``select_events``, ``plan_calendar_restore``,
``run_calendar_restore`` and ``verify_calendar_restore``.
"""

from __future__ import annotations

from m365lake.restore.calendar_execute import run_calendar_restore, verify_calendar_restore
from m365lake.restore.calendar_plan import (
    CalendarPlannedItem,
    plan_calendar_restore,
    select_events,
)

__all__ = [
    "CalendarPlannedItem",
    "plan_calendar_restore",
    "run_calendar_restore",
    "select_events",
    "verify_calendar_restore",
]
