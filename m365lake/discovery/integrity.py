"""Verify the whole archive: manifest chain, table files, blobs and the audit chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from m365lake.discovery.audit_chain import check_audit_chain
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake

# Rows whose content lives in a blob: the hash column, the inline column that is then
# empty, and the key columns that name the row in a message.
_BLOB_REFERENCES = {
    "messages": ("mime_sha256", "mime_inline", ("mailbox_id", "message_id")),
    "drive_items": ("content_sha256", "content_inline", ("drive_id", "item_id")),
}


def check_blob_references(lake: Lake) -> tuple[int, list[str]]:
    """Return the number of blobs committed rows reference and one message per missing blob.

    A purge deletes only blobs no remaining row references, so a missing blob means a
    purge went wrong or blobs were deleted by hand. A table file that cannot be read gets
    its own message, and the references in every other file are still checked.
    """
    referenced = 0
    problems = []
    for table, (digest_column, inline_column, keys) in _BLOB_REFERENCES.items():
        files = [str(path) for path in lake.committed_files(table)]
        if not files:
            continue
        query = (
            f"SELECT {digest_column}, any_value(filename), any_value({keys[0]}), "
            f"any_value({keys[1]}), any_value(captured_at) FROM read_parquet($files, "
            "union_by_name = true, hive_partitioning = false, filename = true) "
            f"WHERE {digest_column} IS NOT NULL AND {inline_column} IS NULL "
            f"AND change <> 'deleted' GROUP BY {digest_column}"
        )
        rows, unreadable = _query_readable_files(query, files)
        for filename, error in unreadable:
            problems.append(
                f"{lake.storage.relative(Path(filename))} could not be read to check the "
                f"blobs its rows reference: {error}"
            )
        referenced += len(rows)
        for digest, filename, container, item, captured_at in rows:
            if not lake.blobs.exists(digest):
                problems.append(
                    f"blob {digest} is missing but {table} row {keys[0]}={container}, "
                    f"{keys[1]}={item}, captured_at={captured_at.isoformat()} in "
                    f"{lake.storage.relative(Path(filename))} references it"
                )
    return referenced, problems


def _query_readable_files(
    query: str, files: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """Run ``query`` over ``files``, leaving out the files DuckDB cannot read.

    Returns the rows and ``(file, error)`` for each file left out. The files are read one
    by one only after the query over all of them failed, which is rare.
    """
    with duckdb.connect() as db:
        try:
            return db.execute(query, {"files": files}).fetchall(), []
        except duckdb.Error:
            pass
        readable, unreadable = [], []
        for file in files:
            try:
                db.execute(query, {"files": [file]}).fetchall()
            except duckdb.Error as error:
                unreadable.append((file, str(error).splitlines()[0]))
            else:
                readable.append(file)
        rows = db.execute(query, {"files": readable}).fetchall() if readable else []
    return rows, unreadable


def verify_archive(
    lake: Lake,
    *,
    blobs: bool = True,
    blob_sample: int | None = None,
    seed: int | None = None,
    audit_anchor: tuple[int, str] | None = None,
) -> dict[str, int]:
    """Run ``Lake.verify``'s checks and the audit chain check, then report every problem.

    ``audit_anchor`` is an audit event's sequence number and hash kept outside the lake;
    see ``check_audit_chain``.

    Also checks that every blob a committed row references exists. Returns the counts
    checked (``manifests``, ``files``, ``blobs``, ``audit_events``, ``blobs_referenced``,
    plus ``blobs_stored`` and ``blob_seed`` for a sample). Raises LakeIntegrityError
    listing every problem, one per line and in ``problems``, after running all checks.
    """
    counts, problems = lake.check(blobs=blobs, blob_sample=blob_sample, seed=seed)
    try:
        counts["audit_events"], audit_problems = check_audit_chain(lake, anchor=audit_anchor)
    except LakeIntegrityError as error:
        # A broken manifest chain (already listed above) stops the audit events, and
        # below the rows, from being read in commit order.
        counts["audit_events"] = 0
        audit_problems = [f"the audit chain could not be checked: {error}"]
    problems.extend(audit_problems)
    try:
        counts["blobs_referenced"], reference_problems = check_blob_references(lake)
    except LakeIntegrityError as error:
        counts["blobs_referenced"] = 0
        reference_problems = [f"the blobs that rows reference could not be checked: {error}"]
    # A file whose hash check failed above is reported once, not again as unreadable.
    damaged = [problem.split()[1] for problem in problems if problem.startswith("file ")]
    problems.extend(
        problem
        for problem in reference_problems
        if not any(problem.startswith(f"{path} could not be read") for path in damaged)
    )
    if problems:
        raise LakeIntegrityError(
            f"the lake at {lake.root} failed verification with {len(problems)} "
            "problem(s):\n" + "\n".join(problems),
            problems=problems,
        )
    return counts
