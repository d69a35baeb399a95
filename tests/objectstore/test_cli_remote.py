"""The m365lake command on a lake in moto's S3 and in Azurite, as a terminal user runs it.

Each command runs in a subprocess whose environment names the lake by URL in
``M365LAKE_LAKE``, the store's credentials in the usual AWS_* or
AZURE_STORAGE_CONNECTION_STRING variables, and a per-test ``M365LAKE_CACHE_DIR`` for the
local search index and SQL catalog.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake
from tests.objectstore.servers import AzuriteServer, S3Server, unique_name
from tests.objectstore.test_suites_on_stores import azure_environment, s3_environment

pytestmark = pytest.mark.objectstore

KNOWN_SUBJECT = "zanzibarquartz quarterly report"
KNOWN_MIME = (
    b"From: Dana <dana@contoso.example>\r\nTo: adele.vance@contoso.example\r\n"
    b"Subject: " + KNOWN_SUBJECT.encode() + b"\r\nMessage-ID: <zq-1@contoso.example>\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nThe zanzibarquartz figures are in.\r\n"
)

PutObject = Callable[[str, bytes], None]
"""Store bytes under a name given as ``bucket-or-container/key``."""


def m365lake(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "m365lake", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def succeeded(*args: str, env: dict[str, str]) -> str:
    """Run a command, fail the test with its stderr unless it exited with 0; return stdout."""
    result = m365lake(*args, env=env)
    assert result.returncode == 0, f"m365lake {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=10))
    tenant.add_site(SeedSite("legal", "Legal"))
    tenant.add_file("site", "legal", "Documents", ("brief.txt",), b"brief")
    return tenant


@pytest.fixture(scope="module")
def known_message(tenant: Tenant) -> str:
    """The id of the one message whose subject contains the word zanzibarquartz."""
    upn = mailbox_upns(tenant)[0]
    return tenant.add_message(upn, ("Inbox",), KNOWN_MIME)


@pytest.fixture(scope="module")
def emulator(
    tenant: Tenant, known_message: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, tmp_path_factory.mktemp("emulator")) as server:
        yield server


def mailbox_upns(tenant: Tenant) -> list[str]:
    return sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)


def message_count(tenant: Tenant) -> int:
    return sum(len(tenant.live_messages(upn)) for upn in mailbox_upns(tenant))


def base_environment(emulator: EmulatorServer, tmp_path: Path) -> dict[str, str]:
    # Inherited cloud and m365lake variables are dropped, so a command sees only what the test sets.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "AZURE_", "M365LAKE_"))
    }
    return {
        **inherited,
        **emulator.environment(),
        "M365LAKE_CACHE_DIR": str(tmp_path / "cache"),
        "M365LAKE_ACTOR": "tester",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(params=["s3", "azure"])
def store(
    request: pytest.FixtureRequest, emulator: EmulatorServer, tmp_path: Path
) -> tuple[dict[str, str], PutObject]:
    """Return the environment of a command on a new remote lake, and a writer of objects."""
    environment = base_environment(emulator, tmp_path)
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        environment.update(s3_environment(server))
        environment["M365LAKE_LAKE"] = f"s3://{bucket}/lake"
        client = server.client()

        def put_s3(name: str, data: bytes) -> None:
            bucket_name, _, key = name.partition("/")
            if bucket_name != bucket:
                client.create_bucket(Bucket=bucket_name)
            client.put_object(Bucket=bucket_name, Key=key, Body=data)

        put: PutObject = put_s3
    else:
        azurite: AzuriteServer = request.getfixturevalue("azurite_server")
        container: str = request.getfixturevalue("azure_container")
        environment.update(azure_environment(azurite))
        environment["M365LAKE_LAKE"] = f"az://{container}/lake"
        service = azurite.service()

        def put_azure(name: str, data: bytes) -> None:
            container_name, _, key = name.partition("/")
            if container_name != container:
                service.create_container(container_name)
            service.get_blob_client(container_name, key).upload_blob(data)

        put = put_azure
    del environment["M365LAKE_TEST_STORE"]
    return environment, put


def test_help_names_lake_location(tmp_path: Path) -> None:
    environment = {**os.environ, "M365LAKE_CACHE_DIR": str(tmp_path)}

    top = succeeded("--help", env=environment)
    sql_help = succeeded("sql", "--help", env=environment)

    assert "M365LAKE_LAKE" in top
    assert "s3://BUCKET/PREFIX" in top
    assert "az://CONTAINER/PREFIX" in top
    assert "AZURE_STORAGE_CONNECTION_STRING" in top
    assert "M365LAKE_CACHE_DIR" in top
    assert "s3://BUCKET/PREFIX" in sql_help


def test_backup_index_search_sql_verify(
    store: tuple[dict[str, str], PutObject], tenant: Tenant, known_message: str, tmp_path: Path
) -> None:
    environment, _ = store

    succeeded("backup", env=environment)
    indexed = succeeded("index", env=environment)
    found = json.loads(
        succeeded("search", "--format", "json", "subject:zanzibarquartz", env=environment)
    )
    counted = json.loads(
        succeeded("sql", "--format", "json", "SELECT count(*) AS n FROM messages", env=environment)
    )
    verified = succeeded("verify", env=environment)

    assert f"the index at {tmp_path / 'cache'}" in indexed
    assert found["total"] == 1
    assert found["hits"][0]["item_id"] == known_message
    assert counted == [{"n": message_count(tenant)}]
    assert "passed verification" in verified
    assert environment["M365LAKE_LAKE"].partition("://")[2] in verified


def test_second_backup_and_index_add_nothing(store: tuple[dict[str, str], PutObject]) -> None:
    environment, _ = store
    versions = "SELECT count(*) AS n FROM message_versions"
    succeeded("backup", env=environment)
    succeeded("index", env=environment)
    before = json.loads(succeeded("sql", "--format", "json", versions, env=environment))

    again = succeeded("backup", env=environment)
    refreshed = succeeded("index", env=environment)

    lines = [line for line in again.splitlines() if " archived in " in line]
    assert lines
    for line in lines:
        assert "0 new, 0 updated, 0 deleted, 0 failures" in line, line
    assert json.loads(succeeded("sql", "--format", "json", versions, env=environment)) == before
    assert "0 documents added, 0 replaced" in refreshed


def test_index_rebuilt_after_cache_lost(
    store: tuple[dict[str, str], PutObject], known_message: str, tmp_path: Path
) -> None:
    environment, _ = store
    succeeded("backup", "--workload", "mail", env=environment)
    first = succeeded("index", env=environment)
    shutil.rmtree(tmp_path / "cache")

    missing = m365lake("search", "zanzibarquartz", env=environment)
    rebuilt = succeeded("index", "--rebuild", env=environment)
    found = json.loads(succeeded("search", "--format", "json", "zanzibarquartz", env=environment))

    assert missing.returncode == 1
    assert "run `m365lake index`" in missing.stderr
    added_first = first.split(" documents added")[0].split()[-1]
    assert rebuilt.startswith(f"{added_first} documents added")
    assert [hit["item_id"] for hit in found["hits"]] == [known_message]


def test_sql_reads_only_the_lake_tables(store: tuple[dict[str, str], PutObject]) -> None:
    environment, put = store
    given_scheme, _, lake_path = environment["M365LAKE_LAKE"].partition("://")
    container = lake_path.split("/")[0]
    other = unique_name("other")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"secret": ["not part of the lake"]}), buffer)
    local_file = Path(environment["M365LAKE_CACHE_DIR"]).parent / "local.parquet"
    pq.write_table(pa.table({"secret": ["not part of the lake"]}), local_file)
    for name in (f"{other}/x.parquet", f"{container}/outside/x.parquet", f"{lake_path}/x.parquet"):
        put(name, buffer.getvalue())
    succeeded("backup", "--workload", "mail", env=environment)
    # The views name the lake's files by the URL the lake reports, whose scheme may be
    # another alias of the same file system (abfs:// for az://), so both are tried.
    [root] = json.loads(
        succeeded("sql", "--format", "json", "SELECT lake_root FROM catalog_head", env=environment)
    )
    lake_url = root["lake_root"]
    outside = [str(local_file)]
    for scheme in sorted({given_scheme, lake_url.partition("://")[0]}):
        outside += [
            f"{scheme}://{other}/x.parquet",
            f"{scheme}://{container}/outside/x.parquet",
            f"{scheme}://{lake_path}/x.parquet",
            f"{scheme}://{lake_path}/tables/../x.parquet",
            f"{scheme}://{lake_path}/tables/../../outside/x.parquet",
        ]

    inside = succeeded(
        "sql",
        "--format",
        "json",
        f"SELECT count(*) AS n FROM read_parquet('{lake_url}/tables/messages/**/*.parquet')",
        env=environment,
    )
    versions = succeeded(
        "sql", "--format", "json", "SELECT count(*) AS n FROM message_versions", env=environment
    )

    assert json.loads(inside) == json.loads(versions)
    for url in outside:
        result = m365lake("sql", f"SELECT * FROM read_parquet('{url}')", env=environment)
        assert result.returncode != 0, f"{url} was readable: {result.stdout}"
        assert "Permission Error" in result.stderr, result.stderr
        assert "not part of the lake" not in result.stdout


def test_export_of_case_is_byte_exact(
    store: tuple[dict[str, str], PutObject], tenant: Tenant, tmp_path: Path
) -> None:
    environment, _ = store
    custodian = mailbox_upns(tenant)[0]
    succeeded("backup", "--workload", "mail", env=environment)
    succeeded("index", env=environment)
    case_id = succeeded("case", "create", "Remote lake", env=environment).strip()
    succeeded("case", "add-custodian", case_id, "--mailbox", custodian, env=environment)

    exported = succeeded(
        "export", case_id, str(tmp_path / "production"), "--kql", "zanzibarquartz", env=environment
    )
    verified = succeeded("verify", env=environment)

    assert "exported 1 documents" in exported
    [native] = (tmp_path / "production" / "NATIVES").rglob("PROD0000001.*")
    assert native.read_bytes() == KNOWN_MIME
    assert "passed verification" in verified


def test_azure_lake_without_credentials_fails_clearly(tmp_path: Path) -> None:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("AZURE_")
    }
    environment["M365LAKE_CACHE_DIR"] = str(tmp_path)

    result = m365lake("sql", "--lake", "az://absent/lake", "SELECT 1", env=environment)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "AZURE_STORAGE" in result.stderr


def test_azure_lake_keeps_its_url(
    azurite_server: AzuriteServer,
    azure_container: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path))

    lake = Lake.open(f"az://{azure_container}/lake", create=True)

    assert lake.location == f"az://{azure_container}/lake"
