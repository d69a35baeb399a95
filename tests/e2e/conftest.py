"""Fixtures that run the real client against the emulator over HTTPS on loopback.

``M365LAKE_TEST_STORE`` chooses where the ``lake`` fixture puts the lake:

- ``local`` (the default): a folder under the test's ``tmp_path``;
- ``s3``: ``s3://<new bucket>/lake`` on the S3 endpoint in ``AWS_ENDPOINT_URL``, with
  versioning and Object Lock enabled on the bucket;
- ``azure``: ``az://<new container>/lake`` on the Blob service in
  ``AZURE_STORAGE_CONNECTION_STRING``.

Each test gets its own bucket or container, and its own ``M365LAKE_CACHE_DIR`` for the
remote lake's local files. tests/objectstore/test_suites_on_stores.py runs suites this way
against loopback servers it starts.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup import BackupSummary, backup_mail
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake


@pytest.fixture(scope="session")
def emulator_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One CA for the whole session: creating RSA keys is the slow part of start-up.
    return tmp_path_factory.mktemp("emulator-state")


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=7, users=3, messages_per_user=25))


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


TEST_STORE_VARIABLE = "M365LAKE_TEST_STORE"
TEST_STORES = ("local", "s3", "azure")


@pytest.fixture
def lake_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Return where this test's lake goes: a new folder, bucket or container (see above)."""
    store = os.environ.get(TEST_STORE_VARIABLE, "local") or "local"
    if store == "local":
        return str(tmp_path / "lake")
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache"))
    name = f"lake-{uuid.uuid4().hex[:20]}"
    if store == "s3":
        _create_bucket(name)
        return f"s3://{name}/lake"
    if store == "azure":
        _create_container(name)
        return f"az://{name}/lake"
    raise pytest.UsageError(
        f"{TEST_STORE_VARIABLE}={store!r} is not a test store; use one of {', '.join(TEST_STORES)}"
    )


def _create_bucket(name: str) -> None:
    import boto3

    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise pytest.UsageError(
            f"{TEST_STORE_VARIABLE}=s3 needs AWS_ENDPOINT_URL set to a test S3 server "
            "(tests/objectstore starts moto on loopback), so that no test writes to AWS"
        )
    # boto3 reads the endpoint, the keys and the region from the AWS_* variables.
    boto3.client("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)


def _create_container(name: str) -> None:
    from azure.storage.blob import BlobServiceClient

    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not connection_string:
        raise pytest.UsageError(
            f"{TEST_STORE_VARIABLE}=azure needs AZURE_STORAGE_CONNECTION_STRING set to a "
            "test Blob service such as Azurite"
        )
    with BlobServiceClient.from_connection_string(connection_string) as service:
        service.create_container(name)


@pytest.fixture
def lake(lake_location: str) -> Lake:
    return Lake.open(lake_location)


BackupRunner = Callable[..., BackupSummary]
SqlRunner = Callable[[str], list[tuple[Any, ...]]]


@pytest.fixture
def backup(emulator: EmulatorServer, lake: Lake) -> BackupRunner:
    """Run the mail backup of the emulated tenant into ``lake`` and refresh the catalog."""

    def run(users: Sequence[str] | None = None) -> BackupSummary:
        summary = asyncio.run(backup_mail(emulator.settings(), lake, users=users))
        refresh_catalog(lake)
        return summary

    return run


@pytest.fixture
def sql(lake: Lake) -> SqlRunner:
    return lambda statement: run_sql(lake, statement)[1]
