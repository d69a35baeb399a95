"""Measure what encryption at rest costs: backup rate and DuckDB query time, with and without a key.

The emulator runs in a child process and serves the same tenant to both lakes. Each
round backs up all mail into a new unencrypted lake and into a new encrypted one, in
alternating order, then times the same queries through ``run_sql`` on both. Encrypted
table files are decrypted by pyarrow and scanned by DuckDB as Arrow datasets, which is
what the query figures compare against DuckDB's ``read_parquet`` of plain files.

    uv run python bench/encryption.py [--corpus PATH | --generated] [--rounds N]
    uv run python bench/encryption.py --files 500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import ENRON_MAILDIR, MIB, ServedTenant, header, serve_emulator

from m365lake.backup import backup_mail
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.lake import Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE

BENCH_KEY = f"bench:{base64.b64encode(bytes(range(32))).decode()}"
QUERIES = {
    "count by mailbox": "SELECT mailbox_id, count(*) FROM messages GROUP BY ALL",
    "one message by id": (
        "SELECT subject, to_addresses FROM messages WHERE message_id = "
        "(SELECT max(message_id) FROM messages_rows)"
    ),
    "top senders": (
        "SELECT from_address, count(*) AS n FROM message_versions GROUP BY ALL "
        "ORDER BY n DESC LIMIT 10"
    ),
    "recipients (list column)": (
        "SELECT count(DISTINCT recipient) FROM (SELECT unnest(to_addresses) AS recipient "
        "FROM messages)"
    ),
    "inline bytes": "SELECT sum(octet_length(mime_inline)) FROM messages_rows",
}


def set_key(key: str | None) -> None:
    os.environ.pop(ENV_ENCRYPTION_KEY_FILE, None)
    if key is None:
        os.environ.pop(ENV_ENCRYPTION_KEY, None)
    else:
        os.environ[ENV_ENCRYPTION_KEY] = key


def back_up(served: ServedTenant, root: Path, key: str | None) -> tuple[Lake, float, int]:
    """Back up all mail into a new lake at ``root``; return it, the seconds and messages."""
    set_key(key)
    lake = Lake.open(root)
    started = time.perf_counter()
    summary = asyncio.run(backup_mail(served.settings, lake))
    seconds = time.perf_counter() - started
    if summary.skipped:
        raise RuntimeError(f"mailboxes were not archived, see the log above: {summary.skipped}")
    refresh_catalog(lake)
    return lake, seconds, summary.total("messages_new")


def time_queries(lake: Lake, key: str | None, repeats: int) -> dict[str, float]:
    """Return the median seconds of each query, the catalog already built."""
    set_key(key)
    reopened = Lake.open(lake.root, create=False)
    medians = {}
    for name, sql in QUERIES.items():
        run_sql(reopened, sql, timeout_seconds=None)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_sql(reopened, sql, timeout_seconds=None)
            seconds.append(time.perf_counter() - started)
        medians[name] = statistics.median(seconds)
    return medians


def time_many_files(files: int) -> None:
    """Time a catalog refresh and one query over ``files`` small committed files per lake kind.

    Plain files are one ``read_parquet`` list, encrypted files one UNION branch each.
    """
    rows = 5
    for kind, key in (("plain", None), ("encrypted", BENCH_KEY)):
        set_key(key)
        with tempfile.TemporaryDirectory(prefix="m365lake-bench-encryption-") as folder:
            lake = Lake.open(Path(folder) / "lake")
            for number in range(files):
                with lake.begin(run_id=f"run-{number}", kind="mail", container="u1") as tx:
                    batch = [
                        {
                            "mailbox_id": "u1",
                            "message_id": f"m{number}-{row}",
                            "change": "created",
                            "subject": f"subject {number}",
                            "to_addresses": ["someone@contoso.example"],
                            "mime_sha256": f"{number * rows + row:064x}",
                        }
                        for row in range(rows)
                    ]
                    tx.write_rows("messages", batch, partition={"mailbox_id": "u1"})
                    tx.commit()
            started = time.perf_counter()
            refresh_catalog(lake)
            refreshed = time.perf_counter() - started
            run_sql(lake, "SELECT count(*) FROM messages")
            started = time.perf_counter()
            run_sql(lake, "SELECT count(*) FROM messages")
            queried = time.perf_counter() - started
        print(
            f"{files} files, {kind:9}: catalog refresh {refreshed * 1000:.0f} ms, "
            f"count(*) over messages {queried * 1000:.0f} ms"
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
        "--rounds", type=int, default=2, help="backups per lake kind, alternated (default: 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of each query per round (default: 5)"
    )
    parser.add_argument(
        "--files",
        type=int,
        default=0,
        help="instead of the backup, time queries over this many small files per lake kind",
    )
    args = parser.parse_args()
    corpora = [] if args.generated or not args.corpus.is_dir() else [args.corpus]
    if args.files:
        header("encryption: catalog queries over many small files, unencrypted vs encrypted")
        time_many_files(args.files)
        return

    header("encryption: backup rate and query time, unencrypted vs encrypted lake")
    rates: dict[str, list[float]] = {"plain": [], "encrypted": []}
    queries: dict[str, list[dict[str, float]]] = {"plain": [], "encrypted": []}
    with serve_emulator(corpora=corpora) as served:
        source = corpora[0] if corpora else "the generated tenant"
        print(
            f"tenant: {source}: {served.messages} messages in {served.mailboxes} mailboxes, "
            f"{served.raw_bytes / MIB:.1f} MiB of MIME"
        )
        for round_number in range(1, args.rounds + 1):
            order = ["plain", "encrypted"] if round_number % 2 else ["encrypted", "plain"]
            with tempfile.TemporaryDirectory(prefix="m365lake-bench-encryption-") as folder:
                for kind in order:
                    key = BENCH_KEY if kind == "encrypted" else None
                    lake, seconds, messages = back_up(served, Path(folder) / kind, key)
                    rates[kind].append(messages / seconds)
                    queries[kind].append(time_queries(lake, key, args.repeats))
                    tables = sum(
                        path.stat().st_size for path in (lake.root / "tables").rglob("*.parquet")
                    )
                    print(
                        f"round {round_number}: {kind:9} backup {messages / seconds:6.0f} msg/s, "
                        f"tables {tables / MIB:.2f} MiB",
                        flush=True,
                    )

    print()
    plain, encrypted = statistics.median(rates["plain"]), statistics.median(rates["encrypted"])
    print(
        f"backup_mail (median): plain {plain:.0f} msg/s, encrypted {encrypted:.0f} msg/s, "
        f"ratio {encrypted / plain:.2f}"
    )
    print()
    print("| query | plain ms | encrypted ms | ratio |")
    print("|---|---|---|---|")
    for name in QUERIES:
        plain_ms = statistics.median(run[name] for run in queries["plain"]) * 1000
        encrypted_ms = statistics.median(run[name] for run in queries["encrypted"]) * 1000
        print(f"| {name} | {plain_ms:.1f} | {encrypted_ms:.1f} | {encrypted_ms / plain_ms:.2f} |")


if __name__ == "__main__":
    main()
