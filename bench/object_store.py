"""Measure backup to object storage against the local lake: throughput and store requests.

The emulator serves the tenant from a child process, as in the other benchmarks. A
moto S3 server runs on 127.0.0.1 in another child process, and Azurite too when it is
installed under ``.tools/azurite`` (``./run test`` installs it). The same backup runs
into a new local lake, into ``s3://BUCKET/...`` on moto (a bucket with versioning and
Object Lock, as the lake expects in production) and into ``az://CONTAINER/...`` on
Azurite. Then a second backup of the same lake finds no changes. The local lake is the
baseline: each store's items/s is divided by the local lake's from the same round.

Requests to S3 are counted in this process, per HTTP attempt and per S3 operation, by
a botocore ``before-send`` handler on the s3fs client. moto's access log counts them
again on the server side as a check. Requests to Azurite are counted from Azurite's
access log only, because adlfs builds its Azure clients inside ``Lake.open`` where
nothing can hook them from here. Each table of requests is followed by the object names
requested most, with hashes, ids and sequence numbers replaced by placeholders. Before
the backups, the median time of a 1 KiB PUT and GET through fsspec shows each store's
latency from this process.

Workloads: mail (the Enron maildir when present, else the generated tenant) and a
OneDrive of small generated files.

    uv run python bench/object_store.py [--quick] [--corpus PATH | --generated]
                                        [--files N] [--rounds N] [--inline-threshold BYTES]
                                        [--top N] [--no-azure]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from _common import ENRON_MAILDIR, MIB, ServedTenant, header, serve_emulator

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.lake import DEFAULT_INLINE_THRESHOLD, Lake
from m365lake.lake.object_store import open_object_storage

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BLOB = PROJECT_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
SERVER_START_SECONDS = 60
MB = 1_000_000

S3_ACCESS_KEY_ID = "m365lake-bench"
S3_SECRET_ACCESS_KEY = "m365lake-bench-secret"
S3_REGION = "us-east-1"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's development account key, published by Microsoft and valid only against Azurite."""

ROUND_TRIPS = 20
"""Small PUTs and GETs whose median shows a store's latency from this process."""
QUICK_CORPUS = ENRON_MAILDIR / "arora-h"
QUICK_FILES = 1_000
DEFAULT_FILES = 5_000

ANSI_ESCAPE = re.compile(r"\x1b\[[\d;]*m")
ACCESS_LOG_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')
"""The request line and status of a line in moto's (werkzeug's) or Azurite's access log."""

S3_OPERATIONS = {
    "HeadObject": "HEAD",
    "GetObject": "GET",
    "ListObjectsV2": "LIST",
    "ListObjects": "LIST",
    "PutObject": "PUT",
    "CreateMultipartUpload": "multipart start",
    "UploadPart": "multipart part",
    "CompleteMultipartUpload": "multipart complete",
    "AbortMultipartUpload": "multipart abort",
    "DeleteObject": "DELETE",
    "DeleteObjects": "DELETE batch",
}
"""The kind of request each S3 operation is, as the tables name it. Others keep their name.

Azure's Get Blob Properties is HEAD, Get Blob GET, List Blobs LIST, Put Blob PUT, Put
Block a multipart part, Put Block List a multipart completion, Delete Blob DELETE.
"""
KINDS = [
    "PUT",
    "GET",
    "HEAD",
    "LIST",
    "DELETE",
    "DELETE batch",
    "multipart start",
    "multipart part",
    "multipart complete",
    "multipart abort",
]
TARGET_PATTERNS = [
    (re.compile(r"blobs/sha256/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}"), "blobs/sha256/…/<sha256>"),
    (re.compile(r"(\w+_id)=[^/]+"), r"\1=<id>"),
    (re.compile(r"[^/]+\.parquet"), "<file>.parquet"),
    (re.compile(r"commits/\d+\.json"), "commits/<seq>.json"),
    (re.compile(r"leases/(mail|files|teams)-[^/]+\.json"), r"leases/\1-<container>.json"),
    (re.compile(r"[0-9a-f]{32}"), "<uuid>"),
]
"""Replacements that turn an object name into the pattern its requests are grouped under."""

Request = tuple[str, str]
"""The kind of a request (PUT, GET, …) and the pattern of the object name it targets."""


