"""Run the Teams channel conversation backup for a set of teams, for the CLI and Dagster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from m365lake.backup import new_run_id
from m365lake.config import GraphSettings
from m365lake.errors import CommitConflictError
from m365lake.graph import GraphClient, GraphStats
from m365lake.lake import Lake, LeaseHeldError
from m365lake.lake.blob_users import DEFAULT_USER_WAIT_SECONDS, blob_user_async
from m365lake.lake.disk_full import raise_if_disk_full
from m365lake.sources.teams import TeamBackupResult, backup_team
from m365lake.sources.teams_list import Team, list_teams

log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 3
"""Tries of one team while concurrent runs of the same team keep committing first."""

TEAM_CONCURRENCY = 2
"""Teams archived at once by one process. A team's channels are read one after another,
so each team has one request in flight. Graph allows an app 4 requests per second per
team or channel; the client does not pace to that and waits out each 429's Retry-After."""


@dataclass
class TeamsBackupSummary:
    """Outcome of one Teams backup invocation across its teams."""

    results: list[TeamBackupResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Team id → why it was not archived in this invocation (another run has its lease)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Team id → the error that stopped the team's run; nothing of it was committed."""
    graph: GraphStats | None = None

    def total(self, counter: str) -> int:
        return sum(int(getattr(result, counter)) for result in self.results)


def lease_name(team_id: str) -> str:
    return f"teams-{team_id}"


async def _backup_one(
    graph: GraphClient, lake: Lake, team: Team, gate: asyncio.Semaphore
) -> TeamBackupResult:
    async with gate:
        lease = lake.acquire_lease(lease_name(team.team_id), owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await backup_team(graph, lake, team, run_id=new_run_id())
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    log.info("team %s, attempt %d: %s", team.team_id, attempt, error)
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


async def backup_teams(
    settings: GraphSettings,
    lake: Lake,
    *,
    teams: Sequence[str] | None = None,
    concurrency: int = TEAM_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> TeamsBackupSummary:
    """Archive the channel conversations of the given teams (default: every team).

    ``teams`` lists team ids; an id the tenant does not list is reported in ``failed``.
    """
    summary = TeamsBackupSummary()
    async with (
        blob_user_async(
            lake.storage, owner=f"teams backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        found = await list_teams(graph)
        selected = found
        if teams:
            by_id = {team.team_id: team for team in found}
            selected = [by_id[team_id] for team_id in teams if team_id in by_id]
            for team_id in teams:
                if team_id not in by_id:
                    summary.failed[team_id] = "no such team among the tenant's teams"
        gate = asyncio.Semaphore(concurrency)
        outcomes = await asyncio.gather(
            *(_backup_one(graph, lake, team, gate) for team in selected),
            return_exceptions=True,
        )
        summary.graph = graph.stats
    for team, outcome in zip(selected, outcomes, strict=True):
        if isinstance(outcome, LeaseHeldError):
            log.info("team %s skipped: %s", team.team_id, outcome)
            summary.skipped[team.team_id] = f"already being archived: {outcome}"
        elif isinstance(outcome, BaseException):
            log.error("team %s failed; nothing of it was committed: %s", team.team_id, outcome)
            summary.failed[team.team_id] = f"{type(outcome).__name__}: {outcome}"
        else:
            summary.results.append(outcome)
    raise_if_disk_full(lake.root, outcomes, "teams")
    return summary
