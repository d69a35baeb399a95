"""Extraction workers under a tight memory cap: bombs end as statuses, the pool lives on.

The cap is RLIMIT_AS, so the workers' resident memory is sampled while the bombs run and
must stay below it; a bomb that needs more ends with status ``too_large``.
"""

from __future__ import annotations

import pytest

from m365lake.search.extract import ExtractionPool
from tests.hostile.generator import (
    MIB,
    gzip_bomb,
    huge_header,
    many_parts,
    nested_rfc822,
    nested_zip,
    zip_bomb,
)
from tests.hostile.test_campaign import WorkerMemory

TIGHT_CAP = 256 * MIB
"""Far below the 1 GiB the bombs expand to, above the ~50 MiB a worker maps at start."""

pytestmark = pytest.mark.timeout(240)


def test_bombs_under_tight_memory_cap() -> None:
    files = {"bomb.zip": zip_bomb(), "bomb.gz": gzip_bomb(), "nested.zip": nested_zip()}
    messages = [huge_header(), many_parts(), nested_rfc822()]

    with (
        ExtractionPool(workers=1, timeout=60, memory_limit_bytes=TIGHT_CAP) as pool,
        WorkerMemory() as memory,
    ):
        statuses = {name: pool.extract_text(data, filename=name) for name, data in files.items()}
        texts = [pool.extract_message(mime) for mime in messages]
        after = pool.extract_text(b"plain text after the bombs", filename="after.txt")

    assert statuses["bomb.zip"].status == "too_large"
    assert statuses["bomb.gz"].status == "too_large"
    assert statuses["nested.zip"].status == "unsupported"
    assert "nested more than" in str(statuses["nested.zip"].reason)
    for text in texts:
        assert text.body_extraction.status in ("ok", "empty")
    assert after.status == "ok"
    assert after.text == "plain text after the bombs"
    assert memory.samples > 0
    assert 0 < memory.peak_rss < TIGHT_CAP


def test_bomb_past_time_limit_reports_timeout() -> None:
    # Inflating the gzip bomb to the 100 MiB archive limit took 0.7 s on 2 cores; 50 ms
    # leaves a wide margin, so the worker is still inflating when the limit passes.
    with ExtractionPool(workers=1, timeout=0.05, memory_limit_bytes=TIGHT_CAP) as pool:
        late = pool.extract_text(gzip_bomb(), filename="bomb.gz")
        replaced = pool.replaced_workers
        pool.timeout = 60
        after = pool.extract_text(b"text after a timeout", filename="after.txt")

    assert late.status == "timeout"
    assert replaced == 1
    assert after.status == "ok"
