"""Run every benchmark figure at one scale, print one table and write the figures as JSON.

Each figure is compared with a baseline measured in the same run, so the ratio means
something on another machine too. ``--quick`` runs in a few minutes on 2 cores, and the
default scale is the one the targets are stated for. Figures that need the shared Enron
corpus are skipped, with the reason in the JSON, when it is absent.

    uv run python bench/suite.py [--quick] [--json PATH] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ingest
import memory
import production
import purge
import search
import storage
import zstandard
from _common import (
    BENCH_DIR,
    ENRON_EML,
    ENRON_MAILDIR,
    MIB,
    ServedTenant,
    corpus_files,
    lake_disk_usage,
    machine_description,
    serve_emulator,
)

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.sharepoint_throttling import (
    RU_PER_MINUTE_BY_LICENCES,
    is_sharepoint_path,
    request_cost,
)
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.sources.mail import DELTA_PAGE_SIZE, ID_TYPE_PREFERENCE
from m365lake.sources.mailboxes import list_mailboxes

DEFAULT_JSON_DIR = BENCH_DIR / "results"
EXCHANGE_REQUESTS_PER_WINDOW = 10_000
EXCHANGE_WINDOW_SECONDS = 600
SHAREPOINT_RU_PER_MINUTE = RU_PER_MINUTE_BY_LICENCES[0]
ZSTD_LONG_WINDOW_LOG = 27
"""``zstd --long`` without a value uses a 128 MiB window (2**27)."""


@dataclass(frozen=True)
class Scale:
    """Sizes of every benchmark's input, and the throttles' time scale."""

    ingest_rounds: int
    ingest_corpus: Path | None
    """Corpus the ingest figure archives; None for the generated tenant."""
    throttled_messages: int
    throttled_files: int
    outlook_time_scale: float
    sharepoint_time_scale: float
    """Factors by which the throttles' windows and budgets shrink. Retry-After stays in
    whole seconds, so a scaled window must last many seconds."""
    search_items: int
    storage_corpus: Path
    export_items: int
    purge_versions: int
    rss_messages: int


QUICK = Scale(
    ingest_rounds=1,
    ingest_corpus=ENRON_MAILDIR / "arora-h",
    throttled_messages=1_500,
    throttled_files=1_200,
    outlook_time_scale=30,
    sharepoint_time_scale=4,
    search_items=20_000,
    storage_corpus=ENRON_MAILDIR / "arora-h",
    export_items=2_000,
    purge_versions=20_000,
    rss_messages=5_000,
)
FULL = Scale(
    ingest_rounds=3,
    ingest_corpus=ENRON_MAILDIR,
    throttled_messages=6_000,
    throttled_files=6_000,
    outlook_time_scale=10,
    sharepoint_time_scale=2,
    search_items=1_000_000,
    storage_corpus=ENRON_MAILDIR,
    export_items=50_000,
    purge_versions=1_000_000,
    rss_messages=100_000,
)
TINY = Scale(
    ingest_rounds=1,
    ingest_corpus=None,
    throttled_messages=200,
    throttled_files=100,
    outlook_time_scale=60,
    sharepoint_time_scale=30,
    search_items=500,
    storage_corpus=ENRON_MAILDIR / "arora-h",
    export_items=200,
    purge_versions=1_000,
    rss_messages=300,
)
SCALES = {"tiny": TINY, "quick": QUICK, "full": FULL}


@dataclass
class Figure:
    """One row of the table: a measured value against a baseline from the same run."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    ratio: float
    """Ratio of value and baseline, in the order ``ratio_meaning`` gives."""
    ratio_meaning: str
    target: str
    """Target of the figure as text (``ratio ≥ 0.9``), or empty when there is none."""
    met: bool | None
    benchmark: str = ""
    """The BENCHMARKS entry that measured the figure."""
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    name: str
    reason: str


def corpus_present() -> bool:
    return ENRON_MAILDIR.is_dir()


# ---- ingest efficiency -------------------------------------------------------------------


