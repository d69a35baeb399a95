"""The lake: Parquet tables, blobs and the manifest chain under one root folder."""

from __future__ import annotations

import copy
import json
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from m365lake.errors import LakeError, LakeIntegrityError, LakeKeyError, LakeNotFoundError
from m365lake.lake.blobs import BlobStore, ContentRef, sha256_hex
from m365lake.lake.commits import COMMIT_DIR, Head, ManifestLog, StateView
from m365lake.lake.encryption import load_keyring
from m365lake.lake.leases import Lease, acquire_lease
from m365lake.lake.storage import LocalStorage, make_private_dirs, open_storage
from m365lake.lake.tables import SCHEMAS
from m365lake.lake.transaction import Transaction

if TYPE_CHECKING:
    from m365lake.lake.object_store import ObjectStorage
    from m365lake.lake.storage import Storage

logger = logging.getLogger(__name__)

# bench/inline_threshold.py: 1 MiB stored Enron mail in 0.406 of raw, 30 files (64 KiB: 0.409, 55).
DEFAULT_INLINE_THRESHOLD = 1024 * 1024
DEFAULT_FLUSH_ROWS = 50_000
DEFAULT_FLUSH_BYTES = 32 * 1024 * 1024

_LAYOUT = ("tables", "blobs/sha256", COMMIT_DIR, "state")


class LiveFile(NamedTuple):
    """A committed file that no purge removed, with its place in the manifest chain."""

    seq: int
    position: int
    """Index of the file in its manifest's ``files``."""
    run_id: str
    entry: dict[str, Any]
    """The manifest entry: path, table, sha256, bytes, rows, partition."""


