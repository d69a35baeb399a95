"""Measure KQL search latency on the Tantivy index against a DuckDB scan and SQLite FTS5.

Builds N items (default 1,000,000) from the Enron maildir: each message's text is reused
with another custodian, folder, category and dates, and a project code word drawn from a
skewed distribution so that term frequencies vary. The items go to three stores in the
same run:

- the Tantivy index, as ``SearchDocument``s built by ``documents.message_document`` and
  written with the index's own writer settings (no lake and no Graph involved);
- a DuckDB table of the same rows, searched by a full scan with ``regexp_matches`` over
  the lowercased text (the baseline);
- an SQLite FTS5 table of the same text, with a plain table beside it for dates, sizes
  and custodians.

Each query of a mixed set (terms, phrases, property restrictions, date ranges, prefixes,
NEAR, boolean mixes) is written once in KQL, once as a DuckDB predicate and once as an
FTS5 match expression. A measured query returns the total count and the 10 best hits:
``search()``'s work, parse and compile included, for Tantivy. The script prints p50 and
p99 per engine, the ratio to the DuckDB scan, indexing throughput and the index size
relative to the extracted text.

    uv run python bench/search.py [--items 50000] [--corpus PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import email.utils
import random
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import tantivy
from _common import ENRON_MAILDIR, corpus_files, header

from m365lake.search import extract, fields
from m365lake.search.documents import Directory, MailboxEntry, message_document
from m365lake.search.extract import Extraction, MessageText
from m365lake.search.hits import compile_kql
from m365lake.search.index import WRITER_HEAP_BYTES, WRITER_THREADS, folder_bytes

CUSTODIANS = 200
FOLDERS = ("Inbox", "Sent Items", "Archive", "Inbox/Projects", "Deleted Items", "Legal")
CATEGORIES = ("", "Legal", "Finance", "Follow up", "Travel")
PROJECT_CODES = 5_000
EPOCH = dt.datetime(1997, 1, 1, tzinfo=dt.UTC)
SPAN_DAYS = 8 * 365
BATCH = 10_000
TOP_HITS = 10
TARGET_P50_MS = 20.0
TARGET_RATIO = 50.0


@dataclass(frozen=True)
class BaseMessage:
    subject: str
    sender: str
    sender_name: str
    to: list[str]
    cc: list[str]
    body: str
    size: int


@dataclass(frozen=True)
class Item:
    number: int
    base: BaseMessage
    custodian: str
    folder: str
    category: str
    importance: str
    sent: dt.datetime
    project: str

    @property
    def body(self) -> str:
        return f"{self.base.body}\nProject code {self.project}"

    @property
    def participants(self) -> str:
        return " ".join([self.base.sender_name, self.base.sender, *self.base.to, *self.base.cc])


def load_messages(root: Path) -> list[BaseMessage]:
    """Parse every message under ``root``: headers with the email package, text by extraction."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    messages = []
    for path in corpus_files(root):
        mime = path.read_bytes()
        headers = parser.parsebytes(mime)
        sender_name, sender = email.utils.parseaddr(str(headers.get("From", "")))
        text = extract.extract_message(mime)
        messages.append(
            BaseMessage(
                subject=str(headers.get("Subject", "")),
                sender=sender,
                sender_name=sender_name,
                to=[a for _, a in email.utils.getaddresses([str(headers.get("To", ""))]) if a],
                cc=[a for _, a in email.utils.getaddresses([str(headers.get("Cc", ""))]) if a],
                body=text.body,
                size=len(mime),
            )
        )
    return messages


def generate_items(bases: Sequence[BaseMessage], count: int, seed: int = 7) -> Iterator[Item]:
    """Yield ``count`` items: the base messages in turn, each with varied metadata."""
    rng = random.Random(seed)
    for number in range(count):
        base = bases[number % len(bases)]
        # A Pareto draw makes a few project codes common and most of them rare.
        project = f"p{min(int(rng.paretovariate(1.2)) - 1, PROJECT_CODES - 1):04d}"
        yield Item(
            number=number,
            base=base,
            custodian=f"custodian{rng.randrange(CUSTODIANS):03d}@enron.example",
            folder=rng.choice(FOLDERS),
            category=rng.choice(CATEGORIES),
            importance=rng.choice(("low", "normal", "normal", "normal", "high")),
            sent=EPOCH + dt.timedelta(seconds=rng.randrange(SPAN_DAYS * 86_400)),
            project=project,
        )