def ingest_efficiency(scale: Scale) -> list[Figure]:
    corpora = [scale.ingest_corpus] if scale.ingest_corpus and corpus_present() else []
    with serve_emulator(corpora=corpora) as served:
        ids = asyncio.run(ingest.list_message_ids(served))
        baseline_rates, backup_rates = [], []
        for _round in range(scale.ingest_rounds):
            baseline_rates.append(ingest.time_baseline(served, ids).rate)
            backup_rates.append(ingest.time_backup(served).rate)
    baseline = statistics.median(baseline_rates)
    backup = statistics.median(backup_rates)
    ratio = backup / baseline
    return [
        Figure(
            name="ingest efficiency",
            value=backup,
            unit="msg/s",
            baseline_name="loop that only downloads $value",
            baseline=baseline,
            ratio=ratio,
            ratio_meaning="backup rate / download-only rate",
            target=f"ratio ≥ {ingest.TARGET_RATIO}",
            met=ratio >= ingest.TARGET_RATIO,
            details={
                "messages": served.messages,
                "mailboxes": served.mailboxes,
                "tenant": str(corpora[0]) if corpora else "generated",
                "rounds": scale.ingest_rounds,
            },
        )
    ]


# ---- throttled efficiency ----------------------------------------------------------------


def whole_window_rate(times: list[float], weights: list[float], window: float) -> tuple[float, int]:
    """Return the weight per second over the run's whole windows, and how many there were.

    The windows start at the first request. The part after the last whole window is left
    out, because a client may use a full budget there in a moment, which would count as a
    rate above the ceiling.
    """
    start = min(times)
    windows = math.floor((max(times) - start) / window)
    if windows < 1:
        return 0.0, 0
    end = start + windows * window
    inside = sum(weight for moment, weight in zip(times, weights, strict=True) if moment < end)
    return inside / (windows * window), windows


def throttled_outlook(scale: Scale) -> Figure:
    """Archive one mailbox under Exchange's real budget, time-scaled; compare with its ceiling."""
    with (
        serve_emulator(
            large_mailbox=scale.throttled_messages,
            requests_per_window=EXCHANGE_REQUESTS_PER_WINDOW,
            time_scale=scale.outlook_time_scale,
        ) as served,
        tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir,
    ):
        served.take_requests()
        started = time.perf_counter()
        summary = asyncio.run(backup_mail(served.settings, Lake.open(lake_dir)))
        seconds = time.perf_counter() - started
        records = [record for record in served.take_requests() if record["mailbox"]]
    archived = summary.total("messages_new")
    window = EXCHANGE_WINDOW_SECONDS / scale.outlook_time_scale
    budget = max(1, round(EXCHANGE_REQUESTS_PER_WINDOW / scale.outlook_time_scale))
    ceiling = budget / window
    accepted = [record for record in records if record["status"] < 400]
    rate, windows = whole_window_rate(
        [record["time"] for record in accepted], [1.0] * len(accepted), window
    )
    ratio = rate / ceiling
    return Figure(
        name="throttled efficiency, Outlook",
        value=rate,
        unit="req/s",
        baseline_name=f"emulator ceiling: {budget} requests per {window:g} s per mailbox",
        baseline=ceiling,
        ratio=ratio,
        ratio_meaning="accepted requests per second over whole windows / ceiling",
        target="ratio ≥ 0.9, every message archived",
        met=ratio >= 0.9 and archived == served.messages,
        seconds=seconds,
        details={
            "time_scale": scale.outlook_time_scale,
            "messages": served.messages,
            "messages_archived": archived,
            "whole_windows": windows,
            "accepted_requests": len(accepted),
            "throttled_responses": sum(1 for record in records if record["status"] == 429),
        },
    )


