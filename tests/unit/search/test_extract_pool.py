"""ExtractionPool: real extraction in workers, time limit, memory cap, crash replacement."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any

import psutil
import pytest

from m365lake.search.extract import Extraction, ExtractionPool, MessageText
from m365lake.search.extract_types import failure


# Fake extractors run inside the spawned workers, which import this module by name.
def fake_text_extractor(data: bytes, **options: Any) -> Extraction:
    """Behave according to ``data``: sleep, crash, allocate, or echo it as text."""
    if data == b"slow":
        time.sleep(120)
    elif data == b"crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif data == b"allocate":
        blocks = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB
        return failure("corrupt", f"allocated {len(blocks)} blocks")
    elif data == b"pid":
        return Extraction(text=str(os.getpid()), status="ok")
    return Extraction(text=data.decode(), status="ok")


def fake_message_extractor(mime: bytes, **options: Any) -> MessageText:
    if mime == b"slow":
        time.sleep(120)
    extraction = Extraction(text=mime.decode(), status="ok")
    return MessageText(body=extraction.text, body_extraction=extraction, attachments=[])


def _wait_until_zombie(pid: int) -> None:
    # Not os.waitpid: the pool's own Process object must be the one to reap the worker.
    for _ in range(300):
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} did not exit after SIGKILL")


def _fake_pool(**options: Any) -> ExtractionPool:
    return ExtractionPool(
        text_extractor=fake_text_extractor, message_extractor=fake_message_extractor, **options
    )


def test_pool_runs_real_extraction():
    message = EmailMessage()
    message["Subject"] = "Pool"
    message.set_content("Body extracted in a worker")
    message.add_attachment(b"attached words", maintype="text", subtype="plain", filename="a.txt")

    with ExtractionPool(workers=1) as pool:
        text = pool.extract_text(b"plain words", filename="note.txt")
        mail = pool.extract_message(message.as_bytes())

    assert text.status == "ok"
    assert text.text == "plain words"
    assert "Body extracted in a worker" in mail.body
    assert mail.attachments[0].name == "a.txt"
    assert mail.attachments[0].extraction.text == "attached words"


def test_pool_timeout_returns_status_and_recovers():
    with _fake_pool(workers=1, timeout=1.0) as pool:
        slow = pool.extract_text(b"slow", filename="slow.pdf")
        after = pool.extract_text(b"still working")

    assert slow.status == "timeout"
    assert not slow.complete
    assert slow.reason is not None
    assert "1 seconds" in slow.reason
    assert after.status == "ok"
    assert after.text == "still working"
    assert pool.replaced_workers == 1


def test_pool_message_timeout():
    with _fake_pool(workers=1, timeout=1.0) as pool:
        result = pool.extract_message(b"slow")

    assert result.body_extraction.status == "timeout"
    assert result.body == ""
    assert result.attachments == []


def test_pool_replaces_crashed_worker():
    with _fake_pool(workers=1) as pool:
        before = int(pool.extract_text(b"pid").text)
        crashed = pool.extract_text(b"crash", filename="evil.doc")
        after = int(pool.extract_text(b"pid").text)

    assert crashed.status == "corrupt"
    assert crashed.reason is not None
    assert "SIGKILL" in crashed.reason
    assert after != before
    assert pool.replaced_workers == 1


def test_pool_memory_cap_returns_too_large():
    with _fake_pool(workers=1, memory_limit_bytes=1024**3) as pool:
        result = pool.extract_text(b"allocate")
        after = pool.extract_text(b"fine")

    assert result.status == "too_large"
    assert result.reason is not None
    assert "memory" in result.reason
    assert after.status == "ok"


def test_pool_serves_concurrent_callers():
    inputs = [f"item {index}".encode() for index in range(12)]

    with _fake_pool(workers=2) as pool, ThreadPoolExecutor(max_workers=4) as threads:
        results = list(threads.map(lambda data: pool.extract_text(data), inputs))

    assert [r.text for r in results] == [d.decode() for d in inputs]


def test_pool_recycles_worker_after_task_limit():
    with _fake_pool(workers=1, max_tasks_per_worker=2) as pool:
        pids = [pool.extract_text(b"pid").text for _ in range(4)]

    assert pids[0] == pids[1]
    assert pids[1] != pids[2]
    assert pids[2] == pids[3]


def test_closed_pool_rejects_calls():
    pool = _fake_pool(workers=1)
    pool.close()

    with pytest.raises(RuntimeError, match="closed"):
        pool.extract_text(b"late")


def test_pool_rejects_bad_settings():
    with pytest.raises(ValueError, match="workers"):
        ExtractionPool(workers=0)
    with pytest.raises(ValueError, match="timeout"):
        ExtractionPool(timeout=0)


def test_pool_replaces_worker_killed_while_idle():
    with _fake_pool(workers=1) as pool:
        first = int(pool.extract_text(b"pid").text)
        os.kill(first, signal.SIGKILL)
        _wait_until_zombie(first)
        result = pool.extract_text(b"after the kill")

    assert result.status == "ok"
    assert result.text == "after the kill"
    assert pool.replaced_workers == 1