def search_document(item: Item, directory: Directory) -> fields.SearchDocument:
    row = {
        "mailbox_id": item.custodian,
        "message_id": f"m{item.number:08d}",
        "captured_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "run_id": "bench",
        "folder_path": item.folder,
        "subject": item.base.subject,
        "from_address": item.base.sender,
        "from_name": item.base.sender_name,
        "to_addresses": item.base.to,
        "cc_addresses": item.base.cc,
        "bcc_addresses": [],
        "sent_at": item.sent,
        "received_at": item.sent + dt.timedelta(seconds=30),
        "importance": item.importance,
        "is_read": item.number % 3 == 0,
        "has_attachments": False,
        "categories": [item.category] if item.category else [],
        "size": item.base.size,
    }
    body = item.body
    text = MessageText(
        body=body, body_extraction=Extraction(text=body, status="ok"), attachments=[]
    )
    return message_document(row, text=text, directory=directory)


def text_bytes(document: fields.SearchDocument) -> int:
    """Return the UTF-8 bytes of a document's full-text fields: the extracted text size."""
    return sum(
        len(value.encode("utf-8"))
        for name, values in document.items()
        if fields.FIELDS_BY_NAME[name].kind is fields.FieldKind.TEXT
        for value in values
        if isinstance(value, str)
    )


@dataclass
class Stores:
    tantivy_index: tantivy.Index
    duckdb: duckdb.DuckDBPyConnection
    sqlite: sqlite3.Connection
    folder: Path


@dataclass
class BuildFigures:
    items: int = 0
    text_bytes: int = 0
    tantivy_seconds: float = 0.0
    duckdb_seconds: float = 0.0
    sqlite_seconds: float = 0.0
    index_bytes: int = 0
    duckdb_bytes: int = 0
    sqlite_bytes: int = 0


def build_stores(
    bases: Sequence[BaseMessage], count: int, folder: Path, heap_bytes: int
) -> tuple[Stores, BuildFigures]:
    figures = BuildFigures()
    directory = Directory(
        mailboxes={
            f"custodian{n:03d}@enron.example": MailboxEntry(f"custodian{n:03d}@enron.example")
            for n in range(CUSTODIANS)
        }
    )
    index_folder = folder / "tantivy"
    index_folder.mkdir()
    index = tantivy.Index(fields.build_schema(), path=str(index_folder))
    fields.register_analyzers(index)
    writer = index.writer(heap_size=heap_bytes, num_threads=WRITER_THREADS)

    db = duckdb.connect(str(folder / "scan.duckdb"))
    db.execute("SET memory_limit = '4GB'")
    db.execute(
        "CREATE TABLE items (doc_id VARCHAR, custodian VARCHAR, subject VARCHAR, "
        "sender VARCHAR, participants VARCHAR, body VARCHAR, alltext VARCHAR, "
        "folder VARCHAR, category VARCHAR, sent TIMESTAMPTZ, size BIGINT)"
    )
    lite = sqlite3.connect(str(folder / "fts.sqlite"))
    lite.execute("PRAGMA journal_mode = OFF")
    lite.execute("PRAGMA synchronous = OFF")
    lite.execute(
        "CREATE VIRTUAL TABLE docs USING fts5(subject, sender, participants, body, folder, "
        "category, tokenize = 'unicode61')"
    )
    lite.execute(
        "CREATE TABLE meta (rowid INTEGER PRIMARY KEY, custodian TEXT, sent INTEGER, size INTEGER)"
    )

    batch: list[Item] = []
    for item in generate_items(bases, count):
        batch.append(item)
        if len(batch) >= BATCH:
            _write_batch(batch, directory, writer, db, lite, figures)
            batch = []
    if batch:
        _write_batch(batch, directory, writer, db, lite, figures)

    started = time.perf_counter()
    writer.commit()
    writer.wait_merging_threads()
    figures.tantivy_seconds += time.perf_counter() - started
    index.reload()
    figures.index_bytes = folder_bytes(index_folder)

    started = time.perf_counter()
    lite.execute("CREATE INDEX meta_sent ON meta (sent)")
    lite.commit()
    figures.sqlite_seconds += time.perf_counter() - started
    db.execute("CHECKPOINT")
    figures.duckdb_bytes = (folder / "scan.duckdb").stat().st_size
    figures.sqlite_bytes = (folder / "fts.sqlite").stat().st_size
    return Stores(index, db, lite, folder), figures