def throttled_sharepoint(scale: Scale) -> Figure:
    """Archive a OneDrive under SharePoint's smallest per-app budget; compare with its ceiling."""
    with (
        serve_emulator(
            small_files=scale.throttled_files,
            sharepoint_ru_per_minute=SHAREPOINT_RU_PER_MINUTE,
            time_scale=scale.sharepoint_time_scale,
        ) as served,
        tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir,
    ):
        served.take_requests()
        started = time.perf_counter()
        summary = asyncio.run(backup_files(served.settings, Lake.open(lake_dir)))
        seconds = time.perf_counter() - started
        records = [
            record for record in served.take_requests() if is_sharepoint_path(record["path"])
        ]
    # Files that failed are reported, not raised: giving up under throttling is part of
    # what this figure measures.
    failures = summary.total("failures")
    complete = not failures and summary.total("bytes_downloaded") == served.file_bytes
    window = 60 / scale.sharepoint_time_scale
    budget = max(1, round(SHAREPOINT_RU_PER_MINUTE / scale.sharepoint_time_scale))
    ceiling = budget / window
    accepted = [record for record in records if record["status"] < 400]
    costs = [
        float(request_cost(record["method"], record["path"], record["query"]))
        for record in accepted
    ]
    rate, windows = whole_window_rate([record["time"] for record in accepted], costs, window)

    ratio = rate / ceiling
    return Figure(
        name="throttled efficiency, SharePoint",
        value=rate,
        unit="RU/s",
        baseline_name=f"emulator ceiling: {budget} RU per {window:g} s per app",
        baseline=ceiling,
        ratio=ratio,
        ratio_meaning="RU of accepted requests per second over whole windows / ceiling",
        target="ratio ≥ 0.9, no file failed",
        met=ratio >= 0.9 and complete,
        seconds=seconds,
        details={
            "time_scale": scale.sharepoint_time_scale,
            "files": served.files,
            "files_failed": failures,
            "bytes_downloaded": summary.total("bytes_downloaded"),
            "whole_windows": windows,
            "accepted_requests": len(accepted),
            "throttled_responses": sum(1 for record in records if record["status"] == 429),
        },
    )


# ---- incremental cost --------------------------------------------------------------------


async def folder_counts(served: ServedTenant) -> dict[str, int]:
    """Return the number of mail folders per mailbox id, read with folder delta."""
    headers = {"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}, {ID_TYPE_PREFERENCE}"}
    counts: dict[str, int] = {}
    async with GraphClient(served.settings) as graph:
        for mailbox in await list_mailboxes(graph):
            folders = 0
            async for page in graph.delta(
                f"/users/{mailbox.mailbox_id}/mailFolders/delta",
                headers=headers,
                mailbox=mailbox.mailbox_id,
            ):
                folders += sum(1 for item in page.items if "@removed" not in item)
            counts[mailbox.mailbox_id] = folders
    return counts


def drive_of(path: str) -> str | None:
    parts = path.split("/")
    if "drives" in parts:
        index = parts.index("drives")
        if index + 1 < len(parts) and parts[index + 1]:
            return parts[index + 1]
    return None


