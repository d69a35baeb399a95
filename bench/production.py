"""Measure production throughput: items/s and MB/s of ``export_production`` on N items.

The lake is built fast, without Graph or the emulator: rows are written directly through
``Lake.begin``/``Transaction`` and content through ``Lake.store_content``, as the
backups store it. The items are

- copies of the Enron maildir messages, each with its own ``X-Bench-Item`` header and
  a numbered subject, across 20 mailboxes;
- copies of the EDRM lokay-m .eml messages, which carry real attachments (2 %);
- copies of the files corpus (office documents, PDFs, images, archives) in five
  OneDrives (10 %), and one big random file (``--big-file-mib``) stored as a blob, so
  its native is streamed.

The search index is built with an extractor that returns no text, because the export
query (``kind:email OR kind:docs``) matches metadata only. The attachments table is not
filled, because the export reads attachments from the MIME itself.

Three runs follow, each in a fresh child process that reports its own ``ru_maxrss``:

1. baseline: copy every item's content out of the lake into files, hashing each with
   MD5 and SHA-256, the least a production must do;
2. the export with text extraction replaced by a stub that returns no text;
3. the export with the extraction worker pool, as ``m365lake export`` runs.

Items are the selected families (a message with its attachments, or a file);
documents are the load file records. MB/s counts native bytes written.

    uv run python bench/production.py [--items 50000] [--big-file-mib 512] [--keep DIR]
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import email.utils
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    ENRON_EML,
    ENRON_MAILDIR,
    MIB,
    SHARED_CORPUS,
    SMALL_PARENT,
    corpus_files,
    header,
)

FILES_CORPUS = SHARED_CORPUS.parent.parent / "files"
MAILBOXES = 20
ONEDRIVES = 5
FILE_SHARE = 0.10
ATTACHMENT_SHARE = 0.02
FOLDERS = ("Inbox", "Sent Items", "Archive", "Inbox/Projects", "Deleted Items")
QUERY = "kind:email OR kind:docs"
CASE_ID = "BENCH"
ACTOR = "bench@contoso.example"
CAPTURED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BaseMessage:
    mime: bytes
    subject: str
    sender: str | None
    to: list[str]
    cc: list[str]
    sent: datetime | None


def load_messages(root: Path) -> list[BaseMessage]:
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    bases = []
    for path in corpus_files(root):
        mime = path.read_bytes()
        headers = parser.parsebytes(mime)

        def addresses(name: str, headers: Any = headers) -> list[str]:
            values = [str(value) for value in headers.get_all(name, [])]
            return [address for _, address in email.utils.getaddresses(values) if address]

        try:
            sent = email.utils.parsedate_to_datetime(str(headers.get("Date", "")))
        except (TypeError, ValueError):
            sent = None
        senders = addresses("From")
        bases.append(
            BaseMessage(
                mime=mime,
                subject=str(headers.get("Subject", "")),
                sender=senders[0] if senders else None,
                to=addresses("To"),
                cc=addresses("Cc"),
                sent=sent,
            )
        )
    return bases


class NoText:
    """An extractor that returns no text: for the index, and for the stub export run."""

    def extract_text(self, data: bytes, **_options: Any) -> Any:
        from m365lake.search.extract import Extraction

        return Extraction(text="", status="empty")

    def extract_message(self, mime: bytes, **_options: Any) -> Any:
        from m365lake.search.extract import Extraction, MessageText

        return MessageText(
            body="", body_extraction=Extraction(text="", status="empty"), attachments=[]
        )


def _message_row(number: int, mailbox: str, base: BaseMessage, content: Any) -> dict[str, Any]:
    return {
        "mailbox_id": mailbox,
        "message_id": f"m{number:08d}",
        "change": "created",
        "captured_at": CAPTURED,
        "folder_id": f"f{number % len(FOLDERS)}",
        "folder_path": FOLDERS[number % len(FOLDERS)],
        "internet_message_id": f"<bench-{number}@contoso.example>",
        "subject": f"{base.subject} #{number}",
        "from_address": base.sender,
        "to_addresses": base.to,
        "cc_addresses": base.cc,
        "bcc_addresses": [],
        "sent_at": base.sent,
        "received_at": base.sent,
        "categories": [],
        "size": content.size,
        "mime_sha256": content.sha256,
        "mime_inline": content.inline,
    }


def build_lake(root: Path, items: int, big_file_mib: int) -> dict[str, Any]:
    """Write ``items`` items into a new lake at ``root``, index it and open a case."""
    from m365lake.discovery import add_custodians, create_case
    from m365lake.lake import Lake
    from m365lake.search.index import update_index

    started = time.perf_counter()
    lake = Lake.open(root)
    maildir = load_messages(ENRON_MAILDIR)
    with_attachments = load_messages(ENRON_EML)
    files = [(path.name, path.read_bytes()) for path in corpus_files(FILES_CORPUS)]
    files = [(name, data) for name, data in files if name not in ("MANIFEST.csv", "PROVENANCE.md")]
    rng = random.Random(7)
    file_count = int(items * FILE_SHARE) - (1 if big_file_mib else 0)
    raw_bytes = 0
    with lake.begin(run_id="bench-build", kind="mail", container=None) as tx:
        tx.write_rows(
            "mailboxes",
            [
                {
                    "mailbox_id": f"mb{index:02d}",
                    "user_principal_name": f"user{index:02d}@contoso.example",
                }
                for index in range(MAILBOXES)
            ],
            partition={},
        )
        tx.write_rows(
            "drives",
            [
                {
                    "drive_id": f"d{index}",
                    "owner_kind": "user",
                    "owner_id": f"mb{index:02d}",
                    "owner_name": f"user{index:02d}@contoso.example",
                    "web_url": f"https://contoso-my.sharepoint.com/personal/user{index:02d}/Documents",
                }
                for index in range(ONEDRIVES)
            ],
            partition={},
        )
        for number in range(items - file_count - (1 if big_file_mib else 0)):
            pool = with_attachments if rng.random() < ATTACHMENT_SHARE else maildir
            base = pool[number % len(pool)]
            mime = b"X-Bench-Item: %d\r\n" % number + base.mime
            raw_bytes += len(mime)
            mailbox = f"mb{number % MAILBOXES:02d}"
            row = _message_row(number, mailbox, base, lake.store_content(mime))
            tx.write_rows("messages", [row], partition={"mailbox_id": mailbox})
        for number in range(file_count):
            name, data = files[number % len(files)]
            drive = f"d{number % ONEDRIVES}"
            content = lake.store_content(data)
            raw_bytes += len(data)
            tx.write_rows(
                "drive_items",
                [_file_row(number, drive, name, content)],
                partition={"drive_id": drive},
            )
        if big_file_mib:
            content = _big_blob(lake, big_file_mib)
            raw_bytes += content.size
            tx.write_rows(
                "drive_items",
                [_file_row(items, "d0", "big.bin", content)],
                partition={"drive_id": "d0"},
            )
        tx.commit()
    built = time.perf_counter() - started
    update = update_index(lake, extractor=NoText())
    create_case(lake, "Benchmark", actor=ACTOR, case_id=CASE_ID)
    references = [("mailbox", f"user{index:02d}@contoso.example") for index in range(MAILBOXES)]
    references += [("onedrive", f"d{index}") for index in range(ONEDRIVES)]
    add_custodians(lake, CASE_ID, references, actor=ACTOR)
    return {
        "build_seconds": built,
        "index_seconds": update.seconds,
        "raw_bytes": raw_bytes,
        "documents_indexed": update.documents_total,
    }


def _file_row(number: int, drive: str, name: str, content: Any) -> dict[str, Any]:
    return {
        "drive_id": drive,
        "item_id": f"i{number:08d}",
        "change": "created",
        "captured_at": CAPTURED,
        "name": name,
        "path": f"Bench/{number % 100}/{name}",
        "is_folder": False,
        "size": content.size,
        "created_at": CAPTURED - timedelta(days=number % 1000),
        "modified_at": CAPTURED - timedelta(days=number % 500),
        "content_sha256": content.sha256,
        "content_inline": content.inline,
    }


def _big_blob(lake: Any, mib: int) -> Any:
    from m365lake.lake import ContentRef

    block = os.urandom(8 * MIB)
    with lake.blobs.writer() as writer:
        for number in range(mib // 8):
            # Each block differs, so zstd finds no repeats across blocks either.
            writer.write(number.to_bytes(8, "little") + block[8:])
        digest, size = writer.commit()
    return ContentRef(digest, size, None)


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child_baseline(lake_dir: str, out: str) -> dict[str, Any]:
    """Copy every item's content out of the lake into files, hashing it; the baseline."""
    from m365lake.lake import Lake, reading

    lake = Lake.open(lake_dir, create=False)
    target = Path(out)
    target.mkdir(parents=True)
    started = time.perf_counter()
    count = 0
    written = 0
    for table, digest_column, inline_column in (
        ("messages", "mime_sha256", "mime_inline"),
        ("drive_items", "content_sha256", "content_inline"),
    ):
        files = reading.TableScan(lake, lake.committed_entries(table))
        if not files:
            continue
        with reading.connect(lake) as connection:
            query = (
                f"SELECT {digest_column}, {inline_column} FROM {files.sql(connection=connection)}"
            )
            cursor = connection.execute(query)
            while batch := cursor.fetchmany(1000):
                for digest, inline in batch:
                    chunks = [inline] if inline is not None else lake.blobs.read_chunks(digest)
                    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
                    folder = target / f"{count // 1000:04d}"
                    folder.mkdir(exist_ok=True)
                    with open(folder / f"{count:08d}.bin", "wb") as handle:
                        for chunk in chunks:
                            handle.write(chunk)
                            md5.update(chunk)
                            sha256.update(chunk)
                            written += len(chunk)
                    count += 1
    return {"seconds": time.perf_counter() - started, "items": count, "native_bytes": written}


