"""Text extraction in worker processes, with a time limit and a memory cap per item.

Parsers for hostile formats can loop, allocate without bound or crash in native code
(PDFium, calamine). Running them in a worker keeps the indexer alive: an item that runs
past the time limit gets status "timeout", one that exhausts the memory cap gets
"too_large", and a worker that dies is replaced before the next item.

Workers are started with the "spawn" method, because forking a process that runs
threads (Tantivy's writer, Dagster) can deadlock the child.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from m365lake.search.extract_types import (
    DEFAULT_MAX_CHARS,
    Extraction,
    ExtractionStatus,
    MessageText,
    failure,
)

logger = logging.getLogger(__name__)

# NOTE: a guess, not measured on large inputs. The real documents measured so far took
# under 0.1 s each, so the limit only stops parsers that loop.
DEFAULT_TIMEOUT_SECONDS = 60.0
# The cap is on address space (RLIMIT_AS), which counts mapped libraries and thread stacks
# as well as the heap. A worker that has parsed one file of each kind maps about 50 MiB
# (VmSize on Linux x86_64), so the rest is left for the parsed document.
DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024**3
# Time for a new worker to start the interpreter and import the parsers.
WORKER_START_TIMEOUT_SECONDS = 120.0
# A worker is replaced after this many items, so heap fragmentation cannot grow forever.
DEFAULT_MAX_TASKS_PER_WORKER = 500
# Bytes of a worker's stderr output per item that reach the parent's debug log.
MAX_STDERR_BYTES = 2000

TextExtractor = Callable[..., Extraction]
MessageExtractor = Callable[..., MessageText]


def default_workers() -> int:
    """Return one worker per core but one, leaving a core for the caller (1 on 2 cores)."""
    return max(1, (os.cpu_count() or 2) - 1)


def _worker_main(
    connection: multiprocessing.connection.Connection,
    memory_limit_bytes: int | None,
    text_extractor: TextExtractor | None,
    message_extractor: MessageExtractor | None,
) -> None:
    # Ctrl-C in a terminal reaches the whole process group. The parent handles it and
    # stops the workers, so a worker ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_limit_bytes is not None and sys.platform != "win32":
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    # Imported here, not at module level, because extract re-exports this module's pool.
    from m365lake.search import extract

    if text_extractor is None or message_extractor is None:
        extract.load_parsers()
    text_extractor = text_extractor or extract.extract_text
    message_extractor = message_extractor or extract.extract_message
    # Native parsers write to fd 2 directly: calamine prints a Rust panic message there
    # before python-calamine raises PanicException. The extraction status already reports
    # the failure, so that output goes to the parent's debug log, not to its terminal.
    # NOTE: the output of a worker that dies is lost with it; the parent logs its exit code.
    captured = _capture_stderr()
    # Startup (interpreter, imports) does not count against the first item's time limit.
    connection.send("ready")
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        kind, data, options = request
        result: Extraction | MessageText
        try:
            if kind == "message":
                result = message_extractor(data, **options)
            else:
                result = text_extractor(data, **options)
        except MemoryError:
            result = _failed(kind, "too_large", "extraction exceeded the worker's memory limit")
        except Exception as error:  # the extractors do not raise, but an injected one might
            result = _failed(kind, "corrupt", f"extraction failed ({type(error).__name__})")
        del data
        output = _drain_stderr(captured)
        try:
            connection.send((result, output))
        except MemoryError:
            result = _failed(
                kind, "too_large", "the extracted text exceeded the worker's memory limit"
            )
            connection.send((result, output))


def _capture_stderr() -> int:
    """Point this process's fd 2 at an anonymous temporary file; return that file's fd."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        descriptor = os.dup(captured.fileno())
    os.dup2(descriptor, 2)
    return descriptor


def _drain_stderr(descriptor: int) -> str:
    """Return the start of what was written to fd 2 since the last call, and empty it."""
    sys.stderr.flush()
    # fd 2 and ``descriptor`` share one file offset, so the next write starts at 0 again.
    os.lseek(descriptor, 0, os.SEEK_SET)
    output = os.read(descriptor, MAX_STDERR_BYTES)
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    return output.decode("utf-8", "replace").strip()


def _failed(kind: str, status: ExtractionStatus, reason: str) -> Extraction | MessageText:
    extraction = failure(status, reason)
    if kind == "message":
        return MessageText(body="", body_extraction=extraction, attachments=[])
    return extraction


class _Worker:
    """One spawned worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, pool: ExtractionPool) -> None:
        parent, child = context.Pipe(duplex=True)
        self.connection: multiprocessing.connection.Connection = parent
        self.process = context.Process(
            target=_worker_main,
            args=(child, pool.memory_limit_bytes, pool.text_extractor, pool.message_extractor),
            name="m365lake-extract",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.tasks = 0
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the worker's startup message; False when it died or took too long."""
        try:
            if self.connection.poll(timeout) and self.connection.recv() == "ready":
                self.ready = True
        except (EOFError, OSError):
            self.ready = False
        return self.ready

    def stop(self, *, kill: bool) -> None:
        if not kill:
            try:
                self.connection.send(None)
            except (OSError, ValueError):
                kill = True
        if kill:
            self.process.kill()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