def _removed(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return a manifest's ``removed`` section, which only purge commits have."""
    section = manifest.get("removed") or {}
    return {
        "files": list(section.get("files") or []),
        "blob_candidates": list(section.get("blob_candidates") or []),
    }


def _check_removals(manifests: list[dict[str, Any]]) -> tuple[dict[str, int], list[str]]:
    """Return removed path → purge commit, and one message per removal no earlier commit backs."""
    listed: dict[str, dict[str, Any]] = {}
    removed: dict[str, int] = {}
    problems = []
    for manifest in manifests:
        for entry in _removed(manifest)["files"]:
            path = entry.get("path")
            original = listed.get(path) if isinstance(path, str) else None
            if original is None:
                problems.append(
                    f"purge commit {manifest['seq']} removes file {path}, which no earlier "
                    "commit lists: the manifest was altered"
                )
                continue
            if original.get("sha256") != entry.get("sha256"):
                problems.append(
                    f"purge commit {manifest['seq']} removes file {path} with SHA-256 "
                    f"{entry.get('sha256')}, but the commit that added it records "
                    f"{original.get('sha256')}: the manifest was altered"
                )
            removed[path] = manifest["seq"]
        for entry in manifest.get("files", []):
            listed[entry["path"]] = entry
    return removed, problems


_warned_shared: set[Path] = set()


def _warn_if_shared(root: Path) -> None:
    """Log a warning, once per folder, when other users of this machine can read the lake."""
    if root in _warned_shared:
        return
    try:
        mode = root.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        _warned_shared.add(root)
        logger.warning(
            "the lake folder %s is open to other users of this machine (mode %o), and it "
            "holds mail and files: run `chmod 700 %s`",
            root,
            mode,
            root,
        )


LAKE_MARKER = f"{COMMIT_DIR}/lake.json"
"""The object that makes a prefix of an object store a lake before its first commit."""


def _open_folder(storage: LocalStorage, *, create: bool) -> None:
    if storage.root.exists() and not storage.root.is_dir():
        raise LakeError(
            f"lake location {storage.root} is a file, not a folder: point it at the "
            "lake's folder, or at a new folder to create a lake there"
        )
    if storage.is_dir(COMMIT_DIR):
        _warn_if_shared(storage.root)
        return
    if not create:
        raise LakeNotFoundError(
            f"no lake at {storage.root}: the folder has no {COMMIT_DIR}/ directory. "
            "Check the path, or open it with create=True to start a new lake.",
            root=str(storage.root),
        )
    try:
        make_private_dirs(storage.root)
        for directory in _LAYOUT:
            storage.make_dirs(directory)
    except OSError as error:
        raise LakeError(
            f"could not create a lake at {storage.root}: {error}. Choose a folder "
            "you can write to, or fix the permissions of this one"
        ) from error
    logger.info("created lake at %s", storage.root)


def _open_prefix(storage: ObjectStorage, *, create: bool) -> None:
    """Check that a prefix of an object store contains a lake, or mark it as one."""
    # Imported here: the cloud SDKs take half a second to import, which local lakes skip.
    from m365lake.lake.object_store import STORE_ERRORS

    try:
        if storage.exists(LAKE_MARKER) or storage.list_names(COMMIT_DIR):
            return
        if not create:
            raise LakeNotFoundError(
                f"no lake at {storage.location}: nothing is stored under "
                f"{storage.url(COMMIT_DIR)}. Check the URL, or open it with create=True "
                "to start a new lake.",
                root=storage.location,
            )
        marker = json.dumps({"format": "m365lake", "version": 1}).encode("utf-8")
        storage.publish(LAKE_MARKER, marker)
    except STORE_ERRORS as error:
        raise LakeError(
            f"could not open the lake at {storage.location}: {error}. Check the bucket or "
            "container name and the credentials in the environment (AWS_* for S3, "
            "AZURE_STORAGE_* for Azure)"
        ) from error
    logger.info("created lake at %s", storage.location)


class Lake:
    """A lake root: open it, store content, write through transactions, read committed state."""

    def __init__(
        self,
        storage: Storage,
        *,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> None:
        if inline_threshold < 0:
            raise ValueError("inline_threshold must be zero or more bytes")
        self.storage = storage
        self.location = storage.location
        """The lake's folder path or object storage URL, as messages name the lake."""
        self.local_dir = storage.local_dir
        """Local folder for what derives from the lake: the search index, the SQL catalog.

        The lake folder itself for a local lake; a cache folder for one on object storage.
        """
        self.keys = load_keyring()
        """Encryption keys: the current one encrypts new blobs, and every loaded one decrypts."""
        self.blobs = BlobStore(storage, keys=self.keys)
        self.inline_threshold = inline_threshold
        """Size limit in bytes for content stored inline in Parquet; larger content is a blob."""
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self._log = ManifestLog(storage)
        self._state = StateView(storage, self._log)

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        create: bool = True,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> Lake:
        """Open the lake at ``location``, creating its layout if ``create``.

        ``location`` is a local folder or an object storage URL (``s3://bucket/prefix``,
        ``az://container/prefix``) whose credentials come from the cloud's usual
        environment variables.
        """
        storage = open_storage(location)
        if isinstance(storage, LocalStorage):
            _open_folder(storage, create=create)
        else:
            _open_prefix(storage, create=create)
        return cls(
            storage,
            inline_threshold=inline_threshold,
            flush_rows=flush_rows,
            flush_bytes=flush_bytes,
        )

    def __repr__(self) -> str:
        return f"Lake({self.location!r})"

    @property
    def root(self) -> Path:
        """The lake folder of a local lake.

        Raises LakeError for a lake on object storage, which has no folder: name it by
        ``location`` and keep local files in ``local_dir``.
        """
        if isinstance(self.storage, LocalStorage):
            return self.storage.root
        raise LakeError(
            f"the lake at {self.location} is on object storage and has no local folder; "
            "this operation needs a lake in a local folder"
        )

    @property
    def is_remote(self) -> bool:
        """Whether the lake is on object storage rather than in a local folder."""
        return self.storage.is_remote

    def acquire_lease(self, container: str, *, owner: str) -> Lease:
        """Take the advisory lease that lets one writer at a time work on ``container``."""
        return acquire_lease(self.storage, container, owner=owner)

    def check_writable(self) -> None:
        """Raise LakeError unless a file can be created and removed in each lake folder.

        A writer calls this before it downloads anything, so a read-only lake fails at once
        instead of after the downloads.
        """
        self.storage.check_writable(_LAYOUT)

    def store_content(self, data: bytes) -> ContentRef:
        """Return a reference to ``data``: inline when small, otherwise written as a blob."""
        if len(data) <= self.inline_threshold:
            return ContentRef(sha256_hex(data), len(data), data)
        digest, created = self.blobs.store(data)
        return ContentRef(digest, len(data), None, created)

    def read_content(self, sha256: str, inline: bytes | None) -> bytes:
        """Return content by hash, from ``inline`` if given, else from the blob store.

        Inline bytes are hashed too, so damaged Parquet content raises LakeIntegrityError
        just as a damaged blob does.
        """
        if inline is None:
            return self.blobs.read(sha256)
        actual = sha256_hex(inline)
        if actual != sha256:
            raise LakeIntegrityError(
                f"inline content recorded as {sha256} hashes to {actual}; "
                "the Parquet file holding it was damaged or altered"
            )
        return inline

    def begin(
        self,
        *,
        run_id: str,
        kind: str,
        container: str | None,
        flush_rows: int | None = None,
        flush_bytes: int | None = None,
    ) -> Transaction:
        """Start a transaction; nothing it writes is visible until ``commit()``."""
        return Transaction(
            self.storage,
            self._log,
            self._state,
            run_id=run_id,
            kind=kind,
            container=container,
            flush_rows=self.flush_rows if flush_rows is None else flush_rows,
            flush_bytes=self.flush_bytes if flush_bytes is None else flush_bytes,
            keys=self.keys,
        )

    def state(self, key: str) -> Any | None:
        """Return the latest committed value of a state key, or None."""
        return copy.deepcopy(self._state.current().get(key))

    def state_items(self, prefix: str) -> dict[str, Any]:
        """Return every committed state key starting with ``prefix`` and its value."""
        values = self._state.current()
        return {
            key: copy.deepcopy(value)
            for key, value in sorted(values.items())
            if key.startswith(prefix)
        }

    def head(self) -> Head:
        """Return the sequence number and SHA-256 of the newest manifest (0 and None if none)."""
        return self._log.head()

    def manifests(self) -> list[dict[str, Any]]:
        """Return every manifest in sequence order, checking the prev-hash chain."""
        return self._log.read_all()

    def check_chain(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Read every manifest; return the readable ones and one message per broken link or gap."""
        return self._log.check_chain()

    def check_commit_files(
        self, manifest: dict[str, Any], manifests: list[dict[str, Any]]
    ) -> tuple[int, list[str]]:
        """Rehash the files ``manifest`` lists that no purge in ``manifests`` removed.

        ``manifests`` may be those ``check_chain`` could read, so this works on a broken
        chain too. Returns the number of files checked and one message per missing or
        changed file.
        """
        removed = {entry["path"] for other in manifests for entry in _removed(other)["files"]}
        entries = [entry for entry in manifest.get("files", []) if entry["path"] not in removed]
        problems = []
        for entry in entries:
            problem = self._check_committed_file(manifest["seq"], entry)
            if problem is not None:
                problems.append(problem)
        return len(entries), problems

    def committed_files(self, table: str) -> list[Path]:
        """Return the local paths of ``table``'s committed Parquet files in commit order.

        Only a local lake has them (LakeError otherwise).

        Files that a later purge removed are left out. To read them, pass
        ``committed_entries`` to ``m365lake.lake.reading``: a file may be encrypted.
        """
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; the lake has: {', '.join(sorted(SCHEMAS))}")
        return [
            self.root / item.entry["path"]
            for item in self.live_files()
            if item.entry.get("table") == table
        ]

    def committed_entries(self, table: str) -> list[dict[str, Any]]:
        """Return the manifest entries of ``table``'s committed files in commit order.

        Files that a later purge removed are left out. Read the files through
        ``m365lake.lake.reading``, which needs the entries for their key ids.
        """
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; the lake has: {', '.join(sorted(SCHEMAS))}")
        return [item.entry for item in self.live_files() if item.entry.get("table") == table]

    def live_files(self) -> list[LiveFile]:
        """Return every committed file that no later purge removed, in commit order."""
        manifests = self.manifests()
        removed = {entry["path"] for manifest in manifests for entry in _removed(manifest)["files"]}
        return [
            LiveFile(manifest["seq"], index, manifest["run_id"], entry)
            for manifest in manifests
            for index, entry in enumerate(manifest.get("files", []))
            if entry["path"] not in removed
        ]

    def removed_files(self) -> dict[str, int]:
        """Return each file path a purge removed, with the sequence number of that purge."""
        return {
            entry["path"]: manifest["seq"]
            for manifest in self.manifests()
            for entry in _removed(manifest)["files"]
        }

    def removed_blob_candidates(self) -> set[str]:
        """Return the content hashes that purges listed as possibly no longer referenced."""
        return {
            digest
            for manifest in self.manifests()
            for digest in _removed(manifest)["blob_candidates"]
        }

    def verify(
        self, *, blobs: bool = True, blob_sample: int | None = None, seed: int | None = None
    ) -> dict[str, int]:
        """Recompute the manifest chain, every committed file hash and, optionally, blobs.

        With ``blob_sample`` set, only that many blobs, drawn at random, are read back
        instead of all of them. ``seed`` makes the draw repeatable, and the seed used is
        returned as ``blob_seed``. Everything is checked before anything is raised:
        LakeIntegrityError lists every problem found, one per line and in its
        ``problems`` attribute. Returns the counts of manifests, files and blobs checked.
        """
        counts, problems = self.check(blobs=blobs, blob_sample=blob_sample, seed=seed)
        if problems:
            raise LakeIntegrityError(
                f"the lake at {self.location} failed verification with {len(problems)} "
                "problem(s):\n" + "\n".join(problems),
                problems=problems,
            )
        return counts

    def check(
        self, *, blobs: bool = True, blob_sample: int | None = None, seed: int | None = None
    ) -> tuple[dict[str, int], list[str]]:
        """Run the checks of ``verify`` and return the counts and the problems found."""
        manifests, problems = self._log.check_chain()
        removed, removal_problems = _check_removals(manifests)
        problems.extend(removal_problems)
        files = 0
        for manifest in manifests:
            for entry in manifest.get("files", []):
                if entry["path"] in removed:
                    problems.extend(self._check_removed_file(manifest["seq"], entry, removed))
                    continue
                files += 1
                problem = self._check_committed_file(manifest["seq"], entry)
                if problem is not None:
                    problems.append(problem)
        counts = {"manifests": len(manifests), "files": files, "blobs": 0}
        if blobs and blob_sample is None:
            counts["blobs"], blob_problems = self.blobs.check_all()
            problems.extend(blob_problems)
        elif blobs and blob_sample is not None:
            sample_counts, blob_problems = self._check_blob_sample(blob_sample, seed)
            counts.update(sample_counts)
            problems.extend(blob_problems)
        return counts, problems

    def _check_blob_sample(self, sample: int, seed: int | None) -> tuple[dict[str, int], list[str]]:
        """Read back ``sample`` blobs drawn at random; return counts and problems."""
        if sample < 0:
            raise ValueError("the blob sample size must be zero or more")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        stored = sorted(self.blobs.iter_hashes())
        chosen = random.Random(seed).sample(stored, min(sample, len(stored)))
        problems = []
        for digest in chosen:
            try:
                self.blobs.read(digest)
            except (LakeIntegrityError, LakeKeyError) as error:
                problems.append(str(error))
            except OSError as error:
                problems.append(f"blob {digest} could not be read: {error}")
        counts = {"blobs": len(chosen), "blobs_stored": len(stored), "blob_seed": seed}
        return counts, problems

    def _check_removed_file(
        self, seq: int, entry: dict[str, Any], removed: dict[str, int]
    ) -> list[str]:
        path = entry["path"]
        if not self.storage.exists(path):
            return []
        locked = None
        if self.storage.is_remote:
            from m365lake.lake.object_store import ObjectStorage

            if isinstance(self.storage, ObjectStorage):
                locked = self.storage.lock_status(path)
        if locked is not None:
            # S3 Object Lock keeps it, as intended: the purge reported it and retries it.
            # A warning, so that the verify command shows it without --verbose.
            logger.warning(
                "file %s removed by purge commit %d is pending deletion: %s",
                path,
                removed[path],
                locked.describe(),
            )
            return []
        return [
            f"file {path} listed in commit {seq} was removed by purge commit {removed[path]} "
            "but is still present: the purge did not finish, so run the purge again "
            "(m365lake retention purge --apply) to delete it"
        ]

    def _check_committed_file(self, seq: int, entry: dict[str, Any]) -> str | None:
        """Return a message when a file that manifest ``seq`` lists is missing or changed."""
        path = entry["path"]
        try:
            digest, size = self.storage.hash_file(path)
        except FileNotFoundError:
            return f"file {path} listed in commit {seq} is missing"
        except OSError as error:
            return f"file {path} listed in commit {seq} could not be read: {error}"
        if digest != entry["sha256"] or size != entry["bytes"]:
            return (
                f"file {path} listed in commit {seq} hashes to {digest} ({size} bytes) but "
                f"the manifest records {entry['sha256']} ({entry['bytes']} bytes)"
            )
        return None
