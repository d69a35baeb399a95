"""The mail and files suites of tests/e2e, run against a lake on each object store.

Each test runs pytest in a subprocess with ``M365LAKE_TEST_STORE`` set, so that the
suites' ``lake`` fixture opens a lake in a new bucket (moto) or container (Azurite) per
test (see tests/e2e/conftest.py). The suites compare what the lake returns with what
the emulator served, byte for byte, so a pass here means the same of the object stores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.objectstore.servers import (
    PROJECT_ROOT,
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    AzuriteServer,
    S3Server,
)

pytestmark = [pytest.mark.objectstore, pytest.mark.slow]

SUITES = ("tests/e2e/test_mail_backup.py", "tests/e2e/test_files_backup.py")
"""The suites run here. The restore suites use the same ``lake`` fixture and run the same
way, but they are left out to keep this test short."""
SUITE_TIMEOUT_SECONDS = 1500
OUTPUT_TAIL_CHARACTERS = 6000


def s3_environment(server: S3Server) -> dict[str, str]:
    """Return the variables that point boto3, s3fs and the e2e fixtures at ``server``."""
    return {
        "M365LAKE_TEST_STORE": "s3",
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_ACCESS_KEY,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def azure_environment(server: AzuriteServer) -> dict[str, str]:
    return {
        "M365LAKE_TEST_STORE": "azure",
        "AZURE_STORAGE_CONNECTION_STRING": server.connection_string,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_suites(store_environment: dict[str, str], tmp_path: Path) -> None:
    """Run SUITES in a pytest subprocess and fail with the tail of its output unless it passed."""
    # Variables of the other cloud are dropped, so no test reaches a store it was not given.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "AZURE_STORAGE_", "M365LAKE_TEST_STORE"))
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "--basetemp",
        str(tmp_path / "suites"),
        *SUITES,
    ]
    completed = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env={**inherited, **store_environment},
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_SECONDS,
    )
    output = (completed.stdout + completed.stderr)[-OUTPUT_TAIL_CHARACTERS:]
    assert completed.returncode == 0, (
        f"the suites failed on M365LAKE_TEST_STORE={store_environment['M365LAKE_TEST_STORE']} "
        f"(exit status {completed.returncode}); the end of pytest's output:\n{output}"
    )
    # pytest exits with 0 when every test skipped, which would show nothing about the store.
    assert " passed" in completed.stdout, output


def test_suites_pass_on_s3(s3_server: S3Server, tmp_path: Path) -> None:
    run_suites(s3_environment(s3_server), tmp_path)


def test_suites_pass_on_azure(azurite_server: AzuriteServer, tmp_path: Path) -> None:
    run_suites(azure_environment(azurite_server), tmp_path)
