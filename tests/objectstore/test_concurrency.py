"""Mail backups in separate OS processes against one S3 lake on moto's server.

Each process stands for one Dagster partition run. It opens the lake by URL with
credentials from the environment and its own cache folder, as a run on another
machine would. Then it backs up one mailbox of a tenant that one emulator serves to
all processes. The last test launches real Dagster runs the way
``dagster asset materialize`` does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest

from m365lake.backup import backup_mail
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.config import GraphSettings
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.app import EmulatorOptions
from m365lake.emulator.faults import FaultPlan
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.partitions import mailbox_partitions
from tests.objectstore.servers import (
    S3_ACCESS_KEY_ID,
    S3_REGION,
    S3_SECRET_ACCESS_KEY,
    S3Server,
)
from tests.unit.test_lake_transaction import message

pytestmark = pytest.mark.objectstore

PROJECT_ROOT = Path(__file__).resolve().parents[2]
USERS = 10
MESSAGES_PER_USER = 4
PROCESS_TIMEOUT_SECONDS = 300
DAGSTER_PARTITIONS = 4
# Each Dagster run executes its one step in the run's own process instead of starting another.
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(
        generate_tenant(seed=11, users=USERS, messages_per_user=MESSAGES_PER_USER)
    )


@pytest.fixture
def lake_url(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Return the S3 lake URL, with the AWS variables set that child processes inherit."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("M365LAKE_CACHE_DIR", str(tmp_path / "cache-test"))
    url = f"s3://{s3_bucket}/lake"
    Lake.open(url)
    return url


def _upns(tenant: Tenant) -> list[str]:
    return sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)


def run_backup(
    settings: GraphSettings,
    url: str,
    upn: str,
    cache_dir: str,
    result_path: str,
    start: Any,
) -> None:
    """Back up one mailbox into the lake at ``url``; write the outcome as JSON.

    Runs in a spawned process. ``start`` is a barrier that lets every process open
    the lake before any of them backs up, so the runs overlap.
    """
    os.environ["M365LAKE_CACHE_DIR"] = cache_dir
    lake = Lake.open(url)
    start.wait()
    summary = asyncio.run(backup_mail(settings, lake, users=[upn]))
    outcome = {
        "pid": os.getpid(),
        "upn": upn,
        "archived": {result.mailbox.mailbox_id: result.messages_new for result in summary.results},
        "skipped": summary.skipped,
        "failed": summary.failed,
    }
    Path(result_path).write_text(json.dumps(outcome))


def run_processes(
    settings: GraphSettings, url: str, upns: list[str], tmp_path: Path
) -> list[dict[str, Any]]:
    """Run one backup process per entry of ``upns`` at once; return their outcomes."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(upns))
    processes = []
    for index, upn in enumerate(upns):
        process = context.Process(
            target=run_backup,
            args=(
                settings,
                url,
                upn,
                str(tmp_path / f"cache-{index}"),
                str(tmp_path / f"outcome-{index}.json"),
                start,
            ),
        )
        process.start()
        processes.append(process)
    for process in processes:
        process.join(PROCESS_TIMEOUT_SECONDS)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in processes] == [0] * len(upns)
    return [
        json.loads((tmp_path / f"outcome-{index}.json").read_text()) for index in range(len(upns))
    ]


def tenant_messages(tenant: Tenant, upns: list[str]) -> set[tuple[str, str, str]]:
    """(mailbox id, message id, MIME SHA-256) of every live message of ``upns``."""
    return {
        (tenant.user_id(upn), message_id, hashlib.sha256(live.mime).hexdigest())
        for upn in upns
        for message_id, live in tenant.live_messages(upn).items()
    }


def archived_versions(lake: Lake) -> list[tuple[str, str, str]]:
    refresh_catalog(lake)
    _, rows = run_sql(lake, "SELECT mailbox_id, message_id, mime_sha256 FROM message_versions")
    return [(row[0], row[1], row[2]) for row in rows]


@pytest.fixture
def emulator(tenant: Tenant, tmp_path: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, tmp_path / "emulator") as server:
        yield server


def test_ten_partition_processes_commit_all(
    tenant: Tenant, emulator: EmulatorServer, lake_url: str, tmp_path: Path
) -> None:
    upns = _upns(tenant)
    assert len(upns) == USERS

    outcomes = run_processes(emulator.settings(), lake_url, upns, tmp_path)

    assert len({outcome["pid"] for outcome in outcomes}) == USERS
    for outcome in outcomes:
        assert outcome["failed"] == {}, outcome
        assert outcome["skipped"] == {}, outcome
        assert list(outcome["archived"].values()) == [MESSAGES_PER_USER], outcome
    lake = Lake.open(lake_url)
    counts = lake.verify()
    manifests = lake.manifests()
    assert counts["manifests"] == len(manifests)
    mail_commits = Counter(m["container"] for m in manifests if m["kind"] == "mail")
    assert mail_commits == Counter({tenant.user_id(upn): 1 for upn in upns})
    versions = archived_versions(lake)
    assert len(versions) == len(set(versions))
    assert set(versions) == tenant_messages(tenant, upns)


