"""Seeded fault schedules, the tenant they run over, and the backup process they hit.

A schedule draws the rate of every fault kind the emulator's ``FaultPlan`` supports, the
Retry-After values of its throttling, and whether and when the backup process is killed
with SIGKILL. The same campaign seed and schedule number give the same schedule.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from m365lake.emulator import EmulatorServer, FaultPlan, Tenant
from m365lake.emulator.generator import generate_tenant
from tests.faults.lake_vs_tenant import Accounting

GRAPH_TIMEOUT_SECONDS = 1.5
"""The backup's read timeout under the campaign; stalls last twice as long."""

CHECKPOINT_EVERY = 25
"""Messages per checkpoint commit, so kills land between commits as well as before."""

RUN_TIMEOUT_SECONDS = 300

CAMPAIGN_SUMMARY = pytest.StashKey[str]()
"""The campaign's closing line, which the report fixture stores for the terminal summary."""

PHASES = ("initial", "incremental")


@dataclass(frozen=True)
class Schedule:
    """One schedule of the campaign: fault rates per phase and an optional kill."""

    number: int
    seed: int
    rates: dict[str, Any]
    kill_phase: str | None
    kill_delay_seconds: float
    mutation_delay_seconds: float
    """When the tenant changes during the incremental run, after the run starts."""

    def plan(self, phase: str) -> FaultPlan:
        return FaultPlan(seed=self.seed * 10 + PHASES.index(phase), **self.rates)

    def describe(self) -> str:
        shown = ", ".join(f"{name}={value}" for name, value in sorted(self.rates.items()))
        kill = f", SIGKILL in {self.kill_phase} after {self.kill_delay_seconds:.1f} s"
        return f"schedule {self.number} (seed {self.seed}): {shown}" + (
            kill if self.kill_phase else ""
        )


INTENSITY_RATES = (
    "rate",
    "storm_rate",
    "reset_rate",
    "truncate_rate",
    "slow_rate",
    "token_expiry_rate",
    "download_expiry_rate",
    "sync_state_rate",
    "drive_resync_rate",
)
"""The rates that ``intensity`` multiplies."""


def make_schedule(campaign_seed: int, number: int, intensity: float = 1.0) -> Schedule:
    """Draw schedule ``number``; ``intensity`` multiplies every fault rate (capped at 1)."""
    rng = random.Random(f"fault-campaign-{campaign_seed}-{number}")
    retry_after_choices = ("0.05", "0.25", "0.5", "1", "1.5", None)
    rates: dict[str, Any] = {
        "path_pattern": r"^/v1\.0/|^/_download/",
        "rate": round(rng.uniform(0.01, 0.06), 3),
        "retry_after_values": tuple(rng.sample(retry_after_choices, 3)),
        "storm_rate": round(rng.uniform(0.0, 0.01), 4),
        "storm_requests": rng.randint(5, 25),
        "storm_intensity": round(rng.uniform(0.3, 0.8), 2),
        "reset_rate": round(rng.uniform(0.0, 0.02), 3),
        "truncate_rate": round(rng.uniform(0.0, 0.02), 3),
        "slow_rate": round(rng.uniform(0.0, 0.004), 4),
        "slow_seconds": 2 * GRAPH_TIMEOUT_SECONDS,
        "token_expiry_rate": round(rng.uniform(0.0, 0.01), 3),
        "download_expiry_rate": round(rng.uniform(0.0, 0.03), 3),
        "sync_state_rate": round(rng.uniform(0.02, 0.15), 3),
        "drive_resync_rate": round(rng.uniform(0.05, 0.3), 3),
    }
    for name in INTENSITY_RATES:
        rates[name] = min(1.0, round(rates[name] * intensity, 4))
    # Every other schedule kills the backup once, in a phase and after a delay drawn here.
    kill_phase = rng.choice(PHASES) if number % 2 == 1 else None
    kill_delay = rng.uniform(1.0, 6.0)
    return Schedule(
        number, rng.randrange(1 << 30), rates, kill_phase, kill_delay, rng.uniform(0.5, 5.0)
    )


def build_tenant(seed: int) -> Tenant:
    """Return a modest tenant whose largest mail folder and drive span two delta pages.

    The backup requests 100 messages and 200 drive items per delta page, so the extra
    messages and files make nextLinks that a lost sync state can hit mid-round.
    """
    tenant = Tenant.from_seed(
        generate_tenant(seed=seed % 1000, users=3, messages_per_user=20, files_per_user=3)
    )
    upn = tenant.users()[0].user.user_principal_name
    for index in range(110):
        tenant.add_message(upn, ("Inbox",), _small_mime(index, "bulk"))
    for index in range(205):
        tenant.add_file(
            "onedrive", upn, "Documents", ("Bulk", f"part-{index:03d}.txt"), b"x" * index
        )
    return tenant


