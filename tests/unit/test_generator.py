"""Generated tenants and the large benchmark mailbox: determinism, realism, valid files."""

from __future__ import annotations

import email
import io
import re
import struct
import time
import types
import zipfile
import zlib
from collections import Counter
from email import policy

import pytest

from m365lake.emulator import samplefiles
from m365lake.emulator.generator import (
    LARGE_MAILBOX_USER,
    generate_large_mailbox,
    generate_tenant,
)
from m365lake.emulator.mapping import message_properties, mime_attachments


@pytest.fixture(scope="module")
def tenant():
    return generate_tenant()


def test_same_seed_same_bytes(tenant):
    again = generate_tenant()
    assert [m.mime for m in again.messages] == [m.mime for m in tenant.messages]
    assert again == tenant


def test_other_seed_other_mail(tenant):
    other = generate_tenant(seed=8)
    assert [m.mime for m in other.messages] != [m.mime for m in tenant.messages]


def test_counts_and_users(tenant):
    assert len(tenant.users) == 5
    assert len({user.user_principal_name for user in tenant.users}) == 5
    counts = Counter(m.user_principal_name for m in tenant.messages)
    assert set(counts.values()) == {40}
    assert all(u.user_principal_name.endswith("@contoso.example") for u in tenant.users)
    small = generate_tenant(seed=1, users=2, messages_per_user=3, domain="fabrikam.example")
    assert Counter(m.user_principal_name for m in small.messages) == {
        small.users[0].user_principal_name: 3,
        small.users[1].user_principal_name: 3,
    }


def test_invalid_arguments_rejected():
    with pytest.raises(ValueError, match="users >= 1"):
        generate_tenant(users=0)


def test_folders_flags_and_categories(tenant):
    folders = Counter(m.folder_path for m in tenant.messages)
    assert folders[("Inbox",)] > 0
    assert folders[("Sent Items",)] > 0
    assert any(path[:2] == ("Archive", "Projects") and len(path) == 3 for path in folders)
    assert any(not m.is_read for m in tenant.messages)
    assert all(m.is_read for m in tenant.messages if m.folder_path == ("Sent Items",))
    assert any(m.categories for m in tenant.messages)
    assert all(m.received_at is not None for m in tenant.messages)
    owner = tenant.users[0].user_principal_name
    assert (owner, ("Archive", "Projects", "Falcon")) in tenant.folders


def test_every_attachment_kind_present(tenant):
    kinds = Counter()
    for message in tenant.messages:
        for attachment in mime_attachments(message.mime):
            kinds[(attachment.kind, attachment.content_type, attachment.is_inline)] += 1
    office = "application/vnd.openxmlformats-officedocument"
    for expected in [
        ("file", "application/pdf", False),
        ("file", f"{office}.wordprocessingml.document", False),
        ("file", f"{office}.spreadsheetml.sheet", False),
        ("file", "image/png", True),
        ("file", "text/csv", False),
        ("file", "text/plain", False),
        ("item", "message/rfc822", False),
    ]:
        assert kinds[expected] > 0, expected


def test_attachments_are_valid_files(tenant):
    seen = set()
    for message in tenant.messages:
        for attachment in mime_attachments(message.mime):
            data = attachment.content
            if attachment.name.endswith((".docx", ".xlsx")):
                archive = zipfile.ZipFile(io.BytesIO(data))
                assert archive.testzip() is None
                assert "[Content_Types].xml" in archive.namelist()
                main = (
                    "word/document.xml" if attachment.name.endswith(".docx") else "xl/workbook.xml"
                )
                assert main in archive.namelist()
            elif attachment.name.endswith(".pdf"):
                _check_pdf(data)
            elif attachment.name.endswith(".png"):
                _check_png(data)
            seen.add(attachment.name.rsplit(".", 1)[-1])
    assert {"docx", "xlsx", "pdf", "png", "csv", "txt"} <= seen


