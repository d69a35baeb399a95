"""What a production reads from a message's MIME: names, In-Reply-To, attachments."""

from __future__ import annotations

import hashlib

from m365lake.discovery.production.mail import mailbox_text, parse_message
from tests.unit.discovery.test_export_fixtures import mime_message

SENDER = "=?utf-8?q?Smith=2C_J=C3=BCrgen?= <jurgen@contoso.example>"


def test_encoded_name_with_comma_decoded():
    mime = mime_message(subject="s", sender="a@contoso.example", to=["b@contoso.example"], body="x")
    mime = mime.replace(b"From: a@contoso.example", f"From: {SENDER}".encode())

    parsed = parse_message(mime)

    assert parsed.names == {"jurgen@contoso.example": "Smith, Jürgen"}


def test_in_reply_to_read():
    mime = mime_message(
        subject="Re: s",
        sender="a@contoso.example",
        to=["b@contoso.example"],
        body="x",
        headers={"In-Reply-To": "<first@contoso.example>"},
    )

    assert parse_message(mime).in_reply_to == "<first@contoso.example>"


def test_single_part_message_has_no_attachments():
    mime = mime_message(subject="s", sender="a@contoso.example", to=["b@contoso.example"], body="x")

    assert parse_message(mime).attachments == []


def test_attachments_decoded_in_order():
    pdf = b"%PDF-1.4 not really\n" * 10
    mime = mime_message(
        subject="s",
        sender="a@contoso.example",
        to=["b@contoso.example"],
        body="x",
        attachments=[("a.pdf", "application/pdf", pdf), ("b.txt", "text/plain", b"notes")],
    )

    attachments = parse_message(mime).attachments

    assert [item.info.name for item in attachments] == ["a.pdf", "b.txt"]
    assert attachments[0].content == pdf
    assert attachments[0].info.content_sha256 == hashlib.sha256(pdf).hexdigest()


def test_mailbox_text_quotes_names_with_specials():
    names = {"j@contoso.example": "Smith, John"}

    assert mailbox_text("j@contoso.example", None, names) == '"Smith, John" <j@contoso.example>'
    assert mailbox_text("k@contoso.example", "Kim Lee", {}) == "Kim Lee <k@contoso.example>"
    assert mailbox_text("k@contoso.example", None, {}) == "k@contoso.example"
    assert mailbox_text(None, None, {}) == ""
