"""Search documents built from lake rows and extraction results."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from m365lake.search import fields
from m365lake.search.documents import (
    Directory,
    DriveEntry,
    MailboxEntry,
    SiteEntry,
    doc_id_of,
    file_document,
    file_extension,
    message_document,
    recipient_names,
)
from m365lake.search.extract import AttachmentText, Extraction, MessageText

CAPTURED = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
DIRECTORY = Directory(
    mailboxes={
        "mbx-1": MailboxEntry("adele.vance@contoso.example", "Adele Vance"),
        "mbx-2": MailboxEntry("uma.garcia@contoso.example", "Uma García"),
    },
    drives={
        "drive-od": DriveEntry(
            owner_kind="user",
            owner_id="mbx-2",
            owner_name="uma.garcia@contoso.example",
            web_url="https://contoso-my.sharepoint.com/personal/uma/Documents",
        ),
        "drive-site": DriveEntry(
            owner_kind="site",
            owner_id="site-1",
            owner_name="Finance Team",
            site_id="site-1",
            web_url="https://contoso.sharepoint.com/sites/finance/Shared%20Documents",
        ),
    },
    sites={
        "site-1": SiteEntry(
            name="finance",
            display_name="Finance Team",
            web_url="https://contoso.sharepoint.com/sites/finance",
        )
    },
)
MIME = (
    b"From: Adele Vance <adele.vance@contoso.example>\r\n"
    b"To: =?utf-8?q?Luc=C3=ADa_Ortega?= <lucia.ortega@adatum.example>,"
    b" ravi.shah@northwind.example\r\n"
    b'Cc: "Shah, Ravi" <RAVI.SHAH@northwind.example>\r\n'
    b"Subject: Budget\r\n\r\nbody\r\n"
)


def message_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "mailbox_id": "mbx-1",
        "message_id": "AAMk-1",
        "change": "created",
        "captured_at": CAPTURED,
        "run_id": "run-1",
        "folder_path": "Inbox/Projects",
        "subject": "Budget for Q3",
        "from_address": "adele.vance@contoso.example",
        "from_name": "Adele Vance",
        "to_addresses": ["lucia.ortega@adatum.example"],
        "cc_addresses": ["ravi.shah@northwind.example"],
        "bcc_addresses": ["audit@contoso.example"],
        "sent_at": dt.datetime(2024, 6, 1, 11, 0, tzinfo=dt.UTC),
        "received_at": dt.datetime(2024, 6, 1, 11, 1, tzinfo=dt.UTC),
        "importance": "High",
        "is_read": False,
        "has_attachments": True,
        "categories": ["Legal", "Follow up"],
        "size": 4096,
    }
    row.update(overrides)
    return row


def file_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "drive_id": "drive-site",
        "item_id": "01ITEM",
        "change": "created",
        "captured_at": CAPTURED,
        "run_id": "run-2",
        "site_id": "site-1",
        "name": "Q1 Report.DOCX",
        "path": "Finance/Q1 Report.DOCX",
        "is_folder": False,
        "size": 2048,
        "created_at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
        "modified_at": dt.datetime(2024, 2, 3, tzinfo=dt.UTC),
        "created_by": "adele.vance@contoso.example",
        "modified_by": "uma.garcia@contoso.example",
        "web_url": "https://contoso.sharepoint.com/sites/finance/Shared%20Documents/Finance/Q1%20Report.DOCX",
    }
    row.update(overrides)
    return row


def ok(text: str, **metadata: str) -> Extraction:
    return Extraction(text=text, status="ok", **metadata)


def message_text(*attachments: AttachmentText, body: str = "see the figures") -> MessageText:
    return MessageText(body=body, body_extraction=ok(body), attachments=list(attachments))


def test_message_identity_and_custodian():
    document = message_document(message_row(), text=message_text(), directory=DIRECTORY)

    assert document["doc_id"] == ["mail:mbx-1:AAMk-1"]
    assert document["workload"] == ["mail"]
    assert document["container_id"] == ["mbx-1"]
    assert document["item_id"] == ["AAMk-1"]
    assert document["captured_at"] == [CAPTURED]
    assert document["run_id"] == ["run-1"]
    assert "deleted_at" not in document
    assert document["custodian_key"] == ["adele.vance@contoso.example"]
    assert document["location_key"] == ["adele.vance@contoso.example"]
    assert document["custodian"] == ["adele.vance@contoso.example", "Adele Vance"]
    assert document["kind"] == ["email"]
    assert document["size"] == [4096]


def test_message_properties():
    document = message_document(message_row(), text=message_text(), directory=DIRECTORY)

    assert document["subject"] == ["Budget for Q3"]
    assert document["body"] == ["see the figures"]
    assert document["folder"] == ["Inbox/Projects"]
    assert document["category"] == ["Legal", "Follow up"]
    assert document["importance"] == ["high"]
    assert document["isread"] == [False]
    assert document["hasattachment"] == [True]
    assert document["sent"] == [dt.datetime(2024, 6, 1, 11, 0, tzinfo=dt.UTC)]
    assert document["received"] == [dt.datetime(2024, 6, 1, 11, 1, tzinfo=dt.UTC)]
    assert document["partially_indexed"] == [False]
    assert "index_issues" not in document


def test_message_addresses_get_names_from_mime():
    document = message_document(message_row(), text=message_text(), directory=DIRECTORY, mime=MIME)

    assert document["from"] == ["Adele Vance <adele.vance@contoso.example>"]
    assert document["to"] == ["Lucía Ortega <lucia.ortega@adatum.example>"]
    assert document["cc"] == ["Shah, Ravi <ravi.shah@northwind.example>"]
    assert document["bcc"] == ["audit@contoso.example"]
    assert document["recipients"] == document["to"] + document["cc"] + document["bcc"]
    assert document["participants"] == document["from"] + document["recipients"]


def test_message_attachments_folded_in():
    attachments = (
        AttachmentText("plan.docx", "application/msword", 100, ok("harbour dredging plan")),
        AttachmentText(None, "application/pdf", 50, ok("annex text")),
    )

    document = message_document(message_row(), text=message_text(*attachments), directory=DIRECTORY)

    assert document["attachmentnames"] == ["plan.docx"]
    assert document["attachment_text"] == ["harbour dredging plan", "annex text"]


def test_message_incomplete_extraction_is_partial():
    locked = Extraction(text="", status="encrypted", reason="the PDF is password-protected")
    timed_out = Extraction(text="", status="timeout")
    text = MessageText(
        body="",
        body_extraction=timed_out,
        attachments=[AttachmentText("secret.pdf", "application/pdf", 10, locked)],
    )

    document = message_document(message_row(), text=text, directory=DIRECTORY)

    assert document["partially_indexed"] == [True]
    assert document["index_issues"] == [
        "body: timeout",
        "attachment secret.pdf: the PDF is password-protected",
    ]


def test_message_without_content_is_partial():
    document = message_document(
        message_row(), text=None, directory=DIRECTORY, content_issue="blob missing"
    )

    assert document["partially_indexed"] == [True]
    assert document["index_issues"] == ["message: blob missing"]
    assert document["subject"] == ["Budget for Q3"]
    assert "body" not in document


def test_message_deleted_and_unknown_mailbox():
    deleted = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)

    document = message_document(
        message_row(mailbox_id="gone"), text=message_text(), directory=DIRECTORY, deleted_at=deleted
    )

    assert document["deleted_at"] == [deleted]
    assert document["custodian_key"] == ["gone"]


def test_message_dates_outside_index_range_left_out():
    row = message_row(
        sent_at=dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        received_at=dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
    )

    document = message_document(row, text=message_text(), directory=DIRECTORY)

    assert "sent" not in document
    assert "received" not in document
    fields.to_tantivy_document(document)


def test_naive_datetimes_taken_as_utc():
    row = message_row(sent_at=dt.datetime(2024, 6, 1, 11, 0))

    document = message_document(row, text=message_text(), directory=DIRECTORY)

    assert document["sent"] == [dt.datetime(2024, 6, 1, 11, 0, tzinfo=dt.UTC)]


def test_site_file_document():
    extraction = ok("quarterly figures", title="Q1 Report", author="Finance Desk")

    document = file_document(file_row(), extraction=extraction, directory=DIRECTORY)

    assert document["doc_id"] == ["file:drive-site:01ITEM"]
    assert document["workload"] == ["files"]
    assert document["kind"] == ["docs"]
    assert document["filename"] == ["Q1 Report.DOCX"]
    assert document["fileextension"] == ["docx"]
    assert document["path"][0] == "/Finance/Q1 Report.DOCX"
    assert document["site"] == [
        "Finance Team",
        "finance",
        "https://contoso.sharepoint.com/sites/finance",
    ]
    assert document["location_key"] == ["https://contoso.sharepoint.com/sites/finance"]
    assert "custodian_key" not in document
    assert document["content"] == ["quarterly figures"]
    assert document["title"] == ["Q1 Report"]
    assert document["author"] == ["Finance Desk"]
    assert document["createdby"] == ["adele.vance@contoso.example"]
    assert document["modifiedby"] == ["uma.garcia@contoso.example"]
    assert document["created"] == [dt.datetime(2024, 1, 2, tzinfo=dt.UTC)]
    assert document["lastmodifiedtime"] == [dt.datetime(2024, 2, 3, tzinfo=dt.UTC)]
    assert document["partially_indexed"] == [False]


def test_onedrive_file_has_owner_as_custodian():
    row = file_row(drive_id="drive-od", site_id=None)

    document = file_document(row, extraction=ok("notes"), directory=DIRECTORY)

    assert document["custodian_key"] == ["uma.garcia@contoso.example"]
    assert document["custodian"] == ["uma.garcia@contoso.example", "Uma García"]
    assert document["location_key"] == ["https://contoso-my.sharepoint.com/personal/uma/Documents"]
    assert "site" not in document
    assert document["author"] == ["adele.vance@contoso.example"], "creator when no metadata"


def test_file_with_unreadable_content_is_partial():
    corrupt = Extraction(text="", status="corrupt", reason="the zip is truncated")

    document = file_document(file_row(), extraction=corrupt, directory=DIRECTORY)
    missing = file_document(
        file_row(), extraction=None, directory=DIRECTORY, content_issue="malware detected"
    )

    assert document["partially_indexed"] == [True]
    assert document["index_issues"] == ["content: the zip is truncated"]
    assert missing["partially_indexed"] == [True]
    assert missing["index_issues"] == ["content: malware detected"]
    assert missing["filename"] == ["Q1 Report.DOCX"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.PDF", "pdf"),
        ("archive.tar.gz", "gz"),
        (".bashrc", None),
        ("README", None),
        ("trailing.", None),
    ],
)
def test_file_extension(name: str, expected: str | None):
    assert file_extension(name) == expected


def test_recipient_names_tolerate_bad_headers():
    names = recipient_names(b"To: =?bogus?x?zz?= <a@b.example>\r\nCc: <<<\r\n\r\nbody")

    assert isinstance(names, dict)
    assert recipient_names(b"\x00\xff not a message") == {}


@pytest.mark.parametrize(
    "to",
    [
        b"unlisted-recipients:; (no To-header on input)",
        b"group:; trailing text",
        b"a@b.example, :;",
    ],
)
def test_recipient_names_survive_group_syntax(to: bytes):
    mime = b"From: =?utf-8?q?Jos=C3=A9?= <jose@x.example>\r\nTo: " + to + b"\r\n\r\nbody"

    assert recipient_names(mime) == {"jose@x.example": "José"}


def test_documents_are_valid_tantivy_documents():
    message = message_document(message_row(), text=message_text(), directory=DIRECTORY, mime=MIME)
    document = file_document(file_row(), extraction=ok("x"), directory=DIRECTORY)

    for built in (message, document):
        assert set(built) <= set(fields.FIELDS_BY_NAME)
        fields.to_tantivy_document(built)


def test_doc_id_prefixes():
    assert doc_id_of("mail", "m", "i") == "mail:m:i"
    assert doc_id_of("files", "d", "i") == "file:d:i"


def test_lone_surrogates_replaced():
    text = "pair \ud83d\ude00 lone \ud800 end"

    document = file_document(file_row(), extraction=ok(text), directory=DIRECTORY)

    assert document["content"] == ["pair 😀 lone \ufffd end"]
    fields.to_tantivy_document(document)
