"""Text from PDF files through pypdfium2 (Google's PDFium).

PDFium ignores the owner-password permission flags ("no copying", "no extraction"), so
restricted PDFs that open without a password are extracted, as e-discovery requires. A
PDF that needs a user password to open is reported as encrypted.

PDFium is not thread-safe: two threads inside it at once crashed the process in this
project's tests. Every call into it here holds ``_PDFIUM_LOCK``, so ``extract_text`` may
be called from several threads, with PDFs extracted one at a time.
"""

from __future__ import annotations

import threading

import pypdfium2
import pypdfium2.raw as pdfium_raw

from m365lake.search.extract_types import Extraction, ExtractionFailed, finish

# Pages beyond this are not read, and the result is marked as cut off. Real PDFs with
# more pages exist (scanned productions), but their text would pass max_chars long before.
MAX_PAGES = 5_000

_PDFIUM_LOCK = threading.Lock()


def extract_pdf(data: bytes, *, max_chars: int) -> Extraction:
    """Extract the text of every page, in page order."""
    with _PDFIUM_LOCK:
        try:
            document = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as error:
            if error.err_code == pdfium_raw.FPDF_ERR_PASSWORD or "password" in str(error).lower():
                raise ExtractionFailed("encrypted", "the PDF needs a password to open") from None
            raise ExtractionFailed("corrupt", f"the PDF cannot be opened ({error})") from None
        try:
            return _read_document(document, max_chars=max_chars)
        finally:
            document.close()


def _read_document(document: pypdfium2.PdfDocument, *, max_chars: int) -> Extraction:
    metadata = _metadata(document)
    page_count = len(document)
    texts: list[str] = []
    length = 0
    images = 0
    for index in range(min(page_count, MAX_PAGES)):
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                text = textpage.get_text_range()
            finally:
                textpage.close()
            if not text.strip():
                images += sum(1 for _ in page.get_objects(filter=[pdfium_raw.FPDF_PAGEOBJ_IMAGE]))
        finally:
            page.close()
        texts.append(text.replace("\r\n", "\n"))
        length += len(text)
        if length > max_chars:
            break
    text = "\n\n".join(texts)
    if not text.strip() and images:
        raise ExtractionFailed(
            "unsupported",
            f"the PDF has no text layer, only {images} image(s), and text in images is not "
            "recognised (no OCR)",
        )
    result = finish(text, max_chars=max_chars, **metadata)
    if page_count > MAX_PAGES and result.status == "ok":
        return Extraction(
            text=result.text,
            status="too_large",
            reason=f"only the first {MAX_PAGES:,} of {page_count:,} pages were read",
            title=result.title,
            author=result.author,
        )
    return result


def _metadata(document: pypdfium2.PdfDocument) -> dict[str, str | None]:
    try:
        info = document.get_metadata_dict(skip_empty=True)
    except pypdfium2.PdfiumError:
        return {"title": None, "author": None}
    return {"title": info.get("Title"), "author": info.get("Author")}
