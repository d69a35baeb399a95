"""The manifest chain under ``commits/`` and the delta state derived from it.

Manifest ``commits/<seq:010d>.json`` is created exclusively (temp file, fsync and hard
link on a local lake, a conditional upload on object storage). When two writers read the
same head, only one gets the next sequence number, and the other re-reads the head and
tries the following number. Each manifest stores the SHA-256 of the previous manifest's
bytes in ``prev``, which makes the history tamper-evident.

Listing ``commits/`` is the only way to find the manifests, and it is safe even where a
listing may lag behind writes. A commit never relies on it: a head that is too old only
makes the create-if-absent of the next name fail, and the writer retries. Readers
(``head``, ``read_range``, ``check_chain``) list, then probe the names after the largest
listed one with ``exists`` until one is missing, so a lagging listing cannot show them
an old head. A listing that misses a manifest in the middle of the chain shows up as a
gap, which ``verify`` reports instead of skipping over it.

The state (delta tokens and similar) is the fold of every manifest's ``state`` updates in
sequence order. Each manifest also records ``state_sha256``, the hash of the whole state
after it, so a cached fold can be checked against the chain without replaying it.
``state/cache.json`` stores the fold at some sequence number. It is used only while its
values hash to that manifest's ``state_sha256``, and is rebuilt from the manifests otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m365lake.errors import CommitConflictError, LakeIntegrityError
from m365lake.lake.storage import make_private_dirs

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

logger = logging.getLogger(__name__)

COMMIT_DIR = "commits"
STATE_CACHE = "state/cache.json"
LOCAL_STATE_CACHE = "state-cache.json"
MANIFEST_COPIES = "manifests"
"""Folder of local copies of a remote lake's manifests, in the lake's local folder."""
"""The state cache of a lake on object storage, in the lake's local folder."""
_MANIFEST_NAME = re.compile(r"^(\d{10})\.json$")

_VERIFY_ADVICE = "Run `m365lake verify` to check the whole chain."
_STRAY_FILE_ADVICE = (
    f"If it is not a manifest this lake wrote, move it out of {COMMIT_DIR}/; otherwise "
    f"restore it from a copy of the lake. {_VERIFY_ADVICE}"
)


def manifest_name(seq: int) -> str:
    return f"{COMMIT_DIR}/{seq:010d}.json"


