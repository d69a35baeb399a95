"""Concurrent changes of one case: the later commit conflicts and retries, nothing is lost."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from m365lake.discovery import (
    CaseStateError,
    add_custodians,
    check_audit_chain,
    commit_loop,
    create_case,
    load_case,
    read_audit_events,
    record_event,
    save_search,
    verify_archive,
)
from m365lake.errors import CommitConflictError
from m365lake.lake import Lake, Transaction
from tests.unit.discovery.lake_fixture import ALICE, BOB

ROOT = Path(__file__).resolve().parents[3]


class InterleavingLake(Lake):
    """A lake whose next transactions let another writer commit just before they do."""

    def __init__(self, root: Path, before_commit: list[Callable[[], Any]]) -> None:
        opened = Lake.open(root)
        super().__init__(opened.storage)
        self.before_commit = before_commit
        self.transactions = 0

    def begin(self, **options: Any) -> Transaction:
        tx = super().begin(**options)
        self.transactions += 1
        if self.before_commit:
            other_writer = self.before_commit.pop(0)
            commit = tx.commit

            def commit_after_other(**commit_options: Any) -> dict[str, Any]:
                other_writer()
                return commit(**commit_options)

            tx.commit = commit_after_other  # type: ignore[method-assign]
        return tx


def test_conflicting_edit_retries_without_lost_update(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    other = Lake.open(lake.root)
    interleaving = InterleavingLake(
        lake.root, [lambda: add_custodians(other, "C", [("mailbox", BOB)], actor="dan")]
    )

    # The other writer commits after this change read the case, so its commit conflicts.
    add_custodians(interleaving, "C", [("mailbox", ALICE)], actor="carol")

    assert interleaving.transactions == 2
    details = load_case(lake, "C")
    assert sorted(details.custodians) == ["mailbox:mb-alice", "mailbox:mb-bob"]
    assert details.case.revision == 3
    assert [event.actor for event in read_audit_events(lake)] == ["carol", "dan", "carol"]
    assert check_audit_chain(lake) == (3, [])


def test_conflicting_audit_append_does_not_fork_chain(lake: Lake) -> None:
    other = Lake.open(lake.root)
    interleaving = InterleavingLake(
        lake.root, [lambda: record_event(other, "dan", "export", {}, {"items": 1})]
    )

    record_event(interleaving, "carol", "search", {"kql": "budget"}, {"hits": 3})

    events = read_audit_events(lake)
    assert [(event.seq, event.actor) for event in events] == [(1, "dan"), (2, "carol")]
    assert events[1].prev_hash == events[0].hash
    assert interleaving.transactions == 2


def test_change_rejected_on_retry_sees_new_state(lake: Lake) -> None:
    other = Lake.open(lake.root)
    interleaving = InterleavingLake(
        lake.root, [lambda: create_case(other, "Theirs", actor="dan", case_id="C")]
    )

    with pytest.raises(CaseStateError, match="already exists"):
        create_case(interleaving, "Mine", actor="carol", case_id="C")

    assert load_case(lake, "C").case.name == "Theirs"


def test_retries_give_up_after_limit(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commit_loop, "COMMIT_ATTEMPTS", 2)
    other = Lake.open(lake.root)
    writers = [lambda: record_event(other, "dan", "export", {}, {}) for _ in range(2)]
    interleaving = InterleavingLake(lake.root, writers)

    with pytest.raises(CommitConflictError):
        record_event(interleaving, "carol", "search", {}, {})

    assert [event.actor for event in read_audit_events(lake)] == ["dan", "dan"]


def test_threads_editing_one_case(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    def save(number: int) -> str:
        own = Lake.open(lake.root)
        return save_search(
            own, "C", f"search {number}", f"term{number}", actor=f"t{number}"
        ).search_id

    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(save, range(24)))

    details = load_case(lake, "C")
    assert sorted(details.searches) == sorted(ids)
    assert details.case.revision == 25
    assert verify_archive(lake, blobs=False)["audit_events"] == 25


_WORKER = textwrap.dedent(
    """
    import sys
    from m365lake.discovery import save_search
    from m365lake.lake import Lake

    root, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lake = Lake.open(root)
    for number in range(count):
        save_search(lake, "C", f"{worker}-{number}", f"term{number}", actor=worker)
    """
)


def test_processes_editing_one_case(lake: Lake) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(lake.root), f"p{number}", "10"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(3)
    ]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0, 0], errors
    details = load_case(lake, "C")
    names = sorted(search.name for search in details.searches.values())
    assert names == sorted(f"p{w}-{n}" for w in range(3) for n in range(10))
    assert details.case.revision == 31
    assert verify_archive(lake, blobs=False)["audit_events"] == 31