def incremental_cost(scale: Scale) -> list[Figure]:
    """Archive the generated tenant twice and count the second run's requests."""
    del scale  # the generated tenant is small at every scale
    with (
        serve_emulator() as served,
        tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir,
    ):
        lake = Lake.open(lake_dir)
        asyncio.run(backup_mail(served.settings, lake))
        asyncio.run(backup_files(served.settings, lake))
        first = served.take_requests()
        mail_summary = asyncio.run(backup_mail(served.settings, lake))
        mail_records = served.take_requests()
        files_summary = asyncio.run(backup_files(served.settings, lake))
        files_records = served.take_requests()
        folders = asyncio.run(folder_counts(served))
        served.take_requests()
    changed = files_summary.total("items_new") + files_summary.total("items_updated")
    if mail_summary.total("messages_new") or changed:
        raise RuntimeError(
            "the second run found new items in an unchanged tenant, so the first run's "
            "delta state was not used; see the log above"
        )

    per_mailbox = Counter(record["mailbox"] for record in mail_records if record["mailbox"])
    shared_mail = sum(1 for record in mail_records if not record["mailbox"])
    mailbox_ids = sorted(folders)
    requests = [per_mailbox.get(mailbox, 0) for mailbox in mailbox_ids]
    targets = [folders[mailbox] + 1 for mailbox in mailbox_ids]
    mail_value = statistics.mean(requests)
    mail_baseline = statistics.mean(targets)
    over = [m for m, r, t in zip(mailbox_ids, requests, targets, strict=True) if r > t]

    per_drive: dict[str, int] = defaultdict(int)
    shared_files = 0
    for record in files_records:
        drive = drive_of(record["path"])
        if drive is None:
            shared_files += 1
        else:
            per_drive[drive] += 1
    drive_value = statistics.mean(per_drive.values()) if per_drive else 0.0
    return [
        Figure(
            name="incremental cost, mailbox",
            value=mail_value,
            unit="req/mailbox",
            baseline_name="folders + 1 (one folder delta, one message delta per folder)",
            baseline=mail_baseline,
            ratio=mail_value / mail_baseline,
            ratio_meaning="requests per unchanged mailbox / (folders + 1), means",
            target="≤ folders + 1 in every mailbox",
            met=not over,
            details={
                "mailboxes": len(mailbox_ids),
                "requests_per_mailbox": dict(zip(mailbox_ids, requests, strict=True)),
                "folders_plus_one": dict(zip(mailbox_ids, targets, strict=True)),
                "mailboxes_over_target": over,
                "requests_outside_mailboxes": shared_mail,
                "first_run_requests": len(first),
            },
        ),
        Figure(
            name="incremental cost, drive",
            value=drive_value,
            unit="req/drive",
            baseline_name="1 (one delta request with the saved token)",
            baseline=1.0,
            ratio=drive_value,
            ratio_meaning="requests per unchanged drive / 1",
            target="≤ 2 per drive (as folders + 1 with one delta feed)",
            met=bool(per_drive) and max(per_drive.values()) <= 2,
            details={
                "drives": len(per_drive),
                "requests_per_drive": dict(per_drive),
                "requests_outside_drives": shared_files,
            },
        ),
    ]


# ---- search latency ----------------------------------------------------------------------

ILIKE_PREDICATES = {
    "term": "alltext ILIKE '%budget%'",
    "rare term": "body ILIKE '%p0042%'",
    "two terms": "alltext ILIKE '%pipeline%' AND alltext ILIKE '%capacity%'",
    "phrase": "alltext ILIKE '%natural gas%'",
    "subject": "subject ILIKE '%meeting%'",
    "from": "sender ILIKE '%phillip%'",
}
"""The simple queries of ``search.QUERIES`` as substring scans. ILIKE matches inside
words too (``budgets``), so it may find more items than the index, as the JSON shows."""


def time_duckdb_ilike(db: Any, rounds: int) -> search.Timings:
    timings = search.Timings({}, {})
    for label, predicate in ILIKE_PREDICATES.items():
        sql = (
            f"SELECT doc_id, count(*) OVER () FROM items WHERE {predicate} LIMIT {search.TOP_HITS}"
        )
        for round_number in range(rounds + 1):
            started = time.perf_counter()
            rows = db.execute(sql).fetchall()
            elapsed = time.perf_counter() - started
            # The first run warms the caches and is not counted, as in search.py.
            if round_number:
                timings.record(label, elapsed)
            timings.counts[label] = rows[0][1] if rows else 0
    return timings


def median_ms(timings: search.Timings, labels: Iterable[str]) -> float:
    return statistics.median(
        seconds * 1000 for label in labels for seconds in timings.samples[label]
    )


