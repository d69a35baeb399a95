"""Text of the files inside zip, tar and gzip archives.

Each member is extracted like a top-level file, one container level deeper, so a zip
quine stops at the nesting limit. Members are listed by name even when their content
cannot be read, so a search for a file name inside an archive still finds it.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

from m365lake.search.extract_mail import NestedExtractor
from m365lake.search.extract_types import (
    MAX_INPUT_BYTES,
    Extraction,
    ExtractionFailed,
    failure,
    finish,
)

# An archive with more members is read up to this many and reported as "too_large".
MAX_MEMBERS = 10_000
# Decompressed bytes read from one archive in total, across all members: a guard against
# zip bombs (a few KiB that expand to GiB).
MAX_EXPANDED_BYTES = 512 * 1024 * 1024


class _Budget:
    """Decompressed bytes still allowed for one archive."""

    def __init__(self) -> None:
        self.remaining = MAX_EXPANDED_BYTES

    def read(self, stream: IO[bytes] | gzip.GzipFile, name: str) -> bytes:
        limit = min(self.remaining, MAX_INPUT_BYTES)
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise ExtractionFailed(
                "too_large",
                f"the archive member {name} expands past {limit:,} bytes, the limit left "
                "for this archive",
            )
        self.remaining -= len(data)
        return data


def _combine(
    entries: list[tuple[str, Extraction]], *, max_chars: int, total: int, kind: str
) -> Extraction:
    sections: list[str] = []
    problems: list[tuple[str, Extraction]] = []
    for name, extraction in entries:
        sections.append(f"[{name}]\n{extraction.text}".strip())
        if not extraction.complete:
            problems.append((name, extraction))
    result = finish("\n\n".join(sections), max_chars=max_chars)
    if total > len(entries) and result.status in ("ok", "empty"):
        return Extraction(
            text=result.text,
            status="too_large",
            reason=f"only the first {len(entries):,} of {total:,} {kind} members were read",
        )
    if problems and result.status in ("ok", "empty"):
        name, first = problems[0]
        first_reason = _shorten(first.reason or first.status)
        same_status = all(p.status == first.status for _, p in problems)
        if len(entries) > 1 and len(problems) == len(entries) and same_status:
            status = first.status
            reason = f"every member of the {kind} archive is {_words(first)}: {first_reason}"
        else:
            status = first.status
            reason = f"{kind} member {name!r}: {first_reason}"
            if len(problems) > 1:
                reason += f" (and {len(problems) - 1} more incomplete member(s))"
        return Extraction(text=result.text, status=status, reason=reason)
    return result


def _shorten(reason: str, limit: int = 240) -> str:
    # Nested archives nest their reasons. Keep the start (the outer member names) and the
    # end (the innermost cause) so the report line stays readable and useful.
    if len(reason) <= limit:
        return reason
    return reason[: limit // 3] + " … " + reason[-(limit - limit // 3) :]


def _words(extraction: Extraction) -> str:
    return {"encrypted": "encrypted", "unsupported": "unsupported"}.get(
        extraction.status, "unreadable"
    )


def extract_zip(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract every file in a zip archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise ExtractionFailed("corrupt", f"the zip archive cannot be read ({error})") from None
    budget = _Budget()
    entries: list[tuple[str, Extraction]] = []
    length = 0
    with archive:
        for info in infos[:MAX_MEMBERS]:
            name = _zip_member_name(info)
            extraction = _zip_member(archive, info, name, budget, max_chars, depth, extract_nested)
            entries.append((name, extraction))
            length += len(extraction.text)
            if length > max_chars:
                break
    return _combine(entries, max_chars=max_chars, total=len(infos), kind="zip")


def _zip_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    budget: _Budget,
    max_chars: int,
    depth: int,
    extract_nested: NestedExtractor,
) -> Extraction:
    if info.flag_bits & 0x1:
        return failure("encrypted", "the archive member is password-protected")
    try:
        with archive.open(info) as stream:
            content = budget.read(stream, name)
    except ExtractionFailed as failed:
        return failure(failed.status, failed.reason)
    except NotImplementedError as error:
        return failure("unsupported", f"the member's compression method is not supported ({error})")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
        return failure("corrupt", f"the archive member cannot be decompressed ({error})")
    return extract_nested(content, name, None, max_chars, depth + 1)


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """Return the member name, re-decoding legacy names written in a local code page."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437", errors="replace")
    if raw.isascii():
        return info.filename
    for encoding in ("utf-8", "shift_jis", "gbk", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def extract_tar(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract every regular file in a tar archive (plain or compressed)."""
    budget = _Budget()
    entries: list[tuple[str, Extraction]] = []
    total = 0
    length = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in _tar_members(archive):
                total += 1
                if len(entries) >= MAX_MEMBERS or length > max_chars:
                    continue
                stream = archive.extractfile(member)
                if stream is None:
                    continue
                try:
                    content = budget.read(stream, member.name)
                except ExtractionFailed as failed:
                    entries.append((member.name, failure(failed.status, failed.reason)))
                    continue
                extraction = extract_nested(content, member.name, None, max_chars, depth + 1)
                entries.append((member.name, extraction))
                length += len(extraction.text)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        if not entries:
            raise ExtractionFailed("corrupt", f"the tar archive cannot be read ({error})") from None
        entries.append(
            ("(rest of archive)", failure("corrupt", f"the tar archive is truncated ({error})"))
        )
    return _combine(entries, max_chars=max_chars, total=max(total, len(entries)), kind="tar")


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in archive:
        if member.isfile():
            yield member


def extract_gzip(
    data: bytes, *, max_chars: int, depth: int, extract_nested: NestedExtractor
) -> Extraction:
    """Extract the file inside a gzip stream (all members of a multi-member stream)."""
    budget = _Budget()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            content = budget.read(stream, "gzip content")
    except (OSError, EOFError, zlib.error) as error:
        raise ExtractionFailed(
            "corrupt", f"the gzip stream cannot be decompressed ({error})"
        ) from None
    if content[257:262] == b"ustar":
        return extract_tar(
            content, max_chars=max_chars, depth=depth + 1, extract_nested=extract_nested
        )
    name = _gzip_member_name(data)
    extraction = extract_nested(content, name, None, max_chars, depth + 1)
    return _combine(
        [(name or "gzip content", extraction)], max_chars=max_chars, total=1, kind="gzip"
    )


def _gzip_member_name(data: bytes) -> str | None:
    # FNAME flag (RFC 1952): a zero-terminated Latin-1 name follows the 10-byte header.
    if len(data) < 10 or not data[3] & 0x08 or data[3] & 0x04:
        return None
    end = data.find(b"\x00", 10)
    return data[10:end].decode("latin-1") if end > 10 else None


# 7-Zip's coder id for AES-256 with SHA-256 key derivation (7-Zip's Methods.txt).
_7Z_AES_CODER = b"\x06\xf1\x07\x01"


def extract_7z(data: bytes) -> Extraction:
    """Report a 7-Zip archive: members are not opened, but encryption is recognised.

    The coder list in the archive's end header names AES when the content or the header
    is encrypted. A header compressed with LZMA hides the content's coders, so such an
    encrypted archive is reported as unsupported.
    """
    if len(data) < 32:
        raise ExtractionFailed("corrupt", "the 7-Zip archive's start header is truncated")
    offset, size = struct.unpack_from("<QQ", data, 12)
    header = data[32 + offset : 32 + offset + size]
    if len(header) != size:
        raise ExtractionFailed("corrupt", "the 7-Zip archive's end header is out of range")
    if _7Z_AES_CODER in header:
        return failure("encrypted", "the 7-Zip archive is password-protected (AES-256)")
    return failure("unsupported", "the file is a 7-Zip archive, and 7-Zip archives are not opened")
