"""Message bodies and attachments: MIME built in the test, and the corpus's hard cases."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from m365lake.search.extract import MessageText, extract_message, extract_text
from m365lake.search.extract_types import COMPLETE_STATUSES

ALL_STATUSES = ("ok", "empty", "unsupported", "encrypted", "corrupt", "too_large", "timeout")


def _message(subject: str = "Pipeline capacity") -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = "Michelle Lokay <michelle.lokay@enron.com>"
    message["To"] = "Kim Watson <kim.watson@enron.com>"
    return message


def test_plain_body_preferred_over_html():
    message = _message()
    message.set_content("Plain rendering of the body")
    message.add_alternative("<p>HTML rendering of the body</p>", subtype="html")

    result = extract_message(message.as_bytes())

    assert result.body_extraction.status == "ok"
    assert "Plain rendering" in result.body
    assert "HTML rendering" not in result.body
    assert result.attachments == []


def test_html_only_body_converted_to_text():
    message = _message()
    message.set_content(
        "<html><head><style>.x{}</style><script>track()</script></head>"
        "<body><p>Rates for <b>March</b></p><p>Second paragraph</p></body></html>",
        subtype="html",
    )

    result = extract_message(message.as_bytes())

    assert result.body_extraction.status == "ok"
    assert "Rates for March" in result.body
    assert "Second paragraph" in result.body
    assert "track()" not in result.body
    assert ".x{}" not in result.body


def test_body_charset_decoded():
    message = _message()
    message.set_content("Grüße aus Zürich", charset="iso-8859-1", cte="quoted-printable")

    result = extract_message(message.as_bytes())

    assert "Grüße aus Zürich" in result.body


def test_attachment_name_type_size_and_text():
    message = _message()
    message.set_content("See attached")
    message.add_attachment(
        b"Volumes for the Red Rock expansion", maintype="text", subtype="plain",
        filename="volumes.txt",
    )  # fmt: skip

    result = extract_message(message.as_bytes())

    assert len(result.attachments) == 1
    attachment = result.attachments[0]
    assert attachment.name == "volumes.txt"
    assert attachment.content_type == "text/plain"
    assert attachment.size == len(b"Volumes for the Red Rock expansion")
    assert attachment.extraction.status == "ok"
    assert "Red Rock expansion" in attachment.extraction.text


def test_nested_message_attachment_text():
    inner = _message("Inner subject line")
    inner.set_content("Inner body text")
    inner.add_attachment(
        b"Deeply attached words", maintype="text", subtype="plain", filename="deep.txt"
    )
    outer = _message("Fwd: Inner subject line")
    outer.set_content("Forwarding the thread")
    outer.add_attachment(inner)

    result = extract_message(outer.as_bytes())

    assert "Forwarding the thread" in result.body
    assert len(result.attachments) == 1
    nested = result.attachments[0]
    assert nested.content_type == "message/rfc822"
    assert nested.extraction.status == "ok"
    assert "Subject: Inner subject line" in nested.extraction.text
    assert "From: Michelle Lokay <michelle.lokay@enron.com>" in nested.extraction.text
    assert "To: Kim Watson <kim.watson@enron.com>" in nested.extraction.text
    assert "Inner body text" in nested.extraction.text
    assert "deep.txt" in nested.extraction.text
    assert "Deeply attached words" in nested.extraction.text


def test_nested_message_reports_failed_attachment():
    inner = _message("Inner")
    inner.set_content("Inner body")
    inner.add_attachment(
        b"%PDF-1.4 garbage", maintype="application", subtype="pdf", filename="broken.pdf"
    )
    outer = _message("Outer")
    outer.set_content("Outer body")
    outer.add_attachment(inner)

    result = extract_message(outer.as_bytes())

    nested = result.attachments[0].extraction
    assert nested.status == "corrupt"
    assert nested.reason is not None
    assert "broken.pdf" in nested.reason
    assert "Inner body" in nested.text


def test_eml_file_extracted_as_text():
    message = _message("Standalone eml")
    message.set_content("Body of a saved message")

    result = extract_text(message.as_bytes(), filename="saved.eml")

    assert result.status == "ok"
    assert "Subject: Standalone eml" in result.text
    assert "Body of a saved message" in result.text
    assert result.title == "Standalone eml"


def test_message_max_chars_applies_to_body():
    message = _message()
    message.set_content("x" * 5000)

    result = extract_message(message.as_bytes(), max_chars=100)

    assert result.body_extraction.status == "too_large"
    assert len(result.body) == 100


def test_garbage_message_never_raises():
    for data in (b"", b"\x00\xff" * 100, b"Content-Type: multipart/mixed\r\n\r\n--", b"From:"):
        result = extract_message(data)

        assert isinstance(result, MessageText)
        assert result.body_extraction.status in ALL_STATUSES


@pytest.mark.corpus
def test_mime_edge_corpus_never_raises(corpus_root: Path):
    folder = corpus_root / "mail" / "mime-edge"
    files = [
        p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix not in (".md", ".csv")
    ]
    named_attachments = 0
    assert len(files) > 200

    for path in files:
        result = extract_message(path.read_bytes())

        assert isinstance(result, MessageText), path
        assert result.body_extraction.status in ALL_STATUSES, path
        if not result.body_extraction.complete:
            assert result.body_extraction.reason, path
        for attachment in result.attachments:
            assert attachment.extraction.status in ALL_STATUSES, path
            assert attachment.size >= 0, path
            if not attachment.extraction.complete:
                assert attachment.extraction.reason, (path, attachment.name)
            named_attachments += attachment.name is not None

    # Measured: 97 of the 186 attachments in this folder carry a name. The rest are
    # unnamed inline parts (calendar, delivery status, nested messages).
    assert named_attachments >= 97


@pytest.mark.corpus
def test_enron_attachments_extracted(corpus_root: Path):
    folder = corpus_root / "mail" / "enron" / "edrm-lokay-m-eml"
    statuses: dict[str, str] = {}
    texts: dict[str, str] = {}

    for path in sorted(folder.rglob("*.eml")):
        for attachment in extract_message(path.read_bytes()).attachments:
            if attachment.name:
                statuses[attachment.name] = attachment.extraction.status
                texts[attachment.name] = attachment.extraction.text

    assert statuses["tahoe.xls"] == "ok"
    assert "LAKE TAHOE" in texts["tahoe.xls"]
    assert statuses["TWEOL.pdf"] == "ok"
    assert "Gas Daily" in texts["TWEOL.pdf"]
    assert statuses["OBA_LoneStar_27730.doc"] == "ok"
    assert "LONE STAR GAS COMPANY" in texts["OBA_LoneStar_27730.doc"]


@pytest.mark.corpus
def test_non_ascii_attachment_names(corpus_root: Path):
    folder = corpus_root / "mail" / "mime-edge" / "eml" / "mikel-mail"
    cases = {
        "attachment_emails__attachment_nonascii_filename.eml": "ciële.txt",
        "multi_charset__japanese_attachment_long_name.eml": (
            "かきくけこかきくけこかきくけこかきくけこかきくけこ.txt"
        ),
    }
    for file_name, expected in cases.items():
        path = next(folder.glob(file_name[:40] + "*"))

        names = [a.name for a in extract_message(path.read_bytes()).attachments]

        assert expected in names, (file_name, names)


@pytest.mark.corpus
def test_outlook_msg_body_and_attachments(corpus_root: Path):
    folder = corpus_root / "mail" / "mime-edge" / "msg"
    complete = 0
    files = sorted(folder.rglob("*.msg"))

    for path in files:
        result = extract_message(path.read_bytes())
        complete += result.body_extraction.status in COMPLETE_STATUSES

    # Measured: every .msg body in the folder is complete (bodies may be empty).
    assert complete == len(files)


@pytest.mark.corpus
def test_outlook_msg_attached_message(corpus_root: Path):
    path = next((corpus_root / "mail" / "mime-edge" / "msg").rglob("msgInMsg.msg"))

    result = extract_message(path.read_bytes())

    nested = [a for a in result.attachments if a.content_type == "message/rfc822"]
    assert nested, [a.name for a in result.attachments]
    assert nested[0].extraction.text.startswith("Subject:")


@pytest.mark.corpus
def test_bare_tnef_as_message(corpus_root: Path):
    path = corpus_root / "mail" / "mime-edge" / "tnef" / "tnefparse" / "two-files.tnef"

    result = extract_message(path.read_bytes())

    assert [a.name for a in result.attachments] == ["AUTHORS", "README"]
    assert [a.extraction.status for a in result.attachments] == ["ok", "ok"]
    assert "Authors of tnef" in result.attachments[0].extraction.text


@pytest.mark.corpus
def test_tnef_body_and_files(corpus_root: Path):
    folder = corpus_root / "mail" / "mime-edge" / "tnef" / "tnefparse"

    two_files = extract_text((folder / "two-files.tnef").read_bytes(), filename="winmail.dat")
    body = extract_text((folder / "body.tnef").read_bytes(), filename="winmail.dat")

    assert two_files.status == "ok"
    assert "[AUTHORS]" in two_files.text
    assert "Authors of tnef" in two_files.text
    assert body.status == "ok"
    assert "THE BILL OF RIGHTS" in body.text


@pytest.mark.corpus
def test_smime_and_pgp_messages(corpus_root: Path):
    folder = corpus_root / "mail" / "mime-edge" / "eml" / "thunderbird"

    enveloped = extract_message((folder / "alice.env.eml").read_bytes())
    opaque_signed = extract_message((folder / "alice.sig.SHA256.opaque.eml").read_bytes())
    pgp = extract_message(
        next(folder.glob("encrypted-and-signed-alice-to-bob-nonascii*")).read_bytes()
    )

    assert enveloped.body_extraction.status == "encrypted"
    assert [a.extraction.status for a in enveloped.attachments] == ["encrypted"]
    assert pgp.body_extraction.status == "encrypted"
    assert opaque_signed.body_extraction.status == "ok"
    assert "This is a test message from Alice to Bob." in opaque_signed.body


def test_related_html_not_doubled_with_plain():
    message = _message()
    message.set_content("Plain body once")
    message.add_alternative("<p>HTML body once</p>", subtype="html")
    html_part = message.get_payload()[1]
    html_part.add_related(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", cid="<logo>")

    result = extract_message(message.as_bytes())

    assert result.body.count("body once") == 1
    assert "Plain body once" in result.body
    assert [a.content_type for a in result.attachments] == ["image/png"]


def test_blank_plain_falls_back_to_html():
    message = _message()
    message.set_content(" \r\n")
    message.add_alternative("<p>Only the HTML has text</p>", subtype="html")

    result = extract_message(message.as_bytes())

    assert result.body_extraction.status == "ok"
    assert "Only the HTML has text" in result.body
