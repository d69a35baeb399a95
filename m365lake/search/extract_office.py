"""Text from zip-and-XML documents: Office Open XML, OpenDocument, EPUB and XPS.

Every format here is a zip archive of XML parts, so one tree walker reads them all. The
walker takes every text node except those the format marks as hidden (field codes,
fallback copies of drawings), so text boxes, footnotes, comments, headers and speaker
notes are found, which object-model libraries such as python-docx skip.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable

from lxml import etree

from m365lake.search.extract_plain import html_to_text
from m365lake.search.extract_types import Extraction, ExtractionFailed, finish

# One XML part larger than this after decompression is not read. Real documents stay far
# below it, and a zip bomb's parts go far above.
MAX_PART_BYTES = 64 * 1024 * 1024
# All parts of one document together.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024


# Extracts an embedded file found inside a document: (data, part name) -> Extraction.
EmbeddedExtractor = Callable[[bytes, str], Extraction]

# Field codes, fallback copies of drawings, and drawing geometry (offsets, alignment),
# whose text nodes hold numbers and keywords rather than document text.
_SKIP_TAGS = frozenset(
    (
        "instrText", "delInstrText", "Fallback", "script", "style", "posOffset", "align",
        "pctPosHOffset", "pctPosVOffset", "pctWidth", "pctHeight",
    )
)  # fmt: skip
_BLOCK_TAGS = frozenset(("p", "h", "tr", "br", "cr", "line-break", "Text", "list-item", "si"))
_TAB_TAGS = frozenset(("tab", "tc", "table-cell"))
_SPACE_TAGS = frozenset(("s",))


class ZipDocument:
    """A zip-based document whose parts are read with size limits."""

    def __init__(self, data: bytes, kind: str) -> None:
        self.kind = kind
        try:
            self.archive = zipfile.ZipFile(io.BytesIO(data))
            self.names = self.archive.namelist()
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
            raise ExtractionFailed(
                "corrupt", f"the {kind} file is not a readable zip archive ({error})"
            ) from None
        if not self.names:
            raise ExtractionFailed("corrupt", f"the {kind} file is an empty zip archive")
        self._lower = {name.lower(): name for name in self.names}
        self._read_bytes = 0

    def has(self, name: str) -> bool:
        return name.lower() in self._lower

    def read(self, name: str) -> bytes:
        """Read one part, raising ExtractionFailed when it is damaged, encrypted or too large."""
        info = self.archive.getinfo(self._lower.get(name.lower(), name))
        if info.flag_bits & 0x1:
            raise ExtractionFailed("encrypted", f"the {self.kind} part {name} is encrypted")
        chunks: list[bytes] = []
        size = 0
        try:
            with self.archive.open(info) as stream:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    self._read_bytes += len(chunk)
                    if size > MAX_PART_BYTES or self._read_bytes > MAX_DOCUMENT_BYTES:
                        raise ExtractionFailed(
                            "too_large",
                            f"the {self.kind} part {name} expands to more than "
                            f"{MAX_PART_BYTES // (1024 * 1024)} MiB",
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
            raise ExtractionFailed(
                "corrupt", f"the {self.kind} part {name} cannot be decompressed ({error})"
            ) from None
        return b"".join(chunks)

    def matching(self, pattern: str) -> list[str]:
        """Return the part names that fully match ``pattern``, in natural number order."""
        regex = re.compile(pattern, re.IGNORECASE)
        return sorted((n for n in self.names if regex.fullmatch(n)), key=_natural_key)

    def close(self) -> None:
        self.archive.close()


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def parse_xml(data: bytes) -> etree._Element | None:
    """Parse an XML part leniently, returning None when nothing could be parsed."""
    # Entities are not resolved and nothing is fetched, so an XML bomb or an external
    # entity cannot expand. A parser per call, because lxml parsers must not be shared
    # between threads.
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, recover=True, remove_comments=True
    )
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None


def xml_text(root: etree._Element | None) -> str:
    """Return the visible text of an XML tree, with breaks after paragraphs and rows."""
    if root is None:
        return ""
    parts: list[str] = []
    # An explicit stack, because a hostile document can nest deeper than Python recursion.
    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        if closing:
            name = _local_name(element)
            if name in _BLOCK_TAGS:
                parts.append("\n")
            elif name in _TAB_TAGS:
                parts.append("\t")
            elif name in _SPACE_TAGS:
                parts.append(" ")
            if element.tail and stack:
                parts.append(element.tail)
            continue
        if not isinstance(element.tag, str) or _local_name(element) in _SKIP_TAGS:
            if element.tail:
                parts.append(element.tail)
            continue
        if element.text:
            parts.append(element.text)
        stack.append((element, True))
        stack.extend((child, False) for child in reversed(element))
    return "".join(parts)


def _local_name(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")


def _join(texts: Iterable[str]) -> str:
    joined = "\n\n".join(text.strip() for text in texts if text.strip())
    return _BLANK_LINES.sub("\n\n", joined)


def core_properties(document: ZipDocument, part: str) -> tuple[str | None, str | None]:
    if not document.has(part):
        return None, None
    root = parse_xml(document.read(part))
    if root is None:
        return None, None
    found: dict[str, str] = {}
    for element in root.iter():
        name = _local_name(element)
        if name in ("title", "creator", "initial-creator") and element.text and name not in found:
            found[name] = element.text
    return found.get("title"), found.get("creator") or found.get("initial-creator")


def _ooxml_title_author(document: ZipDocument) -> tuple[str | None, str | None]:
    return core_properties(document, "docProps/core.xml")


def _texts_of(document: ZipDocument, names: Iterable[str]) -> list[str]:
    return [xml_text(parse_xml(document.read(name))) for name in names]


def embedded_texts(
    document: ZipDocument, folder: str, embedded: EmbeddedExtractor | None
) -> list[str]:
    """Return the text of charts, embedded files and imported chunks inside ``folder``.

    Embedded files (an attached PDF, a pasted spreadsheet, an altChunk HTML page) are
    extracted one container level deeper, and their text is added when it could be read.
    An embedded file that cannot be read leaves its host complete, because the host's own
    text was all extracted.
    """
    texts = _texts_of(document, document.matching(rf"{folder}/charts/chart\d+\.xml"))
    if embedded is None:
        return texts
    parts = [
        *document.matching(rf"{folder}/embeddings/.+"),
        *document.matching(rf"{folder}/[^/]+\.(mht|mhtml|htm|html|rtf|txt)"),
    ]
    for name in parts:
        result = embedded(document.read(name), name)
        if result.text.strip():
            texts.append(f"[{name.rsplit('/', 1)[-1]}]\n{result.text}")
    return texts


def extract_docx(
    data: bytes, *, max_chars: int, embedded: EmbeddedExtractor | None = None
) -> Extraction:
    """Extract a Word document (.docx, .docm, .dotx): body, headers, footers, notes, comments."""
    document = ZipDocument(data, "Word")
    try:
        main = document.matching(r"word/document\d*\.xml")
        if not main:
            raise ExtractionFailed("corrupt", "the Word file has no word/document.xml part")
        parts = [
            *main,
            *document.matching(r"word/header\d*\.xml"),
            *document.matching(r"word/footer\d*\.xml"),
            *document.matching(r"word/(footnotes|endnotes|comments)\.xml"),
            *document.matching(r"word/glossary/document\.xml"),
        ]
        text = _join(_texts_of(document, parts) + embedded_texts(document, "word", embedded))
        title, author = _ooxml_title_author(document)
    finally:
        document.close()
    return finish(text, max_chars=max_chars, title=title, author=author)


def extract_pptx(
    data: bytes, *, max_chars: int, embedded: EmbeddedExtractor | None = None
) -> Extraction:
    """Extract a PowerPoint presentation (.pptx, .pptm): slides, notes and comments."""
    document = ZipDocument(data, "PowerPoint")
    try:
        slides = document.matching(r"ppt/slides/slide\d+\.xml")
        if not slides and not document.has("ppt/presentation.xml"):
            raise ExtractionFailed("corrupt", "the PowerPoint file has no ppt/presentation.xml")
        parts = [
            *slides,
            *document.matching(r"ppt/notesSlides/notesSlide\d+\.xml"),
            *document.matching(r"ppt/comments/comment\d+\.xml"),
        ]
        text = _join(_texts_of(document, parts) + embedded_texts(document, "ppt", embedded))
        title, author = _ooxml_title_author(document)
    finally:
        document.close()
    return finish(text, max_chars=max_chars, title=title, author=author)


def extract_vsdx(data: bytes, *, max_chars: int) -> Extraction:
    """Extract a Visio drawing (.vsdx): the text of shapes on every page."""
    document = ZipDocument(data, "Visio")
    try:
        pages = document.matching(r"visio/pages/page\d+\.xml")
        text = _join(_texts_of(document, pages))
        title, author = _ooxml_title_author(document)
    finally:
        document.close()
    return finish(text, max_chars=max_chars, title=title, author=author)


def ooxml_properties(data: bytes) -> tuple[str | None, str | None]:
    """Return the title and author of an Office Open XML file, or Nones when unreadable."""
    try:
        document = ZipDocument(data, "Office")
    except ExtractionFailed:
        return None, None
    try:
        return _ooxml_title_author(document)
    except ExtractionFailed:
        return None, None
    finally:
        document.close()


def extract_odf(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an OpenDocument text, spreadsheet or presentation (.odt, .ods, .odp)."""
    document = ZipDocument(data, "OpenDocument")
    try:
        if document.has("META-INF/manifest.xml"):
            manifest = document.read("META-INF/manifest.xml")
            if b"encryption-data" in manifest:
                raise ExtractionFailed("encrypted", "the OpenDocument file is password-protected")
        if not document.has("content.xml"):
            raise ExtractionFailed("corrupt", "the OpenDocument file has no content.xml part")
        content = parse_xml(document.read("content.xml"))
        body = None
        if content is not None:
            body = next((e for e in content.iter() if _local_name(e) == "body"), content)
        texts = [xml_text(body)]
        if document.has("styles.xml"):
            # Headers and footers live in the master pages of styles.xml.
            styles = parse_xml(document.read("styles.xml"))
            if styles is not None:
                texts.extend(
                    xml_text(e) for e in styles.iter() if _local_name(e) == "master-styles"
                )
        title, author = core_properties(document, "meta.xml")
    finally:
        document.close()
    return finish(_join(texts), max_chars=max_chars, title=title, author=author)


