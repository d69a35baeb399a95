"""A lake-wide reader/writer lease on blobs, so a purge never deletes a blob a backup reuses.

Blobs are content-addressed and written once: a backup that finds a blob already
present references it without writing it again, in a row it commits later. A purge
that decided the blob was unreferenced before that commit would delete it, and the
committed row would point at nothing. Checking blob age cannot rule this out, because
the backup may have found the blob at any time before its commit. So every run that
may reference or read blobs (backups, restores) registers as a *blob user* for its
whole run, and the purge deletes blobs only while it holds the *purge lock* and no
live blob user is registered:

- A blob user publishes ``leases/blobs/users/<token>.json``, then reads the purge lock.
  If a live purge holds it, the user removes its record and waits for the purge.
- A purge publishes ``leases/blobs/purge.json`` (create-if-absent), then lists the blob
  users and waits until none is live before it reads which blobs rows reference.

Each side writes its own file before it reads the other's, so for any interleaving at
least one of them sees the other: the user backs off, or the purge waits. Both wait a
bounded time and then raise ``BlobsInUseError`` naming the runs they waited for.

A record names its owner, host, process id and expiry, renewed while the run lasts.
Renewals and takeovers of the purge lock replace a record only if it is unchanged
since it was read (``leases.renew_record`` and ``leases.take_over``), so a record
removed or taken over as stale is never written back by its former holder.
The record of a killed run stops protecting when it expires (``ttl`` seconds after
its last renewal) or, on the same host, as soon as its process no longer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from m365lake.errors import LakeError, Transient
from m365lake.lake.leases import is_stale, read_record, renew_record, take_over

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

logger = logging.getLogger(__name__)

USERS_DIR = "leases/blobs/users"
PURGE_LOCK = "leases/blobs/purge.json"
# A backup renews every third of this. It is longer than a container lease because a
# blob user whose renewal lags while its process still runs on another host would let
# a purge delete blobs under it.
DEFAULT_TTL_SECONDS = 600.0
# A purge deletes blobs in seconds to minutes, so a backup may wait that long for it.
DEFAULT_USER_WAIT_SECONDS = 900.0
# Backups can run for hours, so a purge that cannot delete blobs in this time leaves
# them for the next purge. Its commit remains.
DEFAULT_PURGE_WAIT_SECONDS = 600.0
POLL_SECONDS = 1.0


class BlobsInUseError(LakeError, Transient):
    """The other side of the blob lease stayed live for the whole wait."""

    def __init__(self, message: str, *, holders: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.holders = holders
        self.files_deleted = 0
        """Files a purge cleanup deleted before it gave up on blobs."""


def _record(token: str, owner: str, ttl: float) -> bytes:
    return json.dumps(
        {
            "token": token,
            "owner": owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "expires_at": time.time() + ttl,
        }
    ).encode()


def _read(storage: Storage, name: str) -> dict[str, Any]:
    try:
        record = json.loads(storage.read_bytes(name))
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(holders: list[dict[str, Any]]) -> str:
    """Return the runs of ``holders`` as ``'owner' (process pid on host)``, comma-separated."""
    return ", ".join(
        f"{holder.get('owner')!r} (process {holder.get('pid')} on {holder.get('host')})"
        for holder in holders
    )


@dataclass
class BlobUse:
    """A registered blob user; ``renew`` before ``ttl`` runs out, ``release`` when done."""

    storage: Storage
    name: str
    token: str
    owner: str
    ttl: float

    def renew(self) -> None:
        record = _record(self.token, self.owner, self.ttl)
        if not renew_record(self.storage, self.name, self.token, record):
            raise LakeError(
                f"the blob-user lease of run {self.owner!r} was removed as stale; a purge "
                "may have deleted blobs this run references. Run `m365lake verify` after it"
            )

    def release(self) -> None:
        self.storage.remove(self.name)

    async def keep_renewed(self) -> None:
        """Renew every third of the lease's lifetime until the task is cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await asyncio.to_thread(self.renew)
            except (LakeError, OSError) as error:
                logger.error("could not renew blob-user lease %s: %s", self.name, error)


