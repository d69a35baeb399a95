"""MIME nested past the email package's recursion limit fails as one clear error."""

from __future__ import annotations

import pytest

from m365lake.discovery.production.mail import parse_message
from m365lake.restore.mail_json import build_create
from m365lake.sources.mime import (
    MimeTooDeepError,
    extract_attachment,
    list_attachments,
    parse_mime,
)
from tests.hostile.generator import nested_multipart, nested_rfc822

TOO_DEEP = {
    # The parser itself recurses past Python's limit.
    "3000 multiparts": nested_multipart(3000),
    "3000 attached messages": nested_rfc822(3000),
    # Parsed, but writing an attached message back out recurses past the limit.
    "400 attached messages": nested_rfc822(400),
}
ROW = {"subject": "deep", "to_addresses": [], "categories": [], "is_read": False}


@pytest.mark.parametrize("mime", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_deep_mime_raises_clear_error(mime: bytes) -> None:
    with pytest.raises(MimeTooDeepError, match="deeper than the email parser can follow"):
        list_attachments(mime)
    with pytest.raises(MimeTooDeepError):
        parse_message(mime)
    with pytest.raises(ValueError, match="deeper than the email parser"):
        build_create(mime, ROW, marker=None)


def test_deep_attached_message_extracts_as_error() -> None:
    with pytest.raises(MimeTooDeepError):
        extract_attachment(nested_rfc822(400), 1)


def test_200_levels_still_parse() -> None:
    mime = nested_rfc822(200)

    assert parse_mime(mime).get("Subject") == "wrapper 199"
    assert len(list_attachments(mime)) == 50
