"""The fault campaign: seeded fault schedules against a full backup, then a clean rerun.

Each schedule runs over a generated tenant of mail and files. A first backup and, after
the tenant changed, an incremental one run under the schedule's faults, and the tenant
changes again during the incremental run. Every other
schedule also kills the backup process with SIGKILL in one of them. A clean rerun follows. After
each backup the lake is compared with the emulator: every live item is archived once
with the right bytes, or excused by a ``failures`` row or a failed container (never
after the clean rerun), no version is archived twice, and ``verify`` passes.

M365LAKE_FAULT_SCHEDULES sets the number of schedules (default 4), M365LAKE_FAULT_SEED
the campaign seed and M365LAKE_FAULT_INTENSITY a factor on every fault rate (default 1),
for a longer or harsher run by hand. M365LAKE_FAULT_REPORT names a JSON file to
write the campaign report to, beside the one in the pytest temp folder.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from m365lake.discovery.integrity import verify_archive
from m365lake.emulator import EmulatorServer, FaultPlan, Tenant
from m365lake.lake import Lake
from tests.faults.campaign import (
    CAMPAIGN_SUMMARY,
    PHASES,
    MutationsDuringRun,
    RunOutcome,
    Schedule,
    build_tenant,
    make_schedule,
    mutate_tenant,
    run_backup,
)
from tests.faults.lake_vs_tenant import Accounting, compare_files, compare_mail

pytestmark = pytest.mark.faults

SCHEDULES = int(os.environ.get("M365LAKE_FAULT_SCHEDULES", "4"))
CAMPAIGN_SEED = int(os.environ.get("M365LAKE_FAULT_SEED", "20261205"))
INTENSITY = float(os.environ.get("M365LAKE_FAULT_INTENSITY", "1"))


class CampaignReport:
    """Totals over every schedule run in this session, written when the session ends."""

    def __init__(self) -> None:
        self.schedules = 0
        self.items_checked = 0
        self.kills = 0
        self.excused = 0
        self.faults: Counter[str] = Counter()
        self.runs: list[dict[str, Any]] = []

    def as_json(self) -> dict[str, Any]:
        return {
            "campaign_seed": CAMPAIGN_SEED,
            "intensity": INTENSITY,
            "schedules_run": self.schedules,
            "items_checked": self.items_checked,
            "items_excused_before_rerun": self.excused,
            "kills": self.kills,
            "faults_applied": dict(sorted(self.faults.items())),
            "schedules": self.runs,
        }


@pytest.fixture(scope="session")
def campaign_report(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[CampaignReport]:
    report = CampaignReport()
    yield report
    if not report.schedules:
        return
    text = json.dumps(report.as_json(), indent=2)
    path = tmp_path_factory.mktemp("fault-campaign") / "report.json"
    path.write_text(text)
    extra = os.environ.get("M365LAKE_FAULT_REPORT")
    if extra:
        Path(extra).write_text(text)
    line = (
        f"fault campaign: {report.schedules} schedules run, {report.items_checked} items "
        f"checked, {report.kills} SIGKILLs, faults applied: {dict(sorted(report.faults.items()))}; "
        f"report in {path}"
    )
    pytestconfig.stash[CAMPAIGN_SUMMARY] = line


@pytest.fixture(scope="session")
def campaign_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("campaign-emulator-state")


def _check(
    lake: Lake, tenant: Tenant, accounting: Accounting, *, strict: bool, when: str
) -> tuple[int, int]:
    """Compare the lake with the tenant and verify it; return items checked and excused."""
    mail = compare_mail(lake, tenant, accounting, strict=strict)
    files = compare_files(lake, tenant, accounting, strict=strict)
    problems = mail.problems + files.problems
    assert not problems, f"{when}: {len(problems)} problem(s):\n" + "\n".join(problems[:20])
    verify_archive(lake)
    return mail.items_checked + files.items_checked, mail.excused + files.excused


def _faulted_phase(
    schedule: Schedule,
    phase: str,
    server: EmulatorServer,
    lake_root: Path,
    log_dir: Path,
    report: CampaignReport,
) -> RunOutcome:
    plan = schedule.plan(phase)
    server.app.state.faults = plan
    kill_after = schedule.kill_delay_seconds if schedule.kill_phase == phase else None
    log_path = log_dir / f"{phase}.log"
    if phase == "incremental":
        # The tenant also changes while this run goes on, as it does in production.
        tenant = server.tenant
        delay = schedule.mutation_delay_seconds
        with MutationsDuringRun(tenant, schedule.seed + 1, delay) as mutations:
            outcome = run_backup(server, lake_root, log_path, kill_after=kill_after)
        outcome.accounting.changed_during_run = mutations.touched
    else:
        outcome = run_backup(server, lake_root, log_path, kill_after=kill_after)
    server.app.state.faults = FaultPlan()
    report.faults.update(plan.counts)
    report.kills += outcome.killed
    if not outcome.killed:
        assert "Traceback" not in outcome.stderr, f"{phase} run crashed:\n{outcome.stderr[-3000:]}"
    return outcome


@pytest.mark.parametrize("number", range(SCHEDULES))
def test_fault_schedule(
    number: int, tmp_path: Path, campaign_state: Path, campaign_report: CampaignReport
) -> None:
    schedule = make_schedule(CAMPAIGN_SEED, number, INTENSITY)
    print(schedule.describe())
    tenant = build_tenant(schedule.seed)
    lake_root = tmp_path / "lake"
    checked = excused = 0
    outcomes = {}
    with EmulatorServer(tenant, campaign_state) as server:
        for phase in PHASES:
            if phase == "incremental":
                mutate_tenant(tenant, schedule.seed)
            outcome = _faulted_phase(schedule, phase, server, lake_root, tmp_path, campaign_report)
            outcomes[phase] = outcome
            if not lake_root.exists():
                continue
            items, excused_now = _check(
                Lake.open(lake_root, create=False),
                tenant,
                outcome.accounting,
                strict=False,
                when=f"{schedule.describe()}, after the {phase} run",
            )
            checked += items
            excused += excused_now

        clean = run_backup(server, lake_root, tmp_path / "clean.log", kill_after=None)
        assert clean.returncode == 0, f"clean rerun failed:\n{clean.stderr[-3000:]}"
        items, _ = _check(
            Lake.open(lake_root, create=False),
            tenant,
            Accounting(),
            strict=True,
            when=f"{schedule.describe()}, after the clean rerun",
        )
        checked += items

    campaign_report.schedules += 1
    campaign_report.items_checked += checked
    campaign_report.excused += excused
    campaign_report.runs.append(
        {
            "schedule": schedule.describe(),
            "items_checked": checked,
            "excused_before_rerun": excused,
            "outcomes": {
                phase: {
                    "killed": outcome.killed,
                    "returncode": outcome.returncode,
                    "failed_containers": sorted(outcome.accounting.failed_containers),
                    "items_changed_during_run": len(outcome.accounting.changed_during_run),
                }
                for phase, outcome in outcomes.items()
            },
        }
    )
