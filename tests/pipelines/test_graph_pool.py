"""Two mailbox partitions backed up at once through Dagster, within the ``graph`` pool.

Each backup is launched as Dagster's own command line launches it (``dagster asset
materialize``, one process per run) against an instance whose DAGSTER_HOME contains the
project's dagster.yaml. The emulator keeps Exchange Online's real limits (4 requests in
flight and 10,000 per 10 minutes per app and mailbox) and reports the most requests it
saw in flight, per mailbox and overall.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from m365lake.catalog import refresh_catalog, run_sql
from m365lake.config import GraphSettings
from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.concurrency import ConcurrencyPeaks
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from pipelines.assets import GRAPH_POOL
from pipelines.partitions import mailbox_partitions

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXCHANGE_CONCURRENCY = GraphSettings.max_concurrent_per_mailbox
# The in-process executor runs a run's steps one after another in the run's process. It
# claims pool slots from the instance exactly as the multiprocess executor does, and
# saves starting a Python process per step.
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})
RUN_TIMEOUT_SECONDS = 300


@dataclass
class Outcome:
    peaks: ConcurrencyPeaks
    throttled: int
    instance: dg.DagsterInstance
    lake: Lake


def _yaml_pool_limit() -> int:
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    return int(config["concurrency"]["pools"]["default_limit"])


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=21, users=2, messages_per_user=30))


@pytest.fixture
def dagster_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    yield home


def _back_up_concurrently(
    tenant: Tenant,
    dagster_home: Path,
    tmp_path: Path,
    options: EmulatorOptions,
    pool_limit: int | None = None,
) -> Outcome:
    """Launch one run per mailbox at the same moment and wait for both to finish."""
    users = sorted(info.user.user_principal_name for info in tenant.users())
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    assert mailbox_partitions.name is not None
    instance.add_dynamic_partitions(mailbox_partitions.name, users)
    if pool_limit is not None:
        # What `dagster instance concurrency set graph N` does.
        instance.event_log_storage.set_concurrency_slots(GRAPH_POOL, pool_limit)
    lake_root = tmp_path / "lake"

    with EmulatorServer(tenant, tmp_path / "emulator", options) as emulator:
        environment = {
            **os.environ,
            **emulator.environment(),
            "DAGSTER_HOME": str(dagster_home),
            "M365LAKE_DEPLOYMENT": "emulator",
            "M365LAKE_LAKE": str(lake_root),
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
                    user,
                    "--config-json",
                    IN_PROCESS,
                ],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for user in users
        ]
        for user, run in zip(users, runs, strict=True):
            output, _ = run.communicate(timeout=RUN_TIMEOUT_SECONDS)
            assert run.returncode == 0, f"the backup of {user} failed:\n{output[-4000:]}"
        peaks = emulator.max_concurrency()
        throttled = sum(1 for record in emulator.requests if record.status == 429)

    lake = Lake.open(lake_root, create=False)
    refresh_catalog(lake)
    return Outcome(peaks=peaks, throttled=throttled, instance=instance, lake=lake)


def _assert_complete_backup(tenant: Tenant, outcome: Outcome) -> None:
    archived = dict(
        run_sql(
            outcome.lake,
            "SELECT mailboxes.user_principal_name, count(*) FROM messages JOIN mailboxes "
            "USING (mailbox_id) GROUP BY ALL",
        )[1]
    )
    for info in tenant.users():
        upn = info.user.user_principal_name
        assert archived.get(upn) == len(tenant.live_messages(upn)), upn
    assert run_sql(outcome.lake, "SELECT count(*) FROM failures")[1][0][0] == 0

    runs = outcome.instance.get_run_records()
    assert len(runs) == 2
    assert all(record.dagster_run.status == dg.DagsterRunStatus.SUCCESS for record in runs)


def _assert_within_exchange_limits(tenant: Tenant, outcome: Outcome) -> None:
    for info in tenant.users():
        upn = info.user.user_principal_name
        peak = outcome.peaks.per_mailbox[tenant.user_id(upn)]
        assert 1 <= peak <= EXCHANGE_CONCURRENCY, upn
    assert outcome.throttled == 0, "no request should have been rejected for concurrency"


def test_partitions_share_pool_within_limits(
    tenant: Tenant, dagster_home: Path, tmp_path: Path
) -> None:
    # The emulator delays the first mail requests until both mailboxes have sent one, so
    # the two backups overlap however fast each process starts.
    options = EmulatorOptions(latency_seconds=0.02, mailbox_rendezvous=2)

    outcome = _back_up_concurrently(tenant, dagster_home, tmp_path, options)

    _assert_complete_backup(tenant, outcome)
    _assert_within_exchange_limits(tenant, outcome)
    assert outcome.peaks.mailboxes == 2, "the two partitions' backups did not overlap"
    pool_limit = _yaml_pool_limit()
    assert outcome.peaks.overall <= pool_limit * EXCHANGE_CONCURRENCY
    pools = {pool.name: pool for pool in outcome.instance.event_log_storage.get_pool_limits()}
    assert pools[GRAPH_POOL].limit == pool_limit, "dagster.yaml's default limit applies"


def test_pool_of_one_backs_up_in_turn(tenant: Tenant, dagster_home: Path, tmp_path: Path) -> None:
    options = EmulatorOptions(latency_seconds=0.02)

    outcome = _back_up_concurrently(tenant, dagster_home, tmp_path, options, pool_limit=1)

    _assert_complete_backup(tenant, outcome)
    _assert_within_exchange_limits(tenant, outcome)
    assert outcome.peaks.mailboxes == 1, "the pool let both mailboxes' Graph work run at once"
    assert outcome.peaks.overall <= EXCHANGE_CONCURRENCY
