"""Verify the whole archive: manifest chain, table files, blobs and the audit chain."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import duckdb

from m365lake.discovery.audit_chain import check_audit_chain
from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan


def _stored_apart(inline_column: str) -> str:
    """Return the condition of a version row whose content is a blob, not inline."""
    return f"{inline_column} IS NULL AND change <> 'deleted'"


# Rows whose content lives in a blob: the hash column, the condition that a row's hash
# names a blob, and the key columns that name the row in a message. Attachment and part
# rows have no inline copy, so every hash they carry names a blob.
_BLOB_REFERENCES = {
    "messages": ("mime_sha256", _stored_apart("mime_inline"), ("mailbox_id", "message_id")),
    "drive_items": ("content_sha256", _stored_apart("content_inline"), ("drive_id", "item_id")),
    "events": ("json_sha256", _stored_apart("json_inline"), ("mailbox_id", "event_id")),
    "event_attachments": ("content_sha256", "true", ("event_id", "attachment_id")),
    "contacts": ("json_sha256", _stored_apart("json_inline"), ("mailbox_id", "contact_id")),
    "channel_messages": ("json_sha256", _stored_apart("json_inline"), ("channel_id", "message_id")),
    "channel_message_parts": ("content_sha256", "true", ("message_id", "part_id")),
}


def check_blob_references(
    lake: Lake, missing_keys: Counter[str] | None = None
) -> tuple[int, list[str]]:
    """Return the number of blobs committed rows reference and one message per missing blob.

    A purge deletes only blobs no remaining row references, so a missing blob means a
    purge went wrong or blobs were deleted by hand. A table file that cannot be read gets
    its own message, and the references in every other file are still checked. With
    ``missing_keys``, a file whose key is not loaded is counted there under its key id
    instead of being reported as a problem.
    """
    referenced = 0
    problems = []
    for table, (digest_column, stored_apart, keys) in _BLOB_REFERENCES.items():
        entries = lake.committed_entries(table)
        if not entries:
            continue
        query = (
            f"SELECT {digest_column}, any_value(filename), any_value({keys[0]}), "
            f"any_value({keys[1]}), any_value(captured_at) FROM {{source}} "
            f"WHERE {digest_column} IS NOT NULL AND {stored_apart} GROUP BY {digest_column}"
        )
        options = "union_by_name = true, hive_partitioning = false, filename = true"
        rows, unreadable = _query_readable_files(lake, query, options, entries, missing_keys)
        for path, error in unreadable:
            problems.append(
                f"{path} could not be read to check the blobs its rows reference: {error}"
            )
        referenced += len(rows)
        for digest, filename, container, item, captured_at in rows:
            if not lake.blobs.exists(digest):
                problems.append(
                    f"blob {digest} is missing but {table} row {keys[0]}={container}, "
                    f"{keys[1]}={item}, captured_at={captured_at.isoformat()} in "
                    f"{lake.storage.relative(filename)} references it"
                )
    return referenced, problems


def _query_readable_files(
    lake: Lake,
    query: str,
    options: str,
    entries: list[dict[str, Any]],
    missing_keys: Counter[str] | None = None,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """Run ``query`` with ``{source}`` reading ``entries``, leaving out unreadable files.

    Returns the rows and ``(lake path, error)`` for each file left out, including files
    whose key is not loaded unless ``missing_keys`` counts those by key id. The files are
    read one by one only after the query over all of them failed, which is rare.
    """
    keyed, unreadable = [], []
    for entry in entries:
        try:
            reading.check_key(lake.keys, entry)
        except LakeKeyError as error:
            if missing_keys is not None and _not_loaded(lake, error):
                missing_keys[error.key_id] += 1
            else:
                unreadable.append((entry["path"], str(error)))
        else:
            keyed.append(entry)

    def run(selected: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        source = TableScan(lake, selected).sql(options, connection=db)
        return db.execute(query.format(source=source)).fetchall()

    with reading.connect(lake) as db:
        if not keyed:
            return [], unreadable
        try:
            return run(keyed), unreadable
        except duckdb.Error:
            pass
        readable = []
        for entry in keyed:
            try:
                run([entry])
            except duckdb.Error as error:
                unreadable.append((entry["path"], str(error).splitlines()[0]))
            else:
                readable.append(entry)
        rows = run(readable) if readable else []
    return rows, unreadable


def _not_loaded(lake: Lake, error: LakeKeyError) -> bool:
    """Return whether ``error`` is a key that is not loaded, rather than a different key."""
    return error.key_id not in lake.keys.keys


def _check_blobs(
    lake: Lake, sample: int | None, seed: int | None, missing_keys: Counter[str] | None
) -> tuple[dict[str, int], list[str]]:
    """Read back every blob, or ``sample`` blobs drawn at random; return counts and problems.

    The same checks as ``Lake.check``, except that a blob whose key is not loaded is
    counted in ``missing_keys`` (when given) instead of being reported as a problem.
    """
    stored = sorted(lake.blobs.iter_hashes())
    counts: dict[str, int] = {}
    chosen = stored
    if sample is not None:
        if sample < 0:
            raise ValueError("the blob sample size must be zero or more")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        chosen = random.Random(seed).sample(stored, min(sample, len(stored)))
        counts = {"blobs_stored": len(stored), "blob_seed": seed}
    counts["blobs"] = len(chosen)
    problems = []
    for digest in chosen:
        try:
            lake.blobs.read(digest)
        except LakeKeyError as error:
            if missing_keys is not None and _not_loaded(lake, error):
                missing_keys[error.key_id] += 1
            else:
                problems.append(str(error))
        except LakeIntegrityError as error:
            problems.append(str(error))
        except OSError as error:
            problems.append(f"blob {digest} could not be read: {error}")
    return counts, problems


def verify_archive(
    lake: Lake,
    *,
    blobs: bool = True,
    blob_sample: int | None = None,
    seed: int | None = None,
    audit_anchor: tuple[int, str] | None = None,
    missing_keys: Counter[str] | None = None,
) -> dict[str, int]:
    """Run ``Lake.verify``'s checks and the audit chain check, then report every problem.

    ``audit_anchor`` is an audit event's sequence number and hash kept outside the lake;
    see ``check_audit_chain``.

    Also checks that every blob a committed row references exists. Returns the counts
    checked (``manifests``, ``files``, ``blobs``, ``audit_events``, ``blobs_referenced``,
    plus ``blobs_stored`` and ``blob_seed`` for a sample). Raises LakeIntegrityError
    listing every problem, one per line and in ``problems``, after running all checks.

    Without ``missing_keys``, a blob or table file whose key is not loaded is a problem.
    With it, such a blob or file is not checked and is counted there under its key id:
    the hashes of the manifests and table files need no key, so they are still checked.
    """
    counts, problems = lake.check(blobs=False)
    if blobs:
        blob_counts, blob_problems = _check_blobs(lake, blob_sample, seed, missing_keys)
        counts.update(blob_counts)
        problems.extend(blob_problems)
    try:
        counts["audit_events"], audit_problems = check_audit_chain(lake, anchor=audit_anchor)
    except LakeIntegrityError as error:
        # A broken manifest chain (already listed above) stops the audit events, and
        # below the rows, from being read in commit order.
        counts["audit_events"] = 0
        audit_problems = [f"the audit chain could not be checked: {error}"]
    problems.extend(audit_problems)
    try:
        counts["blobs_referenced"], reference_problems = check_blob_references(lake, missing_keys)
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
            f"the lake at {lake.location} failed verification with {len(problems)} "
            "problem(s):\n" + "\n".join(problems),
            problems=problems,
        )
    return counts


def newest_commit(
    manifests: list[dict[str, Any]], container: str, kind: str | None = None
) -> dict[str, Any] | None:
    """Return the newest manifest a backup of ``container`` wrote, of ``kind`` when given.

    A mailbox is the container of mail, calendar and contacts backups, so ``kind``
    (``mail``, ``calendar``, ``contacts``, ``files`` or ``teams``) picks one workload's.
    """
    return next(
        (
            manifest
            for manifest in reversed(manifests)
            if manifest.get("container") == container
            and (kind is None or manifest.get("kind") == kind)
        ),
        None,
    )


def check_container_chain(
    lake: Lake, container: str, kind: str | None = None
) -> tuple[dict[str, int], list[str]]:
    """Check the whole manifest chain and the files of ``container``'s newest commit.

    Reads every manifest to check the hash links between them, then rehashes each file the
    container's newest commit lists. Returns the counts (``manifests``, ``commit_seq``, 0
    when the container has no commit, and ``files``) and one message per problem.
    """
    manifests, problems = lake.check_chain()
    commit = newest_commit(manifests, container, kind)
    files = 0
    if commit is not None:
        files, file_problems = lake.check_commit_files(commit, manifests)
        problems.extend(file_problems)
    counts = {
        "manifests": len(manifests),
        "commit_seq": int(commit["seq"]) if commit else 0,
        "files": files,
    }
    return counts, problems


def sample_commit_blobs(
    lake: Lake, container: str, *, sample: int, seed: int | None = None, kind: str | None = None
) -> tuple[dict[str, int], list[str]]:
    """Read back up to ``sample`` random blobs that rows of ``container``'s newest commit reference.

    Reading a blob decompresses it and checks its SHA-256 against its name. ``seed`` makes
    the draw repeatable and is returned as ``blob_seed``, with ``commit_seq``,
    ``blobs_referenced`` and ``blobs_checked``. Returns one message per problem, including
    a commit file that cannot be read.
    """
    if sample < 0:
        raise ValueError(f"the blob sample size must be zero or more, got {sample}")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    counts = {"commit_seq": 0, "blobs_referenced": 0, "blobs_checked": 0, "blob_seed": seed}
    try:
        commit = newest_commit(lake.manifests(), container, kind)
    except LakeIntegrityError as error:
        return counts, [f"the newest commit could not be found: {error}"]
    if commit is None:
        return counts, []
    counts["commit_seq"] = int(commit["seq"])

    digests, problems = _blobs_referenced_by(lake, commit)
    chosen = random.Random(seed).sample(sorted(digests), min(sample, len(digests)))
    for digest in chosen:
        try:
            lake.blobs.read(digest)
        except (LakeIntegrityError, LakeKeyError) as error:
            problems.append(str(error))
        except OSError as error:
            problems.append(f"blob {digest} could not be read: {error}")
    counts["blobs_referenced"] = len(digests)
    counts["blobs_checked"] = len(chosen)
    return counts, problems


def _blobs_referenced_by(lake: Lake, commit: dict[str, Any]) -> tuple[set[str], list[str]]:
    digests: set[str] = set()
    problems: list[str] = []
    for table, (digest_column, stored_apart, _) in _BLOB_REFERENCES.items():
        entries = [entry for entry in commit.get("files", []) if entry.get("table") == table]
        if not entries:
            continue
        query = (
            f"SELECT DISTINCT {digest_column} FROM {{source}} WHERE {digest_column} IS NOT NULL "
            f"AND {stored_apart}"
        )
        options = "union_by_name = true, hive_partitioning = false"
        rows, unreadable = _query_readable_files(lake, query, options, entries)
        digests.update(str(row[0]) for row in rows)
        problems.extend(
            f"{path} in commit {commit['seq']} could not be read to find the blobs its rows "
            f"reference: {error}"
            for path, error in unreadable
        )
    return digests, problems
