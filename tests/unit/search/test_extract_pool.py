"""ExtractionPool: real extraction in workers, time limit, memory cap, crash replacement."""

from __future__ import annotations

import io
import os
import signal
import struct
import time
import zipfile
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


def _biff12_record(kind: int, payload: bytes) -> bytes:
    """Return an .xlsb (BIFF12) record: type and size as 7-bit varints, then the payload."""

    def varint(value: int) -> bytes:
        encoded = bytearray()
        while True:
            low, value = value & 0x7F, value >> 7
            encoded.append(low | (0x80 if value else 0))
            if not value:
                return bytes(encoded)

    return varint(kind) + varint(len(payload)) + payload


def _wide_string(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode("utf-16-le")


def xlsb_with_unknown_sheet_relationship() -> bytes:
    """Return an .xlsb workbook whose only sheet names a relationship id that is missing.

    calamine 0.37 panics on it ("no entry found for key") and writes the Rust panic
    message to the process's stderr before python-calamine raises PanicException.
    """
    begin_book, bundle_sheet, end_book = 131, 156, 132
    sheet = struct.pack("<II", 0, 1) + _wide_string("rId9") + _wide_string("Sheet1")
    workbook = (
        _biff12_record(begin_book, b"")
        + _biff12_record(bundle_sheet, sheet)
        + _biff12_record(end_book, b"")
    )
    relationships = "http://schemas.openxmlformats.org/package/2006/relationships"
    binary = "application/vnd.ms-excel.sheet.binary.macroEnabled.main"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            f'<Default Extension="bin" ContentType="{binary}"/>'
            f'<Override PartName="/xl/workbook.bin" ContentType="{binary}"/></Types>',
        )
        archive.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{relationships}"><Relationship Id="rId1" '
            'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="xl/workbook.bin"/></Relationships>',
        )
        archive.writestr("xl/_rels/workbook.bin.rels", f'<Relationships xmlns="{relationships}"/>')
        archive.writestr("xl/workbook.bin", workbook)
    return buffer.getvalue()


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


def test_pool_keeps_calamine_panic_off_stderr(capfd: pytest.CaptureFixture[str]):
    with ExtractionPool(workers=1) as pool:
        first = pool.extract_text(xlsb_with_unknown_sheet_relationship(), filename="bad.xlsb")
        second = pool.extract_text(b"plain words", filename="note.txt")

    assert first.status == "corrupt"
    assert "PanicException" in (first.reason or "")
    assert second.status == "ok"
    assert capfd.readouterr().err == ""