def _write_batch(
    batch: Sequence[Item],
    directory: Directory,
    writer: tantivy.IndexWriter,
    db: duckdb.DuckDBPyConnection,
    lite: sqlite3.Connection,
    figures: BuildFigures,
) -> None:
    started = time.perf_counter()
    for item in batch:
        document = search_document(item, directory)
        writer.add_document(fields.to_tantivy_document(document))
        figures.text_bytes += text_bytes(document)
    figures.tantivy_seconds += time.perf_counter() - started
    figures.items += len(batch)

    started = time.perf_counter()
    bodies = [item.body for item in batch]
    participants = [item.participants for item in batch]
    table = pa.table(
        {
            "doc_id": [f"m{item.number:08d}" for item in batch],
            "custodian": [item.custodian for item in batch],
            "subject": [item.base.subject for item in batch],
            "sender": [f"{item.base.sender_name} {item.base.sender}" for item in batch],
            "participants": participants,
            "body": bodies,
            "alltext": [
                f"{item.base.subject}\n{body}\n{people}"
                for item, body, people in zip(batch, bodies, participants, strict=True)
            ],
            "folder": [item.folder for item in batch],
            "category": [item.category for item in batch],
            "sent": pa.array([item.sent for item in batch], type=pa.timestamp("us", tz="UTC")),
            "size": [item.base.size for item in batch],
        }
    )
    db.register("incoming", table)
    db.execute("INSERT INTO items SELECT * FROM incoming")
    db.unregister("incoming")
    figures.duckdb_seconds += time.perf_counter() - started

    started = time.perf_counter()
    lite.executemany(
        "INSERT INTO docs (rowid, subject, sender, participants, body, folder, category) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                item.number + 1,
                item.base.subject,
                f"{item.base.sender_name} {item.base.sender}",
                item.participants,
                body,
                item.folder,
                item.category,
            )
            for item, body in zip(batch, bodies, strict=True)
        ],
    )
    lite.executemany(
        "INSERT INTO meta VALUES (?, ?, ?, ?)",
        [
            (item.number + 1, item.custodian, int(item.sent.timestamp()), item.base.size)
            for item in batch
        ],
    )
    figures.sqlite_seconds += time.perf_counter() - started


@dataclass(frozen=True)
class Query:
    label: str
    kql: str
    duckdb: str
    """A WHERE clause over ``items``; text columns are matched lowercased."""
    fts: str
    """An FTS5 MATCH expression over ``docs``."""
    sqlite_where: str = ""
    """An extra condition on ``meta`` (dates, custodians), or empty."""


def word(text: str, column: str = "alltext") -> str:
    return f"regexp_matches(lower({column}), '\\b{text}\\b')"


