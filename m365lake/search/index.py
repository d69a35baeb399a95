"""The Tantivy index under ``<lake root>/index/``, fed from lake commits.

The index contains one document per message and per file (see ``changes`` for which version
and ``documents`` for the fields). ``update_index`` reads the manifests committed since
the last update, indexes the items they changed and commits. Only then does it record
the last manifest's sequence number and SHA-256 in ``index/m365lake-index.json``, so a
run killed at any point leaves an index whose state file names what it contains, and the
next run redoes the unfinished manifests. Replacing a document deletes the old one by its
``doc_id`` term first, so a repeated manifest never duplicates an item. A purge commit
makes the update check every item of the partitions it rewrote (see ``purges``), so a
purged item stops matching searches once the index includes that commit.

One writer at a time: an update holds the lake lease ``search-index`` (renewed in a
background thread) and Tantivy's own writer lock. A rebuild writes a new index beside
the old one and swaps the folders at the end, so searches keep working during it. The
folders of a killed rebuild are removed by the next update, rebuild or optimisation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import tantivy

from m365lake.errors import LakeError, SearchIndexError
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.commits import ManifestLog
from m365lake.lake.storage import make_private_dirs
from m365lake.search import fields
from m365lake.search.changes import (
    ITEM_TABLES,
    CommittedFile,
    VersionSet,
    changed_versions,
    committed_files,
    load_directory,
)
from m365lake.search.documents import Directory
from m365lake.search.indexing import Extractor, IndexedDocument, index_documents
from m365lake.search.purges import PurgeSchedule, recheck_containers

logger = logging.getLogger(__name__)

INDEX_DIR = "index"
# Folders beside the index while a rebuild runs; a killed rebuild leaves them behind.
REBUILD_PREFIX = f"{INDEX_DIR}.rebuild-"
OLD_PREFIX = f"{INDEX_DIR}.old-"
STATE_FILE = "m365lake-index.json"
STATE_FORMAT = 1
LEASE_NAME = "search-index"

# Tantivy splits the heap between its indexing threads and writes a segment whenever a
# thread's share fills, so a larger heap means fewer, larger segments to merge.
WRITER_HEAP_BYTES = 256 * 1024 * 1024
WRITER_THREADS = max(1, min(os.cpu_count() or 1, 4))
# Manifests are indexed and committed in groups of about this many changed rows, so a run
# killed during a large update keeps the groups it finished.
CHUNK_ROWS = 100_000

REBUILD_ADVICE = "Run `m365lake index --rebuild` to build the index again from the lake's tables."


def index_path(lake: Lake) -> Path:
    """Return the index folder of ``lake``."""
    return lake.local_dir / INDEX_DIR


def schema_digest() -> str:
    """Return a SHA-256 of the field table and analyzers, recorded with every index.

    An index built with another field table cannot be updated in place, because its old
    documents would lack or misuse fields.
    """
    description = {
        "fields": [
            [field.name, field.kind.value, field.stored, field.fast] for field in fields.ALL_FIELDS
        ],
        "analyzers": [fields.TEXT_ANALYZER, fields.KEYWORD_ANALYZER, fields.MAX_TOKEN_BYTES],
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class IndexState:
    """The lake state an index reflects: everything committed up to manifest ``manifest_seq``."""

    manifest_seq: int
    manifest_sha256: str | None
    schema: str
    updated_at: str

    def to_json(self) -> bytes:
        record = {"format": STATE_FORMAT, **self.__dict__}
        return (json.dumps(record, indent=2) + "\n").encode("utf-8")


def read_state(folder: Path) -> IndexState | None:
    """Return the state recorded in ``folder``, or None when no update ever committed there."""
    try:
        record = json.loads((folder / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise SearchIndexError(
            f"the index state file {folder / STATE_FILE} is not valid JSON ({error}). "
            f"{REBUILD_ADVICE}"
        ) from error
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT:
        raise SearchIndexError(
            f"the index state file {folder / STATE_FILE} has an unknown format. {REBUILD_ADVICE}"
        )
    return IndexState(
        manifest_seq=int(record["manifest_seq"]),
        manifest_sha256=record.get("manifest_sha256"),
        schema=str(record.get("schema")),
        updated_at=str(record.get("updated_at")),
    )


def write_state(folder: Path, state: IndexState) -> None:
    temporary = folder / f".{STATE_FILE}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(state.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / STATE_FILE)


def open_tantivy(folder: Path, *, create: bool) -> tantivy.Index:
    """Open (or create) the Tantivy index in ``folder`` with the project's analyzers."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(fields.build_schema(), path=str(folder), reuse=True)
        else:
            index = tantivy.Index.open(str(folder))
    except (ValueError, OSError) as error:
        raise SearchIndexError(
            f"the search index at {folder} could not be opened: {error}. {REBUILD_ADVICE}"
        ) from error
    fields.register_analyzers(index)
    return index


