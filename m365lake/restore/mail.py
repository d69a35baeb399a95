"""Mail restore: plan (folders by id mapping, collisions), carry out, verify.

The restore runner finds these three functions by name: ``plan_mail_restore``,
``run_mail_restore`` and ``verify_mail_restore``.
"""

from __future__ import annotations

from m365lake.restore.mail_execute import run_mail_restore
from m365lake.restore.mail_plan import MailPlannedItem, plan_mail_restore
from m365lake.restore.mail_verify import verify_mail_restore

__all__ = ["MailPlannedItem", "plan_mail_restore", "run_mail_restore", "verify_mail_restore"]
