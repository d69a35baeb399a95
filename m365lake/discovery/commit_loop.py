"""Commit a discovery change, retrying when a concurrent writer touched the same state keys."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from m365lake.errors import CommitConflictError
from m365lake.lake import Lake, Transaction

logger = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 25
"""Tries of one change while concurrent changes of the same case or audit trail commit first."""

Result = TypeVar("Result")
Work = Callable[[Transaction], tuple[Result, Mapping[str, int]]]


def new_run_id(prefix: str) -> str:
    """Return a sortable, unique run id such as ``case-20261204T201500Z-3f9a1c2e``."""
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def commit_with_retry(
    lake: Lake, *, kind: str, container: str | None, work: Work[Result]
) -> Result:
    """Run ``work`` in a new transaction and commit it, starting over after a conflict.

    ``work`` must read the state it depends on from ``lake`` inside the call, after the
    transaction began. A commit that lands in between then shows up as a conflict at
    commit time, and the retry reads the newer state and validates again. It returns
    its result and the counts recorded in the manifest. An exception from ``work``
    aborts the transaction and propagates. CommitConflictError propagates after
    ``COMMIT_ATTEMPTS`` lost races.
    """
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        with lake.begin(run_id=new_run_id(kind), kind=kind, container=container) as tx:
            result, counts = work(tx)
            try:
                tx.commit(counts=counts)
                return result
            except CommitConflictError as error:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                logger.info("%s change, attempt %d, will retry: %s", kind, attempt, error)
        # Jitter keeps writers that collided from colliding again in lockstep.
        time.sleep(random.uniform(0, 0.005 * min(attempt, 10)))
    raise AssertionError("unreachable: the last attempt returns or raises")
