"""Keep the mailbox and drive partitions in step with the tenant's directory and sites."""

import asyncio

import dagster as dg

from m365lake.graph import GraphClient
from m365lake.sources.drive_list import list_drives
from m365lake.sources.mailboxes import list_mailboxes
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.contacts import contacts_archive
from pipelines.partitions import drive_partitions, mailbox_partitions
from pipelines.resources import GraphResource


def _add_new_partitions(
    context: dg.SensorEvaluationContext,
    partitions: dg.DynamicPartitionsDefinition,
    keys: list[str],
) -> dg.SensorResult:
    """Add the keys Dagster does not know yet and request a first run of each."""
    assert partitions.name is not None
    known = set(context.instance.get_dynamic_partitions(partitions.name))
    new = [key for key in keys if key not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[partitions.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=key) for key in new],
    )


async def _directory(graph: GraphResource) -> list[str]:
    async with GraphClient(graph.settings()) as client:
        return [mailbox.user_principal_name for mailbox in await list_mailboxes(client)]


@dg.sensor(
    # A new mailbox's first run archives its contacts too, not only at the next tick
    # of the contacts schedule.
    asset_selection=[mailbox_archive, contacts_archive],
    minimum_interval_seconds=3600,
    # On by default: a new hire's mailbox should be archived without anyone
    # remembering to add it. Dagster runs sensors only while its daemon runs.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a mailbox partition for each new mailbox in the directory and backs it up.",
)
def mailbox_directory_sensor(
    context: dg.SensorEvaluationContext, graph: GraphResource
) -> dg.SensorResult:
    # Partitions of users who left stay: their archive is kept, and often needed.
    return _add_new_partitions(context, mailbox_partitions, asyncio.run(_directory(graph)))


async def _drives(graph: GraphResource) -> list[str]:
    async with GraphClient(graph.settings()) as client:
        drives, _ = await list_drives(client)
        return [drive.drive_id for drive in drives]


@dg.sensor(
    asset_selection=[drive_archive],
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a drive partition for each new OneDrive and site library, and backs it up.",
)
def drive_directory_sensor(
    context: dg.SensorEvaluationContext, graph: GraphResource
) -> dg.SensorResult:
    # Partitions of deleted drives stay, like those of leavers' mailboxes.
    return _add_new_partitions(context, drive_partitions, asyncio.run(_drives(graph)))
