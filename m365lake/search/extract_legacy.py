"""Text from the binary Office formats (.doc, .xls, .ppt) stored in OLE compound files.

No maintained, permissively licensed Python library reads .doc or .ppt text (antiword
and catdoc are GPL programs, Apache POI needs a JVM), so this module reads the two
formats directly from their published specifications: [MS-DOC] for Word 97-2003 and
Word 6/95, and [MS-PPT] for PowerPoint 97-2003. Spreadsheets (.xls) go to calamine
after an encryption check.
"""

from __future__ import annotations

import codecs
import io
import re
import struct

import olefile

from m365lake.search.extract_sheet import extract_spreadsheet
from m365lake.search.extract_types import Extraction, ExtractionFailed, finish

# [MS-DOC] FibBase
_WORD97_IDENT = 0xA5EC
_WORD6_IDENT = 0xA5DC
_FIB_FLAG_ENCRYPTED = 0x0100
_FIB_FLAG_WHICH_TABLE = 0x0200
# [MS-DOC] FibRgFcLcb97: offset of fcClx and lcbClx from the start of the FIB.
_FIB_FC_CLX = 0x01A2
# [MS-DOC] FibBase (Word 6/95 layout): fcMin and fcMac bound the document text.
_FIB_FC_MIN = 0x18

# [MS-PPT] RecordType values.
_PPT_TEXT_CHARS = 0x0FA0
_PPT_TEXT_BYTES = 0x0FA8
_PPT_MAIN_MASTER = 0x03F8
_PPT_CRYPT_SESSION = 0x2F14

# [MS-XLS] FilePass: the record that marks an encrypted workbook.
_XLS_FILEPASS = 0x002F

_FIELD_CODE = re.compile("\x13[^\x13\x14\x15]*\x14|\x13[^\x13\x14\x15]*\x15")
_WORD_SPECIALS = str.maketrans(
    {
        "\x07": "\t",  # end of table cell
        "\x0b": "\n",  # line break
        "\x0c": "\n",  # page or section break
        "\r": "\n",  # end of paragraph
        "\x1e": "-",  # non-breaking hyphen
        "\x1f": "",  # optional hyphen
        "\xa0": " ",
        "\x01": "",  # picture anchor
        "\x02": "",  # footnote reference
        "\x05": "",  # comment reference
        "\x08": "",  # drawing anchor
        "\x14": "",
        "\x15": "",
    }
)


class OleDocument:
    """An OLE compound file opened from bytes."""

    def __init__(self, data: bytes, kind: str) -> None:
        self.kind = kind
        try:
            self.ole = olefile.OleFileIO(io.BytesIO(data))
        except Exception as error:  # olefile raises OSError, struct.error, IndexError and more
            raise ExtractionFailed(
                "corrupt", f"the {kind} file is not a readable OLE compound file ({error})"
            ) from None

    def read(self, name: str) -> bytes:
        if not self.ole.exists(name):
            raise ExtractionFailed("corrupt", f"the {self.kind} file has no {name} stream")
        try:
            return bytes(self.ole.openstream(name).read())
        except Exception as error:
            raise ExtractionFailed(
                "corrupt", f"the {self.kind} stream {name} cannot be read ({error})"
            ) from None

    def exists(self, name: str) -> bool:
        return bool(self.ole.exists(name))

    def properties(self) -> tuple[str | None, str | None]:
        """Return the title and author from the SummaryInformation stream."""
        try:
            metadata = self.ole.get_metadata()
        except Exception:
            return None, None
        codepage = metadata.codepage if isinstance(metadata.codepage, int) else 1252
        return _property_text(metadata.title, codepage), _property_text(metadata.author, codepage)

    def close(self) -> None:
        self.ole.close()


def _property_text(value: object, codepage: int) -> str | None:
    if isinstance(value, bytes):
        encoding = "utf-16-le" if codepage == 1200 else _codepage_encoding(codepage)
        return value.decode(encoding, errors="replace")
    return value if isinstance(value, str) else None


def _codepage_encoding(codepage: int) -> str:
    if codepage == 65001:
        return "utf-8"
    try:
        return codecs.lookup(f"cp{codepage}").name
    except LookupError:
        return "cp1252"


