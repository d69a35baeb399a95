"""Identify a file's format from its first bytes, then its name and declared content type.

Content wins over the name, because archived files are often misnamed: a renamed .doc
saved as .xls, a file with no extension, an attachment sent as application/octet-stream.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

import olefile

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
TNEF_MAGIC = b"\x78\x9f\x3e\x22"

# Formats recognised but not extracted, with the words used in the status reason.
UNSUPPORTED_NAMES: dict[str, str] = {
    "image": "an image, and text in images is not recognised (no OCR)",
    "iwork": "an Apple iWork 2013+ document (Pages, Numbers or Keynote), a format not read",
    "onenote": "a OneNote section, a format not read",
    "access": "a Microsoft Access database, a format not read",
    "wordperfect": "a WordPerfect document, a format not read",
    "publisher": "a Microsoft Publisher document, a format not read",
    "works": "a Microsoft Works document, a format not read",
    "visio-legacy": "a Visio 2003 drawing (.vsd), a format not read",
    "ole-other": "an OLE compound file of an unrecognised kind",
    "audio-video": "an audio or video file, and speech is not transcribed",
    "binary": "binary data of an unrecognised format",
}

_TEXT_EXTENSIONS = {
    "txt", "text", "csv", "tsv", "log", "md", "json", "xml", "url", "ics", "vcf", "vcs",
    "ini", "cfg", "yaml", "yml", "sql", "py", "js", "css",
}  # fmt: skip
_HTML_EXTENSIONS = {"htm", "html", "xhtml", "mht", "mhtml"}
_MESSAGE_EXTENSIONS = {"eml", "mht", "mhtml"}
_IMAGE_EXTENSIONS = {
    "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic", "heif", "ico",
}  # fmt: skip
_MEDIA_EXTENSIONS = {"mp3", "mp4", "wav", "m4a", "mov", "avi", "wmv", "wma", "ogg", "flac"}

_ODF_MIMETYPES = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.text-template": "odt",
    "application/vnd.oasis.opendocument.text-master": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.presentation-template": "odp",
    "application/vnd.oasis.opendocument.graphics": "odg",
}

# Header names that start an RFC 5322 message, for messages that arrive without a name.
_MESSAGE_HEADER_STARTS = (
    b"received:",
    b"return-path:",
    b"from:",
    b"mime-version:",
    b"message-id:",
    b"date:",
    b"subject:",
    b"delivered-to:",
    b"x-",
    b"to:",
    b"from ",
)


def extension_of(filename: str | None) -> str:
    """Return the lowercased extension of ``filename`` without the dot, or ""."""
    if not filename:
        return ""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix
    return suffix[1:].lower() if suffix else ""


def sniff_format(data: bytes, filename: str | None, content_type: str | None) -> str:
    """Return the format key of ``data``: "pdf", "docx", "ole:doc", "text", "image" and so on."""
    extension = extension_of(filename)
    mime = (content_type or "").split(";")[0].strip().lower()
    head = data[:4096]

    if head.startswith(b"%PDF") or b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(OLE_MAGIC):
        return _sniff_ole(data, extension)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _sniff_zip(data, extension)
    if head.lstrip().startswith(b"{\\rtf"):
        return "rtf"
    if head.startswith(TNEF_MAGIC):
        return "tnef"
    binary = _sniff_binary_magic(head)
    if binary:
        return binary
    if extension == "tar" or (len(data) > 262 and data[257:262] == b"ustar"):
        return "tar"
    if extension == "msg" or mime == "application/vnd.ms-outlook":
        # An .msg file that is not an OLE compound file cannot be read, so report it as corrupt.
        return "msg-invalid"
    if extension in _MESSAGE_EXTENSIONS or mime in ("message/rfc822", "message/global"):
        return "message"
    if extension in _HTML_EXTENSIONS or mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if extension in _IMAGE_EXTENSIONS or mime.startswith("image/"):
        return "image"
    if extension in _MEDIA_EXTENSIONS or mime.startswith(("audio/", "video/")):
        return "audio-video"
    if extension == "rtf" or mime in ("application/rtf", "text/rtf"):
        return "rtf"
    if _looks_like_html(head):
        return "html"
    if _looks_like_message(head):
        return "message"
    if extension in _TEXT_EXTENSIONS or mime.startswith("text/") or _looks_like_text(head):
        return "text"
    return "binary"


def _sniff_binary_magic(head: bytes) -> str | None:
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP",):
        return "image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return "image"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\xffWPC"):
        return "wordperfect"
    if head[4:19] == b"Standard Jet DB" or head[4:19] == b"Standard ACE DB":
        return "access"
    if head.startswith(b"\xe4\x52\x5c\x7b\x8c\xd8\xa7\x4d"):
        return "onenote"
    if head.startswith((b"ID3", b"OggS", b"fLaC")) or head[4:8] == b"ftyp":
        return "audio-video"
    return None


def _sniff_ole(data: bytes, extension: str) -> str:
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            streams = {"/".join(entry).lower() for entry in ole.listdir(streams=True)}
            roots = {entry[0].lower() for entry in ole.listdir(streams=True, storages=True)}
    except Exception:
        # An OLE header over a damaged directory: let the format module report it.
        return {"xls": "ole:xls", "ppt": "ole:ppt", "msg": "ole:msg"}.get(extension, "ole:doc")
    if "encryptedpackage" in streams and "encryptioninfo" in streams:
        return "ole:encrypted-ooxml"
    if "\tdrmcontent" in streams or "\x06dataspaces" in roots:
        return "ole:irm"
    if "worddocument" in streams:
        return "ole:doc"
    if "workbook" in streams or "book" in streams:
        return "ole:xls"
    if "powerpoint document" in streams:
        return "ole:ppt"
    if "__properties_version1.0" in streams or any(r.startswith("__substg1.0_") for r in roots):
        return "ole:msg"
    if "contents" in streams and "quill" in roots:
        return "publisher"
    if "\x01ole10native" in streams or "package" in streams or "contents" in streams:
        return "ole:embedded"
    if "visiodocument" in streams:
        return "visio-legacy"
    if "matost" in streams or extension == "wps":
        return "works"
    return "ole-other"


def _sniff_zip(data: bytes, extension: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            lowered = {name.lower() for name in names}
            mimetype = ""
            if "mimetype" in lowered:
                mimetype = archive.read("mimetype")[:200].decode("ascii", "replace").strip()
    except Exception:
        # Damaged central directory: decide by name so the format module reports the damage.
        return _OOXML_BY_EXTENSION.get(extension, "zip")
    if mimetype in _ODF_MIMETYPES:
        return _ODF_MIMETYPES[mimetype]
    if mimetype == "application/epub+zip":
        return "epub"
    if "[content_types].xml" in lowered:
        if "word/document.xml" in lowered or any(n.startswith("word/") for n in lowered):
            return "docx"
        if "xl/workbook.bin" in lowered:
            return "xlsb"
        if any(n.startswith("xl/") for n in lowered):
            return "xlsx"
        if any(n.startswith("ppt/") for n in lowered):
            return "pptx"
        if any(n.startswith("visio/") for n in lowered):
            return "vsdx"
        if (
            any(n.startswith(("documents/", "fixeddocseq")) for n in lowered)
            or "fixeddocumentsequence.fdseq" in lowered
        ):
            return "xps"
    if any(n.endswith(".fdseq") or n.endswith(".fpage") for n in lowered):
        return "xps"
    if "buildversionhistory.plist" in lowered and lowered & {
        "index.xml",
        "index.apxl",
        "index.xml.gz",
        "index.apxl.gz",
    }:
        return "iwork09"
    if "index/document.iwa" in lowered or any(
        n.startswith("index/") and n.endswith(".iwa") for n in lowered
    ):
        return "iwork"
    if "content.xml" in lowered and "meta-inf/manifest.xml" in lowered:
        return {"ods": "ods", "odp": "odp"}.get(extension, "odt")
    if not names and extension in _OOXML_BY_EXTENSION:
        return _OOXML_BY_EXTENSION[extension]
    return "zip"


_OOXML_BY_EXTENSION = {
    "docx": "docx",
    "docm": "docx",
    "dotx": "docx",
    "dotm": "docx",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "xltx": "xlsx",
    "xltm": "xlsx",
    "xlsb": "xlsb",
    "pptx": "pptx",
    "pptm": "pptx",
    "potx": "pptx",
    "ppsx": "pptx",
    "odt": "odt",
    "ods": "ods",
    "odp": "odp",
    "epub": "epub",
    "vsdx": "vsdx",
    "xps": "xps",
}


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _looks_like_message(head: bytes) -> bool:
    first_line = head.lstrip(b"\r\n").split(b"\n", 1)[0].lower()
    if not first_line.startswith(_MESSAGE_HEADER_STARTS):
        return False
    lowered = head.lower()
    return sum(key in lowered for key in (b"\nfrom:", b"\nsubject:", b"\nto:", b"\ndate:")) >= 2


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    if b"\x00" in head:
        return False
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return control <= len(head) // 100