def _unix(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


QUERIES = (
    Query("term", "budget", word("budget"), "budget"),
    Query("rare term", "p0042", word("p0042", "body"), "body : p0042"),
    Query(
        "two terms",
        "pipeline capacity",
        f"{word('pipeline')} AND {word('capacity')}",
        "pipeline capacity",
    ),
    Query("phrase", '"natural gas"', word("natural\\W+gas"), '"natural gas"'),
    Query(
        "long phrase",
        '"please let me know"',
        word("please\\W+let\\W+me\\W+know"),
        '"please let me know"',
    ),
    Query("subject", "subject:meeting", word("meeting", "subject"), "subject : meeting"),
    Query("from", "from:phillip", word("phillip", "sender"), "sender : phillip"),
    Query(
        "custodian",
        "custodian:custodian007@enron.example AND contract",
        f"custodian = 'custodian007@enron.example' AND {word('contract')}",
        "contract",
        "meta.custodian = 'custodian007@enron.example'",
    ),
    Query(
        "date range",
        "sent>=2001-01-01 AND sent<2001-02-01 AND gas",
        f"sent >= TIMESTAMPTZ '2001-01-01 00:00:00+00' AND sent < TIMESTAMPTZ "
        f"'2001-02-01 00:00:00+00' AND {word('gas')}",
        "gas",
        f"meta.sent >= {_unix('2001-01-01')} AND meta.sent < {_unix('2001-02-01')}",
    ),
    Query("prefix", "forecast*", "regexp_matches(lower(alltext), '\\bforecast')", "forecast*"),
    Query("short prefix", "ene*", "regexp_matches(lower(alltext), '\\bene')", "ene*"),
    Query(
        "near",
        "gas NEAR(5) price",
        "regexp_matches(lower(alltext), '\\bgas\\W+(\\w+\\W+){0,5}price\\b|"
        "\\bprice\\W+(\\w+\\W+){0,5}gas\\b')",
        "NEAR(gas price, 5)",
    ),
    Query(
        "or",
        "budget OR forecast OR outlook",
        "regexp_matches(lower(alltext), '\\b(budget|forecast|outlook)\\b')",
        "budget OR forecast OR outlook",
    ),
    Query(
        "and not",
        "(budget OR forecast) AND NOT meeting",
        "regexp_matches(lower(alltext), '\\b(budget|forecast)\\b') AND NOT " + word("meeting"),
        "(budget OR forecast) NOT meeting",
    ),
    Query(
        "mixed",
        '(subject:"gas" OR deal) AND folder:archive AND size>2000',
        f"({word('gas', 'subject')} OR {word('deal')}) AND folder = 'Archive' AND size > 2000",
        "(subject : gas OR deal) AND folder : archive",
        "meta.size > 2000",
    ),
    Query(
        "category",
        "category:legal AND termination",
        f"category = 'Legal' AND {word('termination')}",
        "category : legal AND termination",
    ),
)


@dataclass
class Timings:
    """Seconds per measured run and the matching item count, per query label."""

    samples: dict[str, list[float]]
    counts: dict[str, int]

    def record(self, label: str, seconds: float) -> None:
        self.samples.setdefault(label, []).append(seconds)

    def all_samples(self) -> list[float]:
        return [seconds for runs in self.samples.values() for seconds in runs]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.all_samples())
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_tantivy(index: tantivy.Index, rounds: int) -> Timings:
    timings = Timings({}, {})
    for query in QUERIES:
        for round_number in range(rounds + 1):
            started = time.perf_counter()
            compiled = compile_kql(query.kql, index.schema)
            searcher = index.searcher()
            result = searcher.search(compiled, limit=TOP_HITS, count=True)
            elapsed = time.perf_counter() - started
            if round_number:  # the first round warms the caches and is not counted
                timings.record(query.label, elapsed)
            timings.counts[query.label] = int(getattr(result, "count", 0))
    return timings


def time_duckdb(db: duckdb.DuckDBPyConnection, rounds: int) -> Timings:
    timings = Timings({}, {})
    for query in QUERIES:
        sql = f"SELECT doc_id, count(*) OVER () FROM items WHERE {query.duckdb} LIMIT {TOP_HITS}"
        for round_number in range(rounds + 1):
            started = time.perf_counter()
            rows = db.execute(sql).fetchall()
            elapsed = time.perf_counter() - started
            if round_number:
                timings.record(query.label, elapsed)
            timings.counts[query.label] = rows[0][1] if rows else 0
    return timings


