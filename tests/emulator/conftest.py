"""Shared fixtures for the emulator contract tests.

Async tests run through ``asyncio.run`` (see ``run``) rather than a pytest plugin, so the
suite needs nothing beyond pytest. In-process tests reach the app through
``httpx.ASGITransport``; the ones in test_server.py go over HTTPS on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, Tenant, build_app
from m365lake.emulator.seed import SeedFile, SeedMessage, SeedSite, SeedTenant, SeedUser

T = TypeVar("T")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BASE = "https://graph.test"
DOMAIN = "contoso.example"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
NOBOX = f"room@{DOMAIN}"
DISABLED = f"gone@{DOMAIN}"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def make_mime(index: int, *, attachments: bool = False, thread_of: int | None = None) -> bytes:
    """Build a message with CRLF line ends and trailing bytes the parser would not keep."""
    message = EmailMessage()
    message["From"] = f"Sender {index} <sender{index}@fabrikam.example>"
    message["To"] = ALICE
    message["Subject"] = f"Message {index}"
    message["Date"] = f"Mon, 0{1 + index % 9} Jan 2024 10:{index % 60:02d}:00 +0000"
    message["Message-ID"] = f"<m{index}@fabrikam.example>"
    if thread_of is not None:
        message["In-Reply-To"] = f"<m{thread_of}@fabrikam.example>"
    message.set_content(f"Body of message {index}.\n")
    if attachments:
        message.add_attachment(
            bytes(range(256)) * 4, maintype="application", subtype="pdf", filename="report.pdf"
        )
        inner = EmailMessage()
        inner["Subject"] = "Forwarded"
        inner["From"] = "fwd@fabrikam.example"
        inner.set_content("inner body\n")
        message.add_attachment(inner)
        message.set_boundary(f"boundary-{index}")
    raw = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    # A header line folded in an unusual way: $value must return it untouched.
    return b"X-Odd:  spaced\r\n\tfolded \xe9\r\n" + raw


def seed_tenant(messages_per_folder: int = 12) -> SeedTenant:
    seed = SeedTenant(domain=DOMAIN)
    seed.users = [
        SeedUser(ALICE, "Alice Adams", mail=ALICE),
        SeedUser(BOB, "Bob Brown", mail=BOB),
        SeedUser(NOBOX, "Room One", mail=None, has_mailbox=False),
        SeedUser(DISABLED, "Gone User", mail=DISABLED, account_enabled=False),
    ]
    seed.folders = [(ALICE, ("Archive", "2023"))]
    for index in range(messages_per_folder):
        seed.messages.append(
            SeedMessage(
                ALICE,
                ("Inbox",),
                make_mime(index, attachments=index == 0),
                received_at=datetime(2024, 1, 1, 10, index, tzinfo=UTC),
                is_read=index % 2 == 0,
                source=f"alice/inbox/{index}",
            )
        )
    seed.messages.append(SeedMessage(ALICE, ("Archive", "2023"), make_mime(100)))
    seed.messages.append(SeedMessage(BOB, ("Inbox",), make_mime(200)))
    return seed


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(seed_tenant())


async def fetch_token(
    client: httpx.AsyncClient, tenant: Tenant, **overrides: str
) -> httpx.Response:
    form = {
        "client_id": tenant.app.client_id,
        "client_secret": tenant.app.client_secret,
        "grant_type": "client_credentials",
        "scope": GRAPH_SCOPE,
        **overrides,
    }
    form = {key: value for key, value in form.items() if value != ""}
    return await client.post(f"/{tenant.tenant_id}/oauth2/v2.0/token", data=form)


@asynccontextmanager
async def graph(
    tenant: Tenant, options: EmulatorOptions | None = None, *, app: Any = None
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield an in-process client that already carries a valid bearer token."""
    app = app or build_app(tenant, options)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        response = await fetch_token(client, tenant)
        assert response.status_code == 200, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        client.app = app  # type: ignore[attr-defined]
        yield client


async def follow_delta(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[list[list[dict[str, Any]]], str]:
    """Follow one delta round; return its pages' values and the deltaLink."""
    pages: list[list[dict[str, Any]]] = []
    while True:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return pages, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


CORPUS_FILES = Path("/work/shared/corpus/files")
EDGE_NAMES = CORPUS_FILES / "renamed-edge-names"


def drive_seed() -> SeedTenant:
    """Return ``seed_tenant()`` plus two sites and files in OneDrive and the libraries."""
    seed = seed_tenant(messages_per_folder=2)
    seed.sites = [
        SeedSite("legal", "Legal", libraries=("Documents", "Contracts")),
        SeedSite("finance", "Finance Team"),
    ]
    seed.files = [
        SeedFile("onedrive", ALICE, "Documents", ("notes.txt",), b"hello world"),
        SeedFile("onedrive", ALICE, "Documents", ("Projects", "plan.csv"), b"a,b\r\n1,2\r\n"),
        SeedFile(
            "onedrive", ALICE, "Documents", ("Projects", "Deep", "x.bin"), bytes(range(256)) * 40
        ),
        SeedFile("site", "legal", "Documents", ("Policies", "policy.txt"), b"policy v1"),
        SeedFile("site", "legal", "Contracts", ("2024", "contract.pdf"), b"%PDF-1.4 fake"),
        SeedFile("site", "finance", "Documents", ("budget.csv",), b"q,amount\r\nq1,10\r\n"),
    ]
    return seed


@pytest.fixture
def drive_tenant() -> Tenant:
    return Tenant.from_seed(drive_seed())
