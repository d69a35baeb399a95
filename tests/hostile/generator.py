"""Deterministic hostile inputs: malformed MIME, archive bombs and hostile file names.

Every case is built from fixed bytes (no randomness, no clock), so a failure names the
same input on every machine. Bombs are small on disk and large when expanded: they test
that extraction stops at its limits, not that the machine has memory to spare.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

MIB = 1024 * 1024

HOSTILE_NAMES: tuple[str, ...] = (
    "../../../escaped-by-dots.txt",
    "..\\..\\..\\escaped-by-backslashes.txt",
    "/tmp/m365lake-hostile-absolute.txt",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "\\\\server\\share\\unc.txt",
    "CON",
    "nul.txt",
    "COM1.tar.gz",
    "LPT9",
    "trailing dot.",
    "trailing space ",
    "x" * 300 + ".txt",
    "é" * 300 + ".txt",
    "bell\x07tab\tnewline\ncarriage\rname.txt",
    "escape\x1b[31mred.txt",
    "annexe\u202efdp.exe",
    "isolate\u2066hidden\u2069.txt",
    "nul\x00byte.txt",
    "..",
    ".",
    "",
    "a/b/c.txt",
    '*?<>|:".txt',
)
"""Names an attacker can put in an attachment's Content-Disposition or a drive item."""

DRIVE_NAMES: tuple[str, ...] = (
    "y" * 250 + ".zip",
    "annexe\u202efdp.exe",
    "isolate\u2066hidden\u2069.gz",
    "trailing dot.",
    "..leading dots.zip",
    "CON.txt",
    "ĳ ligature and combining e\u0301.txt",
)
"""Hostile names that Graph still accepts for a drive item (no ``/``, ``\\``, ``:``…)."""


@dataclass(frozen=True)
class HostileCase:
    """One input: its name in the tenant, the bytes, and what it attacks."""

    name: str
    data: bytes
    attack: str


def _headers(subject: str, extra: str = "") -> bytes:
    return (
        "From: mallory@attacker.example\r\n"
        "To: alice@contoso.example\r\n"
        f"Subject: {subject}\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{abs(hash_text(subject))}@attacker.example>\r\n"
        "MIME-Version: 1.0\r\n"
        f"{extra}"
    ).encode()


def hash_text(text: str) -> int:
    """Return a stable integer for ``text`` (``hash`` is salted per process)."""
    return zlib.crc32(text.encode())


def _multipart(subject: str, parts: list[bytes], boundary: str = "b0und4ry") -> bytes:
    body = b"".join(f"--{boundary}\r\n".encode() + part + b"\r\n" for part in parts)
    return (
        _headers(subject, f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n')
        + b"\r\n"
        + body
        + f"--{boundary}--\r\n".encode()
    )


def _text_part(text: str) -> bytes:
    return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()


def _attachment(name: str, data: bytes, content_type: str = "application/octet-stream") -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    # The name is written raw (not RFC 2231 encoded) because the attack is the raw text.
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'Content-Type: {content_type}; name="{quoted}"\r\n'
        f'Content-Disposition: attachment; filename="{quoted}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode("utf-8", "surrogateescape") + encoded


# ---- archive bombs ------------------------------------------------------------------


def deflate_zeros(size: int) -> bytes:
    """Return a raw deflate stream of ``size`` zero bytes (about 1/1000 of the size).

    A full flush after each MiB resets the compressor, so every MiB compresses to the
    same bytes and 1 GiB costs one MiB of compression.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    rest = compressor.compress(bytes(size % MIB)) + compressor.flush()
    return block * (size // MIB) + rest


@functools.cache
def zeros_crc32(size: int) -> int:
    crc = 0
    chunk = bytes(MIB)
    for _ in range(size // MIB):
        crc = zlib.crc32(chunk, crc)
    return zlib.crc32(bytes(size % MIB), crc)


def zip_bomb(expanded: int = 1024 * MIB) -> bytes:
    """Return a zip of one member that expands to ``expanded`` zeros, deflated for real."""
    return _zip_single(b"zeros.txt", deflate_zeros(expanded), zeros_crc32(expanded), expanded)


def lying_zip(declared: int = 1024 * MIB) -> bytes:
    """Return a zip whose header declares ``declared`` bytes for a member of 10 bytes."""
    stream = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = stream.compress(b"0123456789") + stream.flush()
    return _zip_single(b"liar.txt", data, zlib.crc32(b"0123456789"), declared)


def _zip_single(name: bytes, stream: bytes, crc: int, size: int) -> bytes:
    # Written by hand: zipfile would have to expand the whole member to write it.
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(stream),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    offset = len(local) + len(name) + len(stream)
    directory = central + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), offset, 0)
    return local + name + stream + directory + end


def nested_zip(depth: int = 30) -> bytes:
    """Return a zip holding a zip holding … ``depth`` levels, with text at the bottom."""
    data = b"the bottom of the nested archives"
    name = "bottom.txt"
    for level in range(depth):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
        data = buffer.getvalue()
        name = f"level{depth - level}.zip"
    return data


def gzip_bomb(expanded: int = 1024 * MIB) -> bytes:
    """Return a gzip file that expands to ``expanded`` zeros."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", zeros_crc32(expanded), expanded & 0xFFFFFFFF)
    return header + deflate_zeros(expanded) + trailer


