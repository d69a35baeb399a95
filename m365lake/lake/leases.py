"""Advisory leases: one writer per container (mailbox, drive) at a time.

Two backups of the same mailbox would download everything twice, and the later
commit is rejected anyway (see ``Transaction``), so the second writer should not
start. A lease is a small JSON file under ``leases/`` naming its holder and an
expiry. It is advisory: correctness still rests on the commit check, and a lease
only saves the wasted work.

A holder that died is detected two ways: its lease expires (``ttl`` seconds after
the last renewal), or, on the same host, its process id no longer runs.

Renewals and takeovers replace the record only if it is unchanged since it was read
(``read_tagged`` and ``replace_if_unchanged``: an ETag with If-Match on object storage,
a content hash checked under a file lock on a local lake). So when two writers take
over the same stale lease, or a holder renews while another takes over, one wins and
the other gets LeaseHeldError or LeaseLostError. Only a new lease is written with
create-if-absent.
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


class LeaseLostError(LakeError):
    """A renewal found that another writer had taken over the expired lease."""


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
        """Extend the lease by ``ttl``, or raise LeaseLostError if another writer took it over."""
        if not renew_record(self.storage, self.name, self.token, self._record()):
            raise LeaseLostError(
                f"the lease {self.storage.url(self.name)} of run {self.owner!r} was taken "
                "over by another writer, or removed, after it expired, so two writers may "
                "now work on the same container. Stop this run; the other writer's commit stands"
            )

    def release(self) -> None:
        # NOTE: the token check and the removal are two requests, so a holder that
        # releases just as its expired lease is taken over removes the new holder's
        # lease. A conditional delete (S3 DeleteObject If-Match) would close that gap.
        if _read(self.storage, self.name).get("token") == self.token:
            self.storage.remove(self.name)

    async def keep_renewed(self) -> None:
        """Renew the lease every third of its lifetime until the task is cancelled."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            await asyncio.to_thread(self.renew)


def _read(storage: Storage, name: str) -> dict[str, Any]:
    try:
        return _parse(storage.read_bytes(name))
    except FileNotFoundError:
        return {}


def _parse(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def read_record(storage: Storage, name: str) -> tuple[dict[str, Any], str | None]:
    """Return a lease record and its tag for ``replace_if_unchanged``, or ({}, None) if absent.

    A record that is not a JSON object reads as {} with its tag, so it can be taken over.
    """
    try:
        data, tag = storage.read_tagged(name)
    except FileNotFoundError:
        return {}, None
    return _parse(data), tag


def renew_record(storage: Storage, name: str, token: str, record: bytes) -> bool:
    """Replace the record ``name`` by ``record`` if it still carries ``token``.

    Return False when another holder's record replaced it, or it was removed. The
    replacement is conditional on the tag read with the token, so a takeover between
    the read and the write makes it fail instead of being overwritten.
    """
    current, tag = read_record(storage, name)
    if tag is None or current.get("token") != token:
        return False
    return storage.replace_if_unchanged(name, record, tag)


def take_over(storage: Storage, name: str, record: bytes, seen_tag: str | None) -> bool:
    """Replace the stale record ``name`` that was read with ``seen_tag`` by ``record``.

    Return False when another writer changed it first: of several writers taking
    over the same stale record, exactly one succeeds. A record removed since it was
    read is claimed again with create-if-absent, which also has one winner.
    """
    if seen_tag is None:
        return storage.publish(name, record)
    return storage.replace_if_unchanged(name, record, seen_tag)


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
    holder, tag = read_record(storage, name)
    if not is_stale(holder):
        raise LeaseHeldError(
            f"{container} is being archived by run {holder.get('owner')!r} "
            f"(process {holder.get('pid')} on {holder.get('host')}); its lease expires in "
            f"{max(0.0, float(holder.get('expires_at', 0)) - time.time()):.0f} s",
            holder=holder,
        )
    log.info("taking over the stale lease of %s from run %s", container, holder.get("owner"))
    if not take_over(storage, name, lease._record(), tag):
        winner, _ = read_record(storage, name)
        raise LeaseHeldError(
            f"{container} was taken over by run {winner.get('owner')!r} "
            f"(process {winner.get('pid')} on {winner.get('host')}) at the same moment; "
            "this run leaves the container to it",
            holder=winner,
        )
    return lease
