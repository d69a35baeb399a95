"""Text extraction for the search index: message bodies, attachments and drive files.

``extract_text`` and ``extract_message`` raise nothing but KeyboardInterrupt and
SystemExit. An item whose text cannot be read (encrypted, corrupt, unsupported, too
large) comes back with a status and a plain-words reason, so the index can still find it
by metadata and report it as partially indexed, as Microsoft Purview does. A crash in
native code (PDFium, calamine) or an endless loop still stops the calling process, so
the indexer runs them through ``ExtractionPool`` (``extract_pool``), which adds a
per-item time limit and memory cap.

Formats are recognised by content first and by name second (``extract_sniff``). The
libraries behind each format were chosen by measurement: see the "Extraction" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from m365lake.search import extract_sniff
from m365lake.search.extract_pool import ExtractionPool
from m365lake.search.extract_types import (
    DEFAULT_MAX_CHARS,
    MAX_INPUT_BYTES,
    MAX_NESTING_DEPTH,
    AttachmentText,
    Extraction,
    ExtractionFailed,
    ExtractionStatus,
    MessageText,
    failure,
)

__all__ = [
    "DEFAULT_MAX_CHARS",
    "MAX_INPUT_BYTES",
    "AttachmentText",
    "Extraction",
    "ExtractionPool",
    "ExtractionStatus",
    "MessageText",
    "extract_message",
    "extract_text",
]

logger = logging.getLogger(__name__)

# Extensions that promise a format. Content that matches no known format under such a
# name is reported as corrupt rather than unsupported.
_CLAIMED_FORMATS = {
    "pdf": "a PDF",
    "docx": "a Word",
    "docm": "a Word",
    "xlsx": "an Excel",
    "xlsm": "an Excel",
    "xlsb": "an Excel",
    "pptx": "a PowerPoint",
    "pptm": "a PowerPoint",
    "odt": "an OpenDocument",
    "ods": "an OpenDocument",
    "odp": "an OpenDocument",
    "doc": "a Word",
    "xls": "an Excel",
    "ppt": "a PowerPoint",
    "zip": "a zip",
    "epub": "an EPUB",
}


def extract_text(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Extraction:
    """Extract the text of one file or attachment, reporting failures in the result.

    ``filename`` and ``content_type`` are hints: the content decides the format when it is
    recognisable. Text longer than ``max_chars`` is cut off with status "too_large".
    """
    return extract_nested(data, filename, content_type, max_chars, 0)


def extract_message(mime: bytes, *, max_chars: int = DEFAULT_MAX_CHARS) -> MessageText:
    """Extract the body and attachments of a MIME message, an Outlook .msg file or TNEF.

    The body is the text/plain part when there is one, else the HTML part converted to
    text. Each attachment comes back with its name, type, size and extraction; an
    attached message's extraction holds its headers, body and attachments as text.
    """
    try:
        if len(mime) > MAX_INPUT_BYTES:
            return _unreadable_message(failure("too_large", _too_large_reason(len(mime))))
        if mime.startswith(extract_sniff.TNEF_MAGIC):
            # A bare winmail.dat: Outlook's own wrapping of a message, not MIME.
            from m365lake.search.extract_tnef import extract_tnef_message

            message, _subject = extract_tnef_message(
                mime, max_chars=max_chars, depth=0, extract_nested=extract_nested
            )
            return message
        if mime.startswith(extract_sniff.OLE_MAGIC):
            from m365lake.search.extract_outlook import extract_msg_message

            return extract_msg_message(
                mime, max_chars=max_chars, depth=0, extract_nested=extract_nested
            )
        from m365lake.search.extract_mail import extract_mime_message

        return extract_mime_message(
            mime, max_chars=max_chars, depth=0, extract_nested=extract_nested
        )
    except ExtractionFailed as failed:
        return _unreadable_message(failure(failed.status, failed.reason))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        # PyO3 libraries (python-calamine) raise PanicException, a BaseException subclass.
        logger.warning("message extraction failed: %s: %s", type(error).__name__, error)
        return _unreadable_message(
            failure("corrupt", f"the message could not be parsed ({type(error).__name__})")
        )


def _unreadable_message(extraction: Extraction) -> MessageText:
    return MessageText(body="", body_extraction=extraction, attachments=[])


def extract_nested(
    data: bytes,
    filename: str | None,
    content_type: str | None,
    max_chars: int,
    depth: int,
) -> Extraction:
    """Extract ``data`` found ``depth`` containers deep (0 for a top-level item)."""
    try:
        if len(data) > MAX_INPUT_BYTES:
            return failure("too_large", _too_large_reason(len(data)))
        if depth > MAX_NESTING_DEPTH:
            return failure(
                "unsupported",
                f"the item is nested more than {MAX_NESTING_DEPTH} containers deep, so it "
                "was not opened",
            )
        kind = extract_sniff.sniff_format(data, filename, content_type)
        return _extract_kind(kind, data, filename, content_type, max_chars, depth)
    except ExtractionFailed as failed:
        return failure(failed.status, failed.reason)
    except MemoryError:
        return failure("too_large", "extraction ran out of memory")
    except RecursionError:
        return failure("corrupt", "the file is nested too deeply to parse")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        logger.warning("extraction of %r failed: %s: %s", filename, type(error).__name__, error)
        return failure("corrupt", f"the file could not be parsed ({type(error).__name__}: {error})")


def _too_large_reason(size: int) -> str:
    return (
        f"the input is {size:,} bytes, over the {MAX_INPUT_BYTES:,}-byte limit for text extraction"
    )


def _extract_kind(
    kind: str,
    data: bytes,
    filename: str | None,
    content_type: str | None,
    max_chars: int,
    depth: int,
) -> Extraction:
    claimed = _CLAIMED_FORMATS.get(extract_sniff.extension_of(filename))
    if claimed and kind in ("text", "binary", "html"):
        return failure("corrupt", f"the file is named as {claimed} file but its content is not one")
    if kind in extract_sniff.UNSUPPORTED_NAMES:
        return failure("unsupported", f"the file is {extract_sniff.UNSUPPORTED_NAMES[kind]}")
    extractor = _extractors().get(kind)
    if extractor is None:
        return failure("unsupported", f"no text extractor for {kind} files")
    charset = _charset_of(content_type)
    return extractor(data, max_chars, depth, charset)


def _charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


_Extractor = Callable[[bytes, int, int, str | None], Extraction]


def load_parsers() -> None:
    """Import every parser library now, as a worker does before its first item."""
    _extractors()


@functools.cache
def _extractors() -> dict[str, _Extractor]:
    # Imported on first use, so a process that only imports this module (the indexer,
    # which extracts through the pool) loads no parser library.
    from m365lake.search import (
        extract_archive,
        extract_legacy,
        extract_office,
        extract_outlook,
        extract_pdf,
        extract_plain,
        extract_sheet,
        extract_tnef,
    )
    from m365lake.search.extract_mail import extract_mime_as_text

    return {
        "pdf": lambda d, m, _depth, _c: extract_pdf.extract_pdf(d, max_chars=m),
        "docx": lambda d, m, depth, _c: extract_office.extract_docx(
            d, max_chars=m, embedded=_embedded_extractor(m, depth)
        ),
        "pptx": lambda d, m, depth, _c: extract_office.extract_pptx(
            d, max_chars=m, embedded=_embedded_extractor(m, depth)
        ),
        "vsdx": lambda d, m, _depth, _c: extract_office.extract_vsdx(d, max_chars=m),
        "odt": lambda d, m, _depth, _c: extract_office.extract_odf(d, max_chars=m),
        "odp": lambda d, m, _depth, _c: extract_office.extract_odf(d, max_chars=m),
        "odg": lambda d, m, _depth, _c: extract_office.extract_odf(d, max_chars=m),
        "iwork09": lambda d, m, _depth, _c: extract_office.extract_iwork09(d, max_chars=m),
        "epub": lambda d, m, _depth, _c: extract_office.extract_epub(d, max_chars=m),
        "xps": lambda d, m, _depth, _c: extract_office.extract_xps(d, max_chars=m),
        "xlsx": lambda d, m, depth, _c: extract_sheet.extract_spreadsheet(
            d, max_chars=m, kind="xlsx", embedded=_embedded_extractor(m, depth)
        ),
        "xlsb": lambda d, m, depth, _c: extract_sheet.extract_spreadsheet(
            d, max_chars=m, kind="xlsb", embedded=_embedded_extractor(m, depth)
        ),
        "ods": lambda d, m, _depth, _c: extract_sheet.extract_spreadsheet(
            d, max_chars=m, kind="ods"
        ),
        "ole:doc": lambda d, m, _depth, _c: extract_legacy.extract_doc(d, max_chars=m),
        "ole:xls": lambda d, m, _depth, _c: extract_legacy.extract_xls(d, max_chars=m),
        "ole:ppt": lambda d, m, _depth, _c: extract_legacy.extract_ppt(d, max_chars=m),
        "ole:embedded": _extract_ole_object,
        "ole:encrypted-ooxml": lambda _d, _m, _depth, _c: failure(
            "encrypted", "the Office document is password-protected (encrypted package)"
        ),
        "ole:irm": lambda _d, _m, _depth, _c: failure(
            "encrypted", "the Office document is protected by rights management (IRM)"
        ),
        "ole:msg": lambda d, m, depth, _c: extract_outlook.extract_msg_as_text(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
        "msg-invalid": lambda _d, _m, _depth, _c: failure(
            "corrupt", "the file is named as an Outlook .msg file but is not an OLE compound file"
        ),
        "tnef": lambda d, m, depth, _c: extract_tnef.extract_tnef(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
        "message": lambda d, m, depth, _c: extract_mime_as_text(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
        "rtf": lambda d, m, _depth, _c: extract_plain.extract_rtf(d, max_chars=m),
        "html": lambda d, m, _depth, c: extract_plain.extract_html(d, max_chars=m, charset=c),
        "text": lambda d, m, _depth, c: extract_plain.extract_plain(d, max_chars=m, charset=c),
        "zip": lambda d, m, depth, _c: extract_archive.extract_zip(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
        "tar": lambda d, m, depth, _c: extract_archive.extract_tar(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
        "7z": lambda d, _m, _depth, _c: extract_archive.extract_7z(d),
        "gzip": lambda d, m, depth, _c: extract_archive.extract_gzip(
            d, max_chars=m, depth=depth, extract_nested=extract_nested
        ),
    }


def _embedded_extractor(max_chars: int, depth: int) -> Callable[[bytes, str], Extraction]:
    def extract_embedded(data: bytes, name: str) -> Extraction:
        return extract_nested(data, name, None, max_chars, depth + 1)

    return extract_embedded


def _extract_ole_object(
    data: bytes, max_chars: int, depth: int, _charset: str | None
) -> Extraction:
    from m365lake.search.extract_legacy import unwrap_ole_object

    unwrapped = unwrap_ole_object(data)
    if unwrapped is None:
        return failure("unsupported", "the embedded OLE object holds no file that can be read")
    content, name = unwrapped
    return extract_nested(content, name, None, max_chars, depth + 1)
