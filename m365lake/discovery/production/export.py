"""Export a case's search as a production: the entry point that ties the steps together.

1. Resolve the case, its query (a saved search or explicit KQL) and its custodians, and
   select the families (``selection``).
2. Prepare the destination: new and empty, or an interrupted export of the same
   selection and settings to resume, or an earlier production to overwrite.
3. Write natives and text, journaling each family (``run``).
4. Write the load files, the duplicates report and the chain-of-custody report, then
   compute the manifest, append the audit event that names the manifest's SHA-256, and
   only then put ``MANIFEST.sha256`` in place. A production without that file is
   incomplete, and ``--resume`` finishes it.
"""

from __future__ import annotations

import logging
import platform
import shutil
import socket
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from m365lake.discovery import audit
from m365lake.discovery.case_state import load_case
from m365lake.discovery.errors import InvalidRequestError
from m365lake.discovery.production.dedup import Deduplicator
from m365lake.discovery.production.families import FamilyWriter, Numbering
from m365lake.discovery.production.finish import finish_production
from m365lake.discovery.production.folder import (
    MANIFEST_FILE,
    ProductionFolder,
    ProductionFolderError,
    prepare_destination,
)
from m365lake.discovery.production.options import EXPORT_MODES, ExportMode, ExportOptions
from m365lake.discovery.production.result import ExportResult
from m365lake.discovery.production.run import (
    DEFAULT_IN_FLIGHT,
    ProgressCallback,
    default_extractor,
    replay_journal,
    write_families,
)
from m365lake.discovery.production.selection import Selection, resolve_query, select_families
from m365lake.discovery.production.state import (
    STATE_FORMAT,
    Journal,
    fingerprint,
    read_header,
    read_journal,
    state_dir,
    write_header,
)
from m365lake.discovery.production.text import TextExtractor
from m365lake.discovery.records import check_actor, utc_now
from m365lake.lake import Lake
from m365lake.lake.blob_users import blob_user

logger = logging.getLogger(__name__)


def tool_version() -> str:
    try:
        return metadata.version("m365lake")
    except metadata.PackageNotFoundError:
        return "unknown"


def _settings(case_id: str, selection: Selection, options: ExportOptions) -> dict[str, Any]:
    """Return what an export is, for its fingerprint and its reports."""
    search = selection.search
    return {
        "case_id": case_id,
        "kql": selection.kql,
        "search_id": search.search_id if search else None,
        "search_name": search.name if search else None,
        "custodian_ids": [custodian.custodian_id for custodian in selection.custodians],
        "options": options.to_json(),
    }


def _check_destination(lake: Lake, destination: Path) -> Path:
    root = destination.expanduser().resolve()
    if lake.is_remote:
        return root
    lake_root = lake.root.resolve()
    if root == lake_root or lake_root in root.parents:
        raise InvalidRequestError(
            f"the destination {root} is inside the lake at {lake_root}; write productions "
            "to a folder outside the lake"
        )
    return root


