"""Fixtures that start the loopback object storage servers (see ``servers``)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from m365lake.lake.object_store import ObjectStorage, open_object_storage
from tests.objectstore.servers import (
    AZURITE_ACCOUNT,
    AZURITE_BLOB,
    AzuriteServer,
    S3Server,
    ServerProcess,
    free_port,
    unique_name,
)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    server = ServerProcess(
        "moto server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_path,
    )
    try:
        server.wait_until_listening(port)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    if not AZURITE_BLOB.exists():
        reason = (
            f"Azurite is not installed at {AZURITE_BLOB}: run the tests through "
            "'./run test', which installs it with npm"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        if shutil.which("npm") is None:
            reason += " (npm is missing too)"
        pytest.skip(reason)
    port = free_port()
    workspace = tmp_path_factory.mktemp("azurite")
    server = ServerProcess(
        "azurite-blob",
        [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(workspace / "data"),
            "--silent",
            # The Azure SDK may speak a newer API version than this Azurite supports.
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ],
        workspace / "azurite.log",
    )
    try:
        server.wait_until_listening(port)
        yield AzuriteServer(blob_endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new bucket with versioning and Object Lock enabled."""
    name = unique_name("lake")
    s3_server.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def azure_container(azurite_server: AzuriteServer) -> str:
    name = unique_name("lake")
    azurite_server.service().create_container(name)
    return name


@pytest.fixture(params=["s3", "azure"])
def opened_store(request: pytest.FixtureRequest) -> ObjectStorage:
    """Storage under ``lake/`` in a new S3 bucket (moto) or Azure container (Azurite)."""
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        return open_object_storage(f"s3://{bucket}/lake", **server.storage_options())
    azurite: AzuriteServer = request.getfixturevalue("azurite_server")
    container: str = request.getfixturevalue("azure_container")
    return open_object_storage(f"az://{container}/lake", **azurite.storage_options())
