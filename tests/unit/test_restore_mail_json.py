"""Archived MIME to the Graph create request of received mail."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from m365lake.emulator.mail_compose import compose_message
from m365lake.restore.mail_json import (
    MAX_REQUEST_BYTES,
    RESTORE_HEADER,
    build_create,
    restore_marker,
)
from m365lake.restore.mail_verify import compare_attachments, expected_attachments
from m365lake.restore.model import Severity
from m365lake.sources.mime import list_attachments

SMALL = b"%PDF-1.4 small"
LARGE = bytes(range(256)) * 12_000  # 3,072,000 bytes: upload session


def _mime(*, large: bool = False, extra: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = "Jörg Sender <joerg@fabrikam.example>"
    message["To"] = "Alice Adams <alice@contoso.example>, bob@contoso.example"
    message["Subject"] = "Numbers"
    message["Date"] = "Mon, 14 May 2001 16:38:00 +0000"
    message["Message-ID"] = "<n1@fabrikam.example>"
    message["X-Folder"] = "\\Lokay\\Personal"
    message[RESTORE_HEADER] = "old marker"
    message.set_content("plain body\n")
    message.add_alternative("<p>html body</p>", subtype="html")
    message.add_attachment(SMALL, maintype="application", subtype="pdf", filename="a.pdf")
    if large:
        message.add_attachment(
            LARGE, maintype="application", subtype="octet-stream", filename="big.bin"
        )
    for index in range(extra):
        message.add_attachment(
            bytes([index]) * 1_000_000,
            maintype="application",
            subtype="octet-stream",
            filename=f"part{index}.bin",
        )
    inner = EmailMessage()
    inner["From"] = "fwd@fabrikam.example"
    inner["To"] = "alice@contoso.example"
    inner["Subject"] = "Inner"
    inner["Date"] = "Sun, 13 May 2001 10:00:00 +0000"
    inner.set_content("inner body\n")
    inner.add_attachment(b"inner file", maintype="text", subtype="plain", filename="in.txt")
    message.add_attachment(inner)
    return bytes(message)


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "subject": "Numbers",
        "from_address": "joerg@fabrikam.example",
        "from_name": "Jörg Sender",
        "sender_address": "joerg@fabrikam.example",
        "to_addresses": ["alice@contoso.example", "bob@contoso.example"],
        "cc_addresses": [],
        "bcc_addresses": [],
        "received_at": datetime(2001, 5, 14, 16, 39, tzinfo=UTC),
        "sent_at": datetime(2001, 5, 14, 16, 38, tzinfo=UTC),
        "is_read": True,
        "categories": ["Finance"],
        "importance": "high",
        "internet_message_id": "<n1@fabrikam.example>",
    }
    row.update(overrides)
    return row


def test_create_sets_received_mail_properties() -> None:
    create = build_create(_mime(), _row(), marker="m1 id1 sha1")
    body = create.body
    assert body["singleValueExtendedProperties"] == [
        {"id": "Integer 0x0E07", "value": "1"},
        {"id": "SystemTime 0x0E06", "value": "2001-05-14T16:39:00Z"},
        {"id": "SystemTime 0x0039", "value": "2001-05-14T16:38:00Z"},
    ]
    assert body["subject"] == "Numbers"
    assert body["isRead"] is True
    assert body["categories"] == ["Finance"]
    assert body["importance"] == "high"
    assert body["internetMessageId"] == "<n1@fabrikam.example>"
    assert body["from"] == {
        "emailAddress": {"address": "joerg@fabrikam.example", "name": "Jörg Sender"}
    }
    assert body["toRecipients"] == [
        {"emailAddress": {"address": "alice@contoso.example", "name": "Alice Adams"}},
        {"emailAddress": {"address": "bob@contoso.example"}},
    ]
    assert "sender" not in body
    assert body["body"] == {"contentType": "html", "content": "<p>html body</p>\n"}


def test_unread_message_flags_are_zero() -> None:
    body = build_create(_mime(), _row(is_read=False), marker=None).body
    assert body["singleValueExtendedProperties"][0] == {"id": "Integer 0x0E07", "value": "0"}
    assert body["isRead"] is False


def test_only_the_restore_marker_header() -> None:
    body = build_create(_mime(), _row(), marker=restore_marker("mb", "id", "sha")).body
    assert body["internetMessageHeaders"] == [{"name": RESTORE_HEADER, "value": "mb id sha"}]


def test_no_headers_without_marker() -> None:
    body = build_create(_mime(), _row(), marker=None).body
    assert "internetMessageHeaders" not in body


def test_attachments_inline_nested_and_deferred() -> None:
    create = build_create(_mime(large=True), _row(), marker=None)
    attachments = create.body["attachments"]
    kinds = [attachment["@odata.type"] for attachment in attachments]
    assert kinds == ["#microsoft.graph.itemAttachment", "#microsoft.graph.fileAttachment"]
    assert base64.b64decode(attachments[1]["contentBytes"]) == SMALL
    assert attachments[1]["name"] == "a.pdf"
    item = attachments[0]["item"]
    assert item["subject"] == "Inner"
    assert item["from"] == {"emailAddress": {"address": "fwd@fabrikam.example"}}
    assert item["singleValueExtendedProperties"] == [
        {"id": "SystemTime 0x0039", "value": "2001-05-13T10:00:00Z"}
    ]
    assert [a["name"] for a in item["attachments"]] == ["in.txt"]
    assert [a.name for a in create.later] == ["big.bin"]
    assert create.later[0].needs_session
    assert create.later[0].content == LARGE


def test_request_stays_under_four_megabytes() -> None:
    create = build_create(_mime(extra=4), _row(), marker=None)
    assert create.size() <= MAX_REQUEST_BYTES
    assert len(json.dumps(create.body).encode()) == create.size()
    inline = [a["name"] for a in create.body["attachments"]]
    later = [a.name for a in create.later]
    assert sorted(inline + later) == sorted(
        ["a.pdf", "attached message", "part0.bin", "part1.bin", "part2.bin", "part3.bin"]
    )
    assert later
    assert not any(a.needs_session for a in create.later)


def test_oversized_body_is_rejected() -> None:
    message = EmailMessage()
    message["Subject"] = "huge"
    message.set_content("x" * (MAX_REQUEST_BYTES + 10))
    with pytest.raises(ValueError, match="more than the"):
        build_create(bytes(message), _row(subject="huge"), marker=None)


def test_raw_8bit_addresses_become_text() -> None:
    inner = (
        "From: J\u00f6rg <j\u00f6rg@fabrikam.example>\r\nTo: \u00e4\u00f6@example.com\r\n"
        "Subject: inner\r\n\r\ninner body\r\n"
    ).encode("latin-1")
    mime = (
        b"From: sender@fabrikam.example\r\nTo: alice@contoso.example\r\n"
        b'Reply-To: "Jos\xc3\xa9 \xef\xbf\xbd" <jose@fabrikam.example>\r\n'
        b"Subject: outer\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nouter body\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )

    create = build_create(mime, _row(), marker=None)

    body = json.dumps(create.body, ensure_ascii=False)
    assert body.encode("utf-8")  # Graph requests are UTF-8: no lone surrogates
    assert create.body["replyTo"][0]["emailAddress"]["name"] == "José \ufffd"
    item = create.body["attachments"][0]["item"]
    # Undeclared Latin-1 bytes are decoded by detection, which may guess another charset
    # for so few bytes; the request must carry text either way.
    assert item["from"]["emailAddress"]["name"].startswith("J")
    assert item["toRecipients"][0]["emailAddress"]["address"].endswith("@example.com")


def _wrapped(levels: int) -> bytes:
    """A message whose whole body is a message, ``levels`` deep, around a file attachment."""
    inner = EmailMessage()
    inner["From"] = "fwd@fabrikam.example"
    inner["To"] = "alice@contoso.example"
    inner["Subject"] = "Inner"
    inner.set_content("inner body\n")
    inner.add_attachment(b"inner file", maintype="text", subtype="plain", filename="in.txt")
    mime = bytes(inner)
    for level in range(levels):
        mime = (
            f"From: wrap@fabrikam.example\r\nSubject: wrapper {level}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode() + mime
    return mime


@pytest.mark.parametrize("levels", [1, 3])
def test_top_level_message_body_becomes_item_attachment(levels: int) -> None:
    mime = _wrapped(levels)
    body = build_create(mime, _row(subject=f"wrapper {levels - 1}"), marker=None).body

    item = body
    for _ in range(levels):
        (attachment,) = item["attachments"]
        assert attachment["@odata.type"] == "#microsoft.graph.itemAttachment"
        item = attachment["item"]
    assert item["subject"] == "Inner"
    (file,) = item["attachments"]
    assert base64.b64decode(file["contentBytes"]) == b"inner file"

    # Rendered back as Exchange would store it, the copy lists what verification expects.
    stored = compose_message(body, now=datetime(2024, 1, 1, tzinfo=UTC)).mime
    findings = compare_attachments(expected_attachments(mime), list_attachments(stored))
    assert [f for f in findings if f[3] is not Severity.REWRITE] == []