def extract_epub(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an EPUB book: every XHTML chapter in archive order."""
    document = ZipDocument(data, "EPUB")
    try:
        chapters = [n for n in document.names if n.lower().endswith((".xhtml", ".html", ".htm"))]
        texts = [html_to_text(document.read(name))[0] for name in chapters]
        title, author = None, None
        opf = [n for n in document.names if n.lower().endswith(".opf")]
        if opf:
            title, author = core_properties(document, opf[0])
    finally:
        document.close()
    return finish(_join(texts), max_chars=max_chars, title=title, author=author)


def extract_xps(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an XPS document: the Unicode strings of the glyph runs on every page."""
    document = ZipDocument(data, "XPS")
    try:
        pages = document.matching(r".*\.fpage")
        texts: list[str] = []
        for page in pages:
            root = parse_xml(document.read(page))
            if root is None:
                continue
            runs = [
                element.get("UnicodeString", "")
                for element in root.iter()
                if _local_name(element) == "Glyphs"
            ]
            texts.append("\n".join(runs))
        title, author = _ooxml_title_author(document)
    finally:
        document.close()
    return finish(_join(texts), max_chars=max_chars, title=title, author=author)


# Compression methods zipfile reads: stored, deflate, bzip2, lzma.
_KNOWN_ZIP_METHODS = (0, 8, 12, 14)


def extract_iwork09(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an iWork '09 Pages, Numbers or Keynote file (a zip with an XML index)."""
    document = ZipDocument(data, "iWork")
    try:
        names = [n for n in document.names if n.lower().startswith(("index.xml", "index.apxl"))]
        if not names:
            raise ExtractionFailed("corrupt", "the iWork file has no index.xml or index.apxl")
        info = document.archive.getinfo(names[0])
        if info.compress_type not in _KNOWN_ZIP_METHODS:
            # Password-protected iWork '09 files store their parts with Apple's own
            # encrypting compression methods.
            raise ExtractionFailed("encrypted", "the iWork document is password-protected")
        index = document.read(names[0])
    finally:
        document.close()
    if names[0].lower().endswith(".gz"):
        index = _gunzip(index)
    root = parse_xml(index)
    texts: list[str] = []
    if root is not None:
        for element in root.iter():
            name = _local_name(element)
            if name == "p":
                texts.append("".join(element.itertext()))
            elif name == "ct":  # a Numbers text cell keeps its value in the "s" attribute
                texts.extend(value for key, value in element.attrib.items() if key.endswith("}s"))
    return finish("\n".join(t for t in texts if t.strip()), max_chars=max_chars)


def _gunzip(data: bytes) -> bytes:
    import gzip
    import zlib

    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            content = stream.read(MAX_PART_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise ExtractionFailed(
            "corrupt", f"the iWork index cannot be decompressed ({error})"
        ) from None
    if len(content) > MAX_PART_BYTES:
        raise ExtractionFailed("too_large", "the iWork index expands past the part size limit")
    return content
