"""An archive-wide report asset: growth over time and volume per custodian."""

import dagster as dg

from m365lake.archive_stats import (
    archive_growth,
    custodian_markdown,
    custodian_volume,
    growth_markdown,
)
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.resources import LakeResource


@dg.asset(
    deps=[mailbox_archive, drive_archive],
    group_name="reports",
    kinds={"duckdb"},
    description=(
        "Figures about the whole archive, read from the catalog: versions and bytes "
        "archived per day, and the live volume of each mailbox, OneDrive and site."
    ),
)
def archive_overview(lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    archive = lake.open()
    growth = archive_growth(archive)
    volumes = custodian_volume(archive)
    last = growth[-1] if growth else None
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
        }
    )
