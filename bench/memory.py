"""Measure the backup process's peak RSS as one mailbox grows.

For each size, the emulator (which keeps the whole tenant in memory) serves one generated
mailbox from a child process, and the backup runs in a second child process, a fresh
interpreter that reports its own ``ru_maxrss`` when it finishes. A third child that only
imports the same modules gives the interpreter's baseline. Flat figures across sizes
mean the backup holds no state per message beyond its small per-message dictionaries.

    uv run python bench/memory.py [--messages 10000,30000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from _common import MIB, SMALL_PARENT, header, serve_emulator

TARGET_MB = 400
DEFAULT_SIZES = (10_000, 30_000, 100_000)


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child_backup(lake_dir: str | None) -> None:
    """Run the backup (or, without a lake, only the imports) and print the peak RSS as JSON."""
    from m365lake.backup import backup_mail
    from m365lake.config import GraphSettings
    from m365lake.lake import Lake

    report: dict[str, float] = {}
    if lake_dir is not None:
        started = time.perf_counter()
        summary = asyncio.run(backup_mail(GraphSettings.from_env(), Lake.open(lake_dir)))
        report["seconds"] = time.perf_counter() - started
        report["messages"] = summary.total("messages_new")
        if summary.skipped:
            raise RuntimeError(f"mailboxes were not archived: {summary.skipped}")
    report["peak_rss"] = peak_rss_bytes()
    print(json.dumps(report))


def run_child(environment: dict[str, str], lake_dir: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child"]
    if lake_dir is not None:
        command += ["--lake", lake_dir]
    completed = subprocess.run(
        SMALL_PARENT + command,
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --messages {text!r}: expected message counts separated by commas"
        ) from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("--messages needs one or more counts ≥ 1")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="mailbox sizes to archive, separated by commas (default: 10000,30000,100000)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_backup(args.lake)
        return

    header("memory: peak RSS of the backup process")
    baseline = run_child({}, None)
    print(f"interpreter with m365lake imported: {baseline['peak_rss'] / MIB:.0f} MiB")
    print(f"{'messages':>10}{'MiB of MIME':>13}{'peak RSS MiB':>14}{'backup s':>10}{'msg/s':>8}")
    for size in args.messages:
        with (
            serve_emulator(large_mailbox=size) as served,
            tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir,
        ):
            report = run_child(served.environment, lake_dir)
            if report["messages"] != served.messages:
                raise RuntimeError(
                    f"the backup archived {report['messages']} of {served.messages} messages; "
                    "see its log output above for the failed ones"
                )
            print(
                f"{size:>10}{served.raw_bytes / MIB:>13.0f}{report['peak_rss'] / MIB:>14.0f}"
                f"{report['seconds']:>10.1f}{report['messages'] / report['seconds']:>8.0f}",
                flush=True,
            )
    print(f"target: < {TARGET_MB} MB at 100,000 messages")


if __name__ == "__main__":
    main()
