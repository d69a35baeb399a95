"""Compare text-extraction libraries per format on the shared corpus.

Every (candidate, format) pair runs in a fresh child process over the same files, so
peak RSS is comparable. For each pair the script prints files attempted, succeeded
(non-empty text, no exception), failed, seconds and peak RSS. "m365lake" is the
project's own ``extract_text`` (the chosen stack, with content sniffing and limits).

The candidates are not project dependencies. Run with all of them on the path:

    uv run --with pypdf --with pdfminer.six --with python-docx --with docx2txt \\
        --with openpyxl --with xlrd --with python-pptx --with odfpy --with selectolax \\
        --with html-text --with kreuzberg --with 'markitdown[all]' --with extract-msg \\
        python bench/extract_candidates.py

A candidate that is not installed is reported as such and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import io
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
# A file that takes longer than this counts as a failure for that candidate.
PER_FILE_SECONDS = 30

# Format group -> file extensions in the corpus that belong to it.
GROUPS: dict[str, tuple[str, ...]] = {
    "pdf": ("pdf",),
    "docx": ("docx", "docm", "dotx"),
    "xlsx": ("xlsx", "xlsm"),
    "xlsb": ("xlsb",),
    "xls": ("xls",),
    "ods": ("ods",),
    "pptx": ("pptx",),
    "odt/odp": ("odt", "odp"),
    "rtf": ("rtf",),
    "doc": ("doc",),
    "ppt": ("ppt",),
    "msg": ("msg",),
    "html": ("html", "htm"),
}

MIME_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "docm": "application/vnd.ms-word.document.macroEnabled.12",
    "dotx": "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    "xlsb": "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
    "xls": "application/vnd.ms-excel",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "rtf": "application/rtf",
    "doc": "application/msword",
    "ppt": "application/vnd.ms-powerpoint",
    "msg": "application/vnd.ms-outlook",
    "html": "text/html",
    "htm": "text/html",
}

Extractor = Callable[[bytes, str], str]


# Candidate functions: (data, filename) -> text. Imports are inside so that a child
# process loads only the library it measures.


def _m365lake(data: bytes, name: str) -> str:
    from m365lake.search.extract import extract_text

    return extract_text(data, filename=name).text


def _pypdfium2(data: bytes, name: str) -> str:
    import pypdfium2

    document = pypdfium2.PdfDocument(data)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def _pypdf(data: bytes, name: str) -> str:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        reader.decrypt("")
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def _pdfminer(data: bytes, name: str) -> str:
    from pdfminer.high_level import extract_text

    return str(extract_text(io.BytesIO(data)))


def _python_docx(data: bytes, name: str) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append("\t".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _docx2txt(data: bytes, name: str) -> str:
    import docx2txt

    return str(docx2txt.process(io.BytesIO(data)))


def _calamine(data: bytes, name: str) -> str:
    import python_calamine

    workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    lines = []
    for sheet in workbook.sheet_names:
        for row in workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=True):
            lines.append("\t".join(str(value) for value in row if value != ""))
    return "\n".join(lines)


def _openpyxl(data: bytes, name: str) -> str:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    lines = []
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows(values_only=True):
            lines.append("\t".join(str(value) for value in row if value is not None))
    workbook.close()
    return "\n".join(lines)


def _xlrd(data: bytes, name: str) -> str:
    import xlrd

    book = xlrd.open_workbook(file_contents=data, on_demand=True)
    lines = []
    for sheet in book.sheets():
        for index in range(sheet.nrows):
            lines.append("\t".join(str(v) for v in sheet.row_values(index) if v != ""))
    return "\n".join(lines)


def _python_pptx(data: bytes, name: str) -> str:
    import pptx

    presentation = pptx.Presentation(io.BytesIO(data))
    parts = []
    for slide in presentation.slides:
        for shape in slide.shapes:
            if shape.has_text_frame:
                parts.append(shape.text_frame.text)
    return "\n".join(parts)


def _odfpy(data: bytes, name: str) -> str:
    from odf import teletype, text
    from odf.opendocument import load

    document = load(io.BytesIO(data))
    return "\n".join(teletype.extractText(p) for p in document.getElementsByType(text.P))


def _striprtf(data: bytes, name: str) -> str:
    from striprtf.striprtf import rtf_to_text

    return str(rtf_to_text(data.decode("latin-1"), errors="replace"))


def _lxml_html(data: bytes, name: str) -> str:
    from m365lake.search.extract_plain import html_to_text

    return html_to_text(data)[0]


def _selectolax(data: bytes, name: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(data)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    body = tree.body
    return body.text(separator="\n") if body is not None else ""


def _html_text(data: bytes, name: str) -> str:
    import html_text

    return str(html_text.extract_text(data.decode("utf-8", errors="replace")))


def _extract_msg(data: bytes, name: str) -> str:
    import extract_msg

    message = extract_msg.openMsg(io.BytesIO(data))
    try:
        parts = [message.subject or "", message.body or ""]
        parts.extend(str(a.getFilename() or "") for a in message.attachments)
        return "\n".join(parts)
    finally:
        message.close()


def _kreuzberg(data: bytes, name: str) -> str:
    import kreuzberg

    extension = name.rsplit(".", 1)[-1].lower()
    result = kreuzberg.extract_bytes_sync(data, MIME_TYPES.get(extension, "text/plain"))
    return str(result.content)


def _markitdown(data: bytes, name: str) -> str:
    import markitdown

    converter = markitdown.MarkItDown(enable_plugins=False)
    extension = "." + name.rsplit(".", 1)[-1].lower()
    result = converter.convert_stream(io.BytesIO(data), file_extension=extension)
    return str(result.text_content)


# Candidate name -> (module probed for "installed", licence, groups, function).
CANDIDATES: dict[str, tuple[str, str, tuple[str, ...], Extractor]] = {
    "m365lake": ("m365lake", "Apache-2.0 (this project)", tuple(GROUPS), _m365lake),
    "pypdfium2": ("pypdfium2", "Apache-2.0 / BSD-3-Clause (PDFium)", ("pdf",), _pypdfium2),
    "pypdf": ("pypdf", "BSD-3-Clause", ("pdf",), _pypdf),
    "pdfminer.six": ("pdfminer", "MIT", ("pdf",), _pdfminer),
    "python-docx": ("docx", "MIT", ("docx",), _python_docx),
    "docx2txt": ("docx2txt", "MIT", ("docx",), _docx2txt),
    "python-calamine": (
        "python_calamine",
        "MIT",
        ("xlsx", "xlsb", "xls", "ods"),
        _calamine,
    ),
    "openpyxl": ("openpyxl", "MIT", ("xlsx",), _openpyxl),
    "xlrd": ("xlrd", "BSD-3-Clause", ("xls",), _xlrd),
    "python-pptx": ("pptx", "MIT", ("pptx",), _python_pptx),
    "odfpy": ("odf", "Apache-2.0 / GPL-2.0 / LGPL-2.1 (pick one)", ("odt/odp", "ods"), _odfpy),
    "striprtf": ("striprtf", "BSD-3-Clause", ("rtf",), _striprtf),
    "lxml.html": ("lxml", "BSD-3-Clause", ("html",), _lxml_html),
    "selectolax": ("selectolax", "MIT", ("html",), _selectolax),
    "html-text": ("html_text", "MIT", ("html",), _html_text),
    "extract-msg": ("extract_msg", "GPL-3.0 (measured only)", ("msg",), _extract_msg),
    "kreuzberg": (
        "kreuzberg",
        "MIT (bundles PDFium and Rust crates)",
        tuple(GROUPS),
        _kreuzberg,
    ),
    "markitdown": (
        "markitdown",
        "MIT",
        ("pdf", "docx", "xlsx", "xls", "pptx", "msg", "html"),
        _markitdown,
    ),
}


def corpus_items(corpus: Path, group: str) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) for every corpus item of a format group, in a fixed order."""
    extensions = GROUPS[group]
    for path in sorted((corpus / "files").rglob("*")):
        if path.is_file() and path.suffix[1:].lower() in extensions:
            yield path.name, path.read_bytes()
    if group == "msg":
        for path in sorted((corpus / "mail" / "mime-edge" / "msg").rglob("*.msg")):
            yield path.name, path.read_bytes()
    for name, content_type, data in _mail_parts(corpus):
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension in extensions or (group == "html" and content_type == "text/html"):
            yield name, data


