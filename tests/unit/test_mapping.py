"""MIME → Graph message properties and attachments, on hand-made, hostile and real mail."""

from __future__ import annotations

import base64
import email
import json
import random
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest

from m365lake.emulator.mapping import (
    BODY_PREVIEW_CHARS,
    MimeAttachment,
    message_properties,
    mime_attachments,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

SIMPLE = (
    b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jurgen@example.com>\r\n"
    b"To: Ann <ann@example.com>, bob@example.com\r\n"
    b'Cc: "Doe, Carol" <carol@example.com>\r\n'
    b"Reply-To: list@example.com\r\n"
    b"Subject: =?utf-8?b?UXVhcnRhbHNiZXJpY2h0IMOEbmRlcnVuZw==?=\r\n"
    b"Date: Tue, 05 Mar 2024 10:15:00 +0100\r\n"
    b"Message-ID: <root@example.com>\r\n"
    b"X-Priority: 1 (Highest)\r\n"
    b"Disposition-Notification-To: jurgen@example.com\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello   Ann,\r\n\r\nsee you tomorrow.\r\n"
)


def _with_header(mime: bytes, header: bytes) -> bytes:
    return header + b"\r\n" + mime


def _nested_multipart(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        boundary = b"b%d" % level
        body = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n--' + boundary
            + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return b"Subject: deep\r\n" + body


def test_properties_simple_message():
    properties = message_properties(SIMPLE, received_at=None)

    assert properties["subject"] == "Quartalsbericht Änderung"
    assert properties["from"] == {
        "emailAddress": {"name": "Jürgen Müller", "address": "jurgen@example.com"}
    }
    assert properties["sender"] == properties["from"]
    assert [r["emailAddress"]["address"] for r in properties["toRecipients"]] == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert properties["toRecipients"][1]["emailAddress"]["name"] == "bob@example.com"
    assert properties["ccRecipients"][0]["emailAddress"]["name"] == "Doe, Carol"
    assert properties["bccRecipients"] == []
    assert properties["replyTo"][0]["emailAddress"]["address"] == "list@example.com"
    assert properties["sentDateTime"] == "2024-03-05T09:15:00Z"
    assert properties["receivedDateTime"] == "2024-03-05T09:15:00Z"
    assert properties["importance"] == "high"
    assert properties["internetMessageId"] == "<root@example.com>"
    assert properties["body"] == {
        "contentType": "text",
        "content": "Hello   Ann,\r\n\r\nsee you tomorrow.\r\n",
    }
    assert properties["bodyPreview"] == "Hello Ann, see you tomorrow."
    assert properties["hasAttachments"] is False
    assert properties["isDraft"] is False
    assert properties["isReadReceiptRequested"] is True
    assert properties["isDeliveryReceiptRequested"] is False
    assert properties["flag"] == {"flagStatus": "notFlagged"}


def test_received_at_wins_over_date_header():
    received = datetime(2024, 3, 5, 12, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    properties = message_properties(SIMPLE, received_at=received)
    assert properties["receivedDateTime"] == "2024-03-05T10:00:30Z"
    assert properties["sentDateTime"] == "2024-03-05T09:15:00Z"


def test_naive_received_at_taken_as_utc():
    properties = message_properties(SIMPLE, received_at=datetime(2024, 1, 2, 3, 4, 5))
    assert properties["receivedDateTime"] == "2024-01-02T03:04:05Z"


def test_missing_date_uses_fallback():
    properties = message_properties(b"Subject: no date\r\n\r\nbody\r\n", received_at=None)
    assert properties["receivedDateTime"] == "1970-01-01T00:00:00Z"
    assert properties["sentDateTime"] == "1970-01-01T00:00:00Z"
    assert properties["from"] is None
    assert properties["internetMessageId"] is None


def test_conversation_id_shared_by_thread():
    root = SIMPLE
    reply = (
        b"Subject: RE: x\r\nMessage-ID: <reply@example.com>\r\n"
        b"In-Reply-To: <root@example.com>\r\nReferences: <root@example.com>\r\n\r\nok\r\n"
    )
    second = (
        b"Subject: RE: x\r\nMessage-ID: <reply2@example.com>\r\n"
        b"In-Reply-To: <reply@example.com>\r\n"
        b"References: <root@example.com>\r\n <reply@example.com>\r\n\r\nok\r\n"
    )
    other = b"Subject: other\r\nMessage-ID: <other@example.com>\r\n\r\nhi\r\n"
    ids = [message_properties(m, received_at=None)["conversationId"] for m in (root, reply, second)]
    assert len(set(ids)) == 1
    assert message_properties(other, received_at=None)["conversationId"] != ids[0]


def test_html_body_preferred_and_preview_stripped():
    message = email.message.EmailMessage(policy=policy.default)
    message["Subject"] = "alt"
    message.set_content("plain version")
    message.add_alternative(
        "<html><head><style>p{color:red}</style></head><body><p>Hi&nbsp;<b>there</b></p>"
        + "<p>" + "x" * 400 + "</p></body></html>",
        subtype="html",
    )  # fmt: skip
    properties = message_properties(message.as_bytes(), received_at=None)
    assert properties["body"]["contentType"] == "html"
    assert properties["body"]["content"].startswith("<html>")
    assert properties["bodyPreview"].startswith("Hi there x")
    assert len(properties["bodyPreview"]) == BODY_PREVIEW_CHARS


def test_encoded_word_split_inside_character():
    # "é" is C3 A9 in UTF-8, and each encoded-word carries one byte of it.
    mime = b"Subject: =?utf-8?q?caf=C3?= =?utf-8?q?=A9_ok?=\r\n\r\n"
    assert message_properties(mime, received_at=None)["subject"] == "café ok"


def test_raw_8bit_headers_decoded():
    mime = "Subject: Grüße aus Köln\r\nFrom: Zoë <zoe@example.com>\r\n\r\nx".encode()
    properties = message_properties(mime, received_at=None)
    assert properties["subject"] == "Grüße aus Köln"
    assert properties["from"]["emailAddress"]["name"] == "Zoë"
    latin1 = "Subject: Grüße\r\n\r\nx".encode("latin-1")
    assert message_properties(latin1, received_at=None)["subject"] == "Grüße"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Importance: low", "low"),
        (b"X-Priority: 5", "low"),
        (b"Priority: urgent", "high"),
        (b"X-Priority: 3", "normal"),
    ],
)
def test_importance_headers(header: bytes, expected: str):
    mime = header + b"\r\nSubject: x\r\n\r\nbody"
    assert message_properties(mime, received_at=None)["importance"] == expected


def test_body_charsets_fall_back():
    koi8 = "Привет".encode("koi8-r")
    mime = b"Content-Type: text/plain; charset=koi8-r\r\n\r\n" + koi8
    assert message_properties(mime, received_at=None)["body"]["content"] == "Привет"
    unknown = b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n" + "é".encode()
    assert message_properties(unknown, received_at=None)["body"]["content"] == "é"
    not_text = b"Content-Type: text/plain; charset=base64\r\n\r\nabc\xff"
    assert message_properties(not_text, received_at=None)["body"]["content"] == "abcÿ"


def _mixed(*parts: bytes) -> bytes:
    body = b"".join(b"--XX\r\n" + part + b"\r\n" for part in parts)
    return (
        b"Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        + body + b"--XX--\r\n"
    )  # fmt: skip


PDF_BYTES = b"%PDF-1.4\n" + bytes(range(256)) * 4
TEXT_PART = b"Content-Type: text/plain\r\n\r\nsee attached"


def test_file_attachment_rfc2231_name():
    encoded = base64.encodebytes(PDF_BYTES)
    attachment = (
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''R%C3%A9sum%C3%A9%20;\r\n"
        b" filename*1=final.pdf\r\n\r\n" + encoded
    )
    mime = _mixed(TEXT_PART, attachment)
    [found] = mime_attachments(mime)
    assert found == MimeAttachment(
        kind="file",
        name="Résumé final.pdf",
        content_type="application/pdf",
        size=len(PDF_BYTES),
        is_inline=False,
        content_id=None,
        content=PDF_BYTES,
    )
    assert message_properties(mime, received_at=None)["hasAttachments"] is True


def test_inline_image_not_counted_for_has_attachments():
    image = (
        b"Content-Type: image/png; name=logo.png\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-ID: <logo@example>\r\nContent-Disposition: inline\r\n\r\n"
        + base64.encodebytes(b"\x89PNG\r\n\x1a\nfake")
    )  # fmt: skip
    html = b'Content-Type: text/html\r\n\r\n<img src="cid:logo@example">'
    related = (
        b"Content-Type: multipart/related; boundary=RR\r\n\r\n--RR\r\n" + html
        + b"\r\n--RR\r\n" + image + b"\r\n--RR--"
    )  # fmt: skip
    mime = _mixed(related)
    [found] = mime_attachments(mime)
    assert found.is_inline is True
    assert found.content_id == "logo@example"
    assert found.name == "logo.png"
    assert message_properties(mime, received_at=None)["hasAttachments"] is False


def test_attached_message_is_item():
    inner = b"Subject: Inner subject\r\nFrom: a@example.com\r\n\r\ninner body\r\n"
    mime = _mixed(TEXT_PART, b"Content-Type: message/rfc822\r\n\r\n" + inner)
    [found] = mime_attachments(mime)
    assert found.kind == "item"
    assert found.name == "Inner subject"
    assert found.is_inline is False
    assert found.size == len(found.content)
    assert b"Subject: Inner subject" in found.content
    assert b"inner body" in found.content


def test_unnamed_attachment_gets_placeholder_name():
    mime = _mixed(TEXT_PART, b"Content-Type: application/octet-stream\r\n\r\nraw")
    [found] = mime_attachments(mime)
    assert found.name == "ATT00001.dat"
    assert found.content == b"raw"


def _random_bytes(size: int) -> bytes:
    return random.Random(size).randbytes(size)


MALFORMED = {
    "empty": b"",
    "nul bytes": b"Subject: a\x00b\r\nFrom: \x00<x@\x00y>\r\n\r\nbody\x00\x00",
    "random bytes": _random_bytes(50_000),
    "unterminated multipart": b"Content-Type: multipart/mixed; boundary=Q\r\n\r\n--Q\r\n"
    b"Content-Type: text/plain\r\n\r\nstart of a part that never ends",
    "multipart without boundary": b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody",
    "one megabyte header line": b"Subject: " + b"a" * 1_000_000 + b"\r\n\r\nbody",
    "one megabyte recipients": b"To: " + b"u@example.com, " * 70_000 + b"\r\n\r\nx",
    "nesting 200": _nested_multipart(200),
    "nesting 3000": _nested_multipart(3000),
    "bad base64": _mixed(
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not*base64===\r\nQUJD\r\n="
    ),
    "bad encoded words": b"Subject: =?utf-8?B?###?= =?nope?Q?=ZZ?= =?utf-8?X?a?=\r\n\r\n",
    "unknown charsets": _mixed(
        b'Content-Type: text/plain; charset="\x00bogus"\r\n\r\n\xff\xfe',
        b"Content-Type: text/html; charset=undefined\r\n\r\n<p>\xe9</p>",
        b"Content-Type: text/plain; name*=x-unknown''%FF.txt\r\n\r\nz",
    ),
    "broken params": b"Content-Type: multipart/mixed; boundary=\"; name*0*=''; ;;=\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%E9%\r\n\r\n",
    "bad date": b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\n\r\n",
    "header without value": b"Subject\r\nFrom:\r\nTo: ,,, <>\r\n\r\n",
    "nested rfc822 chain": b"Content-Type: message/rfc822\r\n\r\n" * 500 + b"Subject: x\r\n\r\ny",
    "qp garbage": b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=ZZ=\xff=0",
    "uuencode garbage": b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n!!!\r\n",
    "crlf only": b"\r\n\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_never_raises(name: str):
    mime = MALFORMED[name]
    started = time.perf_counter()

    properties = message_properties(mime, received_at=None)
    attachments = mime_attachments(mime)

    elapsed = time.perf_counter() - started
    json.dumps(properties)
    assert TIMESTAMP.match(properties["receivedDateTime"])
    assert TIMESTAMP.match(properties["sentDateTime"])
    assert isinstance(properties["subject"], str)
    assert all(attachment.size == len(attachment.content) for attachment in attachments)
    assert elapsed < 10, f"{name} took {elapsed:.1f} s"


def test_deep_nesting_keeps_headers():
    properties = message_properties(_nested_multipart(3000), received_at=None)
    assert properties["subject"] == "deep"


@pytest.mark.corpus
def test_edge_corpus_never_raises(corpus_root: Path):
    files = sorted(p for p in (corpus_root / "mail" / "mime-edge").rglob("*") if p.is_file())
    assert len(files) >= 200
    for path in files:
        data = path.read_bytes()
        properties = message_properties(data, received_at=datetime(2024, 1, 1, tzinfo=UTC))
        attachments = mime_attachments(data)
        json.dumps(properties)
        assert properties["receivedDateTime"] == "2024-01-01T00:00:00Z", path
        assert TIMESTAMP.match(properties["sentDateTime"]), path
        assert all(a.size == len(a.content) for a in attachments), path


@pytest.mark.corpus
def test_edge_corpus_decodes_names(corpus_root: Path):
    edge = corpus_root / "mail" / "mime-edge" / "eml"
    japanese_file = edge / "mikel-mail" / "multi_charset__japanese_attachment_long_name.eml"
    japanese = japanese_file.read_bytes()
    assert message_properties(japanese, received_at=None)["subject"].startswith("まみむめも")
    [attachment] = mime_attachments(japanese)
    assert attachment.name == "かきくけこ" * 5 + ".txt"
    raw_utf8 = edge / "mikel-mail" / "attachment_emails__attachment_nonascii_filename.eml"
    assert [a.name for a in mime_attachments(raw_utf8.read_bytes())] == ["ciële.txt"]


def _edrm_files(corpus_root: Path) -> list[Path]:
    return sorted((corpus_root / "mail" / "enron" / "edrm-lokay-m-eml").rglob("*.eml"))


@pytest.mark.corpus
def test_edrm_attachments_found(corpus_root: Path):
    files = _edrm_files(corpus_root)
    assert len(files) == 71
    with_attachments = [
        path for path in files
        if message_properties(path.read_bytes(), received_at=None)["hasAttachments"]
    ]  # fmt: skip
    assert len(with_attachments) == 29


@pytest.mark.corpus
def test_edrm_attachment_sizes_match_decoded_parts(corpus_root: Path):
    """Compare with the stdlib's default policy, a separate decoding path from compat32."""
    magic = {"pdf": b"%PDF", "doc": b"\xd0\xcf\x11\xe0", "xls": b"\xd0\xcf\x11\xe0"}
    checked = 0
    for path in _edrm_files(corpus_root):
        data = path.read_bytes()
        parsed = email.message_from_bytes(data, policy=policy.default)
        # Sizes only: the default policy cuts RFC 2231 names at "(" (it reads a comment).
        expected = Counter(
            len(part.get_payload(decode=True))
            for part in parsed.walk()
            if part.get_content_disposition() == "attachment"
        )
        found = mime_attachments(data)
        assert not expected - Counter(a.size for a in found), path
        assert all(a.name and a.name != "ATT00001.dat" for a in found), path
        for attachment in found:
            extension = attachment.name.rsplit(".", 1)[-1].lower()
            if extension in magic:
                assert attachment.content.startswith(magic[extension]), attachment.name
        checked += expected.total()
    assert checked >= 60