@dataclass(frozen=True)
class OpenIndex:
    """A readable index and the lake state it reflects."""

    index: tantivy.Index
    state: IndexState
    path: Path
    lake_seq: int
    """The lake's newest manifest; later than ``state.manifest_seq`` after any commit."""
    commits_behind: int
    """Commits after ``state.manifest_seq`` that add, change or purge items: searches do not
    see them yet. Commits of other tables, such as audit events, are not counted."""


def open_index(lake: Lake) -> OpenIndex:
    """Open the index of ``lake`` for searching, or raise SearchIndexError saying what to run."""
    folder = index_path(lake)
    state = read_state(folder) if folder.is_dir() else None
    if state is None:
        raise SearchIndexError(
            f"the lake at {lake.location} has no search index yet: run `m365lake index` to build it"
        )
    if state.schema != schema_digest():
        raise SearchIndexError(
            f"the search index at {folder} was built with another field table. {REBUILD_ADVICE}"
        )
    index = open_tantivy(folder, create=False)
    return OpenIndex(
        index=index,
        state=state,
        path=folder,
        lake_seq=lake.head().seq,
        commits_behind=len(item_commits_after(lake, state.manifest_seq)),
    )


def item_commits_after(lake: Lake, seq: int) -> list[int]:
    """Return the commits after ``seq`` that list files of the item tables.

    Backups list them for new versions and purges for the rows they kept, so these are
    the commits an index update would change documents for.
    """
    log = ManifestLog(lake.storage)
    found = []
    for number in log.sequence_numbers():
        if number <= seq:
            continue
        manifest, _ = log.read(number)
        if any(entry.get("table") in ITEM_TABLES for entry in manifest.get("files", [])):
            found.append(number)
    return found


@dataclass
class IndexUpdate:
    """The counts and outcome of one ``update_index`` call."""

    manifests: int = 0
    """Manifests read (all of them for a rebuild)."""
    documents_added: int = 0
    documents_replaced: int = 0
    """Documents that replaced an earlier version of the same item."""
    marked_deleted: int = 0
    """Documents written with ``deleted_at`` set: the tenant deleted the item."""
    documents_removed: int = 0
    """Documents deleted because a purge left their item no live version."""
    partially_indexed: int = 0
    """Documents written whose text could not all be extracted."""
    folders_skipped: int = 0
    documents_total: int = 0
    partially_indexed_total: int = 0
    index_bytes: int = 0
    manifest_seq: int = 0
    rebuilt: bool = False
    seconds: float = 0.0
    issues: dict[str, int] = field(default_factory=dict)
    """Count of documents per kind of index issue (``body``, ``attachment``, ``content``, …)."""

    def record(self, written: IndexedDocument) -> None:
        if written.replaced:
            self.documents_replaced += 1
        else:
            self.documents_added += 1
        if written.deleted:
            self.marked_deleted += 1
        if written.issues:
            self.partially_indexed += 1
            for part in {issue.split(":", 1)[0].split(" ", 1)[0] for issue in written.issues}:
                self.issues[part] = self.issues.get(part, 0) + 1

    def describe(self) -> str:
        """Return a one-line summary for the terminal and logs."""
        verb = "rebuilt from" if self.rebuilt else "updated from"
        return (
            f"index {verb} {self.manifests} commit(s) in {self.seconds:.1f} s: "
            f"{self.documents_added} documents added, {self.documents_replaced} replaced "
            f"({self.marked_deleted} deleted in the tenant), {self.documents_removed} removed "
            f"by purges, {self.partially_indexed} partially indexed; the index contains "
            f"{self.documents_total} documents "
            f"({self.partially_indexed_total} partially indexed), "
            f"{self.index_bytes / 1_000_000:.1f} MB"
        )


ProgressCallback = Callable[[IndexUpdate], None]
DocumentCallback = Callable[[fields.SearchDocument], None]


