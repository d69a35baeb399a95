"""Helpers shared by the benchmark scripts: the emulator child process and disk usage."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m365lake.config import GraphSettings

BENCH_DIR = Path(__file__).resolve().parent
SHARED_CORPUS = BENCH_DIR.parent.parent / "shared" / "corpus" / "mail" / "enron"
ENRON_MAILDIR = SHARED_CORPUS / "maildir"
ENRON_EML = SHARED_CORPUS / "edrm-lokay-m-eml"
# Exchange Online's budget of 10,000 requests per mailbox in 10 minutes would throttle the
# second archive of a large mailbox within one benchmark, and the benchmarks measure the
# client, not the budget.
UNTHROTTLED_REQUESTS_PER_WINDOW = 1_000_000_000

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class ServedTenant:
    """The emulator child process: settings that reach it and the size of its tenant."""

    settings: GraphSettings
    environment: dict[str, str]
    """The variables that point m365lake at the emulator, as ``GraphSettings.from_env`` reads."""
    messages: int
    raw_bytes: int
    """Sum of the MIME sizes the emulator holds."""
    mailboxes: int
    pid: int
    files: int = 0
    """Files in the tenant's drives, when the emulator was started with generated files."""
    file_bytes: int = 0
    process: subprocess.Popen[str] | None = field(default=None, repr=False, compare=False)

    def take_requests(self) -> list[dict[str, Any]]:
        """Return the requests the emulator handled since the previous call, oldest first.

        Each is a dictionary of method, path, query, status, mailbox (the user id of a mail
        request, else None) and time (the emulator's monotonic clock, in seconds).
        """
        if self.process is None or self.process.stdin is None or self.process.stdout is None:
            raise RuntimeError("this tenant was not served by serve_emulator")
        self.process.stdin.write("requests\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the emulator process exited with status {self.process.poll()} before it "
                "printed its request log; see its error output above"
            )
        return json.loads(line)  # type: ignore[no-any-return]


@contextlib.contextmanager
def serve_emulator(
    *,
    corpora: list[Path] | None = None,
    large_mailbox: int = 0,
    big_file: int = 0,
    small_files: int = 0,
    requests_per_window: int = UNTHROTTLED_REQUESTS_PER_WINDOW,
    sharepoint_ru_per_minute: int | None = None,
    time_scale: float = 1.0,
) -> Iterator[ServedTenant]:
    """Run bench/_serve.py in a child process and yield settings that point at it.

    ``sharepoint_ru_per_minute`` None leaves SharePoint unthrottled, and ``time_scale``
    shrinks both throttles' windows and budgets (see ``EmulatorOptions``).
    """
    with tempfile.TemporaryDirectory(prefix="m365lake-bench-emulator-") as state_dir:
        command = [
            sys.executable,
            str(BENCH_DIR / "_serve.py"),
            "--state-dir",
            state_dir,
            "--requests-per-window",
            str(requests_per_window),
        ]
        for corpus in corpora or []:
            command += ["--corpus", str(corpus)]
        if large_mailbox:
            command += ["--large-mailbox", str(large_mailbox)]
        if big_file:
            command += ["--big-file", str(big_file)]
        if small_files:
            command += ["--small-files", str(small_files)]
        if sharepoint_ru_per_minute is not None:
            command += ["--sharepoint-ru-per-minute", str(sharepoint_ru_per_minute)]
        command += ["--time-scale", str(time_scale)]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"the emulator process exited with status {process.wait()} before it "
                    "printed its environment; see its error output above"
                )
            report = json.loads(line)
            yield ServedTenant(
                settings=GraphSettings.from_env(report["environment"]),
                environment=report["environment"],
                messages=report["messages"],
                raw_bytes=report["raw_bytes"],
                mailboxes=report["mailboxes"],
                pid=process.pid,
                files=report["files"],
                file_bytes=report["file_bytes"],
                process=process,
            )
        finally:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


SMALL_PARENT = [
    sys.executable,
    "-c",
    "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))",
]
"""Prefix that starts a command from a small Python process.

Linux keeps a process's peak RSS across execve, so a child started straight from a large
process (the suite, after it built search stores) reports that process's peak as its own.
The small parent's own peak is what the grandchild inherits instead.
"""


def allocated_bytes(path: Path) -> int:
    """Return the bytes a file occupies on disk (allocated blocks, not its length)."""
    return os.stat(path).st_blocks * 512


def lake_disk_usage(root: Path) -> dict[str, tuple[int, int]]:
    """Return (allocated bytes, file count) per part of the lake: tables, blobs, commits, …

    Files directly under the root (catalog.duckdb) count under their own name.
    """
    usage: dict[str, tuple[int, int]] = {}
    for directory, _subdirectories, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            relative = path.relative_to(root).parts
            part = relative[0] if len(relative) > 1 else name
            size, count = usage.get(part, (0, 0))
            usage[part] = (size + allocated_bytes(path), count + 1)
    return usage


def corpus_files(root: Path) -> list[Path]:
    """Return every regular file under ``root``, sorted, hidden files excluded."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def machine_description() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# machine: {machine_description()}")