def request_target(url: str, container: str) -> str:
    """Return the pattern of the lake-relative name a request targets, or ``list PREFIX``.

    Both servers take path-style URLs, ``/BUCKET/KEY`` for moto and
    ``/ACCOUNT/CONTAINER/KEY`` for Azurite. The first part of the key is the lake's
    prefix, which is dropped.
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    marker = f"/{container}/"
    key = path.split(marker, 1)[1] if marker in path else ""
    listing = not key
    if listing:
        key = parse_qs(parts.query).get("prefix", [""])[0]
    relative = key.split("/", 1)[1] if "/" in key else ""
    for pattern, replacement in TARGET_PATTERNS:
        relative = pattern.sub(replacement, relative)
    return f"list {relative or '(lake root)'}" if listing else relative


# ---- loopback servers --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AccessLog:
    """A server's access log file, read from where the previous ``take`` stopped."""

    def __init__(self, path: Path, container: str, kind: Callable[[str, str], str]) -> None:
        self.path = path
        self._container = container
        self._kind = kind
        self._offset = 0

    def take(self) -> Counter[Request]:
        """Return the requests logged since the previous call, counted per kind and target."""
        with self.path.open("rb") as log:
            log.seek(self._offset)
            text = log.read()
        # Only whole lines: a line being written now is counted by the next call.
        complete = text[: text.rfind(b"\n") + 1]
        self._offset += len(complete)
        counts: Counter[Request] = Counter()
        for line in complete.decode("utf-8", errors="replace").splitlines():
            # werkzeug colours the request line of error responses.
            match = ACCESS_LOG_LINE.search(ANSI_ESCAPE.sub("", line))
            if match:
                method, target = match.group(1), match.group(2)
                counts[self._kind(method, target), request_target(target, self._container)] += 1
        return counts


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] or "(no output)"


@contextlib.contextmanager
def serve_process(name: str, command: list[str], port: int, log_path: Path) -> Iterator[None]:
    """Start a server in its own process group, wait until it listens, stop it after the block."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with status {process.returncode} before it listened on "
                    f"127.0.0.1:{port}; its output:\n{log_tail(log_path)}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not listen on 127.0.0.1:{port} within "
                        f"{SERVER_START_SECONDS} s; its output:\n{log_tail(log_path)}"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def moto_request_kind(method: str, target: str) -> str:
    """Return the kind of an S3 request line from moto's log, as far as the line shows it."""
    path, _, query = target.partition("?")
    arguments = parse_qs(query, keep_blank_values=True)
    if method == "GET" and path.count("/") == 1:
        return "LIST"
    if method == "PUT" and "partNumber" in arguments:
        return "multipart part"
    if method == "POST" and "uploads" in arguments:
        return "multipart start"
    if method == "POST" and "uploadId" in arguments:
        return "multipart complete"
    if method == "POST" and "delete" in arguments:
        return "DELETE batch"
    if method == "DELETE" and "uploadId" in arguments:
        return "multipart abort"
    return method


def azurite_request_kind(method: str, target: str) -> str:
    """Return the kind of a Blob Storage request line from Azurite's access log."""
    _path, _, query = target.partition("?")
    comp = parse_qs(query).get("comp", [""])[0]
    if method == "GET" and comp == "list":
        return "LIST"
    if method == "PUT" and comp == "blocklist":
        return "multipart complete"
    if method == "PUT" and comp == "block":
        return "multipart part"
    return method


@dataclass
class Store:
    """An object store that the lakes of one run go to, and how its requests are counted."""

    name: str
    scheme: str
    bucket: str
    """Bucket (S3) or container (Azure) that contains every lake of the run."""
    server_log: AccessLog
    counts_client_side: bool

    def url(self, prefix: str) -> str:
        return f"{self.scheme}://{self.bucket}/{prefix}"


@contextlib.contextmanager
def serve_moto(folder: Path) -> Iterator[Store]:
    """Run moto's S3 server on loopback, point the AWS variables at it and make a bucket."""
    port = free_port()
    log_path = folder / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": S3_REGION,
            # botocore must never ask a cloud metadata address for credentials.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serve_process("moto server", command, port, log_path):
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:16]}"
        boto3.client("s3").create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        server_log = AccessLog(log_path, bucket, moto_request_kind)
        server_log.take()
        yield Store("s3 (moto)", "s3", bucket, server_log, counts_client_side=True)


