"""Keep the mailbox partitions in step with the tenant's directory."""

import asyncio

import dagster as dg

from m365lake.graph import GraphClient
from m365lake.sources.mailboxes import list_mailboxes
from pipelines.assets import mailbox_archive
from pipelines.partitions import mailbox_partitions
from pipelines.resources import GraphResource


async def _directory(graph: GraphResource) -> list[str]:
    async with GraphClient(graph.settings()) as client:
        return [mailbox.user_principal_name for mailbox in await list_mailboxes(client)]


@dg.sensor(
    asset_selection=[mailbox_archive],
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
    directory = asyncio.run(_directory(graph))
    known = set(context.instance.get_dynamic_partitions(mailbox_partitions.name))
    new = [user for user in directory if user not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[mailbox_partitions.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=user) for user in new],
    )
