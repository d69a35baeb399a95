"""The search index asset: thin wiring around ``m365lake.search.index.update_index``."""

import dagster as dg

from m365lake.search.index import update_index
from pipelines.assets import drive_archive, mailbox_archive
from pipelines.resources import LakeResource


@dg.asset(
    deps=[mailbox_archive, drive_archive],
    group_name="search",
    kinds={"tantivy"},
    description=(
        "The Tantivy index of every archived message and file for KQL search: one "
        "document per item (latest version, deleted items kept with deleted_at), updated "
        "incrementally from the lake's commits."
    ),
)
def search_index(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    archive = lake.open()
    update = update_index(
        archive,
        owner=f"dagster-{context.run.run_id}",
        progress=lambda progress: context.log.info(
            f"indexed up to commit {progress.manifest_seq}: "
            f"{progress.documents_added} added, {progress.documents_replaced} replaced"
        ),
    )
    context.log.info(update.describe())
    return dg.MaterializeResult(
        metadata={
            "commits_read": update.manifests,
            "indexed_up_to_commit": update.manifest_seq,
            "rebuilt": update.rebuilt,
            "documents_added": update.documents_added,
            "documents_replaced": update.documents_replaced,
            "deleted_in_tenant": update.marked_deleted,
            "partially_indexed": update.partially_indexed,
            "documents_total": update.documents_total,
            "partially_indexed_total": update.partially_indexed_total,
            "index_bytes": dg.MetadataValue.int(update.index_bytes),
            "seconds": float(round(update.seconds, 2)),
            "index": dg.MetadataValue.path(str(archive.root / "index")),
        }
    )
