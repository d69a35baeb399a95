"""The Dagster restore job: registered, configured in the launchpad, dry run by default."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from m365lake.lake import Lake
from pipelines.definitions import defs
from pipelines.resources import GraphResource, LakeResource
from pipelines.restore import RestoreConfig, restore_job


def resources(lake_root: Path) -> dict[str, object]:
    return {
        "lake": LakeResource(location=str(lake_root)),
        "graph": GraphResource(tenant_id="tenant", client_id="client", client_secret="secret"),
    }


def test_restore_job_is_in_definitions() -> None:
    assert defs.get_job_def("restore_job").name == "restore_job"


def test_default_config_is_a_dry_run() -> None:
    assert RestoreConfig().dry_run is True
    assert RestoreConfig().conflict == "skip"


def test_empty_selection_fails_with_the_fix(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)

    with pytest.raises(Exception, match="selects nothing"):
        restore_job.execute_in_process(resources=resources(tmp_path / "lake"))


def test_invalid_point_in_time_fails(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)
    config = dg.RunConfig(ops={"restore_op": RestoreConfig(folder="Inbox", as_of="yesterday")})

    with pytest.raises(Exception, match="not an ISO 8601 time"):
        restore_job.execute_in_process(run_config=config, resources=resources(tmp_path / "lake"))


def test_unknown_policy_fails(tmp_path: Path) -> None:
    Lake.open(tmp_path / "lake", create=True)
    config = dg.RunConfig(ops={"restore_op": RestoreConfig(folder="Inbox", conflict="merge")})

    with pytest.raises(Exception, match="use skip, rename or replace"):
        restore_job.execute_in_process(run_config=config, resources=resources(tmp_path / "lake"))
