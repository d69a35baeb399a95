"""Materialization metadata of the backup assets, built from ``m365lake.archive_stats``."""

from datetime import datetime
from typing import Any

import dagster as dg

from m365lake.archive_stats import (
    Workload,
    archive_growth,
    container_totals,
    delta_token_age,
    growth_markdown,
)
from m365lake.graph import GraphStats
from m365lake.lake import Lake


def graph_metadata(stats: GraphStats | None) -> dict[str, Any]:
    """Return the Graph traffic of a run: requests, throttled responses and time waited."""
    return {
        "graph_requests": stats.requests if stats else 0,
        "throttled_responses": stats.throttled if stats else 0,
        "throttle_wait_seconds": float(stats.throttle_wait_seconds) if stats else 0.0,
    }


def archive_metadata(
    archive: Lake, workload: Workload, container_id: str, run_id: str, started_at: datetime
) -> dict[str, Any]:
    """Return what the archive holds for the container after the run, and its growth."""
    totals = container_totals(archive, workload, container_id)
    age = delta_token_age(archive, container_id, run_id, started_at)
    return {
        "live_items": totals.live_items,
        "live_bytes": dg.MetadataValue.int(totals.live_bytes),
        "versions": totals.versions,
        "version_bytes": dg.MetadataValue.int(totals.version_bytes),
        # Null on a first run, which starts without a delta token.
        "delta_token_age_seconds": (
            dg.MetadataValue.float(age.total_seconds())
            if age is not None
            else dg.MetadataValue.null()
        ),
        "archive_growth": dg.MetadataValue.md(
            growth_markdown(archive_growth(archive, container_id))
        ),
    }