def register_blob_user(
    storage: Storage,
    *,
    owner: str,
    ttl: float = DEFAULT_TTL_SECONDS,
    wait_seconds: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> BlobUse:
    """Register ``owner`` as a blob user, waiting while a live purge deletes blobs.

    Raises BlobsInUseError when a purge still holds the purge lock after
    ``wait_seconds`` (default ``DEFAULT_USER_WAIT_SECONDS``).
    """
    if wait_seconds is None:
        wait_seconds = DEFAULT_USER_WAIT_SECONDS
    token = uuid.uuid4().hex
    use = BlobUse(storage, f"{USERS_DIR}/{token}.json", token, owner, ttl)
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        # The name carries a fresh token, so this create-if-absent cannot collide with
        # another run; it only fails if the store fails.
        storage.publish(use.name, _record(token, owner, ttl))
        purge = _read(storage, PURGE_LOCK)
        if not purge or is_stale(purge):
            return use
        use.release()
        if time.monotonic() >= deadline:
            raise BlobsInUseError(
                f"run {owner!r} cannot use blobs: purge {describe([purge])} is deleting "
                f"blobs and did not finish within {wait_seconds:.0f} s. Run again when it has "
                "finished; if that process is gone, its lock expires by itself",
                holders=[purge],
            )
        if not announced:
            logger.info("run %s waits for purge %s to delete blobs", owner, describe([purge]))
            announced = True
        time.sleep(poll_seconds)


@contextlib.contextmanager
def blob_user(storage: Storage, *, owner: str, **options: float) -> Iterator[BlobUse]:
    """Hold a blob-user lease for the block, renewed in a thread."""
    use = register_blob_user(storage, owner=owner, **options)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(use.ttl / 3):
            try:
                use.renew()
            except (LakeError, OSError) as error:
                logger.error("could not renew blob-user lease %s: %s", use.name, error)

    renewer = threading.Thread(target=renew, name="blob-user-lease", daemon=True)
    renewer.start()
    try:
        yield use
    finally:
        stop.set()
        renewer.join()
        use.release()


@contextlib.asynccontextmanager
async def blob_user_async(
    storage: Storage, *, owner: str, **options: float
) -> AsyncIterator[BlobUse]:
    """Hold a blob-user lease for the block, renewed by an asyncio task."""
    use = await asyncio.to_thread(register_blob_user, storage, owner=owner, **options)
    renewal = asyncio.ensure_future(use.keep_renewed())
    try:
        yield use
    finally:
        renewal.cancel()
        await asyncio.to_thread(use.release)


def live_blob_users(storage: Storage) -> list[dict[str, Any]]:
    """Return the records of live blob users; remove those of runs that died."""
    live = []
    for name in storage.list_names(USERS_DIR):
        relative = f"{USERS_DIR}/{name}"
        record = _read(storage, relative)
        if not record:
            continue
        if is_stale(record):
            logger.info("removing the stale blob-user lease of run %s", record.get("owner"))
            storage.remove(relative)
            continue
        live.append(record)
    return live


def _take_purge_lock(storage: Storage, token: str, owner: str, ttl: float) -> None:
    if storage.publish(PURGE_LOCK, _record(token, owner, ttl)):
        return
    holder, tag = read_record(storage, PURGE_LOCK)
    if holder and not is_stale(holder):
        raise BlobsInUseError(
            f"another purge, {describe([holder])}, is deleting blobs; run this one after it",
            holders=[holder],
        )
    logger.info("taking over the stale purge lock of run %s", holder.get("owner"))
    if not take_over(storage, PURGE_LOCK, _record(token, owner, ttl), tag):
        winner, _ = read_record(storage, PURGE_LOCK)
        raise BlobsInUseError(
            f"another purge, {describe([winner])}, took over the stale purge lock at the "
            "same moment; run this one after it",
            holders=[winner],
        )


@dataclass
class PurgeLock:
    """The held purge lock; call ``keep_alive`` between deletions of a long run."""

    storage: Storage
    token: str
    owner: str
    ttl: float
    renewed: float = 0.0

    def keep_alive(self) -> None:
        """Renew the lock once a third of its lifetime has passed since the last renewal."""
        if time.monotonic() - self.renewed < self.ttl / 3:
            return
        record = _record(self.token, self.owner, self.ttl)
        if not renew_record(self.storage, PURGE_LOCK, self.token, record):
            raise LakeError(
                f"the purge lock of {self.owner!r} was taken over while it deleted blobs; "
                "stop, and run the purge again"
            )
        self.renewed = time.monotonic()


@contextlib.contextmanager
def exclusive_blobs(
    storage: Storage,
    *,
    owner: str,
    ttl: float = DEFAULT_TTL_SECONDS,
    wait_seconds: float = DEFAULT_PURGE_WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[PurgeLock]:
    """Hold the purge lock with no live blob user, for deleting unreferenced blobs.

    Waits up to ``wait_seconds`` for the registered blob users to finish, then raises
    BlobsInUseError naming them. New blob users wait while the lock is held.
    """
    token = uuid.uuid4().hex
    _take_purge_lock(storage, token, owner, ttl)
    lock = PurgeLock(storage, token, owner, ttl, renewed=time.monotonic())
    try:
        deadline = time.monotonic() + wait_seconds
        announced = False
        while users := live_blob_users(storage):
            if time.monotonic() >= deadline:
                raise BlobsInUseError(
                    f"purge {owner!r} did not delete blobs: runs {describe(users)} were still "
                    f"using blobs after {wait_seconds:.0f} s. The purge's commit remains, and "
                    "the next purge deletes its blobs. Run a purge again when these runs "
                    "have finished",
                    holders=users,
                )
            if not announced:
                logger.info("purge %s waits for blob users %s", owner, describe(users))
                announced = True
            time.sleep(poll_seconds)
            lock.keep_alive()
        yield lock
    finally:
        # NOTE: as with container leases, the token check and the removal are two
        # requests, so a purge whose lock expired just before this point can remove the
        # lock of a purge that took it over.
        if _read(storage, PURGE_LOCK).get("token") == token:
            storage.remove(PURGE_LOCK)
