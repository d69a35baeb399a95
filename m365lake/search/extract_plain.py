"""Text from plain-text, HTML and RTF inputs, with lenient charset decoding."""

from __future__ import annotations

import codecs
import html
import re

import charset_normalizer
import lxml.html
from lxml import etree
from striprtf.striprtf import rtf_to_text

from m365lake.search.extract_types import Extraction, ExtractionFailed, finish

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Elements whose content is never shown to a reader.
_INVISIBLE_TAGS = ("script", "style", "noscript", "template", "head", "title")
# Elements after which a reader sees a line break.
_BLOCK_TAGS = frozenset(
    (
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "thead", "tfoot", "tr", "ul",
    )
)  # fmt: skip
_CELL_TAGS = frozenset(("td", "th"))
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_TAG = re.compile(r"<[^>]*>")
_INVISIBLE_BLOCK = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"[ \r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def decode_text(data: bytes, declared_charset: str | None = None) -> str:
    """Decode ``data`` leniently: a BOM, then the declared charset, UTF-8, a detected one.

    Never raises. Undecodable bytes become U+FFFD.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    declared = _known_codec(declared_charset)
    if declared is not None:
        try:
            return data.decode(declared)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if declared is not None and declared not in ("us-ascii", "ascii"):
        # A declared charset that fails strict decoding is still the best guess for most
        # bytes, so prefer it over detection (e.g. one stray byte in a windows-1252 body).
        return data.decode(declared, errors="replace")
    best = charset_normalizer.from_bytes(data[:200_000]).best()
    if best is not None and best.encoding:
        return data.decode(best.encoding, errors="replace")
    return data.decode("cp1252", errors="replace")


def _known_codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    aliases = {"unicode-1-1-utf-7": "utf-7", "x-sjis": "shift_jis", "ks_c_5601-1987": "cp949"}
    name = aliases.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def extract_plain(data: bytes, *, max_chars: int, charset: str | None = None) -> Extraction:
    """Extract a plain-text or CSV file."""
    return finish(decode_text(data, charset), max_chars=max_chars)


def html_to_text(markup: str | bytes) -> tuple[str, str | None]:
    """Convert HTML to the text a reader sees, and return it with the document title.

    Script, style and head content is dropped, block elements become line breaks and
    table cells are separated by tabs.
    """
    if isinstance(markup, bytes):
        markup = decode_text(markup, _declared_html_charset(markup))
    # lxml rejects a str that carries an XML declaration with an encoding (XHTML mail).
    markup = _XML_DECLARATION.sub("", markup.replace("\x00", ""), count=1)
    if not markup.strip():
        return "", None
    # huge_tree lifts libxml2's nesting limit from 256 to 2048 levels. A parser per call,
    # because lxml parsers must not be shared between threads.
    parser = lxml.html.HTMLParser(huge_tree=True)
    try:
        root = lxml.html.document_fromstring(markup, parser=parser)
    except (etree.ParserError, ValueError):
        return _strip_tags(markup), None
    if any("depth" in entry.message.lower() for entry in parser.error_log):
        # libxml2 stops at its nesting limit and drops the rest of the document, so read
        # such (hostile or broken) markup by removing tags instead.
        return _strip_tags(markup), None
    title_element = root.find(".//title")
    title = title_element.text_content().strip() if title_element is not None else None
    for element in list(root.iter(*_INVISIBLE_TAGS)):
        if element.getparent() is not None:
            element.drop_tree()
    etree.strip_elements(root, etree.Comment, etree.ProcessingInstruction, with_tail=False)
    return _tidy(_collect_html_text(root)), title or None


def _collect_html_text(root: lxml.html.HtmlElement) -> str:
    parts: list[str] = []
    # An explicit stack, because hostile mail nests elements deeper than Python recursion.
    stack: list[tuple[lxml.html.HtmlElement, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        if closing:
            tag = element.tag if isinstance(element.tag, str) else ""
            if tag in _BLOCK_TAGS:
                parts.append("\n")
            elif tag in _CELL_TAGS:
                parts.append("\t")
            if element.tail and element is not root:
                parts.append(element.tail)
            continue
        if element.text:
            parts.append(element.text)
        stack.append((element, True))
        stack.extend((child, False) for child in reversed(element))
    return "".join(parts)


def _strip_tags(markup: str) -> str:
    text = _TAG.sub(" ", _INVISIBLE_BLOCK.sub(" ", markup))
    return _tidy(html.unescape(text))


def _declared_html_charset(markup: bytes) -> str | None:
    match = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-:.]+)""", markup[:4096], re.I)
    return match.group(1).decode("ascii") if match else None


def _tidy(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def extract_html(data: bytes, *, max_chars: int, charset: str | None = None) -> Extraction:
    """Extract an HTML file."""
    markup = decode_text(data, charset or _declared_html_charset(data))
    text, title = html_to_text(markup)
    return finish(text, max_chars=max_chars, title=title)


def extract_rtf(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an RTF document."""
    # RTF is 7-bit by specification, so bytes above 127 only appear in damaged files.
    # The \\ansicpg code page decides how \\'hh escapes decode, and striprtf applies it.
    source = data.decode("latin-1")
    if "{\\rtf" not in source[:1024]:
        raise ExtractionFailed("corrupt", "the file has an .rtf name but no RTF header")
    codepage = re.search(r"\\ansicpg(\d+)", source[:4096])
    encoding = _known_codec(f"cp{codepage.group(1)}") if codepage else None
    text: str = rtf_to_text(  # type: ignore[no-untyped-call]
        source, encoding=encoding or "cp1252", errors="replace"
    )
    return finish(_tidy(text), max_chars=max_chars)
