"""Measure the lake's size on disk against the raw mail it archives.

Archives a corpus (default: the Enron maildir) through the emulator into a fresh lake.
Then it prints the lake's allocated bytes (st_blocks * 512 over every file under the
root, catalog included) divided by the sum of the corpus's file sizes. It also prints
the split into tables/, blobs/, commits/ and the catalog. For comparison it prints
zstd level 3 applied to each message on its own and to the whole corpus as one stream.

    uv run python bench/storage.py [--corpus PATH] [--inline-threshold BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import zstandard
from _common import (
    ENRON_MAILDIR,
    KIB,
    MIB,
    corpus_files,
    header,
    lake_disk_usage,
    serve_emulator,
)

from m365lake.backup import backup_mail
from m365lake.catalog import refresh_catalog
from m365lake.lake import DEFAULT_INLINE_THRESHOLD, Lake

TARGET_RATIO = 0.25
# A local file system allocates whole blocks, so one file per message costs at least this.
FILE_SYSTEM_BLOCK = 4 * KIB


def zstd_baselines(files: list[Path], level: int) -> dict[str, int]:
    """Return compressed sizes of the corpus per message and as one stream."""
    compressor = zstandard.ZstdCompressor(level=level)
    per_message = per_message_blocks = 0
    stream = zstandard.ZstdCompressor(level=level).compressobj()
    stream_bytes = 0
    for path in files:
        data = path.read_bytes()
        size = len(compressor.compress(data))
        per_message += size
        per_message_blocks += -(-size // FILE_SYSTEM_BLOCK) * FILE_SYSTEM_BLOCK
        stream_bytes += len(stream.compress(data))
    stream_bytes += len(stream.flush())
    return {
        "per_message": per_message,
        "per_message_blocks": per_message_blocks,
        "one_stream": stream_bytes,
    }


@contextlib.contextmanager
def lake_folder(keep: Path | None) -> Iterator[str]:
    if keep is not None:
        yield str(keep)
        return
    with tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as folder:
        yield folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=ENRON_MAILDIR,
        help="maildir or .eml folder to archive (default: the Enron maildir)",
    )
    parser.add_argument(
        "--inline-threshold",
        type=int,
        default=DEFAULT_INLINE_THRESHOLD,
        help="bytes up to which MIME is stored inline in Parquet "
        f"(default: {DEFAULT_INLINE_THRESHOLD})",
    )
    parser.add_argument(
        "--zstd-level",
        type=int,
        default=3,
        help="zstd level of the comparison figures (default: 3, as the blobs)",
    )
    parser.add_argument(
        "--keep-lake",
        type=Path,
        metavar="PATH",
        help="archive into this new folder and keep it "
        "(default: a temporary folder that is removed)",
    )
    args = parser.parse_args()
    if args.keep_lake is not None and args.keep_lake.exists():
        parser.error(f"--keep-lake {str(args.keep_lake)!r} already exists; name a new folder")
    if not args.corpus.is_dir():
        parser.error(f"corpus folder {str(args.corpus)!r} not found; pass --corpus PATH")

    header("storage: lake bytes on disk / raw corpus bytes")
    files = corpus_files(args.corpus)
    raw = sum(path.stat().st_size for path in files)
    print(f"corpus: {args.corpus} ({len(files)} files, {raw / MIB:.1f} MiB)")
    print(f"inline threshold: {args.inline_threshold} bytes")

    with serve_emulator(corpora=[args.corpus]) as served, lake_folder(args.keep_lake) as lake_dir:
        lake = Lake.open(lake_dir, inline_threshold=args.inline_threshold)
        started = time.perf_counter()
        summary = asyncio.run(backup_mail(served.settings, lake))
        elapsed = time.perf_counter() - started
        refresh_catalog(lake)
        archived = summary.total("messages_new")
        print(
            f"archived {archived} of {served.messages} messages in {elapsed:.1f} s "
            f"({len(summary.skipped)} mailboxes skipped, "
            f"{summary.total('failures')} failures)"
        )
        usage = lake_disk_usage(Path(lake_dir))

    total = sum(size for size, _count in usage.values())
    print()
    print(f"{'part':<16}{'files':>8}{'MiB':>10}{'÷ raw':>9}")
    for part, (size, count) in sorted(usage.items(), key=lambda item: -item[1][0]):
        print(f"{part:<16}{count:>8}{size / MIB:>10.2f}{size / raw:>9.3f}")
    files_total = sum(count for _size, count in usage.values())
    print(
        f"{'lake total':<16}{files_total:>8}{total / MIB:>10.2f}{total / raw:>9.3f}"
        f"   target ≤ {TARGET_RATIO}"
    )

    baselines = zstd_baselines(files, args.zstd_level)
    print()
    print(f"for comparison, zstd level {args.zstd_level}:")
    blocks = f"per message, one file each ({FILE_SYSTEM_BLOCK // KIB} KiB blocks)"
    print(f"  {'per message, compressed bytes':<44}{baselines['per_message'] / raw:.3f} of raw")
    print(f"  {blocks:<44}{baselines['per_message_blocks'] / raw:.3f} of raw")
    print(f"  {'whole corpus as one stream':<44}{baselines['one_stream'] / raw:.3f} of raw")


if __name__ == "__main__":
    main()
