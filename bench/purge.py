"""Measure the retention purge on a lake of N message versions, a share of them expired.

The lake is built without Graph or the emulator: rows are written directly through
``Lake.begin``/``Transaction`` and content through ``Lake.store_content``, as the mail
backup stores it. Each version's MIME is an Enron maildir message with its own
``X-Bench-Item`` header, so no two are alike. MIME above ``--inline-threshold`` bytes
becomes a blob, so the purge also deletes blobs. Every tenth message has a second
version (an update captured a day later). A delete policy expires mail received more
than 7 years before the purge. A share ``--expired`` of the messages (default 10 %) was
received before that, spread over every mailbox (``--spread uniform``) or all in the
first mailboxes (``--spread clustered``).

Steps, each in a fresh child process that reports its own ``ru_maxrss``:

1. build the lake and add the policy;
2. baseline: read every messages file and write it again with the lake's Parquet
   options, the least a purge that rewrites every partition must do;
3. plan: the purge's dry run, which decides what goes;
4. purge: ``purge(apply=True)``, which plans again, rewrites the affected partitions,
   commits, and deletes the replaced files and unreferenced blobs.

The lake's size (allocated bytes of tables and blobs) is printed before and after.

    uv run python bench/purge.py [--versions 1000000] [--expired 0.1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    ENRON_MAILDIR,
    MIB,
    SMALL_PARENT,
    allocated_bytes,
    corpus_files,
    header,
    lake_disk_usage,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY_DAYS = 7 * 365
MAILBOXES = 100
ACTOR = "records@contoso.example"


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _received(number: int, items: int, expired: float, spread: str, rng: random.Random) -> datetime:
    """Return a received time before the policy's cutoff for the expired share, else after."""
    if spread == "clustered":
        is_expired = number % MAILBOXES < round(MAILBOXES * expired)
    else:
        is_expired = rng.random() < expired
    cutoff = NOW - timedelta(days=POLICY_DAYS)
    offset = timedelta(days=rng.uniform(1, 1500))
    return cutoff - offset if is_expired else cutoff + offset


def child_build(
    lake_dir: str, versions: int, expired: float, spread: str, inline: int
) -> dict[str, Any]:
    from m365lake.lake import Lake
    from m365lake.retention import add_policy

    started = time.perf_counter()
    bases = [path.read_bytes() for path in corpus_files(ENRON_MAILDIR)]
    lake = Lake.open(lake_dir, inline_threshold=inline)
    rng = random.Random(11)
    items = round(versions / 1.1)
    written = 0
    raw_bytes = 0
    captured = NOW - timedelta(days=30)
    with lake.begin(run_id="bench-build", kind="mail", container=None) as tx:
        tx.write_rows(
            "mailboxes",
            [
                {
                    "mailbox_id": f"mb{index:03d}",
                    "user_principal_name": f"u{index:03d}@contoso.example",
                }
                for index in range(MAILBOXES)
            ],
            partition={},
        )
        for number in range(items):
            if written >= versions:
                break
            mailbox = f"mb{number % MAILBOXES:03d}"
            mime = b"X-Bench-Item: %d\r\n" % number + bases[number % len(bases)]
            content = lake.store_content(mime)
            raw_bytes += len(mime)
            received = _received(number, items, expired, spread, rng)
            row = {
                "mailbox_id": mailbox,
                "message_id": f"m{number:08d}",
                "change": "created",
                "captured_at": captured,
                "folder_path": "Inbox",
                "subject": f"message {number}",
                "to_addresses": [],
                "cc_addresses": [],
                "bcc_addresses": [],
                "categories": [],
                "received_at": received,
                "sent_at": received,
                "size": content.size,
                "mime_sha256": content.sha256,
                "mime_inline": content.inline,
            }
            rows = [row]
            if number % 10 == 0 and written + 1 < versions:
                rows.append(
                    {**row, "change": "updated", "captured_at": captured + timedelta(days=1)}
                )
            tx.write_rows("messages", rows, partition={"mailbox_id": mailbox})
            written += len(rows)
        tx.commit()
    build_seconds = time.perf_counter() - started
    add_policy(
        lake, actor=ACTOR, name="mail 7 years", workload="mail", action="delete", days=POLICY_DAYS
    )
    return {"seconds": build_seconds, "versions": written, "raw_bytes": raw_bytes}


