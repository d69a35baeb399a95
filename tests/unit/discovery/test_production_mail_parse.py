"""A production reads a message's attachments from one parse, however many there are."""

from __future__ import annotations

import email

import pytest

from m365lake.discovery.production.mail import parse_message
from m365lake.sources.mime import extract_attachment, list_attachments
from tests.hostile.generator import attachments_message


def test_attachments_read_from_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    mime = attachments_message("many", [(f"f{n}.txt", f"content {n}".encode()) for n in range(300)])
    parse = email.message_from_bytes
    calls: list[int] = []

    def counting(data: bytes, *args: object, **kwargs: object) -> email.message.Message:
        calls.append(len(data))
        return parse(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(email, "message_from_bytes", counting)
    parsed = parse_message(mime)
    monkeypatch.undo()

    assert len(calls) <= 2
    assert [a.info for a in parsed.attachments] == list_attachments(mime)
    assert parsed.attachments[299].content == b"content 299"
    first = parsed.attachments[0]
    assert first.content == extract_attachment(mime, first.info.part_index)
