"""Measure the files backup: one big file and many small files, against bare downloads.

The emulator serves one OneDrive from a child process. Each measured run is a fresh
child process that runs either ``backup_files`` into a new lake or a bare download loop.
The loop requests ``GET /drives/{d}/items/{i}/content`` for each file through
``GraphClient.stream``, follows the redirect to the download URL and discards the bytes.
It runs as many downloads at once as ``backup_drive`` does in one drive. The loop opens
its client and lists the files with drive delta before its clock starts, while the
backup's time includes opening its client, its own listing and its commit. The jobs
alternate, and each round starts with a different one.

1. Big file: one file of ``--size`` pseudo-random bytes (default 2 GiB). The figures are
   the backup's peak RSS (``ru_maxrss`` of its process) and both throughputs.
2. Small files: ``--files`` files of 1 to 8 KiB (default 50,000) in folders of 250. The
   figures are files per second of both.

    uv run python bench/files.py [--size 2G] [--files 50000] [--only big|small] [--rounds N]
                                 [--compare-code DIR]

``--compare-code`` adds a third job per round: the backup from the m365lake package in
DIR, such as ``git archive HEAD~1 m365lake | tar -x -C DIR``, to compare two versions
under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil
from _common import MIB, ServedTenant, header, serve_emulator

from m365lake.sources.drives import backup_drive

GIB = 1024 * MIB
MB = 1_000_000
TARGET_RSS_MB = 300
TARGET_RATIO = 0.7
DEFAULT_SIZE = 2 * GIB
DEFAULT_FILES = 50_000
FETCH_CONCURRENCY = int(inspect.signature(backup_drive).parameters["fetch_concurrency"].default)
"""Downloads at once within one drive: ``backup_drive``'s default, which backup_files uses."""
SIZE_SUFFIXES = {"": 1, "K": 1024, "M": MIB, "G": GIB}


# ---- child processes ---------------------------------------------------------------------


def peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def list_files(graph: Any) -> tuple[str, list[str]]:
    """Return the id of the tenant's only drive and the ids of its files, read with delta."""
    from m365lake.sources.drive_list import list_drives

    drives, _sites = await list_drives(graph)
    if len(drives) != 1:
        raise RuntimeError(f"expected one drive in the benchmark tenant, found {len(drives)}")
    drive_id = drives[0].drive_id
    files: list[str] = []
    async for page in graph.delta(
        f"/drives/{drive_id}/root/delta", headers={"Prefer": "odata.maxpagesize=200"}
    ):
        files += [item["id"] for item in page.items if "file" in item]
    return drive_id, files


async def download_only() -> dict[str, float]:
    """List the drive's files, then time downloading each one's content and discarding it."""
    from m365lake.config import GraphSettings
    from m365lake.graph import GraphClient

    async with GraphClient(GraphSettings.from_env()) as graph:
        drive_id, files = await list_files(graph)
        queue = list(reversed(files))
        totals = {"files": 0, "bytes": 0}

        async def worker() -> None:
            while queue:
                item_id = queue.pop()
                async with graph.stream(f"/drives/{drive_id}/items/{item_id}/content") as response:
                    async for chunk in response.aiter_bytes():
                        totals["bytes"] += len(chunk)
                totals["files"] += 1

        cpu_before = cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(FETCH_CONCURRENCY)))
        seconds = time.perf_counter() - started
    return {**totals, "seconds": seconds, "cpu": cpu_seconds() - cpu_before}


def backup(lake_dir: str) -> dict[str, float]:
    from m365lake.backup_files import backup_files
    from m365lake.config import GraphSettings
    from m365lake.lake import Lake

    lake = Lake.open(lake_dir)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    summary = asyncio.run(backup_files(GraphSettings.from_env(), lake))
    seconds = time.perf_counter() - started
    if summary.failed or summary.skipped or summary.total("failures"):
        raise RuntimeError(
            f"the backup did not archive every file: failed drives {summary.failed}, "
            f"skipped drives {summary.skipped}, {summary.total('failures')} item failures; "
            "see its log output above"
        )
    return {
        "items": summary.total("items_new"),
        "bytes": summary.total("bytes_downloaded"),
        "seconds": seconds,
        "cpu": cpu_seconds() - cpu_before,
    }


def child_main(mode: str, lake_dir: str | None) -> None:
    """Run one measured job in this fresh interpreter and print its figures as JSON."""
    # The imports-only baseline loads the same code as the measured jobs.
    import m365lake.backup_files
    import m365lake.graph  # noqa: F401

    report: dict[str, float] = {}
    if mode == "download":
        report = asyncio.run(download_only())
    elif mode == "backup":
        assert lake_dir is not None
        report = backup(lake_dir)
    report["peak_rss"] = peak_rss_bytes()
    print(json.dumps(report))


def run_child(served: ServedTenant | None, mode: str, code: str | None = None) -> dict[str, float]:
    """Run ``mode`` in a child process; add the emulator's CPU seconds to its figures.

    ``code`` is a directory whose ``m365lake`` package the child imports in place of
    this checkout's.
    """
    environment = {**os.environ, **(served.environment if served else {})}
    if code:
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [code, environment.get("PYTHONPATH")])
        )
    emulator = psutil.Process(served.pid) if served else None
    emulator_cpu = sum(emulator.cpu_times()[:2]) if emulator else 0.0
    with tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--lake", lake_dir],
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    report: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    if emulator:
        report["emulator_cpu"] = sum(emulator.cpu_times()[:2]) - emulator_cpu
    return report


# ---- the two benchmarks ------------------------------------------------------------------