class ExtractionPool:
    """Worker processes that run ``extract_text`` and ``extract_message`` under limits.

    Safe to call from several threads, and each call blocks until a worker is free. By
    default there is one worker per core but one, so on 2 cores one core extracts while
    the caller indexes on the other. ``text_extractor`` and ``message_extractor`` replace
    the real extractors (tests inject slow or crashing ones). They must be importable
    module-level functions, because the workers are spawned.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES,
        max_tasks_per_worker: int = DEFAULT_MAX_TASKS_PER_WORKER,
        text_extractor: TextExtractor | None = None,
        message_extractor: MessageExtractor | None = None,
    ) -> None:
        if workers is None:
            workers = default_workers()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        self.timeout = timeout
        self.memory_limit_bytes = memory_limit_bytes
        self.max_tasks_per_worker = max_tasks_per_worker
        self.text_extractor = text_extractor
        self.message_extractor = message_extractor
        self._context = multiprocessing.get_context("spawn")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.replaced_workers = 0
        """Workers replaced after a timeout or crash, for the caller's statistics."""
        for _ in range(workers):
            self._idle.put(_Worker(self._context, self))
        self._size = workers

    def extract_text(
        self,
        data: bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> Extraction:
        """Run ``extract.extract_text`` in a worker, with the same arguments."""
        options = {"filename": filename, "content_type": content_type, "max_chars": max_chars}
        result = self._run("text", data, options, label=filename)
        assert isinstance(result, Extraction)
        return result

    def extract_message(self, mime: bytes, *, max_chars: int = DEFAULT_MAX_CHARS) -> MessageText:
        """Run ``extract.extract_message`` in a worker, with the same arguments."""
        result = self._run("message", mime, {"max_chars": max_chars}, label="message")
        assert isinstance(result, MessageText)
        return result

    def _run(
        self, kind: str, data: bytes, options: dict[str, Any], *, label: str | None
    ) -> Extraction | MessageText:
        if self._closed:
            raise RuntimeError(
                "the ExtractionPool is closed, so create a new pool to extract more items"
            )
        worker = self._started_worker(self._idle.get())
        if worker is None:
            return _failed(
                kind,
                "timeout",
                f"no extraction worker started within {WORKER_START_TIMEOUT_SECONDS:g} seconds",
            )
        try:
            worker.connection.send((kind, data, options))
            if not worker.connection.poll(self.timeout):
                logger.warning(
                    "extraction of %r timed out after %.0f s; replacing its worker",
                    label,
                    self.timeout,
                )
                worker = self._replace(worker)
                return _failed(
                    kind, "timeout", f"extraction did not finish within {self.timeout:g} seconds"
                )
            result: Extraction | MessageText
            result, output = worker.connection.recv()
            if output:
                logger.debug("extraction of %r wrote to stderr: %s", label, output)
            worker.tasks += 1
            if worker.tasks >= self.max_tasks_per_worker:
                worker.stop(kill=False)
                worker = _Worker(self._context, self)
        except (EOFError, OSError, BrokenPipeError):
            exit_code = worker.process.exitcode
            if exit_code is None:
                worker.process.join(timeout=5)
                exit_code = worker.process.exitcode
            logger.warning(
                "extraction worker died on %r (exit code %s); replacing it", label, exit_code
            )
            worker = self._replace(worker)
            return _failed(kind, "corrupt", _crash_reason(exit_code))
        finally:
            self._idle.put(worker)
        return result

    def _started_worker(self, worker: _Worker) -> _Worker | None:
        """Return ``worker`` once it is running and ready, replacing it once if it is not.

        On failure the replacement goes back to the idle queue and None is returned.
        """
        for _attempt in range(2):
            if worker.ready and worker.process.is_alive():
                return worker
            if not worker.ready and worker.wait_ready(WORKER_START_TIMEOUT_SECONDS):
                return worker
            # A worker that died while idle (killed from outside) or never started is not
            # the fault of the item about to be sent.
            logger.warning(
                "extraction worker is not running (exit code %s); replacing it",
                worker.process.exitcode,
            )
            worker = self._replace(worker)
        self._idle.put(worker)
        return None

    def _replace(self, worker: _Worker) -> _Worker:
        worker.stop(kill=True)
        with self._lock:
            self.replaced_workers += 1
        return _Worker(self._context, self)

    def close(self) -> None:
        """Stop every worker, after waiting for calls in progress to finish."""
        if self._closed:
            return
        self._closed = True
        for _ in range(self._size):
            self._idle.get().stop(kill=False)

    def __enter__(self) -> ExtractionPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _crash_reason(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"the extraction worker crashed on this item ({name})"
    return f"the extraction worker exited on this item (exit code {exit_code})"