def update_index(
    lake: Lake,
    *,
    rebuild: bool = False,
    extractor: Extractor | None = None,
    chunk_rows: int = CHUNK_ROWS,
    owner: str | None = None,
    progress: ProgressCallback | None = None,
    on_document: DocumentCallback | None = None,
) -> IndexUpdate:
    """Bring the index of ``lake`` up to the lake's newest commit; return what was done.

    With ``rebuild`` (or when no index exists) every item is indexed again from the
    tables. ``extractor`` runs text extraction. The default is the extraction module's
    worker pool, which stops a file that hangs a parser at the per-item time limit.
    ``progress`` is called after each committed chunk of manifests, and ``on_document``
    with every document written, in the order written (a later document of the same
    item replaces an earlier one). Raises SearchIndexError when another writer holds the
    index or when the lake's manifest chain no longer contains the manifest the index was
    built up to.
    """
    started = time.monotonic()
    owner = owner or f"index-{uuid.uuid4().hex[:8]}"
    with held_lease(lake, owner) as lease_problems, _extractor(extractor) as extract:
        updater = _Updater(lake, extract, chunk_rows, lease_problems, progress, on_document)
        update = updater.run(rebuild)
    update.seconds = time.monotonic() - started
    logger.info("%s", update.describe())
    return update


@contextlib.contextmanager
def _extractor(extractor: Extractor | None) -> Iterator[Extractor]:
    if extractor is not None:
        yield extractor
        return
    from m365lake.search.extract import ExtractionPool

    with ExtractionPool() as pool:
        yield pool


@contextlib.contextmanager
def held_lease(lake: Lake, owner: str) -> Iterator[list[BaseException]]:
    """Hold the lake's ``search-index`` lease, renewed in a thread; yield renewal errors."""
    try:
        lease = lake.acquire_lease(LEASE_NAME, owner=owner)
    except LeaseHeldError as error:
        holder = error.holder
        raise SearchIndexError(
            f"the search index of {lake.location} is being updated by {holder.get('owner')!r} "
            f"(process {holder.get('pid')} on {holder.get('host')}). Wait for that update "
            "to finish, then run the command again"
        ) from error
    problems: list[BaseException] = []
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(lease.ttl / 3):
            try:
                lease.renew()
            except (LakeError, OSError) as error:
                logger.error("could not renew the search index lease %s: %s", lease.name, error)
                problems.append(error)
                return

    renewer = threading.Thread(target=renew, name="search-index-lease", daemon=True)
    renewer.start()
    try:
        yield problems
    finally:
        stop.set()
        renewer.join()
        try:
            lease.release()
        except OSError as error:
            logger.warning("could not release the search index lease: %s", error)


