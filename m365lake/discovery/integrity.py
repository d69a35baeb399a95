"""Verify the whole archive: manifest chain, table files, blobs and the audit chain."""

from __future__ import annotations

from m365lake.discovery.audit_chain import check_audit_chain
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake


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

    Returns the counts checked (``manifests``, ``files``, ``blobs``, ``audit_events``,
    plus ``blobs_stored`` and ``blob_seed`` for a sample). Raises LakeIntegrityError
    listing every problem, one per line and in ``problems``, after running all checks.
    """
    counts, problems = lake.check(blobs=blobs, blob_sample=blob_sample, seed=seed)
    try:
        counts["audit_events"], audit_problems = check_audit_chain(lake, anchor=audit_anchor)
    except LakeIntegrityError as error:
        # A broken manifest chain (already listed above) stops the audit events from
        # being read in commit order.
        counts["audit_events"] = 0
        audit_problems = [f"the audit chain could not be checked: {error}"]
    problems.extend(audit_problems)
    if problems:
        raise LakeIntegrityError(
            f"the lake at {lake.root} failed verification with {len(problems)} "
            "problem(s):\n" + "\n".join(problems),
            problems=problems,
        )
    return counts
