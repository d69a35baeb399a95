"""Produce one family: read its content, decide on duplicates, number it, write natives.

A message family is the message (its native is the archived MIME, as ``.eml``) followed
by each attachment ``m365lake.sources.mime`` finds in it. A file is a family of one. An
event series, a contact and a Teams thread are rendered from Graph's JSON (``rendered``).
Text extraction comes afterwards, in the export's worker threads (``text``).

Reading from the lake and writing the production fail differently: content that cannot
be read (a missing or damaged blob) fails only its family, which the chain-of-custody
report lists, while a write that fails (a full disk) stops the export.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365lake.discovery.production.dedup import Deduplicator, MailHashFields, mail_hash
from m365lake.discovery.production.folder import (
    NATIVES_DIR,
    TEXT_DIR,
    FileRecord,
    ProductionFolder,
    windows_path,
)
from m365lake.discovery.production.mail import (
    MAX_PARSED_MESSAGE_BYTES,
    Attachment,
    ParsedMessage,
    mailbox_text,
    parse_message,
)
from m365lake.discovery.production.names import control_number, native_file_name
from m365lake.discovery.production.options import ExportOptions
from m365lake.discovery.production.rendered import (
    RECORD_TYPES,
    RENDERERS,
    THREAD_JSON_RECORD_TYPE,
    RenderError,
)
from m365lake.discovery.production.selection import FamilySource
from m365lake.discovery.production.text import TextPart, missing_content
from m365lake.errors import LakeError
from m365lake.lake import Lake
from m365lake.search.extract_types import MAX_INPUT_BYTES
from m365lake.sources.mime import MimeTooDeepError

logger = logging.getLogger(__name__)

# The types table built into this Python version, not the system's mime.types, so the
# same content type gets the same extension on every machine.
_TYPES = mimetypes.MimeTypes()


class ContentUnreadableError(Exception):
    """The lake could not supply a family's content; only that family fails."""


def guess_extension(content_type: str | None) -> str:
    if not content_type:
        return ""
    return _TYPES.guess_extension(content_type.split(";")[0].strip().lower()) or ""


def iso(moment: Any) -> str:
    """Return a timestamp as ISO 8601 in UTC to the second (``…Z``), or "" for None."""
    if not isinstance(moment, datetime):
        return ""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Numbering:
    """Hands out control numbers in order; a failed family gives its numbers back."""

    options: ExportOptions
    next_number: int = -1

    def __post_init__(self) -> None:
        if self.next_number < 0:
            self.next_number = self.options.start

    def take(self, count: int) -> list[tuple[str, str]]:
        """Return ``count`` (control number, numbered folder) pairs."""
        pairs = []
        for number in range(self.next_number, self.next_number + count):
            control = control_number(self.options.prefix, number, self.options.digits)
            volume = f"{(number - self.options.start) // self.options.folder_size + 1:04d}"
            pairs.append((control, volume))
        self.next_number += count
        return pairs

    def give_back(self, count: int) -> None:
        self.next_number -= count


@dataclass
class PreparedFamily:
    """A family whose natives are written, waiting for its text."""

    entry: dict[str, Any]
    """The journal entry; produced documents still lack TEXTSTATUS and the text file."""
    text_parts: list[TextPart] = field(default_factory=list)

    @property
    def content_bytes(self) -> int:
        return sum(len(part.content or b"") for part in self.text_parts)


def _blob_chunks(lake: Lake, sha256: str, keep: bytearray | None) -> Iterator[bytes]:
    """Yield a blob's chunks, copying them into ``keep`` when given."""
    try:
        for chunk in lake.blobs.read_chunks(sha256):
            if keep is not None:
                keep += chunk
            yield chunk
    except (LakeError, OSError) as error:
        raise ContentUnreadableError(str(error)) from error