class _Updater:
    """One update: plan the manifests, index each chunk, commit, record the state."""

    def __init__(
        self,
        lake: Lake,
        extractor: Extractor,
        chunk_rows: int,
        lease_problems: list[BaseException],
        progress: ProgressCallback | None,
        on_document: DocumentCallback | None,
    ) -> None:
        self.lake = lake
        self.extractor = extractor
        self.chunk_rows = chunk_rows
        self.lease_problems = lease_problems
        self.progress = progress
        self.on_document = on_document
        self.log = ManifestLog(lake.storage)
        self.update = IndexUpdate()
        self.purges = PurgeSchedule([])

    def run(self, rebuild: bool) -> IndexUpdate:
        # A lake on object storage keeps its index in a cache folder that a machine which
        # never wrote to the lake does not have yet. The index contains mail text, so it is private.
        make_private_dirs(self.lake.local_dir)
        remove_leftover_folders(self.lake)
        folder = index_path(self.lake)
        state = read_state(folder) if folder.is_dir() else None
        if state is not None and state.schema != schema_digest() and not rebuild:
            raise SearchIndexError(
                f"the search index at {folder} was built with another field table, so it "
                f"cannot be updated. {REBUILD_ADVICE}"
            )
        if rebuild and state is not None:
            self.update.rebuilt = True
            target = self.lake.local_dir / f"{REBUILD_PREFIX}{uuid.uuid4().hex[:12]}"
            try:
                self._index_into(target, None)
                _swap(target, folder)
            finally:
                shutil.rmtree(target, ignore_errors=True)
        elif state is None:
            # No update ever committed here: leftovers of a killed first build are cleared.
            self.update.rebuilt = True
            shutil.rmtree(folder, ignore_errors=True)
            self._index_into(folder, None)
        else:
            self._index_into(folder, state)
        self._measure(folder)
        return self.update

    def _index_into(self, folder: Path, state: IndexState | None) -> None:
        after_seq, after_sha = (state.manifest_seq, state.manifest_sha256) if state else (0, None)
        manifests = self._manifests(folder, after_seq, after_sha)
        all_files = committed_files(self.lake, [manifest for manifest, _ in manifests])
        pending = [
            (manifest, digest) for manifest, digest in manifests if manifest["seq"] > after_seq
        ]
        self.purges = PurgeSchedule([manifest for manifest, _ in pending])
        index = open_tantivy(folder, create=True)
        writer = open_writer(index, folder)
        try:
            for chunk in _chunks(pending, self.chunk_rows):
                self._index_chunk(index, writer, folder, all_files, chunk)
            if not pending and state is None:
                # An empty lake still gets an index, so searches report no hits.
                self._commit(writer, folder, after_seq, after_sha)
            writer.garbage_collect_files()
        except (duckdb.IOException, FileNotFoundError) as error:
            writer.rollback()
            raise SearchIndexError(
                f"a file of the lake at {self.lake.location} could not be read while indexing "
                f"({error}). A purge that commits during an update deletes the files it "
                "replaced, so run `m365lake index` again. If it fails the same way, run "
                "`m365lake verify` to check the lake"
            ) from error
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()

    def _manifests(
        self, folder: Path, after_seq: int, after_sha: str | None
    ) -> list[tuple[dict[str, Any], str]]:
        """Read every manifest, checking that the index's last manifest is still in the chain."""
        head = self.log.head()
        if after_seq > head.seq:
            raise SearchIndexError(
                f"the search index at {folder} was built up to commit {after_seq}, but the "
                f"lake at {self.lake.location} ends at commit {head.seq}: the lake was replaced "
                f"or restored from an older copy. {REBUILD_ADVICE}"
            )
        manifests = self.log.read_range(0, None)
        if after_seq:
            digest = manifests[after_seq - 1][1]
            if digest != after_sha:
                raise SearchIndexError(
                    f"the search index at {folder} was built up to commit {after_seq} with "
                    f"SHA-256 {after_sha}, but that commit of the lake at {self.lake.location} "
                    f"now hashes to {digest}: the lake was replaced or altered since. "
                    f"{REBUILD_ADVICE}"
                )
        self.update.manifests = len(manifests) - after_seq
        return manifests

    def _index_chunk(
        self,
        index: tantivy.Index,
        writer: tantivy.IndexWriter,
        folder: Path,
        all_files: Sequence[CommittedFile],
        chunk: Sequence[tuple[dict[str, Any], str]],
    ) -> None:
        last_seq = int(chunk[-1][0]["seq"])
        first_seq = int(chunk[0][0]["seq"])
        files_so_far = [file for file in all_files if file.seq <= last_seq]
        # A purge's copies contain no new rows; the purged partitions are checked below.
        new_files = [file for file in files_so_far if file.seq >= first_seq and not file.purge_copy]
        purged = self.purges.containers(first_seq, last_seq)
        # NOTE: a mailbox, drive or site renamed after its items were indexed keeps its old
        # name in those items' custodian and location until they change again or the
        # index is rebuilt.
        directory = load_directory(self.lake, files_so_far)
        index.reload()
        searcher = index.searcher()
        for table in ITEM_TABLES:
            versions = changed_versions(self.lake, table, files_so_far, new_files)
            self.update.folders_skipped += versions.folders_skipped
            self._write(versions, directory, writer, searcher)
            if table in purged:
                recheck = recheck_containers(
                    self.lake,
                    table,
                    files_so_far,
                    purged[table],
                    versions,
                    searcher,
                    index.schema,
                    partition_of={
                        channel: entry.team_id for channel, entry in directory.channels.items()
                    },
                )
                self._write(recheck.versions, directory, writer, searcher)
                for doc_id in recheck.removed:
                    writer.delete_documents_by_term("doc_id", fields.analyze_keyword(doc_id)[0])
                self.update.documents_removed += len(recheck.removed)
            self._check_lease()
        self._commit(writer, folder, last_seq, chunk[-1][1])
        logger.info("indexed commits %d..%d", first_seq, last_seq)
        if self.progress is not None:
            self.progress(self.update)

    def _write(
        self,
        versions: VersionSet,
        directory: Directory,
        writer: tantivy.IndexWriter,
        searcher: tantivy.Searcher,
    ) -> None:
        for written in index_documents(
            self.lake, versions, directory, self.extractor, writer, searcher
        ):
            self.update.record(written)
            if self.on_document is not None:
                self.on_document(written.document)

    def _commit(
        self, writer: tantivy.IndexWriter, folder: Path, seq: int, sha256: str | None
    ) -> None:
        self._check_lease()
        writer.commit()
        state = IndexState(
            manifest_seq=seq,
            manifest_sha256=sha256,
            schema=schema_digest(),
            updated_at=dt.datetime.now(dt.UTC).isoformat(),
        )
        write_state(folder, state)
        self.update.manifest_seq = seq

    def _check_lease(self) -> None:
        if self.lease_problems:
            raise SearchIndexError(
                f"the search index lease of {self.lake.location} could not be renewed "
                f"({self.lease_problems[0]}), so another writer may have taken it; nothing "
                "after the last commit was kept. Run `m365lake index` again"
            )

    def _measure(self, folder: Path) -> None:
        index = open_tantivy(folder, create=False)
        searcher = index.searcher()
        self.update.documents_total = searcher.num_docs
        partial = tantivy.Query.term_query(index.schema, "partially_indexed", True)
        self.update.partially_indexed_total = count_matches(searcher, partial)
        self.update.index_bytes = folder_bytes(folder)