def child_rewrite(lake_dir: str) -> dict[str, Any]:
    """Read every messages file and write it again to a scratch folder: the baseline."""
    import pyarrow.parquet as pq

    from m365lake.lake import Lake, reading
    from m365lake.lake.transaction import parquet_options

    lake = Lake.open(lake_dir, create=False)
    scratch = Path(tempfile.mkdtemp(prefix="m365lake-bench-rewrite-", dir=lake_dir))
    started = time.perf_counter()
    rows = 0
    written = 0
    try:
        for number, entry in enumerate(lake.committed_entries("messages")):
            source = reading.open_parquet(lake, entry)
            with pq.ParquetWriter(
                scratch / f"{number}.parquet",
                source.schema_arrow,
                **parquet_options(source.schema_arrow),
            ) as writer:
                for batch in source.iter_batches(batch_size=50_000):
                    writer.write_batch(batch)
                    rows += batch.num_rows
        seconds = time.perf_counter() - started
        written = sum(allocated_bytes(path) for path in scratch.iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": seconds, "rows": rows, "bytes": written}


def child_purge(lake_dir: str, apply: bool) -> dict[str, Any]:
    from m365lake.lake import Lake
    from m365lake.retention import purge

    lake = Lake.open(lake_dir, create=False)
    started = time.perf_counter()
    result = purge(lake, actor=ACTOR, apply=apply, now=NOW)
    return {"seconds": time.perf_counter() - started, **result.counts()}


def run_child(step: str, lake_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one step in a fresh interpreter started from this small parent.

    A child forked from a process that built the lake reported the parent's resident
    pages as its own peak, so the lake is built in a child too.
    """
    command = [sys.executable, __file__, "--child", step, "--lake", str(lake_dir)]
    command += ["--versions", str(args.versions), "--expired", str(args.expired)]
    command += ["--spread", args.spread, "--inline-threshold", str(args.inline_threshold)]
    completed = subprocess.run(
        SMALL_PARENT + command, stdout=subprocess.PIPE, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def lake_size(root: Path) -> tuple[int, int, int]:
    """Return allocated bytes of tables and of blobs, and the number of blob files."""
    usage = lake_disk_usage(root)
    tables = usage.get("tables", (0, 0))[0]
    blobs, blob_files = usage.get("blobs", (0, 0))
    return tables, blobs, blob_files


def _size_line(label: str, root: Path) -> str:
    tables, blobs, blob_files = lake_size(root)
    return (
        f"{label:<8} tables {tables / MIB:>9,.0f} MiB   blobs {blobs / MIB:>8,.0f} MiB "
        f"in {blob_files:,} files   total {(tables + blobs) / MIB:>9,.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--versions", type=int, default=1_000_000, help="message versions (default 1000000)"
    )
    parser.add_argument(
        "--expired", type=float, default=0.10, help="share of messages expired (default 0.1)"
    )
    parser.add_argument(
        "--spread",
        choices=("uniform", "clustered"),
        default="uniform",
        help="expired messages in every mailbox (uniform) or in the first mailboxes only",
    )
    parser.add_argument(
        "--inline-threshold",
        type=int,
        default=64 * 1024,
        help="MIME above this many bytes is stored as a blob (default 65536)",
    )
    parser.add_argument("--keep", type=Path, help="build the lake here and keep it")
    parser.add_argument(
        "--child", choices=("build", "rewrite", "plan", "purge"), help=argparse.SUPPRESS
    )
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "build":
            report = child_build(
                args.lake, args.versions, args.expired, args.spread, args.inline_threshold
            )
        elif args.child == "rewrite":
            report = child_rewrite(args.lake)
        else:
            report = child_purge(args.lake, apply=args.child == "purge")
        report["peak_rss"] = peak_rss_bytes()
        print(json.dumps(report))
        return

    header(f"purge: {args.versions:,} versions, {args.expired:.0%} expired, {args.spread}")
    print("# lake written directly through Lake/Transaction (no Graph, no emulator)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="m365lake-bench-purge-"))
    lake_dir = work / "lake"
    try:
        built = run_child("build", lake_dir, args)
        print(
            f"# built {built['versions']:,} versions ({built['raw_bytes'] / 1e9:.2f} GB of MIME) "
            f"in {built['seconds']:.0f} s, {MAILBOXES} mailboxes, inline threshold "
            f"{args.inline_threshold:,} bytes",
            flush=True,
        )
        print(_size_line("before", lake_dir), flush=True)
        rewrite = run_child("rewrite", lake_dir, args)
        print(
            f"baseline: rewrite every messages file once: {rewrite['seconds']:.1f} s "
            f"({rewrite['rows'] / rewrite['seconds']:,.0f} rows/s), {rewrite['bytes'] / MIB:,.0f} "
            f"MiB written in 50,000-row groups, peak RSS {rewrite['peak_rss'] / MIB:,.0f} MiB",
            flush=True,
        )
        plan = run_child("plan", lake_dir, args)
        print(
            f"plan (dry run): {plan['seconds']:.1f} s, {plan['versions']:,} versions to purge, "
            f"peak RSS {plan['peak_rss'] / MIB:,.0f} MiB",
            flush=True,
        )
        applied = run_child("purge", lake_dir, args)
        ratio = applied["seconds"] / rewrite["seconds"]
        print(
            f"purge: {applied['seconds']:.1f} s ({ratio:.2f} times the baseline), "
            f"{applied['versions']:,} versions purged, "
            f"{applied['files_replaced']:,} files replaced, {applied['files_deleted']:,} files "
            f"and {applied['blobs_deleted']:,} blobs deleted, peak RSS "
            f"{applied['peak_rss'] / MIB:,.0f} MiB",
            flush=True,
        )
        print(_size_line("after", lake_dir))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