class FamilyWriter:
    """Turn a FamilySource into written natives and a journal entry."""

    def __init__(
        self,
        lake: Lake,
        folder: ProductionFolder,
        options: ExportOptions,
        dedup: Deduplicator,
        numbering: Numbering,
    ) -> None:
        self.lake = lake
        self.folder = folder
        self.options = options
        self.dedup = dedup
        self.numbering = numbering

    def prepare(self, family: FamilySource, inline: bytes | None) -> PreparedFamily:
        """Write the family's natives, or decide it is a duplicate or has failed."""
        written: list[str] = []
        numbers_before = self.numbering.next_number
        try:
            if family.workload == "mail":
                return self._mail(family, inline, written)
            if family.workload in RENDERERS:
                return self._rendered(family, written)
            return self._file(family, inline, written)
        except ContentUnreadableError as error:
            for relative in written:
                self.folder.remove(relative)
            self.numbering.give_back(self.numbering.next_number - numbers_before)
            logger.warning("could not read the content of %s: %s", family.source_id, error)
            return self.error(family, str(error))

    def error(self, family: FamilySource, message: str) -> PreparedFamily:
        """Return the entry of a family that failed before anything was written."""
        return PreparedFamily(_base_entry(family, "error") | {"message": message})

    def _read_message(
        self, family: FamilySource, inline: bytes | None
    ) -> tuple[bytes | None, ParsedMessage | None, list[str]]:
        """Return the MIME (None when not archived or too large to parse), parsed, and issues."""
        sha256 = family.content_sha256
        mime = inline
        if sha256 is not None and mime is None and family.size <= MAX_PARSED_MESSAGE_BYTES:
            try:
                mime = self.lake.blobs.read(sha256)
            except (LakeError, OSError) as error:
                raise ContentUnreadableError(str(error)) from error
        if mime is not None:
            try:
                parsed = parse_message(mime)
            except MimeTooDeepError as error:
                # The native is still produced byte for byte; only its parts are not.
                return mime, None, [f"attachments not produced: {error}"]
            return mime, parsed, list(parsed.problems)
        if sha256 is None:
            return None, None, ["no native: the message content was not archived"]
        issue = (
            f"attachments not produced: the message is {family.size:,} bytes, more than "
            f"the {MAX_PARSED_MESSAGE_BYTES:,} parsed in memory"
        )
        return None, None, [issue]

    def _mail(
        self, family: FamilySource, inline: bytes | None, written: list[str]
    ) -> PreparedFamily:
        mime, parsed, issues = self._read_message(family, inline)
        dedup_hash = _mail_hash(family, parsed) if parsed is not None else None
        master = self.dedup.check(family.ordinal, family.custodian_id, dedup_hash)
        if master is not None:
            return PreparedFamily(_base_entry(family, "duplicate", dedup_hash) | {"master": master})

        attachments = parsed.attachments if parsed is not None else []
        numbers = self.numbering.take(1 + len(attachments))
        control, volume = numbers[0]
        family_range = (control, numbers[-1][0])
        sha256 = family.content_sha256
        native: FileRecord | None = None
        if sha256 is not None:
            # A message's native is always .eml, whatever its subject ends with.
            name = f"{control}.eml"
            if self.options.native_names == "original":
                subject = family.row.get("subject") or "message"
                name = native_file_name(control, f"{subject}.eml", extension="", mode="original")
            relative = f"{NATIVES_DIR}/{volume}/{name}"
            written.append(relative)
            native, _ = self._write_native(relative, sha256, mime, family.size)

        record = _common(family, control, *family_range, native, volume, dedup_hash)
        record |= _mail_fields(family, parsed, issues, len(attachments), native is not None)
        header = _header_block(record, [item.info.name for item in attachments])
        parts = [
            TextPart(
                text_path=_text_path(volume, control),
                content=mime,
                filename=None,
                content_type="message/rfc822",
                size=family.size,
                header=header,
                is_message=True,
                missing=missing_content(
                    family.size, archived=sha256 is not None, package_type=None
                ),
            )
        ]
        documents = [{"record": record, "native": native}]
        for (child, child_volume), attachment in zip(numbers[1:], attachments, strict=True):
            document, part = self._attachment(
                family, attachment, child, child_volume, family_range, written
            )
            documents.append(document)
            parts.append(part)
        entry = _base_entry(family, "produced", dedup_hash) | {"documents": documents}
        return PreparedFamily(entry, parts)

    def _attachment(
        self,
        family: FamilySource,
        attachment: Attachment,
        control: str,
        volume: str,
        family_range: tuple[str, str],
        written: list[str],
    ) -> tuple[dict[str, Any], TextPart]:
        """Write one attachment's native; return its document and its text part."""
        info = attachment.info
        is_item = info.kind == "item"
        relative = f"{NATIVES_DIR}/{volume}/" + native_file_name(
            control,
            info.name,
            extension=".eml" if is_item else guess_extension(info.content_type),
            mode=self.options.native_names,
        )
        written.append(relative)
        native = self.folder.write_bytes(relative, attachment.content)
        record = _common(family, control, *family_range, native, volume, None)
        record |= {
            "RECORDTYPE": "Attachment",
            "PARENTBATES": family_range[0],
            "FILENAME": info.name,
            "FILEEXTENSION": _extension_of(info.name, relative),
            "MIMETYPE": info.content_type,
            "SOURCEID": f"{family.source_id}#part{info.part_index}",
        }
        part = TextPart(
            text_path=_text_path(volume, control),
            content=attachment.content,
            filename=info.name,
            content_type=info.content_type,
            size=len(attachment.content),
            is_message=is_item,
        )
        return {"record": record, "native": native}, part

    def _file(
        self, family: FamilySource, inline: bytes | None, written: list[str]
    ) -> PreparedFamily:
        sha256 = family.content_sha256
        master = self.dedup.check(family.ordinal, family.custodian_id, sha256)
        if master is not None:
            return PreparedFamily(_base_entry(family, "duplicate", sha256) | {"master": master})

        ((control, volume),) = self.numbering.take(1)
        row = family.row
        name = row.get("name") or ""
        native: FileRecord | None = None
        content: bytes | None = None
        if sha256 is not None:
            relative = f"{NATIVES_DIR}/{volume}/" + native_file_name(
                control,
                name,
                extension=guess_extension(row.get("mime_type")),
                mode=self.options.native_names,
            )
            written.append(relative)
            native, content = self._write_native(relative, sha256, inline, family.size)

        part_missing = missing_content(
            family.size, archived=sha256 is not None, package_type=row.get("package_type")
        )
        part = TextPart(
            text_path=_text_path(volume, control),
            content=content,
            filename=name,
            content_type=row.get("mime_type"),
            size=family.size,
            missing=part_missing,
        )
        record = _common(family, control, control, control, native, volume, sha256)
        record |= {
            "RECORDTYPE": "File",
            "ATTACHCOUNT": "0",
            "FILENAME": name,
            "FILEEXTENSION": _extension_of(name, native.path if native else ""),
            "DATECREATED": iso(row.get("created_at")),
            "DATEMODIFIED": iso(row.get("modified_at")),
            "AUTHOR": row.get("created_by") or "",
            "MIMETYPE": row.get("mime_type") or "",
            "ISSUES": "" if native else f"no native: {part_missing.reason}",
        }
        entry = _base_entry(family, "produced", sha256)
        entry["documents"] = [{"record": record, "native": native}]
        return PreparedFamily(entry, [part])

    def _rendered(self, family: FamilySource, written: list[str]) -> PreparedFamily:
        """Write the natives an event series, a contact or a Teams thread renders to.

        NOTE: these families have no duplicate hash, so a meeting in the calendars of
        two custodians is produced once for each.
        """
        try:
            natives = RENDERERS[family.workload](self.lake, family.row)
        except RenderError as error:
            raise ContentUnreadableError(str(error)) from error
        numbers = self.numbering.take(len(natives))
        family_range = (numbers[0][0], numbers[-1][0])
        documents = []
        parts = []
        for position, ((control, volume), rendered) in enumerate(
            zip(numbers, natives, strict=True)
        ):
            relative = f"{NATIVES_DIR}/{volume}/" + native_file_name(
                control, rendered.name, extension=rendered.extension, mode=self.options.native_names
            )
            written.append(relative)
            native = self.folder.write_bytes(relative, rendered.content)
            record = _common(family, control, *family_range, native, volume, None)
            record |= rendered.fields
            record |= {
                "RECORDTYPE": RECORD_TYPES[family.workload],
                "ATTACHCOUNT": str(len(natives) - 1),
                "FILENAME": rendered.name,
                "FILEEXTENSION": rendered.extension.removeprefix("."),
                "MIMETYPE": rendered.content_type,
            }
            if position:
                record["RECORDTYPE"] = THREAD_JSON_RECORD_TYPE
                record["ATTACHCOUNT"] = "0"
                record["PARENTBATES"] = family_range[0]
                record["SOURCEID"] = f"{family.source_id}#json"
            documents.append({"record": record, "native": native})
            parts.append(
                TextPart(
                    text_path=_text_path(volume, control),
                    content=rendered.content,
                    filename=rendered.name,
                    content_type=rendered.content_type,
                    size=len(rendered.content),
                    header=rendered.header,
                )
            )
        entry = _base_entry(family, "produced") | {"documents": documents}
        return PreparedFamily(entry, parts)

    def _write_native(
        self, relative: str, sha256: str, inline: bytes | None, size: int
    ) -> tuple[FileRecord, bytes | None]:
        """Write content to ``relative``; return its record and the bytes to extract text from.

        Inline content is written as is. A blob is streamed, and its bytes are kept for
        extraction only when the extractors would read them (up to MAX_INPUT_BYTES).
        """
        if inline is not None:
            return self.folder.write_bytes(relative, inline), inline
        keep = bytearray() if size <= MAX_INPUT_BYTES else None
        native = self.folder.write_chunks(relative, _blob_chunks(self.lake, sha256, keep))
        return native, bytes(keep) if keep is not None else None


