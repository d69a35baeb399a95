"""Measure ingest efficiency: full backup rate over the rate of downloading the MIME alone.

The emulator runs in a child process. The baseline is a bare loop over the same
GraphClient that downloads every message's ``$value`` with the concurrency backup_mail
uses (mailboxes in parallel, 4 requests per mailbox) and keeps nothing. The backup adds
folder and message delta, parsing, hashing, Parquet and blob writes and the commit, so
the ratio of the two rates is the share of download throughput the backup keeps.

    uv run python bench/ingest.py [--corpus PATH | --generated] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from _common import ENRON_MAILDIR, MIB, ServedTenant, header, serve_emulator

from m365lake.backup import MAILBOX_CONCURRENCY, backup_mail
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.sources.mail import DELTA_PAGE_SIZE, ID_TYPE_PREFERENCE
from m365lake.sources.mailboxes import Mailbox, list_mailboxes

TARGET_RATIO = 0.7
DELTA_HEADERS = {"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}, {ID_TYPE_PREFERENCE}"}


async def list_message_ids(served: ServedTenant) -> dict[Mailbox, list[str]]:
    """Return every message id per mailbox, read with folder and message delta."""
    ids: dict[Mailbox, list[str]] = {}
    async with GraphClient(served.settings) as graph:
        for mailbox in await list_mailboxes(graph):
            user = f"/users/{mailbox.mailbox_id}"
            folders = []
            async for page in graph.delta(
                f"{user}/mailFolders/delta", headers=DELTA_HEADERS, mailbox=mailbox.mailbox_id
            ):
                folders += [item["id"] for item in page.items if "@removed" not in item]
            messages: list[str] = []
            for folder in folders:
                async for page in graph.delta(
                    f"{user}/mailFolders/{folder}/messages/delta",
                    params={"$select": "id"},
                    headers=DELTA_HEADERS,
                    mailbox=mailbox.mailbox_id,
                ):
                    messages += [item["id"] for item in page.items if "@removed" not in item]
            ids[mailbox] = messages
    return ids


async def download_only(
    served: ServedTenant, ids: dict[Mailbox, list[str]], fetch_concurrency: int
) -> tuple[int, int]:
    """Download every message's MIME, discard it and return (messages, bytes)."""
    gate = asyncio.Semaphore(MAILBOX_CONCURRENCY)
    totals = [0, 0]

    async def mailbox_worker(graph: GraphClient, mailbox: Mailbox, queue: list[str]) -> None:
        while queue:
            message_id = queue.pop()
            mime = await graph.get_bytes(
                f"/users/{mailbox.mailbox_id}/messages/{message_id}/$value",
                headers={"Prefer": ID_TYPE_PREFERENCE},
                mailbox=mailbox.mailbox_id,
            )
            totals[0] += 1
            totals[1] += len(mime)

    async def one_mailbox(graph: GraphClient, mailbox: Mailbox, messages: list[str]) -> None:
        async with gate:
            queue = list(reversed(messages))
            await asyncio.gather(
                *(mailbox_worker(graph, mailbox, queue) for _ in range(fetch_concurrency))
            )

    async with GraphClient(served.settings) as graph:
        await asyncio.gather(*(one_mailbox(graph, mb, messages) for mb, messages in ids.items()))
    return totals[0], totals[1]


@dataclass
class Timing:
    messages: int
    seconds: float
    client_cpu: float
    """CPU seconds of this process (user + system)."""
    emulator_cpu: float
    """CPU seconds of the emulator process."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_ms(self, cpu_seconds: float) -> float:
        return cpu_seconds * 1000 / self.messages


@contextlib.contextmanager
def timed(emulator: psutil.Process) -> Iterator[list[float]]:
    """Yield a list that receives wall seconds, client CPU and emulator CPU of the block."""
    figures: list[float] = []
    emulator_cpu = sum(emulator.cpu_times()[:2])
    client_cpu = time.process_time()
    started = time.perf_counter()
    yield figures
    figures += [
        time.perf_counter() - started,
        time.process_time() - client_cpu,
        sum(emulator.cpu_times()[:2]) - emulator_cpu,
    ]


def time_baseline(served: ServedTenant, ids: dict[Mailbox, list[str]]) -> Timing:
    concurrency = served.settings.max_concurrent_per_mailbox
    with timed(psutil.Process(served.pid)) as figures:
        count, _size = asyncio.run(download_only(served, ids, concurrency))
    return Timing(count, *figures)


def time_backup(served: ServedTenant) -> Timing:
    with tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir:
        lake = Lake.open(lake_dir)
        with timed(psutil.Process(served.pid)) as figures:
            summary = asyncio.run(backup_mail(served.settings, lake))
    if summary.skipped:
        raise RuntimeError(f"mailboxes were not archived, see the log above: {summary.skipped}")
    return Timing(summary.total("messages_new"), *figures)


def describe(name: str, timing: Timing) -> str:
    return (
        f"{name}: {timing.rate:6.0f} msg/s, CPU per message: client "
        f"{timing.cpu_ms(timing.client_cpu):.2f} ms, emulator "
        f"{timing.cpu_ms(timing.emulator_cpu):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=ENRON_MAILDIR,
        help="corpus folder to serve (default: the Enron maildir; "
        "the generated tenant when it is absent)",
    )
    parser.add_argument(
        "--generated",
        action="store_true",
        help="serve the built-in generated tenant instead of a corpus",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="baseline and backup runs, alternated; the medians are compared (default: 2)",
    )
    args = parser.parse_args()
    corpora = [] if args.generated or not args.corpus.is_dir() else [args.corpus]

    header("ingest: backup_mail messages/s ÷ MIME-download-only messages/s")
    with serve_emulator(corpora=corpora) as served:
        source = corpora[0] if corpora else "the generated tenant"
        print(
            f"tenant: {source}: {served.messages} messages in {served.mailboxes} mailboxes, "
            f"{served.raw_bytes / MIB:.1f} MiB of MIME"
        )
        ids = asyncio.run(list_message_ids(served))
        print(
            f"concurrency: {MAILBOX_CONCURRENCY} mailboxes at once, "
            f"{served.settings.max_concurrent_per_mailbox} requests per mailbox"
        )
        baseline_rates, backup_rates = [], []
        for round_number in range(1, args.rounds + 1):
            baseline_timing = time_baseline(served, ids)
            print(f"round {round_number}: {describe('download only', baseline_timing)}", flush=True)
            backup_timing = time_backup(served)
            print(f"round {round_number}: {describe('backup_mail  ', backup_timing)}", flush=True)
            baseline_rates.append(baseline_timing.rate)
            backup_rates.append(backup_timing.rate)

    baseline = statistics.median(baseline_rates)
    backup = statistics.median(backup_rates)
    print()
    print(f"download only (median): {baseline:.0f} msg/s")
    print(f"backup_mail (median):   {backup:.0f} msg/s")
    print(f"ratio: {backup / baseline:.2f}   target ≥ {TARGET_RATIO}")


if __name__ == "__main__":
    main()