def search_latency(scale: Scale) -> list[Figure]:
    bases = search.load_messages(ENRON_MAILDIR)
    folder = Path(tempfile.mkdtemp(prefix="m365lake-bench-search-"))
    try:
        stores, built = search.build_stores(
            bases, scale.search_items, folder, search.WRITER_HEAP_BYTES
        )
        tantivy_times = search.time_tantivy(stores.tantivy_index, 10)
        sqlite_times = search.time_sqlite(stores.sqlite, 3)
        duckdb_times = search.time_duckdb(stores.duckdb, 2)
        ilike_times = time_duckdb_ilike(stores.duckdb, 2)
        stores.duckdb.close()
        stores.sqlite.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    tantivy_p50 = tantivy_times.percentile(0.5) * 1000
    details = {
        "items": built.items,
        "queries": len(search.QUERIES),
        "tantivy_p99_ms": tantivy_times.percentile(0.99) * 1000,
        "tantivy_p50_target_ms": search.TARGET_P50_MS,
        "matching_items": {
            query.label: {
                "tantivy": tantivy_times.counts[query.label],
                "fts5": sqlite_times.counts[query.label],
                "duckdb": duckdb_times.counts[query.label],
            }
            for query in search.QUERIES
        },
    }
    duckdb_p50 = duckdb_times.percentile(0.5) * 1000
    sqlite_p50 = sqlite_times.percentile(0.5) * 1000
    simple_tantivy = median_ms(tantivy_times, ILIKE_PREDICATES)
    ilike_p50 = median_ms(ilike_times, ILIKE_PREDICATES)
    return [
        Figure(
            name="search p50 vs DuckDB scan",
            value=tantivy_p50,
            unit="ms",
            baseline_name="DuckDB full scan, whole-word regexp over the text",
            baseline=duckdb_p50,
            ratio=duckdb_p50 / tantivy_p50,
            ratio_meaning="DuckDB p50 / Tantivy p50 (speed-up)",
            target=f"ratio ≥ {search.TARGET_RATIO:g}",
            met=duckdb_p50 / tantivy_p50 >= search.TARGET_RATIO,
            details=details,
        ),
        Figure(
            name="search p50 vs SQLite FTS5",
            value=tantivy_p50,
            unit="ms",
            baseline_name="SQLite FTS5 over the same documents",
            baseline=sqlite_p50,
            ratio=sqlite_p50 / tantivy_p50,
            ratio_meaning="FTS5 p50 / Tantivy p50 (speed-up)",
            target=f"p50 < {search.TARGET_P50_MS:g} ms",
            met=tantivy_p50 < search.TARGET_P50_MS,
        ),
        Figure(
            name="search p50 vs DuckDB ILIKE",
            value=simple_tantivy,
            unit="ms",
            baseline_name=f"DuckDB ILIKE substring scan, {len(ILIKE_PREDICATES)} simple queries",
            baseline=ilike_p50,
            ratio=ilike_p50 / simple_tantivy,
            ratio_meaning="DuckDB ILIKE p50 / Tantivy p50 over the same simple queries",
            target=f"ratio ≥ {search.TARGET_RATIO:g}",
            met=ilike_p50 / simple_tantivy >= search.TARGET_RATIO,
            details={
                "queries": list(ILIKE_PREDICATES),
                "matching_items": {
                    label: {
                        "tantivy": tantivy_times.counts[label],
                        "duckdb_ilike": ilike_times.counts[label],
                    }
                    for label in ILIKE_PREDICATES
                },
            },
        ),
    ]


# ---- storage ratio -----------------------------------------------------------------------


def zstd_long(chunks: list[bytes]) -> int:
    """Return the size of the chunks compressed as one stream, as ``zstd -19 --long`` does."""
    parameters = zstandard.ZstdCompressionParameters.from_level(
        19, enable_ldm=True, window_log=ZSTD_LONG_WINDOW_LOG
    )
    compressor = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
    size = sum(len(compressor.compress(chunk)) for chunk in chunks)
    return size + len(compressor.flush())


def storage_ratio(scale: Scale) -> Figure:
    corpus = scale.storage_corpus if corpus_present() else None
    with (
        serve_emulator(corpora=[corpus] if corpus else []) as served,
        storage.lake_folder(None) as lake_dir,
    ):
        lake = Lake.open(lake_dir)
        summary = asyncio.run(backup_mail(served.settings, lake))
        storage.refresh_catalog(lake)
        lake_bytes = sum(size for size, _count in lake_disk_usage(Path(lake_dir)).values())
    if summary.skipped:
        raise RuntimeError(f"mailboxes were not archived, see the log above: {summary.skipped}")
    if corpus is not None:
        chunks = [path.read_bytes() for path in corpus_files(corpus)]
    else:
        chunks = [message.mime for message in generate_tenant().messages]
    raw = sum(len(chunk) for chunk in chunks)
    zstd_bytes = zstd_long(chunks)
    value = lake_bytes / raw
    return Figure(
        name="storage on disk / raw",
        value=value,
        unit="of raw",
        baseline_name="zstd -19 --long of the raw corpus as one stream",
        baseline=zstd_bytes / raw,
        ratio=lake_bytes / zstd_bytes,
        ratio_meaning="lake bytes / zstd bytes",
        target=f"value ≤ {storage.TARGET_RATIO}",
        met=value <= storage.TARGET_RATIO,
        details={
            "corpus": str(corpus) if corpus else "generated",
            "messages": served.messages,
            "raw_bytes": raw,
            "lake_bytes": lake_bytes,
            "zstd_bytes": zstd_bytes,
        },
    )


