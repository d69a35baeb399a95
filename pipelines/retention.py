"""Retention in Dagster: plan, a blocking hold check, then the purge.

The purge is split from its plan so that a blocking asset check sits between them: if
any version the plan would remove is covered by an active hold, the check fails and the
run stops before ``retention_purge`` deletes anything. ``m365lake.retention.purge``
excludes held versions itself, so the check is a second line of defence. It resolves the
holds again at check time, which also catches a hold placed after the plan was made.
"""

import dagster as dg

from m365lake.discovery.audit_compaction import compact_audit_trail
from m365lake.discovery.coverage import ItemVersion
from m365lake.retention import held_versions_in_plan, plan_purge, purge
from pipelines.cron import cron_from_env
from pipelines.resources import LakeResource
from pipelines.search import search_index

RETENTION_CRON = "30 2 * * *"
"""Daily, at night in the Dagster instance's time zone, away from the hourly backups."""
RETENTION_CRON_VARIABLE = "M365LAKE_RETENTION_CRON"

_EXAMPLES_SHOWN = 20


@dg.asset(
    # Query holds are resolved through the search index, which must cover every commit.
    deps=[search_index],
    group_name="retention",
    description=(
        "What the retention policies would purge now: expired versions not protected by a "
        "keep policy or a legal hold. Nothing is removed here."
    ),
)
def retention_plan(lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    plan = plan_purge(lake.open())
    return dg.MaterializeResult(
        metadata={"planned_at": plan.now.isoformat(), "policies": len(plan.policies)}
        | {f"would_{name}": value for name, value in plan.counts().items()}
    )


def _describe(version: ItemVersion, hold_ids: list[str]) -> str:
    captured = version.captured_at.isoformat() if version.captured_at else "at an unknown time"
    return (
        f"{version.workload} {version.container_id}/{version.item_id} captured {captured}: "
        f"held by {', '.join(hold_ids)}"
    )


@dg.asset_check(
    asset=retention_plan,
    blocking=True,
    description="Fails, and so stops the purge, if the plan would remove a held version.",
)
def no_held_version_in_plan(lake: LakeResource) -> dg.AssetCheckResult:
    archive = lake.open()
    plan = plan_purge(archive)
    covered = held_versions_in_plan(archive, plan)
    examples = [
        _describe(stored.version, hold_ids)
        for stored, hold_ids in list(covered.items())[:_EXAMPLES_SHOWN]
    ]
    return dg.AssetCheckResult(
        passed=not covered,
        metadata={
            "versions_planned": len(plan.purge),
            "held_versions_in_plan": len(covered),
            "examples": dg.MetadataValue.md("\n".join(f"- {line}" for line in examples) or "none"),
        },
    )


@dg.asset(
    deps=[retention_plan],
    group_name="retention",
    description=(
        "Removes the versions retention expired, with their unreferenced blobs, in its own "
        "commit and audit event. Held versions are never removed."
    ),
)
def retention_purge(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    result = purge(lake.open(), actor=f"dagster:{context.run.run_id}", apply=True)
    metadata: dict[str, int | str] = dict(result.counts())
    if result.blobs_deferred:
        metadata["blobs_deferred"] = result.blobs_deferred
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    deps=[retention_purge],
    group_name="retention",
    description=(
        "Merges each month's small audit event files into one file, after the purge has "
        "recorded its event. Events and their hash chain are unchanged."
    ),
)
def audit_trail_compaction(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:  # type: ignore[type-arg]
    result = compact_audit_trail(lake.open(), actor=f"dagster:{context.run.run_id}")
    return dg.MaterializeResult(
        metadata={**result.counts(), "months": ", ".join(sorted(result.periods)) or "none"}
    )


retention_job = dg.define_asset_job(
    "retention_job",
    selection=[search_index, retention_plan, retention_purge, audit_trail_compaction],
    description=(
        "Bring the index up to date, plan the purge, check it against holds, purge, then "
        "compact the audit trail."
    ),
)

retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=retention_job,
    cron_schedule=cron_from_env(RETENTION_CRON_VARIABLE, RETENTION_CRON),
    # Running daily is safe by default: without a delete policy, which an administrator
    # adds on purpose, a purge removes nothing.
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily retention purge (plan, blocking hold check, purge).",
)