def count_matches(searcher: tantivy.Searcher, query: tantivy.Query) -> int:
    """Return how many documents match ``query``."""
    # Tantivy's top-docs collector rejects a limit of 0, so one hit is collected too.
    result = searcher.search(query, limit=1, count=True)
    # tantivy-py 0.27's type stubs omit SearchResult.count.
    return int(getattr(result, "count", 0) or 0)


def folder_bytes(folder: Path) -> int:
    """Return the size in bytes of the files in ``folder`` (not recursive)."""
    return sum(entry.stat().st_size for entry in folder.iterdir() if entry.is_file())


def open_writer(index: tantivy.Index, folder: Path) -> tantivy.IndexWriter:
    """Open a writer on ``index``; SearchIndexError when another writer holds Tantivy's lock."""
    try:
        return index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=WRITER_THREADS)
    except ValueError as error:
        if "LockBusy" not in str(error):
            raise SearchIndexError(
                f"could not open a writer on the search index at {folder}: {error}"
            ) from error
        raise SearchIndexError(
            f"another process is writing the search index at {folder} (Tantivy's writer "
            "lock is held). Wait for it to finish, then run the command again"
        ) from error


def _chunks(
    manifests: Sequence[tuple[dict[str, Any], str]], chunk_rows: int
) -> Iterator[list[tuple[dict[str, Any], str]]]:
    """Group consecutive manifests until their item rows reach ``chunk_rows``."""
    chunk: list[tuple[dict[str, Any], str]] = []
    rows = 0
    for manifest, digest in manifests:
        chunk.append((manifest, digest))
        rows += _item_rows(manifest)
        if rows >= chunk_rows:
            yield chunk
            chunk, rows = [], 0
    if chunk:
        yield chunk


def _item_rows(manifest: Mapping[str, Any]) -> int:
    return sum(
        int(entry.get("rows") or 0)
        for entry in manifest.get("files", [])
        if entry.get("table") in ITEM_TABLES
    )


def remove_leftover_folders(lake: Lake) -> int:
    """Delete the rebuild and swap folders that killed rebuilds left; return their count.

    The caller must hold the ``search-index`` lease. Every writer of such a folder holds
    that lease, so no other process is writing one.
    """
    leftovers = [
        entry
        for entry in sorted(lake.local_dir.iterdir())
        if entry.is_dir() and entry.name.startswith((REBUILD_PREFIX, OLD_PREFIX))
    ]
    for entry in leftovers:
        shutil.rmtree(entry)
    if leftovers:
        logger.info(
            "removed %d folder(s) left behind by rebuilds that did not finish: %s",
            len(leftovers),
            ", ".join(entry.name for entry in leftovers),
        )
    return len(leftovers)


def _swap(new: Path, current: Path) -> None:
    """Put the rebuilt index ``new`` in place of ``current``, then remove the old one."""
    old = current.with_name(f"{OLD_PREFIX}{uuid.uuid4().hex[:12]}")
    if current.exists():
        os.replace(current, old)
    os.replace(new, current)
    shutil.rmtree(old, ignore_errors=True)
