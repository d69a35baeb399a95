"""Find the mail address of a Teams message's sender in the tenant directory.

A chatMessage names its sender by Entra object id and display name only. The address
comes from ``GET /users/{id}``: the user's ``mail``, else the user principal name. One
backup run looks each sender up once and shares the result between its teams. A sender the
directory does not know (a guest of another tenant, a deleted user, an application) has
no address, and the row keeps the display name alone.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from m365lake.errors import AccessDeniedError, GraphError, ItemNotFoundError
from m365lake.graph import GraphClient

log = logging.getLogger(__name__)

SENDER_SELECT = "id,mail,userPrincipalName"


class SenderDirectory:
    """The addresses of message senders by object id, looked up once per run."""

    def __init__(self, graph: GraphClient) -> None:
        self.graph = graph
        self._lookups: dict[str, asyncio.Task[str | None]] = {}
        self._denied = False

    async def address(self, user_id: str | None) -> str | None:
        """Return the sender's mail address, or None when the directory has none for it."""
        if not user_id or self._denied:
            return None
        lookup = self._lookups.get(user_id)
        if lookup is None:
            # Concurrent teams of one run wait on the same request for a shared sender.
            lookup = asyncio.ensure_future(self._look_up(user_id))
            self._lookups[user_id] = lookup
        return await lookup

    async def _look_up(self, user_id: str) -> str | None:
        try:
            user = await self.graph.get_json(
                f"/users/{quote(user_id, safe='')}", params={"$select": SENDER_SELECT}
            )
        except ItemNotFoundError:
            return None
        except AccessDeniedError as error:
            if not self._denied:
                self._denied = True
                log.warning(
                    "senders' addresses are left empty: the directory refused a user lookup "
                    "(%s). Grant the application permission User.Read.All to fill them.",
                    error,
                )
            return None
        except GraphError as error:
            log.warning("the address of sender %s is left empty: %s", user_id, error)
            return None
        address = user.get("mail") or user.get("userPrincipalName")
        return str(address) if address else None