def time_sqlite(lite: sqlite3.Connection, rounds: int) -> Timings:
    timings = Timings({}, {})
    for query in QUERIES:
        join = "JOIN meta ON meta.rowid = docs.rowid" if query.sqlite_where else ""
        extra = f"AND {query.sqlite_where}" if query.sqlite_where else ""
        count_sql = f"SELECT count(*) FROM docs {join} WHERE docs MATCH ? {extra}"
        top_sql = (
            f"SELECT docs.rowid FROM docs {join} WHERE docs MATCH ? {extra} "
            f"ORDER BY rank LIMIT {TOP_HITS}"
        )
        for round_number in range(rounds + 1):
            started = time.perf_counter()
            count = lite.execute(count_sql, (query.fts,)).fetchone()[0]
            lite.execute(top_sql, (query.fts,)).fetchall()
            elapsed = time.perf_counter() - started
            if round_number:
                timings.record(query.label, elapsed)
            timings.counts[query.label] = count
    return timings


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("--items", type=int, default=1_000_000, help="items to index")
    arguments.add_argument("--corpus", type=Path, default=ENRON_MAILDIR, help="maildir root")
    arguments.add_argument(
        "--heap-mb",
        type=int,
        default=WRITER_HEAP_BYTES // 1_000_000,
        help="Tantivy writer heap in MB (default: the index writer's)",
    )
    arguments.add_argument("--tantivy-rounds", type=int, default=20)
    arguments.add_argument("--duckdb-rounds", type=int, default=3)
    arguments.add_argument("--sqlite-rounds", type=int, default=5)
    arguments.add_argument("--keep", type=Path, help="build the stores here and keep them")
    options = arguments.parse_args()

    header(f"search.py: {options.items:,} items")
    started = time.perf_counter()
    bases = load_messages(options.corpus)
    print(f"# {len(bases):,} base messages parsed in {time.perf_counter() - started:.1f} s")

    folder = options.keep or Path(tempfile.mkdtemp(prefix="m365lake-bench-search-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        stores, built = build_stores(bases, options.items, folder, options.heap_mb * 1_000_000)
        report_build(built)
        tantivy_times = time_tantivy(stores.tantivy_index, options.tantivy_rounds)
        sqlite_times = time_sqlite(stores.sqlite, options.sqlite_rounds)
        duckdb_times = time_duckdb(stores.duckdb, options.duckdb_rounds)
        report_queries(tantivy_times, sqlite_times, duckdb_times)
        # Linux reports ru_maxrss in KiB.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"\npeak RSS of this process: {peak / 1e9:.2f} GB")
        stores.duckdb.close()
        stores.sqlite.close()
    finally:
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def report_build(built: BuildFigures) -> None:
    print(f"items: {built.items:,}")
    print(f"extracted text: {built.text_bytes / 1e9:.2f} GB (UTF-8, full-text fields)")
    print(
        f"tantivy indexing: {built.tantivy_seconds:.0f} s, "
        f"{built.items / built.tantivy_seconds:,.0f} items/s (document building included)"
    )
    print(
        f"tantivy index: {built.index_bytes / 1e9:.2f} GB = "
        f"{built.index_bytes / built.text_bytes:.2f} x the extracted text"
    )
    print(
        f"duckdb load: {built.duckdb_seconds:.0f} s, {built.duckdb_bytes / 1e9:.2f} GB; "
        f"sqlite fts5 load: {built.sqlite_seconds:.0f} s, {built.sqlite_bytes / 1e9:.2f} GB"
    )


def report_queries(tantivy_times: Timings, sqlite_times: Timings, duckdb_times: Timings) -> None:
    print()
    print(f"{'query':<14} {'tantivy':>9} {'fts5':>9} {'duckdb':>9}   (matching items)")
    for query in QUERIES:
        print(
            f"{query.label:<14} {tantivy_times.counts[query.label]:>9,} "
            f"{sqlite_times.counts[query.label]:>9,} {duckdb_times.counts[query.label]:>9,}"
        )

    print()
    print(f"{'engine':<16} {'p50 ms':>9} {'p99 ms':>9} {'runs':>6}")
    for name, timings in (
        ("tantivy (KQL)", tantivy_times),
        ("sqlite fts5", sqlite_times),
        ("duckdb scan", duckdb_times),
    ):
        print(
            f"{name:<16} {timings.percentile(0.5) * 1000:>9.1f} "
            f"{timings.percentile(0.99) * 1000:>9.1f} {len(timings.all_samples()):>6}"
        )

    p50 = tantivy_times.percentile(0.5) * 1000
    ratio = duckdb_times.percentile(0.5) / tantivy_times.percentile(0.5)
    print()
    print(f"tantivy p50 {p50:.1f} ms (target under {TARGET_P50_MS:.0f} ms)")
    print(f"duckdb scan p50 / tantivy p50 = {ratio:,.0f}x (target {TARGET_RATIO:.0f}x or more)")
    print(
        "fts5 p50 / tantivy p50 = "
        f"{sqlite_times.percentile(0.5) / tantivy_times.percentile(0.5):,.1f}x"
    )
    print()
    print(f"{'query':<14} {'tantivy ms':>11} {'fts5 ms':>9} {'duckdb ms':>10}   (medians)")
    for query in QUERIES:
        medians = [
            statistics.median(timings.samples[query.label]) * 1000
            for timings in (tantivy_times, sqlite_times, duckdb_times)
        ]
        print(f"{query.label:<14} {medians[0]:>11.1f} {medians[1]:>9.1f} {medians[2]:>10.0f}")


if __name__ == "__main__":
    main()
