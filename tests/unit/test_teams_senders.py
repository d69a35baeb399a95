"""Sender addresses of Teams messages, looked up in the tenant directory once per sender."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from m365lake.errors import AccessDeniedError, ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.sources.teams_senders import SenderDirectory


class Directory:
    """Serve ``GET /users/{id}`` from a table of users, and records each request."""

    def __init__(self, users: dict[str, dict[str, Any]], *, denied: bool = False) -> None:
        self.users = users
        self.denied = denied
        self.requested: list[str] = []

    async def get_json(self, url: str, *, params: dict[str, str]) -> dict[str, Any]:
        self.requested.append(url)
        await asyncio.sleep(0)
        if self.denied:
            raise AccessDeniedError("Authorization_RequestDenied", status=403)
        user_id = url.rsplit("/", 1)[1]
        if user_id not in self.users:
            raise ItemNotFoundError("Request_ResourceNotFound", status=404)
        return {"id": user_id, **self.users[user_id]}


def lookup(directory: Directory, *user_ids: str | None) -> list[str | None]:
    async def run() -> list[str | None]:
        senders = SenderDirectory(cast(GraphClient, directory))
        return list(await asyncio.gather(*(senders.address(user) for user in user_ids)))

    return asyncio.run(run())


def test_mail_else_principal_name_one_request_per_sender():
    directory = Directory(
        {
            "u-1": {"mail": "ana@contoso.example", "userPrincipalName": "ana@contoso.test"},
            "u-2": {"mail": None, "userPrincipalName": "ben@contoso.example"},
        }
    )

    found = lookup(directory, "u-1", "u-2", "u-1", "u-1")

    assert found == [
        "ana@contoso.example",
        "ben@contoso.example",
        "ana@contoso.example",
        "ana@contoso.example",
    ]
    assert sorted(directory.requested) == ["/users/u-1", "/users/u-2"]


def test_unknown_sender_and_application_have_no_address():
    directory = Directory({})

    assert lookup(directory, "guest-of-other-tenant", None) == [None, None]
    assert directory.requested == ["/users/guest-of-other-tenant"]


def test_refused_lookup_warns_once_and_stops_asking(caplog: pytest.LogCaptureFixture):
    directory = Directory({"u-1": {"mail": "ana@contoso.example"}}, denied=True)

    async def run() -> list[str | None]:
        senders = SenderDirectory(cast(GraphClient, directory))
        first = await senders.address("u-1")
        return [first, await senders.address("u-2")]

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(run()) == [None, None]

    assert directory.requested == ["/users/u-1"]
    [warning] = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert "User.Read.All" in warning.getMessage()