def alternate(
    served: ServedTenant, rounds: int, compare_code: str | None
) -> dict[str, list[dict[str, float]]]:
    """Run the bare download and the backup ``rounds`` times each, alternating.

    With ``compare_code``, the backup from that code runs too. Each round starts one job
    later than the round before, so no job always runs right after the same other job.
    Returns the reports per job name.
    """
    jobs = [("download only", "download", None), ("backup_files", "backup", None)]
    if compare_code:
        jobs.append(("backup_files, compared code", "backup", compare_code))
    reports: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in jobs}
    width = max(len(name) for name, _, _ in jobs)
    for round_number in range(1, rounds + 1):
        start = (round_number - 1) % len(jobs)
        for name, mode, code in jobs[start:] + jobs[:start]:
            report = run_child(served, mode, code)
            check_complete(served, report, name)
            reports[name].append(report)
            print(
                f"round {round_number}: {describe(name.ljust(width), served, report)}, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return reports


def check_complete(served: ServedTenant, report: dict[str, float], name: str) -> None:
    if report["bytes"] != served.file_bytes:
        raise RuntimeError(
            f"{name} received {report['bytes']:.0f} of {served.file_bytes} bytes of content"
        )


def describe(name: str, served: ServedTenant, report: dict[str, float]) -> str:
    seconds = report["seconds"]
    files = f"{served.files / seconds:6.0f} files/s, " if served.files > 1 else ""
    return (
        f"{name}: {seconds:7.1f} s, {files}{report['bytes'] / MB / seconds:6.0f} MB/s, "
        f"peak RSS {report['peak_rss'] / MB:4.0f} MB, CPU s: client {report['cpu']:.1f}, "
        f"emulator {report['emulator_cpu']:.1f}"
    )


def big_file(size: int, rounds: int, compare_code: str | None) -> None:
    print()
    print(f"## big file: {size:,} bytes ({size / GIB:.2f} GiB) of pseudo-random bytes")
    with serve_emulator(big_file=size) as served:
        reports = alternate(served, rounds, compare_code)
    download_rate = statistics.median(r["bytes"] / r["seconds"] for r in reports["download only"])
    print(f"download only (median): {download_rate / MB:.0f} MB/s")
    for name, runs in reports.items():
        if name == "download only":
            continue
        rate = statistics.median(r["bytes"] / r["seconds"] for r in runs)
        peak = max(r["peak_rss"] for r in runs) / MB
        print(f"{name} (median): {rate / MB:.0f} MB/s")
        print(f"  ratio: {rate / download_rate:.2f}   target ≥ {TARGET_RATIO}")
        print(f"  peak RSS (max): {peak:.0f} MB   target < {TARGET_RSS_MB} MB")


def small_files(count: int, rounds: int, compare_code: str | None) -> None:
    print()
    print(f"## small files: {count:,} files of 1 to 8 KiB")
    with serve_emulator(small_files=count) as served:
        print(f"tenant: {served.files:,} files, {served.file_bytes / MIB:.1f} MiB")
        reports = alternate(served, rounds, compare_code)
    for name, runs in reports.items():
        client = statistics.median(r["cpu"] for r in runs) * 1000 / count
        emulator = statistics.median(r["emulator_cpu"] for r in runs) * 1000 / count
        print(f"{name} CPU per file: client {client:.2f} ms, emulator {emulator:.2f} ms")
    download_rate = statistics.median(count / r["seconds"] for r in reports["download only"])
    print(f"download only (median): {download_rate:.0f} files/s")
    for name, runs in reports.items():
        if name == "download only":
            continue
        rate = statistics.median(count / r["seconds"] for r in runs)
        print(f"{name} (median): {rate:.0f} files/s")
        print(f"  ratio: {rate / download_rate:.2f}   target ≥ {TARGET_RATIO}")


# ---- command line ------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix: ``2G``, ``256M``, ``4096``."""
    number, suffix = text.strip()[:-1], text.strip()[-1:].upper()
    if suffix not in SIZE_SUFFIXES or suffix == "":
        number, suffix = text.strip(), ""
    try:
        size = int(float(number) * SIZE_SUFFIXES[suffix])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: expected bytes with an optional K, M or G suffix"
        ) from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: it must be at least 1 byte")
    return size


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: expected an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: it must be at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        type=parse_size,
        default=DEFAULT_SIZE,
        help="size of the big file in bytes, or with a binary suffix K, M or G (default: 2G)",
    )
    parser.add_argument(
        "--files",
        type=positive,
        default=DEFAULT_FILES,
        help=f"number of small files (default: {DEFAULT_FILES})",
    )
    parser.add_argument(
        "--only",
        choices=("big", "small"),
        help="run only the big-file or only the small-files benchmark",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=1,
        help="bare download and backup runs per benchmark, alternated, whose medians are "
        "compared (default: 1)",
    )
    parser.add_argument(
        "--compare-code",
        metavar="DIR",
        help="directory holding another version of the m365lake package, for example an "
        "export of an earlier commit; its backup_files runs in every round as a third job",
    )
    parser.add_argument(
        "--child", choices=("imports", "download", "backup"), help=argparse.SUPPRESS
    )
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.lake)
        return

    header("files: backup_files against bare downloads of the same content")
    print(f"concurrency: {FETCH_CONCURRENCY} downloads at once in the drive")
    imports = run_child(None, "imports")
    print(f"interpreter with m365lake imported: peak RSS {imports['peak_rss'] / MB:.0f} MB")
    if args.only in (None, "big"):
        big_file(args.size, args.rounds, args.compare_code)
    if args.only in (None, "small"):
        small_files(args.files, args.rounds, args.compare_code)


if __name__ == "__main__":
    main()
