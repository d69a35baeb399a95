"""Dedup hashes of mail and files, and the per-custodian and global scopes."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest

from m365lake.discovery.production.dedup import (
    Deduplicator,
    MailHashFields,
    body_sha256,
    mail_hash,
    normalise_body,
)
from tests.unit.discovery.test_export_fixtures import mime_message

SENT = datetime(2001, 5, 1, 9, 30, tzinfo=UTC)
BASE = MailHashFields(
    from_address="alice@contoso.example",
    to=["bob@contoso.example", "carol@contoso.example"],
    cc=["dave@contoso.example"],
    subject="Budget forecast",
    sent_at=SENT,
    body_sha256="b" * 64,
    attachment_sha256=["1" * 64, "2" * 64],
)


def _with(**changes: object) -> MailHashFields:
    values = {**BASE.__dict__, **changes}
    return MailHashFields(**values)  # type: ignore[arg-type]


def _body(mime: bytes) -> str:
    return body_sha256(email.message_from_bytes(mime, policy=email.policy.compat32))


def test_scope_none_keeps_everything():
    dedup = Deduplicator("none")

    assert dedup.check(0, "mailbox:a", "h") is None
    assert dedup.check(1, "mailbox:a", "h") is None


def test_scope_custodian_dedups_within_custodian_only():
    dedup = Deduplicator("custodian")

    assert dedup.check(0, "mailbox:a", "h") is None
    assert dedup.check(1, "mailbox:a", "h") == 0
    assert dedup.check(2, "mailbox:b", "h") is None
    assert dedup.check(3, "mailbox:b", "h") == 2


def test_scope_global_dedups_across_custodians():
    dedup = Deduplicator("global")

    assert dedup.check(0, "mailbox:a", "h") is None
    assert dedup.check(1, "mailbox:b", "h") == 0
    assert dedup.check(2, "onedrive:c", "h") == 0
    assert dedup.check(3, "mailbox:b", "other") is None


def test_family_without_hash_never_duplicate():
    dedup = Deduplicator("global")

    assert dedup.check(0, "onedrive:a", None) is None
    assert dedup.check(1, "onedrive:a", None) is None


@pytest.mark.parametrize(
    "same",
    [
        _with(to=["CAROL@contoso.example", "bob@contoso.example"]),
        _with(to=["bob@contoso.example", "carol@contoso.example", "bob@contoso.example"]),
        _with(from_address="Alice@Contoso.example "),
        _with(subject="  Budget   forecast "),
        _with(sent_at=SENT + timedelta(microseconds=999)),
        _with(sent_at=SENT.astimezone(datetime.now().astimezone().tzinfo)),
        _with(attachment_sha256=["2" * 64, "1" * 64]),
    ],
)
def test_mail_hash_ignores_normalised_differences(same):
    assert mail_hash(same) == mail_hash(BASE)


@pytest.mark.parametrize(
    "other",
    [
        _with(body_sha256="c" * 64),
        _with(bcc=["eve@contoso.example"]),
        _with(cc=[]),
        _with(subject="RE: Budget forecast"),
        _with(sent_at=SENT + timedelta(seconds=1)),
        _with(attachment_sha256=["1" * 64]),
        _with(attachment_sha256=["1" * 64, "3" * 64]),
        _with(from_address="mallory@contoso.example"),
    ],
)
def test_mail_hash_tells_different_messages_apart(other):
    assert mail_hash(other) != mail_hash(BASE)


def test_mail_hash_is_stable():
    """The hash is recorded in productions, so its definition must not drift."""
    assert mail_hash(BASE) == mail_hash(_with())
    assert len(mail_hash(BASE)) == 64


def test_normalise_body_line_ends_and_blanks():
    assert normalise_body(b"\r\n\r\nHello  \r\nworld\t\r\n\r\n") == b"Hello\nworld"
    assert normalise_body(b"Hello\rworld") == b"Hello\nworld"


def test_body_hash_equal_for_copies_with_other_headers():
    first = mime_message(
        subject="s",
        sender="a@x.example",
        to=["b@x.example"],
        body="Body text\n",
        headers={"X-Folder": "\\Alice\\Inbox", "Received": "from mx1"},
    )
    second = mime_message(
        subject="s",
        sender="a@x.example",
        to=["b@x.example"],
        body="Body text\n",
        headers={"X-Folder": "\\Bob\\Sent", "Received": "from mx2"},
    )

    assert _body(first) == _body(second)


def test_body_hash_differs_for_other_body():
    first = mime_message(subject="s", sender="a@x.example", to=["b@x.example"], body="Yes\n")
    second = mime_message(subject="s", sender="a@x.example", to=["b@x.example"], body="No\n")

    assert _body(first) != _body(second)


def test_body_hash_leaves_out_text_attachments():
    plain = mime_message(subject="s", sender="a@x.example", to=["b@x.example"], body="Body\n")
    attached = mime_message(
        subject="s",
        sender="a@x.example",
        to=["b@x.example"],
        body="Body\n",
        attachments=[("notes.txt", "text/plain", b"attachment text")],
    )

    assert _body(plain) == _body(attached)