def child_export(lake_dir: str, out: str, extraction: str, dedup: str) -> dict[str, Any]:
    from m365lake.discovery.production import ExportOptions, export_production
    from m365lake.lake import Lake

    lake = Lake.open(lake_dir, create=False)
    started = time.perf_counter()
    result = export_production(
        lake,
        CASE_ID,
        out,
        actor=ACTOR,
        kql=QUERY,
        options=ExportOptions(prefix="BENCH", dedup=dedup),  # type: ignore[arg-type]
        extractor=NoText() if extraction == "stub" else None,
    )
    seconds = time.perf_counter() - started
    counts = result.counts
    return {
        "seconds": seconds,
        "items": counts["families_produced"],
        "documents": counts["documents"],
        "native_bytes": counts["native_bytes"],
        "duplicates": counts["duplicates"],
        "errors": counts["errors"],
        "text_incomplete": counts["text_incomplete"],
    }


def run_child(mode: str, lake_dir: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one step in a fresh interpreter, so its ``ru_maxrss`` is its own.

    Every child is started from this small parent: a child forked from a process that
    built the lake reported the parent's resident pages as its own peak.
    """
    command = [sys.executable, __file__, "--child", mode, "--lake", str(lake_dir)]
    command += ["--out", str(out), "--dedup", args.dedup, "--items", str(args.items)]
    command += ["--big-file-mib", str(args.big_file_mib)]
    completed = subprocess.run(
        SMALL_PARENT + command, stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _line(label: str, report: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    items_per_second = report["items"] / report["seconds"]
    mb_per_second = report["native_bytes"] / report["seconds"] / 1e6
    ratio = ""
    if baseline is not None:
        ratio = f"{items_per_second / (baseline['items'] / baseline['seconds']):>9.2f}"
    documents = report.get("documents", report["items"])
    return (
        f"{label:<26}{report['seconds']:>9.1f}{report['items']:>9}{documents:>11}"
        f"{items_per_second:>9.0f}{mb_per_second:>8.1f}{ratio:>9}"
        f"{report['peak_rss'] / MIB:>10.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--items", type=int, default=50_000, help="items in the lake (default 50000)"
    )
    parser.add_argument(
        "--big-file-mib",
        type=int,
        default=512,
        help="size in MiB of one big random file among the items; 0 for none (default 512)",
    )
    parser.add_argument(
        "--dedup",
        choices=("none", "custodian", "global"),
        default="none",
        help="dedup scope of the exports (default none: every item is written)",
    )
    parser.add_argument(
        "--keep", type=Path, help="build the lake and productions here and keep them"
    )
    parser.add_argument(
        "--child", choices=("build", "baseline", "stub", "pool"), help=argparse.SUPPRESS
    )
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "build":
            report = build_lake(Path(args.lake), args.items, args.big_file_mib)
        elif args.child == "baseline":
            report = child_baseline(args.lake, args.out)
        else:
            report = child_export(args.lake, args.out, args.child, args.dedup)
        report["peak_rss"] = peak_rss_bytes()
        print(json.dumps(report))
        return

    header(f"production: export_production throughput on {args.items:,} items")
    print("# lake written directly through Lake/Transaction (no Graph, no emulator)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="m365lake-bench-production-"))
    try:
        built = run_child("build", work / "lake", work, args)
        print(
            f"# lake: {args.items:,} items, {built['raw_bytes'] / 1e6:,.0f} MB of content, "
            f"written in {built['build_seconds']:.0f} s; index (no text) in "
            f"{built['index_seconds']:.0f} s; big file {args.big_file_mib} MiB; "
            f"dedup {args.dedup}",
            flush=True,
        )
        print(
            f"{'run':<26}{'seconds':>9}{'items':>9}{'documents':>11}{'items/s':>9}{'MB/s':>8}"
            f"{'÷ base':>9}{'RSS MiB':>10}"
        )
        baseline = run_child("baseline", work / "lake", work / "copy", args)
        print(_line("baseline copy + hash", baseline, None), flush=True)
        shutil.rmtree(work / "copy", ignore_errors=True)
        for mode, label in (("stub", "export, no extraction"), ("pool", "export, extraction pool")):
            report = run_child(mode, work / "lake", work / f"production-{mode}", args)
            print(_line(label, report, baseline), flush=True)
            if report["errors"]:
                print(f"#   {report['errors']} families failed", flush=True)
            if not args.keep:
                shutil.rmtree(work / f"production-{mode}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