def _check_pdf(data: bytes) -> None:
    assert data.startswith(b"%PDF-1.4")
    assert data.rstrip().endswith(b"%%EOF")
    xref = int(re.search(rb"startxref\n(\d+)", data).group(1))
    assert data[xref:].startswith(b"xref")
    for number, offset in enumerate(re.findall(rb"(\d{10}) 00000 n", data), start=1):
        assert data[int(offset) :].startswith(b"%d 0 obj" % number)


def _check_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    position, idat = 8, b""
    width = height = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc
        if kind == b"IHDR":
            width, height = struct.unpack(">II", payload[:8])
        if kind == b"IDAT":
            idat += payload
        position += 12 + length
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)


def test_sample_files_stand_alone():
    _check_pdf(samplefiles.pdf_document("Title (with) \\ parens", ["ünïcode line"]))
    _check_png(samplefiles.png_image(300, 300))
    assert samplefiles.csv_text([["a,b", 1]]) == b'"a,b",1\r\n'


def test_replies_thread_and_quote(tenant):
    replies = 0
    for user in tenant.users:
        mailbox = [m for m in tenant.messages if m.user_principal_name == user.user_principal_name]
        by_id = {}
        for message in mailbox:
            parsed = email.message_from_bytes(message.mime, policy=policy.default)
            by_id[parsed["Message-ID"]] = message
            parent = parsed["In-Reply-To"]
            if parent is None:
                continue
            replies += 1
            assert parent in by_id, "a reply follows its parent in the same mailbox"
            assert str(parsed["References"]).split()[-1] == parent
            assert parsed["Subject"].startswith("RE: ")
            body = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
            assert " wrote:\n> " in body
            conversation = message_properties(message.mime, received_at=None)["conversationId"]
            root = message_properties(by_id[parent].mime, received_at=None)["conversationId"]
            assert conversation == root
    assert replies >= 20


def test_mapping_reads_generated_mail(tenant):
    for message in tenant.messages:
        properties = message_properties(message.mime, received_at=message.received_at)
        assert properties["subject"]
        assert properties["from"]["emailAddress"]["address"]
        assert properties["toRecipients"]
        assert properties["bodyPreview"]
    names = {
        p["from"]["emailAddress"]["name"]
        for p in (message_properties(m.mime, received_at=None) for m in tenant.messages)
    }
    assert any(not name.isascii() for name in names), "some names need RFC 2047"


def test_large_mailbox_streams():
    stream = generate_large_mailbox(1_000_000)
    assert isinstance(stream, types.GeneratorType)
    first = next(stream)
    assert first.user_principal_name == LARGE_MAILBOX_USER.user_principal_name
    stream.close()


def test_large_mailbox_deterministic():
    first = [m.mime for m in generate_large_mailbox(500)]
    second = [m.mime for m in generate_large_mailbox(500)]
    assert first == second
    assert first != [m.mime for m in generate_large_mailbox(500, seed=12)]


def test_large_mailbox_content():
    messages = list(generate_large_mailbox(2_000))
    folders = Counter(m.folder_path for m in messages)
    assert {("Inbox",), ("Sent Items",), ("Archive", "2020")} <= set(folders)
    with_attachments = [m for m in messages if mime_attachments(m.mime)]
    assert 40 <= len(with_attachments) <= 200
    replies = [m for m in messages if b"\r\nIn-Reply-To: " in m.mime]
    assert len(replies) > 500
    assert any(not m.is_read for m in messages)
    for message in messages[:300]:
        properties = message_properties(message.mime, received_at=message.received_at)
        assert properties["subject"]
        assert properties["from"]["emailAddress"]["address"]


def test_large_mailbox_hundred_thousand_fast():
    started = time.perf_counter()
    count = sum(1 for _ in generate_large_mailbox(100_000))
    elapsed = time.perf_counter() - started
    assert count == 100_000
    assert elapsed < 60, f"100,000 messages took {elapsed:.1f} s"
