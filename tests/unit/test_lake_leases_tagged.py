"""Conditional replacement on a local lake, and leases that rely on it under races.

``check_takeover_race`` and ``check_purge_takeover_race`` are shared with the object storage tests,
which run the same races against moto's S3 server and Azurite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from m365lake.lake.blob_users import PURGE_LOCK, BlobsInUseError, exclusive_blobs
from m365lake.lake.leases import (
    Lease,
    LeaseHeldError,
    LeaseLostError,
    _lease_name,
    acquire_lease,
)
from m365lake.lake.storage import REPLACE_LOCK, LocalStorage

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

ResultT = TypeVar("ResultT")


class GatedLocalStorage(LocalStorage):
    """A LocalStorage whose first two ``read_tagged`` calls wait for each other.

    Both racers then hold the same tag before either replaces the record, which is the
    interleaving where a blind overwrite would let both believe they won.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = TagGate()

    def read_tagged(self, relative: str) -> tuple[bytes, str]:
        result = super().read_tagged(relative)
        self.gate.wait()
        return result


class TagGate:
    """A barrier for the first two callers; later callers pass straight through."""

    def __init__(self) -> None:
        self._barrier = threading.Barrier(2, timeout=30)
        self._lock = threading.Lock()
        self._callers = 0

    def wait(self) -> None:
        with self._lock:
            self._callers += 1
            gated = self._callers <= 2
        if gated:
            self._barrier.wait()


def expire(storage: Storage, name: str) -> None:
    """Make the record ``name`` look like one of a dead holder on another host."""
    record = json.loads(storage.read_bytes(name))
    record["expires_at"] = time.time() - 1
    record["host"] = "another-host"
    storage.publish(name, json.dumps(record).encode(), overwrite=True)


def run_both(attempt: Callable[[str], ResultT]) -> dict[str, ResultT | BaseException]:
    """Run ``attempt("a")`` and ``attempt("b")`` in two threads; return result or error."""
    outcomes: dict[str, ResultT | BaseException] = {}

    def run(owner: str) -> None:
        try:
            outcomes[owner] = attempt(owner)
        except BaseException as error:
            outcomes[owner] = error

    threads = [threading.Thread(target=run, args=(owner,)) for owner in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def race_takeover(storage: Storage) -> tuple[Lease, Lease, BaseException]:
    """Let two writers take over one expired lease at once.

    Returns the expired holder's lease, the winner's lease and the loser's error.
    """
    expired = acquire_lease(storage, "mail-u1", owner="expired")
    expire(storage, _lease_name("mail-u1"))

    outcomes = run_both(lambda owner: acquire_lease(storage, "mail-u1", owner=owner))

    winners = [value for value in outcomes.values() if isinstance(value, Lease)]
    errors = [value for value in outcomes.values() if isinstance(value, BaseException)]
    assert len(winners) == 1, outcomes
    assert len(errors) == 1, outcomes
    return expired, winners[0], errors[0]


def check_takeover_race(storage: Storage) -> None:
    expired, winner, error = race_takeover(storage)

    assert isinstance(error, LeaseHeldError)
    assert f"run {winner.owner!r}" in str(error)
    record = json.loads(storage.read_bytes(_lease_name("mail-u1")))
    assert record["token"] == winner.token
    with pytest.raises(LeaseLostError, match="taken over by another writer"):
        expired.renew()
    winner.renew()
    assert json.loads(storage.read_bytes(_lease_name("mail-u1")))["token"] == winner.token


def check_purge_takeover_race(storage: Storage) -> None:
    storage.publish(PURGE_LOCK, json.dumps({"token": "dead", "owner": "dead"}).encode())
    expire(storage, PURGE_LOCK)

    def purge(owner: str) -> str:
        with exclusive_blobs(storage, owner=owner, wait_seconds=5, poll_seconds=0.05):
            return owner

    outcomes = run_both(purge)

    winners = [value for value in outcomes.values() if isinstance(value, str)]
    errors = [value for value in outcomes.values() if isinstance(value, BaseException)]
    assert len(winners) == 1, outcomes
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], BlobsInUseError)
    assert "took over the stale purge lock at the same moment" in str(errors[0])


@pytest.fixture
def storage(tmp_path: Path) -> GatedLocalStorage:
    root = tmp_path / "lake"
    root.mkdir()
    return GatedLocalStorage(root)


def test_replace_needs_current_tag(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("leases/writer.json", b"holder a")
    _, seen_by_a = storage.read_tagged("leases/writer.json")
    _, seen_by_b = storage.read_tagged("leases/writer.json")

    assert storage.replace_if_unchanged("leases/writer.json", b"renewed by a", seen_by_a)
    assert not storage.replace_if_unchanged("leases/writer.json", b"taken by b", seen_by_b)

    data, tag = storage.read_tagged("leases/writer.json")
    assert data == b"renewed by a"
    assert tag != seen_by_a


def test_replace_of_removed_file_fails(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("leases/writer.json", b"holder a")
    _, tag = storage.read_tagged("leases/writer.json")
    storage.remove("leases/writer.json")

    assert not storage.replace_if_unchanged("leases/writer.json", b"holder a again", tag)
    assert not storage.exists("leases/writer.json")


def test_replace_lock_file_hidden_from_listing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("leases/writer.json", b"holder a")
    storage.read_tagged("leases/writer.json")

    assert (tmp_path / "leases" / REPLACE_LOCK).exists()
    assert storage.list_names("leases") == ["writer.json"]


def test_replacers_in_threads_one_wins(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("leases/writer.json", b"holder a")
    _, tag = storage.read_tagged("leases/writer.json")
    start = threading.Barrier(8)
    won: list[int] = []

    def replace(writer: int) -> None:
        start.wait()
        if storage.replace_if_unchanged("leases/writer.json", f"writer {writer}".encode(), tag):
            won.append(writer)

    threads = [threading.Thread(target=replace, args=(writer,)) for writer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert storage.read_bytes("leases/writer.json") == f"writer {won[0]}".encode()


def test_expired_lease_takeover_race(storage: GatedLocalStorage) -> None:
    check_takeover_race(storage)


def test_stale_purge_lock_takeover_race(storage: GatedLocalStorage) -> None:
    check_purge_takeover_race(storage)


def test_renew_after_release_fails(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    lease = acquire_lease(storage, "mail-u1", owner="first")
    lease.release()

    with pytest.raises(LeaseLostError, match="removed"):
        lease.renew()


def test_unreadable_lease_record_taken_over(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish(_lease_name("mail-u1"), b"not json")

    lease = acquire_lease(storage, "mail-u1", owner="next")

    record: dict[str, Any] = json.loads(storage.read_bytes(_lease_name("mail-u1")))
    assert record["token"] == lease.token