def extract_doc(data: bytes, *, max_chars: int) -> Extraction:
    """Extract a Word 97-2003 or Word 6/95 document (.doc, .dot)."""
    document = OleDocument(data, "Word")
    try:
        word = document.read("WordDocument")
        if len(word) < 0x20:
            raise ExtractionFailed("corrupt", "the Word document stream is truncated")
        ident, nfib = struct.unpack_from("<HH", word, 0)
        flags = struct.unpack_from("<H", word, 0x0A)[0]
        if flags & _FIB_FLAG_ENCRYPTED:
            raise ExtractionFailed("encrypted", "the Word document is password-protected")
        if ident == _WORD6_IDENT or (ident == _WORD97_IDENT and nfib < 101):
            text = _word6_text(word)
        elif ident == _WORD97_IDENT:
            table_name = "1Table" if flags & _FIB_FLAG_WHICH_TABLE else "0Table"
            text = _word97_text(word, document.read(table_name))
        else:
            raise ExtractionFailed(
                "unsupported", f"the Word document has an unknown version (FIB id {ident:#06x})"
            )
        title, author = document.properties()
    finally:
        document.close()
    return finish(_clean_word_text(text), max_chars=max_chars, title=title, author=author)


def _word97_text(word: bytes, table: bytes) -> str:
    """Read the text through the piece table ([MS-DOC] Retrieving Text)."""
    if len(word) < _FIB_FC_CLX + 8:
        raise ExtractionFailed("corrupt", "the Word document's FIB is truncated")
    fc_clx, lcb_clx = struct.unpack_from("<II", word, _FIB_FC_CLX)
    clx = table[fc_clx : fc_clx + lcb_clx]
    if not clx or len(clx) != lcb_clx:
        raise ExtractionFailed("corrupt", "the Word document's piece table is out of range")

    position = 0
    # Skip Prc entries (formatting), which come before the Pcdt.
    while position < len(clx) and clx[position] == 0x01:
        if position + 3 > len(clx):
            raise ExtractionFailed("corrupt", "the Word document's piece table is truncated")
        position += 3 + struct.unpack_from("<H", clx, position + 1)[0]
    if position + 5 > len(clx) or clx[position] != 0x02:
        raise ExtractionFailed("corrupt", "the Word document has no piece table")

    # The piece table: n + 1 character positions, then n 8-byte piece descriptors.
    lcb = struct.unpack_from("<I", clx, position + 1)[0]
    plc = clx[position + 5 : position + 5 + lcb]
    pieces = (len(plc) - 4) // 12
    if pieces <= 0:
        return ""
    cps = struct.unpack_from(f"<{pieces + 1}I", plc, 0)

    parts: list[str] = []
    for index in range(pieces):
        length = cps[index + 1] - cps[index]
        if length <= 0:
            continue
        descriptor = 4 * (pieces + 1) + 8 * index
        fc_value = struct.unpack_from("<I", plc, descriptor + 2)[0]
        # Bit 30 set: 8-bit characters at half the offset. Clear: UTF-16LE at the offset.
        if fc_value & 0x40000000:
            start = (fc_value & 0x3FFFFFFF) // 2
            parts.append(word[start : start + length].decode("cp1252", errors="replace"))
        else:
            start = fc_value & 0x3FFFFFFF
            parts.append(word[start : start + 2 * length].decode("utf-16-le", errors="replace"))
    return "".join(parts)


def _word6_text(word: bytes) -> str:
    """Read Word 6/95 text, which is stored in one run of 8-bit characters."""
    fc_min, fc_mac = struct.unpack_from("<II", word, _FIB_FC_MIN)
    if not 0 < fc_min <= fc_mac <= len(word):
        raise ExtractionFailed("corrupt", "the Word 6/95 document's text bounds are invalid")
    return word[fc_min:fc_mac].decode("cp1252", errors="replace")


def _clean_word_text(text: str) -> str:
    # A field code (e.g. HYPERLINK "...") sits between 0x13 and 0x14, and the result
    # shown to the reader follows it up to 0x15.
    previous = None
    while previous != text:
        previous = text
        text = _FIELD_CODE.sub(lambda m: "\x14" if m.group(0).endswith("\x14") else "", text)
    text = text.replace("\x13", "").translate(_WORD_SPECIALS)
    return re.sub(r"[\x00-\x08\x0e-\x1f]", "", text)


