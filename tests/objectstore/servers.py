"""Loopback object storage servers for the object storage tests, and how to reach them.

- S3: moto's standalone server, which enforces Object Lock, conditional puts and
  multipart uploads the way the lake relies on them.
- Azure Blob Storage: Azurite from npm, which ``./run test`` installs into ``.tools/``.
  Azurite implements neither immutability policies nor legal holds, so nothing here
  can test Azure immutability.

Both listen on 127.0.0.1 only, on a free port, and use throwaway credentials: moto
accepts any key, and Azurite's development account key is published by Microsoft.
Each server lives for the test session and is stopped at its end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = PROJECT_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
SERVER_START_TIMEOUT_SECONDS = 60

S3_ACCESS_KEY_ID = "m365lake-test"
S3_SECRET_ACCESS_KEY = "m365lake-test-secret"
S3_REGION = "us-east-1"

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
"""Azurite's well-known development account key (public, valid only against Azurite)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY_ID,
            aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        )

    def storage_options(self) -> dict[str, Any]:
        """Return the s3fs options that reach this server."""
        return {
            "key": S3_ACCESS_KEY_ID,
            "secret": S3_SECRET_ACCESS_KEY,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": S3_REGION},
        }


@dataclass(frozen=True)
class AzuriteServer:
    blob_endpoint: str

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.blob_endpoint};"
        )

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def storage_options(self) -> dict[str, Any]:
        """Return the adlfs options that reach this server."""
        return {"connection_string": self.connection_string}


class ServerProcess:
    """A server subprocess in its own process group, with its output in a log file."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] or "(no output)"

    def wait_until_listening(self, port: int) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before listening on "
                    f"127.0.0.1:{port}; its output:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not listen on 127.0.0.1:{port} within "
            f"{SERVER_START_TIMEOUT_SECONDS} s; its output:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def unique_name(prefix: str) -> str:
    """Return a bucket or container name no other test uses (lowercase, 3-63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"