# ---- export and purge throughput ---------------------------------------------------------


def export_throughput(scale: Scale) -> Figure:
    options = argparse.Namespace(items=scale.export_items, big_file_mib=0, dedup="none")
    work = Path(tempfile.mkdtemp(prefix="m365lake-bench-production-"))
    try:
        production.run_child("build", work / "lake", work, options)
        baseline = production.run_child("baseline", work / "lake", work / "copy", options)
        export = production.run_child("stub", work / "lake", work / "production", options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    value = export["items"] / export["seconds"]
    base = baseline["items"] / baseline["seconds"]
    return Figure(
        name="export throughput",
        value=value,
        unit="items/s",
        baseline_name="copy every item out of the lake and hash it (MD5, SHA-256)",
        baseline=base,
        ratio=value / base,
        ratio_meaning="export items/s / copy-and-hash items/s",
        target="",
        met=None,
        details={
            "items": export["items"],
            "errors": export["errors"],
            "native_mb_per_s": export["native_bytes"] / export["seconds"] / 1e6,
            "peak_rss_mib": export["peak_rss"] / MIB,
        },
    )


def purge_throughput(scale: Scale) -> Figure:
    options = argparse.Namespace(
        versions=scale.purge_versions, expired=0.1, spread="uniform", inline_threshold=64 * 1024
    )
    work = Path(tempfile.mkdtemp(prefix="m365lake-bench-purge-"))
    try:
        built = purge.run_child("build", work / "lake", options)
        rewrite = purge.run_child("rewrite", work / "lake", options)
        applied = purge.run_child("purge", work / "lake", options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    value = built["versions"] / applied["seconds"]
    base = rewrite["rows"] / rewrite["seconds"]
    return Figure(
        name="purge throughput",
        value=value,
        unit="versions/s",
        baseline_name="rewrite every messages file once",
        baseline=base,
        ratio=value / base,
        ratio_meaning="versions scanned per second by the purge / rows rewritten per second",
        target="",
        met=None,
        details={
            "versions": built["versions"],
            "purged": applied["versions"],
            "purge_seconds": applied["seconds"],
            "rewrite_seconds": rewrite["seconds"],
            "peak_rss_mib": applied["peak_rss"] / MIB,
        },
    )


# ---- peak RSS ----------------------------------------------------------------------------


def peak_rss(scale: Scale) -> Figure:
    interpreter = memory.run_child({}, None)
    with (
        serve_emulator(large_mailbox=scale.rss_messages) as served,
        tempfile.TemporaryDirectory(prefix="m365lake-bench-lake-") as lake_dir,
    ):
        report = memory.run_child(served.environment, lake_dir)
    if report["messages"] != served.messages:
        raise RuntimeError(
            f"the backup archived {report['messages']} of {served.messages} messages; "
            "see its log output above for the failed ones"
        )
    value = report["peak_rss"] / MIB
    base = interpreter["peak_rss"] / MIB
    return Figure(
        name=f"peak RSS, {scale.rss_messages:,} messages",
        value=value,
        unit="MiB",
        baseline_name="interpreter with m365lake imported",
        baseline=base,
        ratio=value / base,
        ratio_meaning="backup peak RSS / interpreter peak RSS",
        target=f"value ≤ {memory.TARGET_MB} at 100,000 messages",
        met=value <= memory.TARGET_MB if scale.rss_messages >= 100_000 else None,
        details={"messages": served.messages, "mime_mib": served.raw_bytes / MIB},
    )


# ---- the suite ---------------------------------------------------------------------------

BENCHMARKS: dict[str, tuple[Callable[[Scale], Figure | list[Figure]], bool]] = {
    "ingest": (ingest_efficiency, False),
    "throttled-outlook": (throttled_outlook, False),
    "throttled-sharepoint": (throttled_sharepoint, False),
    "incremental": (incremental_cost, False),
    "search": (search_latency, True),
    "storage": (storage_ratio, False),
    "export": (export_throughput, True),
    "purge": (purge_throughput, True),
    "rss": (peak_rss, False),
}
"""Name → (function, whether it needs the Enron corpus)."""


def run_suite(scale: Scale, names: list[str]) -> tuple[list[Figure], list[Skipped]]:
    figures: list[Figure] = []
    skipped: list[Skipped] = []
    for name in names:
        function, needs_corpus = BENCHMARKS[name]
        if needs_corpus and not corpus_present():
            skipped.append(Skipped(name, f"the Enron corpus is not at {ENRON_MAILDIR}"))
            continue
        started = time.perf_counter()
        result = function(scale)
        elapsed = time.perf_counter() - started
        for figure in result if isinstance(result, list) else [result]:
            figure.seconds = figure.seconds or elapsed
            figure.benchmark = name
            figures.append(figure)
            print(f"# {figure.name}: done in {elapsed:.0f} s", flush=True)
    return figures, skipped


def number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "baseline", "ratio", "target", "met?")]
    for figure in figures:
        met = "—"
        if figure.met is not None:
            met = "yes" if figure.met else "no"
        rows.append(
            (
                figure.name,
                f"{number(figure.value)} {figure.unit}",
                f"{number(figure.baseline)} ({figure.baseline_name})",
                number(figure.ratio),
                figure.target or "—",
                met,
            )
        )
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="input sizes: full (the targets' scale, about an hour), quick (a few minutes), "
        "tiny (seconds, for the test)",
    )
    parser.add_argument("--quick", action="store_true", help="same as --scale quick")
    parser.add_argument(
        "--only",
        help=f"comma-separated benchmarks to run (default: all of {','.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        help="factor by which the throttles' windows and budgets shrink (default: the scale's)",
    )
    parser.add_argument("--throttled-files", type=int, help="files in the throttled SharePoint run")
    parser.add_argument(
        "--json",
        type=Path,
        help=f"where to write the figures (default: {DEFAULT_JSON_DIR}/suite-<time>.json)",
    )
    args = parser.parse_args()
    scale_name = "quick" if args.quick else args.scale
    scale = SCALES[scale_name]
    if args.time_scale is not None:
        scale = dataclasses.replace(
            scale, outlook_time_scale=args.time_scale, sharepoint_time_scale=args.time_scale
        )
    if args.throttled_files is not None:
        scale = dataclasses.replace(scale, throttled_files=args.throttled_files)
    names = [name.strip() for name in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown}; choose from {', '.join(BENCHMARKS)}")

    started_at = datetime.now(UTC)
    load = os.getloadavg()
    print(f"# m365lake benchmark suite, {scale_name} scale, {started_at:%Y-%m-%d %H:%M} UTC")
    print(f"# machine: {machine_description()}; load average {load[0]:.2f} {load[1]:.2f}")
    started = time.perf_counter()
    figures, skipped = run_suite(scale, names)
    print()
    print(table(figures))
    for skip in skipped:
        print(f"skipped {skip.name}: {skip.reason}")

    path = args.json or DEFAULT_JSON_DIR / f"suite-{started_at:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "scale": scale_name,
        "sizes": {key: str(value) for key, value in asdict(scale).items()},
        "started": started_at.isoformat(),
        "seconds": time.perf_counter() - started,
        "machine": machine_description(),
        "load_average": load,
        "corpus": str(ENRON_MAILDIR) if corpus_present() else None,
        "edrm_corpus_present": ENRON_EML.is_dir(),
        "figures": [asdict(figure) for figure in figures],
        "skipped": [asdict(skip) for skip in skipped],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"figures written to {path}")


if __name__ == "__main__":
    main()
