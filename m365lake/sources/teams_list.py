"""Enumerate the tenant's teams and the channels of a team."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from m365lake.graph import GraphClient


@dataclass(frozen=True)
class Team:
    """A team to archive, as ``GET /teams`` lists it."""

    team_id: str
    display_name: str | None = None
    description: str | None = None
    visibility: str | None = None
    web_url: str | None = None

    @classmethod
    def from_graph(cls, team: dict[str, Any]) -> Team:
        return cls(
            team_id=str(team["id"]),
            display_name=team.get("displayName"),
            description=team.get("description"),
            visibility=team.get("visibility"),
            web_url=team.get("webUrl"),
        )

    def row(self) -> dict[str, Any]:
        return {
            "team_id": self.team_id,
            "display_name": self.display_name,
            "description": self.description,
            "visibility": self.visibility,
            "web_url": self.web_url,
        }


@dataclass(frozen=True)
class Channel:
    """A channel of a team."""

    channel_id: str
    display_name: str | None = None
    description: str | None = None
    membership_type: str | None = None
    web_url: str | None = None

    @classmethod
    def from_graph(cls, channel: dict[str, Any]) -> Channel:
        return cls(
            channel_id=str(channel["id"]),
            display_name=channel.get("displayName"),
            description=channel.get("description"),
            membership_type=channel.get("membershipType"),
            web_url=channel.get("webUrl"),
        )

    def row(self) -> dict[str, Any]:
        """Return the ``channels`` columns that describe the channel (no change or times)."""
        return {
            "channel_id": self.channel_id,
            "display_name": self.display_name,
            "description": self.description,
            "membership_type": self.membership_type,
            "web_url": self.web_url,
        }


async def list_teams(graph: GraphClient) -> list[Team]:
    """Return every team of the tenant (``GET /teams``, Team.ReadBasic.All)."""
    teams: list[Team] = []
    async for page in graph.iter_pages("/teams"):
        teams.extend(Team.from_graph(team) for team in page["value"])
    return teams


async def list_channels(graph: GraphClient, team_id: str) -> list[Channel]:
    """Return the channels of a team (Channel.ReadBasic.All)."""
    channels: list[Channel] = []
    async for page in graph.iter_pages(f"/teams/{team_id}/channels"):
        channels.extend(Channel.from_graph(channel) for channel in page["value"])
    return channels
