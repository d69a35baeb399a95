"""Advisory leases: one writer per container (mailbox, drive) at a time.

Two backups of the same mailbox would download everything twice, and the later
commit is rejected anyway (see ``Transaction``), so the second writer should not
start. A lease is a small JSON file under ``leases/`` naming its holder and an
expiry. It is advisory: correctness still rests on the commit check, and a lease
only saves the wasted work.

A holder that died is detected two ways: its lease expires (``ttl`` seconds after
the last renewal), or, on the same host, its process id no longer runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from m365lake.errors import LakeError, Transient

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

log = logging.getLogger(__name__)

LEASE_DIR = "leases"
DEFAULT_TTL_SECONDS = 120.0


class LeaseHeldError(LakeError, Transient):
    """Another live writer holds the container's lease."""

    def __init__(self, message: str, *, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lease_name(container: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in container)
    return f"{LEASE_DIR}/{safe}.json"


@dataclass
class Lease:
    """A held lease; ``renew`` before ``ttl`` runs out, ``release`` when done."""

    storage: Storage
    name: str
    token: str
    ttl: float
    owner: str

    def _record(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "expires_at": time.time() + self.ttl,
            }
        ).encode()

    def renew(self) -> None:
        if _read(self.storage, self.name).get("token") != self.token:
            raise LakeError(f"lease {self.name} was taken over by another writer")
        self.storage.publish(self.name, self._record(), overwrite=True)

    def release(self) -> None:
        if _read(self.storage, self.name).get("token") == self.token:
            self.storage.remove(self.name)

    async def keep_renewed(self) -> None:
        """Renew the lease every third of its lifetime until the task is cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            await asyncio.to_thread(self.renew)


def _read(storage: Storage, name: str) -> dict[str, Any]:
    try:
        record = json.loads(storage.read_bytes(name))
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def is_stale(record: dict[str, Any]) -> bool:
    if not record:
        return True
    if float(record.get("expires_at", 0)) < time.time():
        return True
    # NOTE: two containers that share a host name but not a process namespace find each
    # other's process ids dead. Their leases then protect only until they expire.
    same_host = record.get("host") == socket.gethostname()
    return same_host and not _process_alive(int(record.get("pid", 0)))


def acquire_lease(
    storage: Storage, container: str, *, owner: str, ttl: float = DEFAULT_TTL_SECONDS
) -> Lease:
    """Take the lease on ``container`` or raise LeaseHeldError naming the holder."""
    name = _lease_name(container)
    lease = Lease(storage, name, uuid.uuid4().hex, ttl, owner)
    if storage.publish(name, lease._record()):
        return lease
    holder = _read(storage, name)
    if not is_stale(holder):
        raise LeaseHeldError(
            f"{container} is being archived by run {holder.get('owner')!r} "
            f"(process {holder.get('pid')} on {holder.get('host')}); its lease expires in "
            f"{max(0.0, float(holder.get('expires_at', 0)) - time.time()):.0f} s",
            holder=holder,
        )
    log.info("taking over the stale lease of %s from run %s", container, holder.get("owner"))
    storage.publish(name, lease._record(), overwrite=True)
    # Two writers can take over the same stale lease at once. The last write wins,
    # and the other finds a foreign token here.
    if _read(storage, name).get("token") != lease.token:
        raise LeaseHeldError(f"{container} was taken over by another writer", holder=holder)
    return lease
