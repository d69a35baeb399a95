"""Retention: policies that set how long archived versions are kept, and the purge.

A purge removes the versions that a delete policy expired, unless a keep policy still
protects them or an active legal hold covers them (``m365lake.discovery``). It is the
only path by which data leaves the lake, and it writes its own commit and audit event.
"""

from m365lake.retention.plan import PurgePlan, StoredVersion, held_versions_in_plan
from m365lake.retention.policies import RetentionPolicy, add_policy, list_policies, remove_policy
from m365lake.retention.purging import PurgeResult, finish_purges, plan_purge, purge

__all__ = [
    "PurgePlan",
    "PurgeResult",
    "RetentionPolicy",
    "StoredVersion",
    "add_policy",
    "finish_purges",
    "held_versions_in_plan",
    "list_policies",
    "plan_purge",
    "purge",
    "remove_policy",
]