def _text_path(volume: str, control: str) -> str:
    return f"{TEXT_DIR}/{volume}/{control}.txt"


def _extension_of(original: str | None, relative: str) -> str:
    """Return the extension shown in FILEEXTENSION: the original's, else the native's."""
    for name in (original or "", relative):
        stem, dot, suffix = name.rpartition(".")
        if dot and stem and suffix and "/" not in suffix and len(suffix) <= 12:
            return suffix.lower()
    return ""


def _mail_fields(
    family: FamilySource,
    parsed: ParsedMessage | None,
    issues: list[str],
    attachment_count: int,
    has_native: bool,
) -> dict[str, str]:
    """Return the load file fields of a message that come from its row and its MIME."""
    row = family.row
    names = parsed.names if parsed is not None else {}
    return {
        "RECORDTYPE": "Email",
        "ATTACHCOUNT": str(attachment_count),
        "FILEEXTENSION": "eml" if has_native else "",
        "SUBJECT": row.get("subject") or "",
        "FROM": mailbox_text(row.get("from_address"), row.get("from_name"), names),
        "TO": _participants(row.get("to_addresses"), names),
        "CC": _participants(row.get("cc_addresses"), names),
        "BCC": _participants(row.get("bcc_addresses"), names),
        "DATESENT": iso(row.get("sent_at")),
        "DATERECEIVED": iso(row.get("received_at")),
        "MESSAGEID": row.get("internet_message_id") or "",
        "INREPLYTO": (parsed.in_reply_to or "") if parsed is not None else "",
        "CONVERSATIONID": row.get("conversation_id") or "",
        "MIMETYPE": "message/rfc822",
        "ISSUES": "; ".join(issues),
    }