def extract_ppt(data: bytes, *, max_chars: int) -> Extraction:
    """Extract a PowerPoint 97-2003 presentation (.ppt, .pps) by walking its records."""
    document = OleDocument(data, "PowerPoint")
    try:
        if document.exists("EncryptedSummary"):
            raise ExtractionFailed("encrypted", "the PowerPoint file is password-protected")
        stream = document.read("PowerPoint Document")
        texts = _ppt_texts(stream)
        title, author = document.properties()
    finally:
        document.close()
    return finish("\n".join(texts), max_chars=max_chars, title=title, author=author)


def _ppt_texts(stream: bytes) -> list[str]:
    texts: list[str] = []
    # (end offset, inside a master slide) for each open container.
    containers: list[tuple[int, bool]] = []
    position = 0
    while position + 8 <= len(stream):
        while containers and position >= containers[-1][0]:
            containers.pop()
        in_master = bool(containers) and containers[-1][1]
        version_instance, record_type, length = struct.unpack_from("<HHI", stream, position)
        body = position + 8
        if record_type == _PPT_CRYPT_SESSION:
            raise ExtractionFailed("encrypted", "the PowerPoint file is password-protected")
        if version_instance & 0x000F == 0x000F:
            containers.append((body + length, in_master or record_type == _PPT_MAIN_MASTER))
            position = body
            continue
        if not in_master and record_type == _PPT_TEXT_CHARS:
            texts.append(stream[body : body + length].decode("utf-16-le", errors="replace"))
        elif not in_master and record_type == _PPT_TEXT_BYTES:
            texts.append(stream[body : body + length].decode("cp1252", errors="replace"))
        position = body + length
    return [text.replace("\r", "\n").replace("\x0b", "\n") for text in texts if text.strip()]


def extract_xls(data: bytes, *, max_chars: int) -> Extraction:
    """Extract an Excel 97-2003 or Excel 5/95 workbook (.xls) after checking for encryption."""
    document = OleDocument(data, "Excel")
    try:
        name = "Workbook" if document.exists("Workbook") else "Book"
        if _xls_is_encrypted(document.read(name)):
            raise ExtractionFailed("encrypted", "the Excel workbook is password-protected")
        title, author = document.properties()
    finally:
        document.close()
    return extract_spreadsheet(data, max_chars=max_chars, kind="xls", title=title, author=author)


def _xls_is_encrypted(workbook: bytes) -> bool:
    # FilePass follows the first BOF record within the workbook globals substream.
    position = 0
    for _ in range(64):
        if position + 4 > len(workbook):
            return False
        record_type, length = struct.unpack_from("<HH", workbook, position)
        if record_type == _XLS_FILEPASS:
            return True
        if record_type == 0x0085:  # BoundSheet8: past the point where FilePass may appear
            return False
        position += 4 + length
    return False


def unwrap_ole_object(data: bytes) -> tuple[bytes, str | None] | None:
    """Return the file inside an embedded OLE object and its name, or None.

    Office stores an embedded file as an OLE compound file: a packaged file in an
    "\\x01Ole10Native" stream, an Office Open XML document in a "Package" stream, or a
    PDF (Acrobat's OLE server) in a "CONTENTS" stream.
    """
    document = OleDocument(data, "embedded object")
    try:
        if document.exists("\x01Ole10Native"):
            return _ole10_native(document.read("\x01Ole10Native"))
        for name in ("Package", "CONTENTS"):
            if document.exists(name):
                return document.read(name), None
        return None
    finally:
        document.close()


def _ole10_native(stream: bytes) -> tuple[bytes, str | None] | None:
    # Layout: total size (4), flags (2), label\0, source path\0, 4 reserved bytes,
    # temporary path length (4) and path, data size (4), data.
    try:
        position = 6
        label_end = stream.index(b"\x00", position)
        label = stream[position:label_end].decode("cp1252", errors="replace")
        position = stream.index(b"\x00", label_end + 1) + 1 + 4
        path_length = struct.unpack_from("<I", stream, position)[0]
        position += 4 + path_length
        size = struct.unpack_from("<I", stream, position)[0]
        position += 4
    except (ValueError, struct.error):
        return None
    content = stream[position : position + size]
    return (content, label or None) if len(content) == size else None
