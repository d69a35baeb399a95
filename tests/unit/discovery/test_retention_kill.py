"""A purge killed at any point, then run again, ends as a clean purge would."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from m365lake import catalog
from m365lake.discovery import add_custodians, create_case, place_hold, verify_archive
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake
from m365lake.retention import add_policy, purge
from tests.unit.discovery.lake_fixture import DAY, T0, message

ROOT = Path(__file__).resolve().parents[3]
NOW = T0 + 100 * DAY

# Runs a purge that kills its own process with SIGKILL at the named point.
_KILLED_PURGE = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime

    from m365lake.lake import Lake, Transaction
    from m365lake.lake.storage import LocalStorage
    import importlib
    purge_module = importlib.import_module("m365lake.retention.purging")

    root, point, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "while-rewriting":
        Transaction.write_rows = die
    elif point == "before-commit":
        Transaction.commit = die
    elif point == "after-commit":
        finish = purge_module.finish_purges
        calls = []

        def finish_then_die(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                die()
            return finish(*args, **kwargs)

        purge_module.finish_purges = finish_then_die
    elif point == "while-deleting":
        remove = LocalStorage.remove

        def remove_once_then_die(self, relative):
            remove(self, relative)
            die()

        LocalStorage.remove = remove_once_then_die
    purge_module.purge(Lake.open(root), actor="erin", apply=True, now=now)
    """
)


def prepare(lake: Lake) -> None:
    """Add blobs, a hold on one mailbox and a mail policy that expires everything."""
    shared = lake.blobs.put(b"shared MIME " * 1000)
    own = lake.blobs.put(b"own MIME " * 1000)
    with lake.begin(run_id="blobs", kind="mail", container="mb-bob") as tx:
        tx.write_rows(
            "messages",
            [
                message("mb-bob", "b1", "created", T0, mime_sha256=shared),
                message("mb-bob", "b2", "created", T0, mime_sha256=own),
                message("mb-bob", "b3", "created", T0, received_at=NOW, mime_sha256=shared),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", "mb-alice")], actor="carol")
    place_hold(lake, "C", actor="carol")
    add_policy(lake, actor="erin", name="mail", workload="mail", action="delete", days=30)


def archive_state(lake: Lake) -> tuple[list[tuple[object, ...]], list[str]]:
    rows = catalog.run_sql(
        lake, "SELECT mailbox_id, message_id, change FROM messages_rows ORDER BY ALL"
    )[1]
    return rows, sorted(lake.blobs.iter_hashes())


def run_killed(lake: Lake, point: str) -> None:
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_PURGE, str(lake.root), point, NOW.isoformat()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr


@pytest.mark.parametrize(
    "point", ["while-rewriting", "before-commit", "after-commit", "while-deleting"]
)
def test_killed_purge_reruns_consistent(lake: Lake, tmp_path: Path, point: str) -> None:
    prepare(lake)
    clean = Lake.open(shutil.copytree(lake.root, tmp_path / "clean"))
    purge(clean, actor="erin", apply=True, now=NOW)

    run_killed(lake, point)
    purge(lake, actor="erin", apply=True, now=NOW)

    assert archive_state(lake) == archive_state(clean)
    assert verify_archive(lake)["blobs"] == 1


def test_unfinished_purge_reported_by_verify(lake: Lake) -> None:
    prepare(lake)

    run_killed(lake, "after-commit")

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake)
    problems = caught.value.problems
    assert problems
    assert all("was removed by purge commit" in problem for problem in problems), problems
    assert all("run the purge again" in problem for problem in problems)