def _mail_parts(corpus: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield attachments and HTML bodies of the Enron .eml export and the MIME edge cases."""
    folders = [
        corpus / "mail" / "enron" / "edrm-lokay-m-eml",
        corpus / "mail" / "mime-edge" / "eml",
    ]
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() in (".md", ".csv"):
                continue
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            for index, part in enumerate(message.walk()):
                if part.is_multipart():
                    continue
                try:
                    payload = part.get_payload(decode=True)
                except Exception:
                    continue
                if not isinstance(payload, bytes) or not payload:
                    continue
                name = part.get_filename() or f"{path.stem}-part{index}"
                yield str(name), part.get_content_type(), payload


def run_candidate(candidate: str, group: str, corpus: Path, rounds: int) -> dict[str, object]:
    """Measure one candidate on one format group, inside the child process.

    Success and failure counts come from the first round; seconds are the mean per round.
    """
    _module, _licence, _groups, function = CANDIDATES[candidate]
    items = list(corpus_items(corpus, group))
    # Import the library before the clock starts: import time is paid once per process.
    # PyO3 panics derive from BaseException, so suppress that.
    with contextlib.suppress(BaseException):
        function(b"", "warm-up." + GROUPS[group][0])
    base_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"over {PER_FILE_SECONDS} s")

    signal.signal(signal.SIGALRM, on_alarm)
    succeeded = 0
    failures: list[str] = []
    started = time.perf_counter()
    for round_number in range(rounds):
        for name, data in items:
            signal.alarm(PER_FILE_SECONDS)
            try:
                text = function(data, name)
                ok = bool(text and text.strip())
                error = "" if ok else "no text"
            except BaseException as caught:  # PyO3 panics derive from BaseException
                if isinstance(caught, KeyboardInterrupt):
                    raise
                ok, error = False, f"{type(caught).__name__}: {str(caught)[:80]}"
            finally:
                signal.alarm(0)
            if round_number > 0:
                continue
            if ok:
                succeeded += 1
            else:
                failures.append(f"{name}: {error}")
    seconds = (time.perf_counter() - started) / rounds
    return {
        "attempted": len(items),
        "succeeded": succeeded,
        "failed": len(items) - succeeded,
        "seconds": seconds,
        "import_rss_mib": base_rss_kib / 1024,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "failures": failures,
    }


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus folder")
    parser.add_argument("--candidates", help="comma-separated candidate names (default: all)")
    parser.add_argument("--groups", help="comma-separated format groups (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the files (default 3)")
    parser.add_argument("--verbose", action="store_true", help="list each failed file on stderr")
    parser.add_argument("--child", nargs=2, metavar=("CANDIDATE", "GROUP"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.child:
        candidate, group = arguments.child
        print(json.dumps(run_candidate(candidate, group, arguments.corpus, arguments.rounds)))
        return

    candidates = arguments.candidates.split(",") if arguments.candidates else list(CANDIDATES)
    groups = arguments.groups.split(",") if arguments.groups else list(GROUPS)
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"corpus {arguments.corpus}"
    )
    print(
        "| format | candidate | licence | attempted | succeeded | failed | seconds per round "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    environment = dict(os.environ, PYTHONPATH=str(REPO), RUST_BACKTRACE="0")
    for group in groups:
        for candidate in candidates:
            module, licence, candidate_groups, _function = CANDIDATES[candidate]
            if group not in candidate_groups:
                continue
            if not _installed(module):
                print(f"| {group} | {candidate} | {licence} | not installed | | | | |")
                continue
            completed = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--corpus",
                    str(arguments.corpus),
                    "--child",
                    candidate,
                    group,
                ],
                capture_output=True,
                text=True,
                env=environment,
                timeout=1800,
                check=False,
            )
            lines = completed.stdout.strip().splitlines()
            if completed.returncode != 0 or not lines:
                status = f"crashed (exit {completed.returncode})"
                print(f"| {group} | {candidate} | {licence} | {status} | | | | |")
                continue
            result = json.loads(lines[-1])
            print(
                f"| {group} | {candidate} | {licence} | {result['attempted']} | "
                f"{result['succeeded']} | {result['failed']} | {result['seconds']:.2f} | "
                f"{result['peak_rss_mib']:.0f} |"
            )
            if arguments.verbose:
                for failure in result["failures"]:
                    print(f"    {group} {candidate} failed: {failure}", file=sys.stderr)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