def state_digest(values: Mapping[str, Any]) -> str:
    """Return the SHA-256 of the canonical JSON form of a whole state."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Head:
    """The newest manifest: its sequence number and the SHA-256 of its bytes."""

    seq: int
    sha256: str | None


class ManifestLog:
    """Reads and appends the manifest chain of one lake."""

    def __init__(self, storage: Storage, *, max_attempts: int = 200) -> None:
        self._storage = storage
        self._max_attempts = max_attempts
        self._copies_checked = False
        """Whether the local copy of manifest 1 was compared with the store in this process."""

    def sequence_numbers(self) -> list[int]:
        """Return the sequence numbers of the manifests present, in order.

        A listing finds them, and then ``exists`` probes the numbers after the largest
        listed one until one is missing, so a listing that lags behind the newest
        commits does not hide them.
        """
        numbers = []
        for name in self._storage.list_names(COMMIT_DIR):
            match = _MANIFEST_NAME.match(name)
            if match:
                numbers.append(int(match.group(1)))
        numbers.sort()
        following = (numbers[-1] if numbers else 0) + 1
        while self._storage.exists(manifest_name(following)):
            numbers.append(following)
            following += 1
        return numbers

    def head(self) -> Head:
        numbers = self.sequence_numbers()
        if not numbers:
            return Head(0, None)
        seq = numbers[-1]
        data = self._read_bytes(seq, fresh=False)
        return Head(seq, hashlib.sha256(data).hexdigest())

    def read(self, seq: int, *, fresh: bool = False) -> tuple[dict[str, Any], str]:
        """Return one manifest and the SHA-256 of its bytes.

        ``fresh`` reads the stored object even where a local copy exists (verification).
        """
        name = manifest_name(seq)
        data = self._read_bytes(seq, fresh=fresh)
        try:
            manifest = json.loads(data)
        except ValueError as error:
            raise LakeIntegrityError(
                f"manifest {self._storage.url(name)} is not valid JSON ({error}). "
                f"{_STRAY_FILE_ADVICE}"
            ) from error
        if not isinstance(manifest, dict) or manifest.get("seq") != seq:
            recorded = manifest.get("seq") if isinstance(manifest, dict) else None
            raise LakeIntegrityError(
                f"manifest {self._storage.url(name)} records seq {recorded!r} "
                f"but its file name says {seq}. {_STRAY_FILE_ADVICE}"
            )
        return manifest, hashlib.sha256(data).hexdigest()

    def _read_bytes(self, seq: int, *, fresh: bool) -> bytes:
        """Return a manifest's bytes, for a remote lake from its local copy when there is one.

        Every run reads the whole chain to find the live files, and on object storage
        that was one GET per manifest per mailbox. A manifest name is written once and
        never replaced, so a copy stays valid. ``verify`` passes ``fresh`` and so still
        sees a manifest changed in the store.
        """
        name = manifest_name(seq)
        if not self._storage.is_remote:
            return self._storage.read_bytes(name)
        copies = self._storage.local_dir / MANIFEST_COPIES
        if not self._copies_checked:
            self._check_copies(copies)
        copy = copies / name.rsplit("/", 1)[-1]
        if not fresh:
            with contextlib.suppress(FileNotFoundError):
                return copy.read_bytes()
        data = self._storage.read_bytes(name)
        try:
            make_private_dirs(copy.parent)
            temp = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
            temp.write_bytes(data)
            os.replace(temp, copy)
        except OSError as error:
            logger.info("local copy of manifest %s not saved: %s", name, error)
        return data

    def _check_copies(self, copies: Path) -> None:
        """Drop the local manifest copies when the store's first manifest differs from its copy.

        A new lake at the same URL (the prefix emptied and written again) starts another
        chain, and copies of the old one must not stand in for it. One GET per process.
        """
        self._copies_checked = True
        try:
            local = (copies / manifest_name(1).rsplit("/", 1)[-1]).read_bytes()
        except FileNotFoundError:
            return
        try:
            stored: bytes | None = self._storage.read_bytes(manifest_name(1))
        except FileNotFoundError:
            stored = None
        if stored != local:
            logger.info("the manifest chain at %s was replaced", self._storage.location)
            shutil.rmtree(copies, ignore_errors=True)

    def read_range(
        self, after: int, after_sha256: str | None, upto: int | None = None
    ) -> list[tuple[dict[str, Any], str]]:
        """Read manifests ``after+1 .. upto`` (default: the head), checking each prev link.

        ``after_sha256`` is the hash the first manifest read must name as ``prev``; it is
        None when reading from the start of the chain.
        """
        numbers = [n for n in self.sequence_numbers() if n > after]
        if upto is not None:
            numbers = [n for n in numbers if n <= upto]
        expected_seq, expected_prev = after + 1, after_sha256
        result = []
        for seq in numbers:
            if seq != expected_seq:
                raise LakeIntegrityError(self._gap_message(expected_seq, seq))
            manifest, digest = self.read(seq)
            if manifest.get("prev") != expected_prev:
                raise LakeIntegrityError(self._prev_message(seq, manifest, expected_prev))
            result.append((manifest, digest))
            expected_seq, expected_prev = seq + 1, digest
        return result

    def read_all(self) -> list[dict[str, Any]]:
        return [manifest for manifest, _ in self.read_range(0, None)]

    def check_chain(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Read the whole chain, collecting every problem instead of raising at the first.

        Returns the manifests that could be read, in sequence order, and one message per
        gap, unreadable manifest or broken ``prev`` link.
        """
        manifests: list[dict[str, Any]] = []
        problems: list[str] = []
        expected_seq = 1
        # None is a valid expected prev (the first manifest), so a separate flag marks
        # the link after a gap or an unreadable manifest, which cannot be checked.
        expected_prev: str | None = None
        prev_known = True
        for seq in self.sequence_numbers():
            if seq != expected_seq:
                problems.append(self._gap_message(expected_seq, seq))
                prev_known = False
            expected_seq = seq + 1
            try:
                manifest, digest = self.read(seq, fresh=True)
            except LakeIntegrityError as error:
                problems.append(str(error))
                prev_known = False
                continue
            except OSError as error:
                problems.append(
                    f"manifest {self._storage.url(manifest_name(seq))} could not be read: {error}"
                )
                prev_known = False
                continue
            if prev_known and manifest.get("prev") != expected_prev:
                problems.append(self._prev_message(seq, manifest, expected_prev))
            manifests.append(manifest)
            expected_prev, prev_known = digest, True
        return manifests, problems

    def _gap_message(self, missing_seq: int, found_seq: int) -> str:
        found = manifest_name(found_seq)
        return (
            f"the manifest chain of {self._storage.location} has a gap: "
            f"{manifest_name(missing_seq)} is missing but {found} exists. If {found} is "
            f"not a manifest this lake wrote, move it out of {COMMIT_DIR}/; otherwise "
            f"restore the missing manifest from a copy of the lake. {_VERIFY_ADVICE}"
        )

    def _prev_message(self, seq: int, manifest: Mapping[str, Any], expected: str | None) -> str:
        return (
            f"manifest {self._storage.url(manifest_name(seq))} names prev "
            f"{manifest.get('prev')!r} but the previous manifest "
            f"{self._storage.url(manifest_name(seq - 1))} hashes to {expected!r}, so one of "
            "the two was altered. Restore the manifests from a copy of the lake. "
            f"{_VERIFY_ADVICE}"
        )

    def append(
        self,
        body: Mapping[str, Any],
        fields_for_head: Callable[[Head], Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Add a manifest after the current head, retrying when another writer wins a number.

        ``body`` contains every field except ``seq`` and ``prev``, which are filled in here,
        and the fields that depend on the head, which ``fields_for_head`` returns.
        Raises CommitConflictError when every attempt lost the race.
        """
        for attempt in range(1, self._max_attempts + 1):
            head = self.head()
            extra = fields_for_head(head) if fields_for_head else {}
            manifest = {"seq": head.seq + 1, **body, **extra, "prev": head.sha256}
            if self._storage.publish(manifest_name(head.seq + 1), encode_manifest(manifest)):
                return manifest
            logger.debug(
                "commit seq %d was taken by another writer (attempt %d); retrying",
                head.seq + 1,
                attempt,
            )
            # Jitter spreads writers that collided so they do not collide again in lockstep.
            time.sleep(random.uniform(0, 0.002 * min(attempt, 25)))
        raise CommitConflictError(
            f"could not commit run {body.get('run_id')!r}: another writer took the next "
            f"commit number {self._max_attempts} times in a row, so nothing was committed. "
            "Run the same work again."
        )


class StateView:
    """The delta state as of the head manifest, with a rebuildable cache under ``state/``."""

    def __init__(self, storage: Storage, log: ManifestLog) -> None:
        self._storage = storage
        self._log = log
        self._seq = 0
        self._sha256: str | None = None
        self._values: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        """Return the state after the newest manifest."""
        return self.at(self._log.head())

    def at(self, head: Head) -> dict[str, Any]:
        """Return the state after manifest ``head`` (read-only: callers must copy to change it)."""
        if head.seq == self._seq and head.sha256 == self._sha256:
            return self._values
        if head.seq < self._seq or not self._matches(self._seq, self._sha256, self._values):
            self._load_cache(head.seq)
        updates = self._log.read_range(self._seq, self._sha256, upto=head.seq)
        for manifest, digest in updates:
            apply_state_updates(self._values, manifest.get("state") or {})
            self._seq, self._sha256 = manifest["seq"], digest
        if updates:
            last = updates[-1][0]
            if "state_sha256" in last and last["state_sha256"] != state_digest(self._values):
                raise LakeIntegrityError(
                    f"the state folded from manifests 1..{self._seq} does not hash to the "
                    f"state_sha256 that manifest {self._seq} records; the chain is inconsistent"
                )
            self._save_cache()
        return self._values

    def _matches(self, seq: int, sha256: str | None, values: Mapping[str, Any]) -> bool:
        """Return whether ``values`` is the state after manifest ``seq`` with hash ``sha256``."""
        if seq == 0:
            return sha256 is None and not values
        try:
            manifest, actual = self._log.read(seq)
        except (FileNotFoundError, LakeIntegrityError):
            return False
        recorded = manifest.get("state_sha256")
        return actual == sha256 and recorded is not None and recorded == state_digest(values)

    def _load_cache(self, upto: int) -> None:
        self._seq, self._sha256, self._values = 0, None, {}
        try:
            cached = json.loads(self._read_cache())
            seq, sha256, values = cached["seq"], cached["manifest_sha256"], cached["values"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return
        if not isinstance(values, dict) or not isinstance(seq, int) or seq > upto:
            return
        if self._matches(seq, sha256, values):
            self._seq, self._sha256, self._values = seq, sha256, values
        else:
            logger.info(
                "state cache %s does not match the manifests; rebuilding it",
                self._cache_location(),
            )

    def _save_cache(self) -> None:
        payload = {"seq": self._seq, "manifest_sha256": self._sha256, "values": self._values}
        try:
            self._write_cache(json.dumps(payload).encode("utf-8"))
        except OSError as error:
            # The cache only saves replaying manifests, and a read-only lake (a snapshot
            # being verified) cannot take it.
            logger.info("state cache %s not saved: %s", self._cache_location(), error)

    def _cache_location(self) -> str:
        if self._storage.is_remote:
            return str(self._storage.local_dir / LOCAL_STATE_CACHE)
        return self._storage.url(STATE_CACHE)

    def _read_cache(self) -> bytes:
        if self._storage.is_remote:
            return (self._storage.local_dir / LOCAL_STATE_CACHE).read_bytes()
        return self._storage.read_bytes(STATE_CACHE)

    def _write_cache(self, data: bytes) -> None:
        # On object storage every overwrite would keep a new version, locked for as long
        # as the bucket's retention sets, so the cache of a remote lake stays local.
        if self._storage.is_remote:
            target = self._storage.local_dir / LOCAL_STATE_CACHE
            make_private_dirs(target.parent)
            temp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            temp.write_bytes(data)
            os.replace(temp, target)
            return
        self._storage.publish(STATE_CACHE, data, overwrite=True)


def apply_state_updates(values: dict[str, Any], updates: Mapping[str, Any]) -> None:
    for key, value in updates.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
