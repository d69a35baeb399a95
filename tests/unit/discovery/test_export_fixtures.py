"""A small lake for export tests: real MIME with attachments and files, written directly.

The rows are built as the mail and drive backups build them (content through
``Lake.store_content``, attachment rows from ``list_attachments``), then indexed with
the real extractors run in this process. No test lives here; the export tests import it.
"""

from __future__ import annotations

import email.policy
import email.utils
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from m365lake.discovery import add_custodians, create_case
from m365lake.lake import Lake
from m365lake.search import extract
from m365lake.search.extract import DEFAULT_MAX_CHARS, Extraction, MessageText
from m365lake.search.index import update_index
from m365lake.sources.mime import list_attachments

ACTOR = "counsel@firm.example"
T0 = datetime(2001, 5, 1, 9, 30, tzinfo=UTC)


class InlineExtractor:
    """The real extractors, run in this process: fast enough for small test lakes."""

    def extract_text(
        self,
        data: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> Extraction:
        return extract.extract_text(
            data, filename=filename, content_type=content_type, max_chars=max_chars
        )

    def extract_message(self, mime: bytes, *, max_chars: int = DEFAULT_MAX_CHARS) -> MessageText:
        return extract.extract_message(mime, max_chars=max_chars)


def mime_message(
    *,
    subject: str,
    sender: str,
    to: list[str],
    body: str,
    sent: datetime = T0,
    message_id: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    cc: list[str] = (),  # type: ignore[assignment]
    bcc: list[str] = (),  # type: ignore[assignment]
    headers: dict[str, str] | None = None,
) -> bytes:
    """Return MIME bytes; each attachment is (file name, content type, content)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if bcc:
        message["Bcc"] = ", ".join(bcc)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(sent)
    message["Message-ID"] = message_id or email.utils.make_msgid(domain="enron.example")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    for name, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=email.policy.SMTP)


@dataclass
class SeedLake:
    """Rows gathered for one commit, plus the directory of mailboxes and drives."""

    lake: Lake
    messages: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    mailboxes: list[dict[str, Any]] = field(default_factory=list)
    drives: list[dict[str, Any]] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    clock: datetime = T0

    def mailbox(self, mailbox_id: str, upn: str) -> None:
        self.mailboxes.append(
            {"mailbox_id": mailbox_id, "user_principal_name": upn, "display_name": upn}
        )

    def onedrive(self, drive_id: str, owner_mailbox: str, owner_upn: str) -> None:
        self.drives.append(
            {
                "drive_id": drive_id,
                "owner_kind": "user",
                "owner_id": owner_mailbox,
                "owner_name": owner_upn,
                "name": "OneDrive",
                "web_url": f"https://contoso-my.sharepoint.com/personal/{drive_id}/Documents",
            }
        )

    def message(
        self, mailbox_id: str, message_id: str, mime: bytes, folder: str = "Inbox", **row: Any
    ) -> dict[str, Any]:
        """Add a message version; fields not given are read from the MIME headers."""
        parsed = email.message_from_bytes(mime, policy=email.policy.default)
        content = self.lake.store_content(mime)
        self.clock += timedelta(seconds=1)

        def addresses(header: str) -> list[str]:
            values = [str(value) for value in parsed.get_all(header, [])]
            return [address for _, address in email.utils.getaddresses(values) if address]

        sender = addresses("From")
        sent = email.utils.parsedate_to_datetime(str(parsed["Date"])) if parsed["Date"] else None
        values: dict[str, Any] = {
            "mailbox_id": mailbox_id,
            "message_id": message_id,
            "change": "created",
            "captured_at": self.clock,
            "folder_id": f"folder-{folder}",
            "folder_path": folder,
            "internet_message_id": str(parsed["Message-ID"] or "") or None,
            "conversation_id": f"conv-{message_id}",
            "subject": str(parsed["Subject"] or ""),
            "from_address": sender[0] if sender else None,
            "from_name": None,
            "to_addresses": addresses("To"),
            "cc_addresses": addresses("Cc"),
            "bcc_addresses": addresses("Bcc"),
            "sent_at": sent,
            "received_at": sent,
            "has_attachments": bool(list_attachments(mime)),
            "categories": [],
            "size": content.size,
            "mime_sha256": content.sha256,
            "mime_inline": content.inline,
        }
        values.update(row)
        self.messages.append(values)
        for attachment in list_attachments(mime):
            self.attachments.append(
                {
                    "mailbox_id": mailbox_id,
                    "message_id": message_id,
                    "mime_sha256": content.sha256,
                    "captured_at": self.clock,
                    "part_index": attachment.part_index,
                    "kind": attachment.kind,
                    "name": attachment.name,
                    "content_type": attachment.content_type,
                    "size": attachment.size,
                    "is_inline": attachment.is_inline,
                    "content_id": attachment.content_id,
                    "content_sha256": attachment.content_sha256,
                }
            )
        return values

    def file(
        self,
        drive_id: str,
        item_id: str,
        name: str,
        content: bytes | None,
        path: str = "",
        **row: Any,
    ) -> dict[str, Any]:
        stored = self.lake.store_content(content) if content is not None else None
        self.clock += timedelta(seconds=1)
        values: dict[str, Any] = {
            "drive_id": drive_id,
            "item_id": item_id,
            "change": "created",
            "captured_at": self.clock,
            "name": name,
            "path": f"{path}/{name}" if path else name,
            "is_folder": False,
            "size": stored.size if stored else 0,
            "mime_type": "application/octet-stream",
            "created_at": T0,
            "modified_at": T0 + timedelta(days=1),
            "created_by": "Alice Example",
            "modified_by": "Alice Example",
            "content_sha256": stored.sha256 if stored else None,
            "content_inline": stored.inline if stored else None,
        }
        values.update(row)
        self.items.append(values)
        return values

    def commit(self, run_id: str = "seed") -> None:
        with self.lake.begin(run_id=run_id, kind="mail", container=None) as tx:
            for table, rows, key in (
                ("mailboxes", self.mailboxes, None),
                ("drives", self.drives, None),
                ("sites", self.sites, None),
                ("messages", self.messages, "mailbox_id"),
                ("attachments", self.attachments, "mailbox_id"),
                ("drive_items", self.items, "drive_id"),
            ):
                if key is None:
                    if rows:
                        tx.write_rows(table, rows, partition={})
                    continue
                for value in sorted({row[key] for row in rows}):
                    part = [row for row in rows if row[key] == value]
                    tx.write_rows(table, part, partition={key: value})
            tx.commit()
        for rows in (self.messages, self.attachments, self.items, self.mailboxes, self.drives):
            rows.clear()
        self.sites.clear()

    def index(self) -> None:
        update_index(self.lake, extractor=InlineExtractor())


def open_case(lake: Lake, case_id: str, references: list[tuple[str, str]]) -> str:
    create_case(lake, f"Matter {case_id}", actor=ACTOR, case_id=case_id)
    add_custodians(lake, case_id, references, actor=ACTOR)
    return case_id


def read_bytes(root: Path, link: str) -> bytes:
    """Return the bytes of a file named by a load file link (``\\``-separated)."""
    return (root / link.replace("\\", "/")).read_bytes()


def parse_dat(path: Path) -> list[dict[str, str]]:
    """Read a Concordance DAT file by the published rules alone, not the writer's code.

    UTF-8 with a byte order mark; records end with CR LF; values are enclosed in þ
    (U+00FE) and separated by U+0014; ® (U+00AE) stands for a line break in a value.
    The first record names the fields.
    """
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "the DAT file lacks the UTF-8 byte order mark"
    text = data[3:].decode("utf-8")
    assert text.endswith("\r\n"), "the last record lacks its CR LF"
    records = []
    for line in text[:-2].split("\r\n"):
        assert line.startswith("\u00fe") and line.endswith("\u00fe"), line[:80]
        values = line[1:-1].split("\u00fe\x14\u00fe")
        records.append([value.replace("\u00ae", "\n") for value in values])
    header = records[0]
    for number, values in enumerate(records[1:], start=2):
        assert len(values) == len(header), f"record {number} has {len(values)} values"
    return [dict(zip(header, values, strict=True)) for values in records[1:]]