@contextlib.contextmanager
def serve_azurite(folder: Path) -> Iterator[Store]:
    """Run Azurite's Blob service on loopback, point the Azure variable at it, add a container."""
    port = free_port()
    log_path = folder / "azurite.log"
    command = [
        str(AZURITE_BLOB),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(folder / "azurite-data"),
        # The Azure SDK may speak a newer API version than this Azurite supports.
        "--skipApiVersionCheck",
        "--disableTelemetry",
    ]
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    with serve_process("azurite-blob", command, port, log_path):
        from azure.storage.blob import BlobServiceClient

        container = f"bench-{uuid.uuid4().hex[:16]}"
        service = BlobServiceClient.from_connection_string(
            os.environ["AZURE_STORAGE_CONNECTION_STRING"]
        )
        service.create_container(container)
        server_log = AccessLog(log_path, container, azurite_request_kind)
        server_log.take()
        yield Store("azure (Azurite)", "az", container, server_log, counts_client_side=False)


# ---- client-side request counts ----------------------------------------------------------


class S3RequestCounter:
    """Counter of the HTTP requests an s3fs file system sends, per kind and target.

    botocore emits ``before-send.s3.<Operation>`` once per HTTP attempt, retries
    included, on the thread of s3fs's event loop.
    """

    def __init__(self, fs: Any, bucket: str) -> None:
        self._fs = fs
        self._bucket = bucket
        self._client = fs.s3
        self._counts: Counter[Request] = Counter()
        self._lock = threading.Lock()
        self._client.meta.events.register("before-send.s3", self._record)

    def _record(self, event_name: str, request: Any, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        kind = S3_OPERATIONS.get(operation, operation)
        target = request_target(request.url, self._bucket)
        with self._lock:
            self._counts[kind, target] += 1

    def take(self) -> Counter[Request]:
        """Return the requests counted since the previous call."""
        if self._fs._s3 is not self._client:
            # s3fs makes a new client when its HTTP session was closed, and the requests
            # of that client would go uncounted.
            raise RuntimeError("s3fs replaced its S3 client during the run; counts are partial")
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


def time_round_trips(store: Store) -> tuple[float, float]:
    """Return the median seconds of a 1 KiB PUT and of its GET, through the lake's storage."""
    storage = open_object_storage(store.url(f"round-trips-{uuid.uuid4().hex[:8]}"))
    puts, gets = [], []
    for number in range(ROUND_TRIPS):
        name = f"probe/{number}"
        started = time.perf_counter()
        storage.publish(name, bytes(1024))
        puts.append(time.perf_counter() - started)
        started = time.perf_counter()
        storage.read_bytes(name)
        gets.append(time.perf_counter() - started)
    store.server_log.take()
    return statistics.median(puts), statistics.median(gets)


# ---- one backup --------------------------------------------------------------------------


@dataclass
class Run:
    """Figures of one backup into one lake."""

    lake: str
    items: int
    downloaded: int
    """Bytes of content downloaded from the emulator."""
    seconds: float
    stored: int = 0
    """Bytes of every object or file under the lake root after both backups."""
    commits: int = 0
    """Manifests in the lake after the backup."""
    requests: Counter[Request] = field(default_factory=Counter)
    server_requests: Counter[Request] = field(default_factory=Counter)

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.downloaded / MB / self.seconds


def run_backup(workload: str, served: ServedTenant, lake: Lake) -> tuple[int, int, float]:
    """Run the mail or files backup into ``lake`` and return items archived, bytes, seconds."""
    started = time.perf_counter()
    if workload == "mail":
        mail = asyncio.run(backup_mail(served.settings, lake))
        seconds = time.perf_counter() - started
        if mail.skipped or mail.failed or mail.total("failures"):
            raise RuntimeError(
                f"the mail backup into {lake.location} did not archive everything: skipped "
                f"{mail.skipped}, failed {mail.failed}, {mail.total('failures')} item failures"
            )
        return mail.total("messages_new"), mail.total("bytes_downloaded"), seconds
    files = asyncio.run(backup_files(served.settings, lake))
    seconds = time.perf_counter() - started
    if files.skipped or files.failed or files.total("failures"):
        raise RuntimeError(
            f"the files backup into {lake.location} did not archive everything: skipped "
            f"{files.skipped}, failed {files.failed}, {files.total('failures')} item failures"
        )
    return files.total("items_new"), files.total("bytes_downloaded"), seconds


def stored_bytes(lake: Lake) -> int:
    storage: Any = lake.storage
    if lake.is_remote:
        # adlfs returns results from its listing cache, which misses objects written since.
        storage.fs.invalidate_cache()
        found = storage.fs.find(storage.root, detail=True)
        return sum(int(info["size"]) for info in found.values())
    return sum(path.stat().st_size for path in lake.root.rglob("*") if path.is_file())


def back_up_twice(
    workload: str,
    served: ServedTenant,
    location: str,
    store: Store | None,
    inline_threshold: int,
) -> tuple[Run, Run]:
    """Back up into a new lake at ``location``, then again with nothing changed."""
    lake = Lake.open(location, inline_threshold=inline_threshold)
    counter = None
    if store and store.counts_client_side:
        counter = S3RequestCounter(lake.storage.fs, store.bucket)  # type: ignore[union-attr]
    runs = []
    for _ in range(2):
        # Opening the lake and reading its head between the backups are not counted.
        take_requests(counter, store)
        items, downloaded, seconds = run_backup(workload, served, lake)
        run = Run(lake.location, items, downloaded, seconds)
        run.requests, run.server_requests = take_requests(counter, store)
        run.commits = lake.head().seq
        runs.append(run)
    runs[0].stored = runs[1].stored = stored_bytes(lake)
    return runs[0], runs[1]


def take_requests(
    counter: S3RequestCounter | None, store: Store | None
) -> tuple[Counter[Request], Counter[Request]]:
    """Return the store requests since the previous call: the client's count, the server's.

    The client's count is the server's where only the server counts.
    """
    if store is None:
        return Counter(), Counter()
    # moto and Azurite write their log line after the response, so give them a moment.
    time.sleep(0.5)
    server = store.server_log.take()
    client = counter.take() if counter else server
    return client, server


# ---- reports -----------------------------------------------------------------------------


def print_throughput(workload: str, runs: dict[str, list[Run]]) -> None:
    print()
    print(f"### {workload}: first backup, median of the rounds")
    print()
    print("| lake | items | MB downloaded | MB stored | seconds | items/s | MB/s | ÷ local |")
    print("|---|---|---|---|---|---|---|---|")
    local_rate = statistics.median(run.items_per_second for run in runs["local"])
    for name, rounds in runs.items():
        rate = statistics.median(run.items_per_second for run in rounds)
        first = rounds[0]
        print(
            f"| {name} | {first.items:,} | {first.downloaded / MB:.1f} | "
            f"{first.stored / MB:.1f} | {statistics.median(run.seconds for run in rounds):.1f} | "
            f"{rate:.0f} | {statistics.median(run.mb_per_second for run in rounds):.2f} | "
            f"{rate / local_rate:.2f} |"
        )


def by_kind(requests: Counter[Request]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for (kind, _target), count in requests.items():
        kinds[kind] += count
    return kinds


def print_requests(title: str, runs: dict[str, Run], per_item: bool, top: int) -> None:
    """Print store requests per kind, one column (or two) per store, then the top targets."""
    stores = {name: run for name, run in runs.items() if name != "local"}
    print()
    print(f"### {title}")
    print()
    headings = [f"{name}" + (f" | {name} per 1,000 items" if per_item else "") for name in stores]
    print(f"| request | {' | '.join(headings)} |")
    print("|---" * (1 + len(stores) * (2 if per_item else 1)) + "|")
    kinds = {name: by_kind(run.requests) for name, run in stores.items()}
    seen = {kind for counts in kinds.values() for kind in counts}
    rows = [kind for kind in KINDS if kind in seen] + sorted(seen - set(KINDS))
    for row in [*rows, "total"]:
        cells = []
        for name, run in stores.items():
            count = sum(kinds[name].values()) if row == "total" else kinds[name][row]
            cells.append(f"{count:,}")
            if per_item:
                cells.append(f"{count * 1000 / run.items:.1f}" if run.items else "-")
        print(f"| {row} | {' | '.join(cells)} |")
    print()
    for name, run in stores.items():
        if run.requests is not run.server_requests:
            print(
                f"check: {name}: {sum(run.requests.values()):,} requests counted by the "
                f"client, {sum(run.server_requests.values()):,} in the server's access log"
            )
        print(f"{name}: the {top} most requested targets:")
        for (kind, target), count in run.requests.most_common(top):
            print(f"  {count:6,}  {kind:8} {target}")


def benchmark(
    workload: str,
    served: ServedTenant,
    stores: list[Store],
    rounds: int,
    inline_threshold: int,
    scratch: Path,
    top: int,
) -> None:
    first: dict[str, list[Run]] = {"local": [], **{store.name: [] for store in stores}}
    second: dict[str, list[Run]] = {name: [] for name in first}
    targets: list[Store | None] = [None, *stores]
    for round_number in range(1, rounds + 1):
        # Each round starts with a different lake, so none always runs on a warm emulator.
        start = (round_number - 1) % len(targets)
        for store in targets[start:] + targets[:start]:
            prefix = f"{workload}-{round_number}-{uuid.uuid4().hex[:8]}"
            location = store.url(prefix) if store else str(scratch / prefix)
            name = store.name if store else "local"
            initial, repeat = back_up_twice(workload, served, location, store, inline_threshold)
            first[name].append(initial)
            second[name].append(repeat)
            print(
                f"round {round_number}: {name:16} {initial.items:,} items in "
                f"{initial.seconds:.1f} s ({initial.items_per_second:.0f} items/s), "
                f"{sum(initial.requests.values()):,} store requests, {initial.commits} "
                f"commits; no-change run {repeat.seconds:.1f} s, "
                f"{sum(repeat.requests.values()):,} store requests, {repeat.commits} commits",
                flush=True,
            )
    print_throughput(workload, first)
    print_requests(
        f"{workload}: store requests of the first backup (round 1)",
        {name: runs[0] for name, runs in first.items()},
        per_item=True,
        top=top,
    )
    print_requests(
        f"{workload}: store requests of a second backup with no changes (round 1)",
        {name: runs[0] for name, runs in second.items()},
        per_item=False,
        top=top,
    )
    print()
    for name, runs in second.items():
        seconds = statistics.median(run.seconds for run in runs)
        print(f"{name}: no-change backup {seconds:.2f} s (median)")


# ---- command line ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"one custodian ({QUICK_CORPUS.name}) and {QUICK_FILES:,} files, a few minutes",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help="mail corpus folder to serve (default: the Enron maildir, or one custodian of it "
        "with --quick; the generated tenant when it is absent)",
    )
    parser.add_argument(
        "--generated", action="store_true", help="serve the built-in generated mail tenant"
    )
    parser.add_argument(
        "--files",
        type=int,
        help=f"small files (1 to 8 KiB) in one OneDrive (default: {DEFAULT_FILES:,}, "
        f"{QUICK_FILES:,} with --quick; 0 skips the files backup)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="backups per lake, alternated (default: 1)"
    )
    parser.add_argument(
        "--inline-threshold",
        type=int,
        default=DEFAULT_INLINE_THRESHOLD,
        metavar="BYTES",
        help="content up to this size is stored inline in Parquet, larger content as one "
        f"blob object each (default: the lake's, {DEFAULT_INLINE_THRESHOLD:,}; 0 makes "
        "every message and file a blob)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=12,
        help="most requested object name patterns to list per store and run (default: 12)",
    )
    parser.add_argument(
        "--no-azure", action="store_true", help="skip Azurite even when it is installed"
    )
    args = parser.parse_args()
    corpus = args.corpus or (QUICK_CORPUS if args.quick else ENRON_MAILDIR)
    corpora = [] if args.generated or not corpus.is_dir() else [corpus]
    files = args.files
    if files is None:
        files = QUICK_FILES if args.quick else DEFAULT_FILES

    header("object_store: backup into S3 and Azure Blob emulators ÷ backup into a local lake")
    print(f"command: {' '.join(sys.argv)}")
    print(f"inline threshold: {args.inline_threshold:,} bytes")
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="m365lake-bench-")))
        os.environ["M365LAKE_CACHE_DIR"] = str(scratch / "cache")
        stores = [stack.enter_context(serve_moto(scratch))]
        if args.no_azure:
            print("azure: skipped (--no-azure)")
        elif not AZURITE_BLOB.exists():
            print(f"azure: skipped, Azurite is not installed at {AZURITE_BLOB}")
        else:
            stores.append(stack.enter_context(serve_azurite(scratch)))
        for store in stores:
            put, get = time_round_trips(store)
            print(
                f"{store.name}: a 1 KiB PUT takes {put * 1000:.1f} ms and its GET "
                f"{get * 1000:.1f} ms (median of {ROUND_TRIPS}, through fsspec)"
            )

        with serve_emulator(corpora=corpora) as served:
            source = corpora[0] if corpora else "the generated tenant"
            print()
            print(
                f"## mail: {source}: {served.messages:,} messages in {served.mailboxes} "
                f"mailboxes, {served.raw_bytes / MIB:.1f} MiB of MIME"
            )
            benchmark("mail", served, stores, args.rounds, args.inline_threshold, scratch, args.top)
        if files:
            with serve_emulator(small_files=files) as served:
                print()
                print(
                    f"## files: {served.files:,} files of 1 to 8 KiB in one OneDrive, "
                    f"{served.file_bytes / MIB:.1f} MiB"
                )
                benchmark(
                    "files", served, stores, args.rounds, args.inline_threshold, scratch, args.top
                )


if __name__ == "__main__":
    main()
