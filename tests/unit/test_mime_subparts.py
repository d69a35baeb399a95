"""The header-only check agrees with a full parse on whether a message has attachments."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.sources.mime import MimeTooDeepError, has_subparts, read_attachments
from tests.hostile.generator import HostileCase, mail_cases, nested_multipart, nested_rfc822

SINGLE_PART = {
    "plain LF": b"Subject: a\nContent-Type: text/plain\n\nbody\n",
    "plain CRLF": b"Subject: a\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
    "bare CR lines": b"Subject: a\rContent-Type: text/plain\r\rContent-Type: multipart/mixed\r",
    "no content type": b"Subject: a\n\nbody with Content-Type: multipart/mixed in it\n",
    "no blank line": b"Subject: a\nContent-Type: text/html\n",
    "empty": b"",
    "named single part": (
        b"Subject: a\nContent-Type: application/pdf; name=x.pdf\n"
        b"Content-Disposition: attachment; filename=x.pdf\n\nJVBERi0=\n"
    ),
    "multipart type after a non-header line": (
        b"Subject: a\nnot a header line\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\n\nx\n--b--\n"
    ),
}
WITH_PARTS = {
    "multipart": (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nx\n"
        b"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; "
        b"filename=a.bin\n\nabc\n--b--\n"
    ),
    "upper-case type": (
        b"Content-Type: MULTIPART/Mixed; boundary=b\n\n--b\nContent-Disposition: attachment;"
        b" filename=a.txt\n\nabc\n--b--\n"
    ),
    "folded content type": (
        b"Content-Type: multipart/mixed;\n\tboundary=b\n\n--b\nContent-Disposition: attachment;"
        b" filename=a.txt\n\nabc\n--b--\n"
    ),
}
# A top-level message/rfc822 has a part, the inner message, which is not an attachment.
ATTACHED_MESSAGE = b"Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n"


@pytest.mark.parametrize("mime", SINGLE_PART.values(), ids=SINGLE_PART.keys())
def test_single_part_has_no_subparts(mime: bytes) -> None:
    assert not has_subparts(mime)
    assert read_attachments(mime) == []


@pytest.mark.parametrize("mime", WITH_PARTS.values(), ids=WITH_PARTS.keys())
def test_parts_are_found(mime: bytes) -> None:
    assert has_subparts(mime)
    assert read_attachments(mime)


def test_top_level_rfc822_takes_full_parse() -> None:
    assert has_subparts(ATTACHED_MESSAGE)
    assert read_attachments(ATTACHED_MESSAGE) == []


def _agrees_with_full_parse(mime: bytes) -> bool:
    try:
        attachments = read_attachments(mime)
    except MimeTooDeepError:
        return has_subparts(mime)
    return has_subparts(mime) or not attachments


def test_hostile_nesting_takes_full_parse() -> None:
    for mime in (nested_multipart(50), nested_rfc822(50)):
        assert has_subparts(mime)
        assert _agrees_with_full_parse(mime)


@pytest.mark.parametrize("case", mail_cases(), ids=lambda case: case.name)
def test_hostile_mail_agrees_with_full_parse(case: HostileCase) -> None:
    assert _agrees_with_full_parse(case.data)


def test_corpus_mail_agrees_with_full_parse(corpus_root: Path) -> None:
    mail = corpus_root / "mail"
    paths = sorted(path for path in mail.rglob("*") if path.is_file() and _is_mail(path))
    assert len(paths) > 1000
    disagreeing = [str(path) for path in paths if not _agrees_with_full_parse(path.read_bytes())]
    assert disagreeing == []


def _is_mail(path: Path) -> bool:
    return path.suffix.lower() in ("", ".eml", ".") or path.parent.name == "eml"