def _small_mime(index: int, kind: str) -> bytes:
    return (
        f"From: sender{index}@fabrikam.example\r\nTo: someone@contoso.example\r\n"
        f"Subject: {kind} {index}\r\nMessage-ID: <{kind}-{index}@fabrikam.example>\r\n\r\n"
        f"{kind} body {index}\r\n"
    ).encode()


def mutate_tenant(tenant: Tenant, seed: int) -> set[str]:
    """Add, change, move and delete some messages and files, as users do.

    Returns the ids of the messages and files touched, new ones included.
    """
    rng = random.Random(f"mutations-{seed}")
    touched: set[str] = set()
    for info in tenant.users():
        if not info.has_mailbox:
            continue
        upn = info.user.user_principal_name
        ids = sorted(tenant.live_messages(upn))
        chosen = rng.sample(ids, 6)
        touched.update(chosen)
        for message_id in chosen[:2]:
            tenant.delete_message(upn, message_id)
        for message_id in chosen[2:4]:
            tenant.move_message(upn, message_id, ("Deleted Items",))
        for message_id in chosen[4:]:
            tenant.update_message(upn, message_id, is_read=True, categories=["Reviewed"])
        for index in range(4):
            mime = _small_mime(seed % 1000 * 10 + index, "later")
            touched.add(tenant.add_message(upn, ("Inbox",), mime))
        drive = tenant.onedrive_of(info.id)
        if drive is None:
            continue
        files = sorted(tenant.live_files(drive.id))
        folder = tenant.add_folder_item("onedrive", upn, "Documents", ("Later",))
        if len(files) >= 6:
            picked = rng.sample(files, 6)
            touched.update(picked)
            for item_id in picked[:2]:
                tenant.update_file_content(item_id, f"changed {rng.random()}".encode())
            tenant.rename_item(picked[2], f"renamed-{rng.randrange(10**6)}.txt")
            for item_id in picked[3:5]:
                tenant.delete_item(item_id)
            tenant.move_item(picked[5], folder)
        for index in range(3):
            name = f"new-{seed % 1000}-{index}.bin"
            content = os.urandom(64 + index)
            touched.add(tenant.add_file("onedrive", upn, "Documents", ("Later", name), content))
    return touched


class MutationsDuringRun:
    """Changes the tenant once, from a thread, while a backup runs.

    Items that change during a run may be archived as they were before the change, so
    the comparison after that run excuses them. The clean rerun then must catch up.
    """

    def __init__(self, tenant: Tenant, seed: int, delay_seconds: float) -> None:
        self.touched: set[str] = set()
        self._thread = threading.Timer(delay_seconds, self._mutate, args=(tenant, seed))
        self._thread.daemon = True

    def _mutate(self, tenant: Tenant, seed: int) -> None:
        self.touched = mutate_tenant(tenant, seed)

    def __enter__(self) -> MutationsDuringRun:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Waits for a change that is under way; one still pending is cancelled.
        self._thread.cancel()
        self._thread.join()


@dataclass
class RunOutcome:
    """How one backup process ended."""

    killed: bool
    returncode: int | None
    stderr: str
    accounting: Accounting = field(default_factory=Accounting)


def run_backup(
    server: EmulatorServer, lake_root: Path, log_path: Path, *, kill_after: float | None
) -> RunOutcome:
    """Run ``m365lake backup`` in a child process, killing it after ``kill_after`` seconds."""
    environment = {
        **os.environ,
        **server.environment(),
        "M365LAKE_LAKE": str(lake_root),
        "M365LAKE_GRAPH_TIMEOUT": str(GRAPH_TIMEOUT_SECONDS),
    }
    command = [
        sys.executable,
        "-m",
        "m365lake",
        "-v",
        "backup",
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        killed = False
        try:
            process.wait(timeout=kill_after if kill_after is not None else RUN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed = kill_after is not None
            if not killed:
                raise AssertionError(
                    f"the backup did not finish within {RUN_TIMEOUT_SECONDS} s; see {log_path}"
                ) from None
    stderr = log_path.read_text(errors="replace")
    outcome = RunOutcome(killed, None if killed else process.returncode, stderr)
    outcome.accounting = accounting_of(outcome)
    return outcome


def accounting_of(outcome: RunOutcome) -> Accounting:
    """Read which containers the run reported as failed from its closing lines."""
    accounting = Accounting(whole_run_failed=outcome.killed)
    for line in outcome.stderr.splitlines():
        if line.startswith("failed "):
            accounting.failed_containers.add(line[len("failed ") :].split(":", 1)[0])
        elif line.startswith("Error: "):
            accounting.whole_run_failed = True
    if outcome.returncode not in (0, None) and not accounting.failed_containers:
        accounting.whole_run_failed = True
    return accounting