def _run_record(lake: Lake, *, actor: str, resumed: bool) -> dict[str, Any]:
    from m365lake.search.index import index_path, read_state

    head = lake.head()
    index_state = read_state(index_path(lake)) if index_path(lake).is_dir() else None
    return {
        "started_at": utc_now().isoformat(),
        "actor": actor,
        "resumed": resumed,
        "lake_head": {"seq": head.seq, "sha256": head.sha256},
        "index_seq": index_state.manifest_seq if index_state else None,
        "tool_version": tool_version(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
    }


def export_production(
    lake: Lake,
    case_id: str,
    destination: str | Path,
    *,
    actor: str,
    kql: str | None = None,
    search_id: str | None = None,
    options: ExportOptions | None = None,
    mode: ExportMode = "new",
    extractor: TextExtractor | None = None,
    in_flight: int = DEFAULT_IN_FLIGHT,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write a production of a case's search into ``destination``; see the module docstring.

    ``mode`` is ``new``, ``resume`` or ``overwrite``. A new export needs an empty or
    absent folder. A resumed one continues an interrupted export of the same selection
    and settings there. An overwrite replaces an earlier production, and a folder that
    contains anything else is rejected.
    ``extractor`` replaces the extraction worker pool (tests run extraction in process).
    Raises ProductionFolderError when the folder does not allow the mode, and the
    case and search errors of ``m365lake.discovery``.
    """
    actor = check_actor(actor)
    options = (options or ExportOptions()).check()
    if mode not in EXPORT_MODES:
        raise InvalidRequestError(f"invalid export mode {mode!r}: use one of {EXPORT_MODES}")
    root = _check_destination(lake, Path(destination))
    # Registered as a blob user, so a purge running meanwhile does not delete the blobs
    # of items this export selected.
    with blob_user(lake.storage, owner=f"export of case {case_id} by {actor}"):
        return _produce(
            lake,
            case_id,
            root,
            actor,
            kql,
            search_id,
            options,
            mode,
            extractor,
            in_flight,
            progress,
        )


def _produce(
    lake: Lake,
    case_id: str,
    root: Path,
    actor: str,
    kql: str | None,
    search_id: str | None,
    options: ExportOptions,
    mode: ExportMode,
    extractor: TextExtractor | None,
    in_flight: int,
    progress: ProgressCallback | None,
) -> ExportResult:
    details = load_case(lake, case_id)
    query, search = resolve_query(details, kql=kql, search_id=search_id)
    selection = select_families(lake, details, query, search)
    settings = _settings(case_id, selection, options)
    selection_fingerprint = fingerprint(settings, selection.families)
    folder = ProductionFolder(root)
    resumed = mode == "resume"
    if resumed:
        header, entries = _resume_state(root, selection_fingerprint)
    else:
        prepare_destination(root, overwrite=mode == "overwrite")
        header = {
            "format": STATE_FORMAT,
            "export_id": f"x-{uuid.uuid4().hex[:12]}",
            "fingerprint": selection_fingerprint,
            "settings": settings,
            "case_name": details.case.name,
            "actor": actor,
            "started_at": utc_now().isoformat(),
            "runs": [],
        }
        entries = []
    header["runs"].append(_run_record(lake, actor=actor, resumed=resumed))
    write_header(root, header)
    logger.info(
        "export %s of case %s into %s: %d families (%d from the journal)",
        header["export_id"],
        case_id,
        root,
        len(selection.families),
        len(entries),
    )
    try:
        if not header.get("audit"):
            _write(lake, folder, selection, options, entries, extractor, in_flight, progress)
        return finish_production(lake, folder, selection, header, actor=actor, resumed=resumed)
    except Exception as error:
        _record_failure(lake, header, actor, error)
        raise


def _resume_state(root: Path, expected: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if (root / MANIFEST_FILE).exists():
        # An export stopped after installing its manifest leaves only its progress folder.
        shutil.rmtree(state_dir(root), ignore_errors=True)
        raise ProductionFolderError(
            f"the production in {root} is complete ({MANIFEST_FILE} is present), so there is "
            "nothing to resume; export into another folder, or use --overwrite"
        )
    header = read_header(root)
    if header.get("fingerprint") != expected:
        raise ProductionFolderError(
            f"the interrupted export in {root} was made for other items or settings (the "
            "search now returns other versions, or an option differs), so resuming it "
            "would mix two productions. Export again with --overwrite"
        )
    return header, read_journal(root)


def _write(
    lake: Lake,
    folder: ProductionFolder,
    selection: Selection,
    options: ExportOptions,
    entries: list[dict[str, Any]],
    extractor: TextExtractor | None,
    in_flight: int,
    progress: ProgressCallback | None,
) -> None:
    dedup = Deduplicator(options.dedup)
    numbering = Numbering(options)
    folder.remove_partials()
    replayed = replay_journal(folder, entries, selection.families, dedup, numbering)
    writer = FamilyWriter(lake, folder, options, dedup, numbering)
    with Journal(folder.root, replayed) as journal, default_extractor(extractor) as extract:
        write_families(
            lake,
            folder,
            selection.families,
            journal,
            writer,
            extract,
            options,
            start=len(replayed),
            in_flight=in_flight,
            progress=progress,
        )


def _record_failure(lake: Lake, header: dict[str, Any], actor: str, error: Exception) -> None:
    """Append an audit event for an export that stopped with an error, if the lake allows."""
    settings = header["settings"]
    try:
        audit.record_event(
            lake,
            actor,
            audit.EXPORT,
            {
                "export_id": header["export_id"],
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                **settings,
            },
            {},
            case_id=settings["case_id"],
        )
    except Exception as audit_error:
        logger.error(
            "export %s failed (%s), and its audit event could not be recorded: %s",
            header["export_id"],
            error,
            audit_error,
        )
