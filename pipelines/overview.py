"""An archive-wide report asset: growth over time, volume per custodian and per workload."""

import dagster as dg

from m365lake.archive_stats import (
    archive_growth,
    custodian_markdown,
    custodian_volume,
    growth_markdown,
)
from m365lake.workload_stats import workload_markdown, workload_totals
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.cron import cron_from_env
from pipelines.resources import LakeResource

OVERVIEW_CRON = "0 6 * * *"
"""Daily, after the night's retention purge, so the figures show what the archive kept."""
OVERVIEW_CRON_VARIABLE = "M365LAKE_OVERVIEW_CRON"


@dg.asset(
    deps=[mailbox_archive, drive_archive],
    group_name="reports",
    kinds={"duckdb"},
    description=(
        "Figures about the whole archive, read from the catalog: versions and bytes "
        "archived per day, the live volume of each mailbox, OneDrive, site and team, and what "
        "each workload (mail, files, calendar, contacts, teams) contains, with its open "
        "coverage gaps."
    ),
)
def archive_overview(lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    archive = lake.open()
    growth = archive_growth(archive)
    volumes = custodian_volume(archive)
    last = growth[-1] if growth else None
    workloads = workload_totals(archive)
    return dg.MaterializeResult(
        metadata={
            "versions": last.total_versions if last else 0,
            "version_bytes": dg.MetadataValue.int(last.total_bytes if last else 0),
            "days_with_backups": len(growth),
            "custodians": len(volumes),
            "live_items": sum(volume.items for volume in volumes),
            "live_bytes": dg.MetadataValue.int(sum(volume.bytes for volume in volumes)),
            "archive_growth": dg.MetadataValue.md(growth_markdown(growth)),
            "custodian_volume": dg.MetadataValue.md(custodian_markdown(volumes)),
            "workloads": dg.MetadataValue.md(workload_markdown(workloads)),
            "open_coverage_gaps": sum(total.open_gaps for total in workloads),
        }
    )


archive_overview_job = dg.define_asset_job(
    "archive_overview_job",
    selection=[archive_overview],
    description="Refreshes the archive_overview figures.",
)

archive_overview_schedule = dg.ScheduleDefinition(
    name="archive_overview_schedule",
    job=archive_overview_job,
    cron_schedule=cron_from_env(OVERVIEW_CRON_VARIABLE, OVERVIEW_CRON),
    # It only reads the lake, so it is safe to run without any set-up.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily refresh of the archive growth and per-custodian volume figures.",
)
