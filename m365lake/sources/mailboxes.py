"""Enumerate the tenant's users that own mailboxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from m365lake.graph import GraphClient

USER_SELECT = "id,userPrincipalName,displayName,mail,accountEnabled"
USERS_PAGE_SIZE = 999
"""Graph's maximum ``$top`` for ``/users``; fewer pages means fewer directory resource units."""


@dataclass(frozen=True)
class Mailbox:
    """A user whose mailbox is archived; ``mailbox_id`` is the Entra object id."""

    mailbox_id: str
    user_principal_name: str
    display_name: str | None = None
    mail: str | None = None
    account_enabled: bool | None = None

    @classmethod
    def from_graph(cls, user: dict[str, Any]) -> Mailbox:
        return cls(
            mailbox_id=user["id"],
            user_principal_name=user.get("userPrincipalName") or user["id"],
            display_name=user.get("displayName"),
            mail=user.get("mail"),
            account_enabled=user.get("accountEnabled"),
        )

    def row(self) -> dict[str, Any]:
        return {
            "mailbox_id": self.mailbox_id,
            "user_principal_name": self.user_principal_name,
            "display_name": self.display_name,
            "mail": self.mail,
            "account_enabled": self.account_enabled,
        }


async def list_users(graph: GraphClient) -> list[Mailbox]:
    """Return every user of the tenant, sorted by UPN, disabled users included.

    A leaver's data is often the data a case needs, so disabled accounts are kept.
    """
    params = {"$select": USER_SELECT, "$top": str(USERS_PAGE_SIZE)}
    users: list[Mailbox] = []
    async for page in graph.iter_pages("/users", params=params):
        users.extend(Mailbox.from_graph(user) for user in page.get("value", []))
    return sorted(users, key=lambda user: user.user_principal_name.lower())


async def list_mailboxes(graph: GraphClient) -> list[Mailbox]:
    """Return every user that has a mail address: users without one have no mailbox."""
    return [user for user in await list_users(graph) if user.mail]


async def get_mailbox(graph: GraphClient, user: str) -> Mailbox:
    """Look up one user by object id or user principal name."""
    data = await graph.get_json(f"/users/{quote(user, safe='@')}", params={"$select": USER_SELECT})
    return Mailbox.from_graph(data)
