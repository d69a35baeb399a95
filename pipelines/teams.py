"""Teams backup: team partitions, their sensor, the asset and its schedule.

Thin wiring around ``m365lake.backup_teams``; one partition per team, keyed by the
team's group id because display names change and ids do not.
"""

import asyncio

import dagster as dg

from m365lake.backup_teams import backup_teams
from m365lake.catalog import refresh_catalog
from m365lake.graph import GraphClient
from m365lake.sources.teams_list import list_teams
from pipelines.assets import GRAPH_POOL
from pipelines.metadata import archive_metadata, graph_metadata
from pipelines.resources import GraphResource, LakeResource
from pipelines.schedules import BACKUP_CRON_VARIABLE, backup_cron, partition_run_requests

team_partitions = dg.DynamicPartitionsDefinition(name="teams")
"""One per team, keyed by the team's (Microsoft 365 group) id."""


@dg.asset(
    partitions_def=team_partitions,
    pool=GRAPH_POOL,
    group_name="teams",
    kinds={"parquet"},
    description=(
        "Every channel message of one team with Graph's whole JSON: one row per captured "
        "version (edits and soft deletes included), replies, pasted images as blobs and "
        "file links resolved to archived drive items; incremental through channel message "
        "delta."
    ),
)
def teams_archive(
    context: dg.AssetExecutionContext, graph: GraphResource, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    team_id = context.partition_key
    archive = lake.open()
    archive.check_writable()
    summary = asyncio.run(backup_teams(graph.settings(), archive, teams=[team_id]))
    if team_id in summary.skipped:
        return dg.MaterializeResult(metadata={"skipped": summary.skipped[team_id]})
    if not summary.results:
        reason = summary.failed.get(team_id, "no result")
        raise dg.Failure(description=f"team {team_id} was not archived: {reason}")
    result = summary.results[0]
    refresh_catalog(archive)
    return dg.MaterializeResult(
        metadata={
            "team": result.team.display_name or team_id,
            "run_id": result.run_id,
            "commit_seq": result.commit_seq,
            "channels": result.channels,
            "messages_new": result.messages_new,
            "messages_updated": result.messages_updated,
            "messages_deleted": result.messages_deleted,
            "soft_deleted": result.soft_deleted,
            "parts": result.parts,
            "full_listings": result.full_listings,
            "failures": result.failures,
            "pending_retries": result.pending_retries,
            "resyncs": result.resyncs,
            "bytes_downloaded": dg.MetadataValue.int(result.bytes_downloaded),
            "blobs_written": result.blobs_written,
            **graph_metadata(summary.graph),
            **archive_metadata(archive, "teams", team_id, result.run_id, result.started_at),
            "lake": dg.MetadataValue.path(archive.location),
        }
    )


async def _teams(graph: GraphResource) -> list[str]:
    async with GraphClient(graph.settings()) as client:
        return [team.team_id for team in await list_teams(client)]


@dg.sensor(
    asset_selection=[teams_archive],
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a team partition for each new team in the tenant, and backs it up.",
)
def team_directory_sensor(
    context: dg.SensorEvaluationContext, graph: GraphResource
) -> dg.SensorResult:
    # Partitions of deleted teams stay, like those of leavers' mailboxes.
    assert team_partitions.name is not None
    known = set(context.instance.get_dynamic_partitions(team_partitions.name))
    new = [key for key in asyncio.run(_teams(graph)) if key not in known]
    return dg.SensorResult(
        dynamic_partitions_requests=[team_partitions.build_add_request(new)] if new else [],
        run_requests=[dg.RunRequest(partition_key=key) for key in new],
    )


@dg.schedule(
    cron_schedule=backup_cron(),
    target=[teams_archive],
    name="teams_backup_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        f"Incremental Teams backup of every team partition (cron from {BACKUP_CRON_VARIABLE})."
    ),
)
def teams_backup_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason | list[dg.RunRequest]:
    return partition_run_requests(context, team_partitions)
