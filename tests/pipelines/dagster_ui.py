"""Drive the Dagster webserver and headless Chromium for the browser check.

Chromium is driven directly from its command line: ``--dump-dom`` prints the DOM once the
page's virtual time budget has run out, and ``--screenshot`` saves what a person would
see. Chromium pauses virtual time while network fetches are pending, so the budget runs
out after the UI's GraphQL queries have returned and React has rendered their results.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
WINDOW_SIZE = "1600,1000"
VIRTUAL_TIME_BUDGET_MS = 20_000
CHROMIUM_TIMEOUT_SECONDS = 120
WEBSERVER_START_TIMEOUT_SECONDS = 180


def find_chromium() -> str | None:
    """Return the Chromium executable: ``M365LAKE_CHROMIUM``, else Debian's on the PATH."""
    configured = os.environ.get("M365LAKE_CHROMIUM")
    if configured:
        return configured
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _TextExtractor(html.parser.HTMLParser):
    _HIDDEN = frozenset({"script", "style", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth and data.strip():
            self.parts.append(data.strip())


def visible_text(dom: str) -> str:
    """Return the text of ``dom`` outside scripts and styles, words separated by one space."""
    extractor = _TextExtractor()
    extractor.feed(dom)
    return " ".join(extractor.parts)


class Chromium:
    """Headless Chromium with a profile of its own, so no earlier UI state leaks in."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        self.executable = executable
        self.profile_dir = profile_dir

    def _run(self, url: str, *action: str) -> subprocess.CompletedProcess[str]:
        command = [
            self.executable,
            "--headless",
            # Chromium refuses to start its sandbox as root, which CI machines run as.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={WINDOW_SIZE}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            *action,
            url,
        ]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{self.executable} exited with {completed.returncode} loading {url}; "
                f"its last output:\n{completed.stderr[-2000:]}"
            )
        return completed

    def dump_dom(self, url: str) -> str:
        return self._run(url, "--dump-dom").stdout

    def screenshot(self, url: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._run(url, f"--screenshot={path}")
        if not path.is_file() or path.stat().st_size == 0:
            raise RuntimeError(f"Chromium exited normally but wrote no screenshot to {path}")
        return path


class DagsterWebserver:
    """``dagster-webserver`` on 127.0.0.1 for the code location that pyproject.toml names.

    It runs in a process group of its own, so stopping it also stops the code server it
    starts. Its output goes to ``log_path`` and is quoted when it fails to start.
    """

    def __init__(
        self,
        project_root: Path,
        dagster_home: Path,
        log_path: Path,
        location_args: tuple[str, ...] = (),
    ) -> None:
        self.project_root = project_root
        self.dagster_home = dagster_home
        self.log_path = log_path
        self.location_args = location_args
        """Options such as ``("-f", path)`` naming another code location than pyproject's."""
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        if not self.log_path.is_file():
            return "(no output)"
        return self.log_path.read_text(errors="replace")[-3000:]

    def start(self) -> DagsterWebserver:
        executable = Path(sys.executable).with_name("dagster-webserver")
        environment = {**os.environ, "DAGSTER_HOME": str(self.dagster_home)}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(executable),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *self.location_args,
                ],
                cwd=self.project_root,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + WEBSERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"dagster-webserver exited with {self._process.returncode} before "
                    f"serving; its output:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"dagster-webserver did not serve {self.url} within "
            f"{WEBSERVER_START_TIMEOUT_SECONDS} s; its output:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            # The group outlives a webserver that exited while its code server still runs.
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def __enter__(self) -> DagsterWebserver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
