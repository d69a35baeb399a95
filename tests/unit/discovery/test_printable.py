"""Control characters in produced text: one rule for the load files, cards and TEXT files."""

from __future__ import annotations

from m365lake.discovery.production.folder import ProductionFolder
from m365lake.discovery.production.printable import printable_text
from m365lake.discovery.production.text import TextPart, extract_family
from m365lake.search.extract_types import Extraction, MessageText


def test_controls_become_spaces() -> None:
    assert printable_text("a\x00b\x07c\x1bd\x14e\x7f") == "a b c d e "


def test_page_breaks_become_line_feeds() -> None:
    assert printable_text("page\x0cline\x0bend") == "page\nline\nend"


def test_tab_and_line_ends_kept() -> None:
    assert printable_text("tab\tcr\rlf\n") == "tab\tcr\rlf\n"


def test_lone_surrogate_replaced() -> None:
    assert printable_text("lone \ud800") == "lone \ufffd"


class _Extractor:
    def extract_text(self, data: bytes, **_: object) -> Extraction:
        return Extraction(text=data.decode(), status="ok")

    def extract_message(self, mime: bytes, **_: object) -> MessageText:
        raise AssertionError("the part is not a message")


def test_text_file_has_no_control_characters(tmp_path) -> None:
    part = TextPart(
        text_path="TEXT/A1.txt",
        content=b"body\x00with\x1bnul\x0cpage",
        filename="a.txt",
        content_type="text/plain",
        size=22,
        header="Subject: nul\x00here\n\n",
    )

    extract_family(ProductionFolder(tmp_path), _Extractor(), [part], max_chars=1000)

    written = (tmp_path / "TEXT" / "A1.txt").read_bytes().decode("utf-8-sig")
    assert written == "Subject: nul here\r\n\r\nbody with nul\r\npage"