def truncated_gzip() -> bytes:
    return gzip.compress(b"cut short " * 1000, mtime=0)[:200]


# ---- malformed MIME ------------------------------------------------------------------


def unterminated_multipart() -> bytes:
    return (
        _headers("unterminated multipart", 'Content-Type: multipart/mixed; boundary="open"\r\n')
        + b"\r\n--open\r\nContent-Type: text/plain\r\n\r\nfirst part never closed\r\n"
        + b"--open\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
        + b"Content-Type: text/html\r\n\r\n<p>no end"
    )


def huge_header(size: int = 10 * MIB) -> bytes:
    line = b"X-Hostile-Long: " + b"A" * size + b"\r\n"
    return _headers("a 10 MB header line") + line + b"Content-Type: text/plain\r\n\r\nbody\r\n"


def huge_folded_subject(size: int = 2 * MIB) -> bytes:
    folded = b"\r\n ".join([b"word" * 15] * (size // 62))
    return (
        _headers("folded").replace(b"Subject: folded", b"Subject: " + folded)
        + b"Content-Type: text/plain\r\n\r\nbody\r\n"
    )


def many_parts(count: int = 5000) -> bytes:
    parts = [_text_part(f"part {number} of many") for number in range(count)]
    return _multipart(f"{count} MIME parts", parts)


def many_attachments(count: int = 3000) -> bytes:
    attachments = [
        (f"file {number}.txt", f"attachment {number}\n".encode()) for number in range(count)
    ]
    return attachments_message(f"{count} attachments", attachments)


def nested_rfc822(depth: int = 200) -> bytes:
    inner = _headers("the innermost message") + b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for level in range(depth):
        inner = _headers(f"wrapper {level}", "Content-Type: message/rfc822\r\n") + b"\r\n" + inner
    return inner


def nested_multipart(depth: int = 200) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ndeepest text\r\n"
    for level in range(depth):
        boundary = f"level{level}".encode()
        body = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\r\n\r\n--'
            + boundary
            + b"\r\n"
            + body
            + b"\r\n--"
            + boundary
            + b"--\r\n"
        )
    return _headers("200 nested multiparts") + body


def bad_base64() -> bytes:
    garbage = b"SGVsbG8gd29ybGQ=!!!***\x00\xff\xfe====AAA\r\nnot base64 at all {}[]\r\n=\r\n"
    return _multipart(
        "base64 with garbage",
        [
            _text_part("see attachments"),
            b"Content-Type: application/pdf; name=junk.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + garbage * 50,
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nQUJD",  # no padding, truncated
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"=ZZ=4=\r\nsoft break=\r\n=00=FF",
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
            b"begin 644 x\r\n garbage\r\nend\r\n",
        ],
    )


def nul_bytes() -> bytes:
    return (
        _headers("NUL\x00in\x00subject", "X-Nul: a\x00b\r\n")
        + b"Content-Type: text/plain\r\n\r\nbody with \x00 NUL \x00\x00 bytes\r\n"
    )


def wrong_charsets() -> bytes:
    return _multipart(
        "=?x-bogus?B?SGVsbG8=?= =?utf-8?Q?caf=C3?= =?utf-16?B?2D3eAA==?=",
        [
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "café latin-1".encode("latin-1"),
            b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nunknown",
            b"Content-Type: text/plain; charset=utf-16\r\n\r\n\xff\xfe\x00\xd8odd",
            b'Content-Type: text/html; charset=""\r\n\r\n<meta charset=evil>\xe9\xe8',
            b"Content-Type: text/plain; charset=utf-7\r\n\r\n+ZeVnLIqe-+AGEAYgBj-+invalid",
        ],
    )


def attachments_message(subject: str, attachments: list[tuple[str, bytes]]) -> bytes:
    """Return a message carrying ``attachments`` as (raw file name, content) pairs."""
    parts = [_text_part(subject)]
    parts += [_attachment(name, data) for name, data in attachments]
    return _multipart(subject, parts)


def hostile_attachment_names() -> bytes:
    attachments = [
        (name, f"attachment {number}\n".encode()) for number, name in enumerate(HOSTILE_NAMES)
    ]
    return attachments_message("hostile attachment names", attachments)


def bombs_attached() -> bytes:
    return _multipart(
        "archive bombs attached",
        [
            _text_part("bombs attached"),
            _attachment("bomb.zip", zip_bomb(), "application/zip"),
            _attachment("liar.zip", lying_zip(), "application/zip"),
            _attachment("nested.zip", nested_zip(), "application/zip"),
            _attachment("bomb.gz", gzip_bomb(), "application/gzip"),
            _attachment("cut.gz", truncated_gzip(), "application/gzip"),
        ],
    )


def group_syntax() -> bytes:
    # The email package's header registry raises on a group followed by more text.
    return (
        _headers("group syntax in the recipients").replace(
            b"To: alice@contoso.example", b"To: unlisted-recipients:; (no To-header)"
        )
        + b"Cc: a@b.example, :;\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    )


def raw_8bit_headers() -> bytes:
    return (
        _headers("raw 8-bit addresses")
        .replace(b"From: mallory@attacker.example", b'From: "Mall\xf6ry \xff" <m@attacker.example>')
        .replace(b"To: alice@contoso.example", b"To: alice@contoso.example, \xe4\xf6@example.com")
        + b'Reply-To: "Jos\xc3\xa9" <jose@attacker.example>\r\n'
        + b"Content-Type: text/plain\r\n\r\nbody \xe9\xe8 latin-1\r\n"
    )


def no_headers_at_all() -> bytes:
    return b"\r\n\r\n\x00\x01\x02 not a message"


def mail_cases() -> list[HostileCase]:
    """Return the hostile messages, each a complete MIME byte string."""
    return [
        HostileCase("unterminated", unterminated_multipart(), "unterminated multiparts"),
        HostileCase("huge-header", huge_header(), "a 10 MB header line"),
        HostileCase("folded-subject", huge_folded_subject(), "a 2 MB folded subject"),
        HostileCase("many-parts", many_parts(), "5,000 MIME parts"),
        HostileCase("many-attachments", many_attachments(), "3,000 attachments"),
        HostileCase("nested-rfc822", nested_rfc822(), "200 nested message/rfc822"),
        HostileCase("nested-multipart", nested_multipart(), "200 nested multiparts"),
        # Past the email parser's recursion limit (about 1,000 levels in CPython).
        HostileCase("deep-rfc822", nested_rfc822(3000), "3,000 nested message/rfc822"),
        HostileCase("deep-multipart", nested_multipart(3000), "3,000 nested multiparts"),
        HostileCase("bad-base64", bad_base64(), "base64 and quoted-printable garbage"),
        HostileCase("nul-bytes", nul_bytes(), "NUL bytes in headers and body"),
        HostileCase("charsets", wrong_charsets(), "wrong and unknown charsets"),
        HostileCase("names", hostile_attachment_names(), "hostile attachment names"),
        HostileCase("bombs", bombs_attached(), "zip and gzip bombs, 30 nested zips"),
        HostileCase("group-syntax", group_syntax(), "address groups the stdlib cannot parse"),
        HostileCase("raw-8bit", raw_8bit_headers(), "undeclared 8-bit bytes in addresses"),
        HostileCase("no-headers", no_headers_at_all(), "no headers, binary junk"),
    ]


def file_cases() -> list[HostileCase]:
    """Return hostile drive files; each name is one Graph accepts."""
    contents = [
        (zip_bomb(), "a 1 GB zip bomb"),
        (lying_zip(), "a zip declaring 1 GB for 10 bytes"),
        (nested_zip(), "zips nested 30 deep"),
        (gzip_bomb(), "a 1 GB gzip bomb"),
        (truncated_gzip(), "a truncated gzip"),
        (nested_rfc822(), "200 nested messages saved as a file"),
        (b"%PDF-1.7\n" + b"\x00" * 4096, "a PDF header over NUL bytes"),
    ]
    return [
        HostileCase(name, data, attack)
        for name, (data, attack) in zip(DRIVE_NAMES, contents, strict=True)
    ]
