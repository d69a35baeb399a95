"""Schedules: the incremental backup of every known mailbox and drive partition.

Each tick requests one run per partition, so a slow or failing mailbox never holds up the
others, and the ``graph`` concurrency pool in dagster.yaml decides how many run at once.
The cron expressions are read from the environment when the code location loads, because
an administrator tunes them per deployment, not per code change.
"""

import dagster as dg

from pipelines.assets import drive_archive, mailbox_archive
from pipelines.cron import cron_from_env
from pipelines.partitions import drive_partitions, mailbox_partitions

BACKUP_CRON_VARIABLE = "M365LAKE_BACKUP_CRON"
DEFAULT_BACKUP_CRON = "0 * * * *"
"""Hourly: delta makes a quiet hour cost a few requests per mailbox."""


def backup_cron() -> str:
    """Return the backup cron expression, rejecting a malformed one with the variable's name."""
    return cron_from_env(BACKUP_CRON_VARIABLE, DEFAULT_BACKUP_CRON)


def partition_run_requests(
    context: dg.ScheduleEvaluationContext, partitions: dg.DynamicPartitionsDefinition
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    """Request one run per partition, keyed by tick so a retried tick launches nothing twice."""
    assert partitions.name is not None
    keys = context.instance.get_dynamic_partitions(partitions.name)
    if not keys:
        return dg.SkipReason(
            f"no {partitions.name} partitions yet: the directory sensors add them on their "
            "first tick, so check that the Dagster daemon is running"
        )
    tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else ""
    return [dg.RunRequest(run_key=f"{tick}:{key}", partition_key=key) for key in keys]


@dg.schedule(
    cron_schedule=backup_cron(),
    target=[mailbox_archive],
    name="mailbox_backup_schedule",
    # On by default, like the sensors: an archive that waits for someone to switch it
    # on has gaps. Dagster runs schedules only while its daemon runs.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Incremental backup of every mailbox partition (cron from {BACKUP_CRON_VARIABLE})."
    ),
)
def mailbox_backup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    return partition_run_requests(context, mailbox_partitions)


@dg.schedule(
    cron_schedule=backup_cron(),
    target=[drive_archive],
    name="drive_backup_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Incremental backup of every OneDrive and library partition (cron from "
        f"{BACKUP_CRON_VARIABLE})."
    ),
)
def drive_backup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    return partition_run_requests(context, drive_partitions)
