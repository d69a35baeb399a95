"""Run the Teams channel conversation backup for a set of teams, for the CLI and Dagster."""

from __future__ import annotations

import asyncio
import difflib
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
from m365lake.sources.teams_senders import SenderDirectory

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
    graph: GraphClient,
    lake: Lake,
    team: Team,
    gate: asyncio.Semaphore,
    senders: SenderDirectory,
) -> TeamBackupResult:
    async with gate:
        lease = lake.acquire_lease(lease_name(team.team_id), owner=new_run_id())
        renewal = asyncio.ensure_future(lease.keep_renewed())
        try:
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return await backup_team(
                        graph, lake, team, run_id=new_run_id(), senders=senders
                    )
                except CommitConflictError as error:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    log.info("team %s, attempt %d: %s", team.team_id, attempt, error)
            raise AssertionError("unreachable: the last attempt returns or raises")
        finally:
            renewal.cancel()
            await asyncio.to_thread(lease.release)


def select_teams(
    found: Sequence[Team], references: Sequence[str], failed: dict[str, str]
) -> list[Team]:
    """Return the teams ``references`` name, by team id or display name (ignoring case).

    A reference that matches no team, or several teams by name, goes into ``failed`` with
    the reason and what to give instead. A team named twice is returned once.
    """
    by_id = {team.team_id: team for team in found}
    selected: dict[str, Team] = {}
    for reference in references:
        if reference in by_id:
            selected[reference] = by_id[reference]
            continue
        named = [
            team
            for team in found
            if (team.display_name or "").casefold() == reference.strip().casefold()
        ]
        if len(named) == 1:
            selected[named[0].team_id] = named[0]
        elif named:
            ids = ", ".join(sorted(team.team_id for team in named))
            failed[reference] = f"{len(named)} teams have this display name ({ids}); give the id"
        else:
            failed[reference] = (
                f"no team with this id or display name among the tenant's {len(found)} teams"
                f"{_close_names(reference, found)}"
            )
    return list(selected.values())


def _close_names(reference: str, found: Sequence[Team]) -> str:
    names = {team.display_name: team.team_id for team in found if team.display_name}
    close = difflib.get_close_matches(reference, list(names), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; close matches: " + ", ".join(f"{name!r} (id {names[name]})" for name in close)


async def backup_teams(
    settings: GraphSettings,
    lake: Lake,
    *,
    teams: Sequence[str] | None = None,
    concurrency: int = TEAM_CONCURRENCY,
    blob_wait_seconds: float = DEFAULT_USER_WAIT_SECONDS,
) -> TeamsBackupSummary:
    """Archive the channel conversations of the given teams (default: every team).

    ``teams`` lists team ids or display names (see ``select_teams``); a reference that
    matches no team, or several, is reported in ``failed``.
    """
    summary = TeamsBackupSummary()
    async with (
        blob_user_async(
            lake.storage, owner=f"teams backup {new_run_id()}", wait_seconds=blob_wait_seconds
        ),
        GraphClient(settings) as graph,
    ):
        found = await list_teams(graph)
        selected = select_teams(found, teams, summary.failed) if teams else found
        gate = asyncio.Semaphore(concurrency)
        senders = SenderDirectory(graph)
        outcomes = await asyncio.gather(
            *(_backup_one(graph, lake, team, gate, senders) for team in selected),
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
    raise_if_disk_full(lake.local_dir, outcomes, "teams")
    return summary
