"""Serve the emulator over HTTPS on 127.0.0.1 from a daemon thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn

from m365lake.config import (
    ENV_AUTHORITY_HOST,
    ENV_CA_BUNDLE,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_GRAPH_URL,
    ENV_TENANT_ID,
    GraphSettings,
)
from m365lake.emulator import certs
from m365lake.emulator.app import EmulatorOptions, RequestRecord, build_app
from m365lake.emulator.concurrency import ConcurrencyPeaks
from m365lake.emulator.model import Tenant

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0


class EmulatorServer:
    """The emulator app behind uvicorn with TLS from the private CA in ``state_dir``.

    Use as a context manager, or call ``start()`` and ``stop()``. Port 0 picks a free port.
    """

    def __init__(
        self,
        tenant: Tenant,
        state_dir: Path,
        options: EmulatorOptions | None = None,
        port: int = 0,
    ) -> None:
        self.tenant = tenant
        self.state_dir = Path(state_dir)
        self.options = options or EmulatorOptions()
        self.app = build_app(tenant, self.options)
        self._requested_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._tls_files: tuple[Path, Path] | None = None
        self.port = 0
        ca = certs.ensure_ca(self.state_dir)
        self.ca_bundle: Path = ca.cert_path
        self._ca = ca

    @property
    def client_id(self) -> str:
        return self.tenant.app.client_id

    @property
    def client_secret(self) -> str:
        return self.tenant.app.client_secret

    @property
    def authority_host(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.authority_host}/v1.0"

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the requests handled so far, oldest first."""
        return self.app.state.requests.snapshot()  # type: ignore[no-any-return]

    def clear_requests(self) -> None:
        self.app.state.requests.clear()

    def max_concurrency(self) -> ConcurrencyPeaks:
        """Return the most Graph requests seen in flight at once, overall and per mailbox."""
        return self.app.state.concurrency.peaks()  # type: ignore[no-any-return]

    def reset_max_concurrency(self) -> None:
        self.app.state.concurrency.reset()

    def inject(
        self,
        *,
        path_pattern: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        code: str | None = None,
    ) -> None:
        """Make the next ``times`` requests whose path matches the regex fail with ``status``."""
        self.app.state.faults.inject(
            path_pattern=path_pattern,
            status=status,
            times=times,
            retry_after=retry_after,
            code=code,
        )

    def inject_broken_download(self, item_id: str, after_bytes: int, times: int = 1) -> None:
        """Make the next ``times`` downloads of ``item_id`` drop the connection after N bytes."""
        self.app.state.downloads.inject_broken_download(item_id, after_bytes, times)

    def environment(self) -> dict[str, str]:
        """Return the environment variables that point m365lake (and msal) at this emulator."""
        return {
            ENV_TENANT_ID: self.tenant.tenant_id,
            ENV_CLIENT_ID: self.client_id,
            ENV_CLIENT_SECRET: self.client_secret,
            ENV_AUTHORITY_HOST: self.authority_host,
            ENV_GRAPH_URL: self.graph_url,
            ENV_CA_BUNDLE: str(self.ca_bundle),
        }

    def settings(self) -> GraphSettings:
        return GraphSettings(
            tenant_id=self.tenant.tenant_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            authority_host=self.authority_host,
            graph_url=self.graph_url,
            ca_bundle=self.ca_bundle,
            max_concurrent_per_mailbox=self.options.mailbox_concurrency,
        )

    def start(self) -> EmulatorServer:
        if self._thread is not None:
            raise RuntimeError("the emulator server is already running")
        cert_path, key_path = certs.issue_server_certificate(self._ca, self.state_dir / "tls")
        self._tls_files = (cert_path, key_path)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]

        config = uvicorn.Config(
            self.app,
            ssl_certfile=str(cert_path),
            ssl_keyfile=str(key_path),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="m365lake-emulator",
            daemon=True,
        )
        self._thread.start()

        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the emulator did not start on 127.0.0.1:{self.port} within "
                    f"{STARTUP_TIMEOUT_SECONDS:.0f} s; see the uvicorn log output above"
                )
            time.sleep(0.01)
        logger.info("emulator serving %s (tenant %s)", self.graph_url, self.tenant.tenant_id)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        for path in self._tls_files or ():
            path.unlink(missing_ok=True)
        self._server = self._thread = self._socket = None
        self._tls_files = None
        logger.info("emulator on port %d stopped", self.port)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