def _participants(addresses: Any, names: dict[str, str]) -> str:
    return "; ".join(mailbox_text(address, None, names) for address in addresses or [])


def _mail_hash(family: FamilySource, parsed: ParsedMessage) -> str:
    row = family.row
    return mail_hash(
        MailHashFields(
            from_address=row.get("from_address"),
            to=row.get("to_addresses") or (),
            cc=row.get("cc_addresses") or (),
            bcc=row.get("bcc_addresses") or (),
            subject=row.get("subject"),
            sent_at=row.get("sent_at"),
            body_sha256=parsed.body_sha256,
            attachment_sha256=[item.info.content_sha256 for item in parsed.attachments],
        )
    )


def _base_entry(family: FamilySource, status: str, dedup_hash: str | None = None) -> dict[str, Any]:
    return {
        "i": family.ordinal,
        "status": status,
        "source_id": family.source_id,
        "custodian_id": family.custodian_id,
        "custodian": family.custodian_label,
        "source_path": family.source_path,
        "captured_at": iso(family.row.get("captured_at")),
        "hash": dedup_hash,
    }


def _common(
    family: FamilySource,
    control: str,
    first: str,
    last: str,
    native: FileRecord | None,
    volume: str,
    dedup_hash: str | None,
) -> dict[str, str]:
    """Return the load file fields every document of a family fills the same way."""
    return {
        "BEGBATES": control,
        "ENDBATES": control,
        "BEGATTACH": first,
        "ENDATTACH": last,
        "CUSTODIAN": family.custodian_label,
        "SOURCEPATH": family.source_path,
        "FILESIZE": str(native.size) if native else "",
        "MD5": native.md5 if native else "",
        "SHA256": native.sha256 if native else "",
        "DEDUPHASH": dedup_hash or "",
        "NATIVELINK": windows_path(native.path) if native else "",
        "TEXTLINK": windows_path(_text_path(volume, control)),
        "SOURCEID": family.source_id,
        "CAPTUREDAT": iso(family.row.get("captured_at")),
        "DELETEDAT": iso(family.deleted_at),
    }


def _header_block(record: dict[str, str], attachment_names: list[str]) -> str:
    lines = [
        f"{label}: {record[name]}"
        for label, name in (
            ("From", "FROM"),
            ("To", "TO"),
            ("Cc", "CC"),
            ("Bcc", "BCC"),
            ("Sent", "DATESENT"),
            ("Subject", "SUBJECT"),
        )
        if record.get(name)
    ]
    if attachment_names:
        lines.append(f"Attachments: {'; '.join(attachment_names)}")
    return "\n".join(lines) + "\n\n"