def test_same_mailbox_in_two_processes_one_writer(
    tenant: Tenant, lake_url: str, tmp_path: Path
) -> None:
    upn = _upns(tenant)[0]
    mailbox_id = tenant.user_id(upn)
    # Stalled responses keep each backup running for seconds, so the two runs overlap.
    slow = EmulatorOptions(faults=FaultPlan(seed=3, slow_rate=0.5, slow_seconds=0.5))

    with EmulatorServer(tenant, tmp_path / "emulator", options=slow) as emulator:
        outcomes = run_processes(emulator.settings(), lake_url, [upn, upn], tmp_path)

    for outcome in outcomes:
        assert outcome["failed"] == {}, outcome
    lake = Lake.open(lake_url)
    lake.verify()
    runs = [m for m in lake.manifests() if m["kind"] == "mail" and m["container"] == mailbox_id]
    turned_away = [outcome for outcome in outcomes if upn in outcome["skipped"]]
    # Either the lease turned one run away, or the second ran after the first had
    # committed and found nothing new: never two writers archiving the same messages.
    if turned_away:
        assert len(turned_away) == 1
        assert "already being archived" in turned_away[0]["skipped"][upn]
        assert len(runs) == 1
    else:
        assert sorted(outcome["archived"][mailbox_id] for outcome in outcomes) == [
            0,
            MESSAGES_PER_USER,
        ]
    versions = archived_versions(lake)
    assert len(versions) == len(set(versions))
    assert set(versions) == tenant_messages(tenant, [upn])


def committed_message_ids(lake: Lake) -> list[str]:
    ids: list[str] = []
    for entry in lake.committed_entries("messages"):
        table = pq.read_table(
            lake.storage.path(entry["path"]), filesystem=lake.storage.arrow_filesystem()
        )
        ids.extend(table.column("message_id").to_pylist())
    return sorted(ids)


def test_run_id_reuse_stores_file_under_next_number(lake_url: str) -> None:
    lake = Lake.open(lake_url)
    partition = {"mailbox_id": "u1"}
    first = lake.begin(run_id="reused", kind="mail", container=None, flush_rows=1)
    second = lake.begin(run_id="reused", kind="mail", container=None, flush_rows=1)
    # Both open reused-0 while it is free, because object storage claims it at upload.
    second.write_rows("messages", [message(2)], partition=partition)
    first.write_rows("messages", [message(1)], partition=partition)

    first.commit()
    manifest = second.commit()

    [entry] = manifest["files"]
    assert entry["path"] == "tables/messages/mailbox_id=u1/reused-1.parquet"
    assert entry["rows"] == 1
    counts = lake.verify()
    assert counts["files"] == 2
    assert committed_message_ids(lake) == ["m1", "m2"]


def test_abort_after_name_taken_keeps_winner(lake_url: str) -> None:
    lake = Lake.open(lake_url)
    partition = {"mailbox_id": "u1"}
    winner = lake.begin(run_id="reused", kind="mail", container=None, flush_rows=1)
    loser = lake.begin(run_id="reused", kind="mail", container=None, flush_rows=1)
    loser.write_rows("messages", [message(2)], partition=partition)
    winner.write_rows("messages", [message(1)], partition=partition)
    winner.commit()

    loser.abort()

    lake.verify()
    assert committed_message_ids(lake) == ["m1"]
    assert [path.name for path in lake.storage.spool.iterdir()] == []


def test_partition_runs_share_s3_lake(lake_url: str, tmp_path: Path) -> None:
    seed = generate_tenant(seed=5, users=DAGSTER_PARTITIONS, messages_per_user=3)
    tenant = Tenant.from_seed(seed)
    upns = sorted(info.user.user_principal_name for info in tenant.users() if info.has_mailbox)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, upns)

    with EmulatorServer(tenant, tmp_path / "emulator") as emulator:
        base = {
            **os.environ,
            **emulator.environment(),
            "DAGSTER_HOME": str(dagster_home),
            "M365LAKE_DEPLOYMENT": "emulator",
            "M365LAKE_LAKE": lake_url,
        }
        dagster = Path(sys.executable).with_name("dagster")
        runs = [
            subprocess.Popen(
                [
                    str(dagster),
                    "asset",
                    "materialize",
                    "-m",
                    "pipelines.definitions",
                    "--select",
                    "mailbox_archive",
                    "--partition",
                    upn,
                    "--config-json",
                    IN_PROCESS,
                ],
                cwd=PROJECT_ROOT,
                env={**base, "M365LAKE_CACHE_DIR": str(tmp_path / f"cache-{index}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for index, upn in enumerate(upns)
        ]
        for upn, run in zip(upns, runs, strict=True):
            output, _ = run.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
            assert run.returncode == 0, f"the run of {upn} failed:\n{output[-4000:]}"

    records = instance.get_run_records()
    assert len(records) == DAGSTER_PARTITIONS
    assert {record.dagster_run.status for record in records} == {dg.DagsterRunStatus.SUCCESS}
    lake = Lake.open(lake_url, create=False)
    lake.verify()
    mail_commits = Counter(m["container"] for m in lake.manifests() if m["kind"] == "mail")
    assert mail_commits == Counter({tenant.user_id(upn): 1 for upn in upns})
    versions = archived_versions(lake)
    assert len(versions) == len(set(versions))
    assert set(versions) == tenant_messages(tenant, upns)
