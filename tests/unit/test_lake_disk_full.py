"""Recognising a full disk behind a container's failure."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from m365lake.errors import CommitConflictError, LakeFullError
from m365lake.lake.disk_full import disk_full_error, raise_if_disk_full


def _full(code: int = errno.ENOSPC) -> OSError:
    return OSError(code, "No space left on device")


def test_disk_full_found_in_cause_chain() -> None:
    wrapped = RuntimeError("commit failed")
    wrapped.__cause__ = _full(errno.EDQUOT)

    assert disk_full_error(_full()) is not None
    assert disk_full_error(wrapped) is wrapped.__cause__
    assert disk_full_error(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_error(CommitConflictError("lost the race")) is None


def test_full_disk_raises_one_error(tmp_path: Path) -> None:
    outcomes = [object(), _full(), _full(), CommitConflictError("lost the race")]

    with pytest.raises(LakeFullError) as caught:
        raise_if_disk_full(tmp_path, outcomes, "mailboxes")

    message = str(caught.value)
    assert str(tmp_path) in message
    assert "2 mailboxes could not be archived" in message
    assert "Free space" in message


def test_other_failures_do_not_raise(tmp_path: Path) -> None:
    raise_if_disk_full(tmp_path, [object(), CommitConflictError("lost")], "drives")
