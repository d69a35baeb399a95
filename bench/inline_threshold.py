"""Choose the inline threshold: MIME up to it is stored in Parquet, larger MIME as a blob.

Archives the same corpora (default: the Enron maildir plus the EDRM lokay-m .eml folder,
whose messages carry attachments) into a fresh lake per threshold and prints the lake's
allocated bytes, its file count and the ingest time. The catalog is left out because it
does not depend on the threshold. Object storage charges one request per file written
or read, so the recommendation weighs file count as well as bytes.

    uv run python bench/inline_threshold.py [--corpus PATH …] [--thresholds 0,4096,…]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import ENRON_EML, ENRON_MAILDIR, KIB, MIB, header, lake_disk_usage, serve_emulator

from m365lake.backup import backup_mail
from m365lake.config import GraphSettings
from m365lake.lake import DEFAULT_INLINE_THRESHOLD, Lake

DEFAULT_THRESHOLDS = (0, 4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)
BYTES_TOLERANCE = 0.02
"""Lakes within this fraction of the smallest count as equal in size, and fewer files win."""


@dataclass
class Measurement:
    threshold: int
    lake_bytes: int
    files: int
    blob_files: int
    seconds: float
    messages: int


def label(threshold: int) -> str:
    if threshold >= MIB and threshold % MIB == 0:
        return f"{threshold // MIB} MiB"
    if threshold >= KIB and threshold % KIB == 0:
        return f"{threshold // KIB} KiB"
    return f"{threshold} B"


def measure(settings: GraphSettings, threshold: int) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir:
        lake = Lake.open(lake_dir, inline_threshold=threshold)
        started = time.perf_counter()
        summary = asyncio.run(backup_mail(settings, lake))
        seconds = time.perf_counter() - started
        if summary.skipped:
            raise RuntimeError(f"mailboxes were not archived, see the log above: {summary.skipped}")
        usage = lake_disk_usage(Path(lake_dir))
    return Measurement(
        threshold=threshold,
        lake_bytes=sum(size for size, _count in usage.values()),
        files=sum(count for _size, count in usage.values()),
        blob_files=usage.get("blobs", (0, 0))[1],
        seconds=seconds,
        messages=summary.total("messages_new"),
    )


def recommend(results: list[Measurement]) -> Measurement:
    """Return the threshold with the fewest files among the lakes of near-minimal size."""
    smallest = min(result.lake_bytes for result in results)
    near = [r for r in results if r.lake_bytes <= smallest * (1 + BYTES_TOLERANCE)]
    return min(near, key=lambda result: (result.files, result.lake_bytes))


def parse_thresholds(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --thresholds {text!r}: expected byte counts separated by commas"
        ) from None
    if not values or any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("--thresholds needs one or more byte counts ≥ 0")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        action="append",
        help="corpus folder to archive (repeatable; default: the Enron "
        "maildir and the EDRM lokay-m .eml folder)",
    )
    parser.add_argument(
        "--thresholds",
        type=parse_thresholds,
        default=list(DEFAULT_THRESHOLDS),
        help="inline thresholds in bytes, separated by commas "
        "(default: 0,4096,16384,65536,262144,1048576)",
    )
    args = parser.parse_args()
    corpora = args.corpus or [ENRON_MAILDIR, ENRON_EML]
    missing = [str(path) for path in corpora if not path.is_dir()]
    if missing:
        parser.error(f"corpus folder not found: {', '.join(missing)}; pass --corpus PATH")

    header("inline threshold: lake bytes, files and ingest time per threshold")
    results = []
    with serve_emulator(corpora=corpora) as served:
        print(f"corpora: {', '.join(str(path) for path in corpora)}")
        print(
            f"{served.messages} messages in {served.mailboxes} mailboxes, "
            f"{served.raw_bytes / MIB:.1f} MiB of MIME"
        )
        print()
        print(
            f"{'threshold':>10}{'lake MiB':>10}{'÷ raw':>8}{'files':>8}{'blobs':>8}"
            f"{'ingest s':>10}{'msg/s':>8}"
        )
        for threshold in args.thresholds:
            result = measure(served.settings, threshold)
            results.append(result)
            print(
                f"{label(threshold):>10}{result.lake_bytes / MIB:>10.2f}"
                f"{result.lake_bytes / served.raw_bytes:>8.3f}{result.files:>8}"
                f"{result.blob_files:>8}{result.seconds:>10.1f}"
                f"{result.messages / result.seconds:>8.0f}",
                flush=True,
            )

    best = recommend(results)
    print()
    print(
        f"recommendation: {label(best.threshold)} ({best.threshold} bytes): "
        f"{best.lake_bytes / served.raw_bytes:.3f} of raw on disk in {best.files} files, "
        f"the fewest files among lakes within {BYTES_TOLERANCE:.0%} of the smallest"
    )
    print(f"current DEFAULT_INLINE_THRESHOLD: {label(DEFAULT_INLINE_THRESHOLD)}")


if __name__ == "__main__":
    main()
