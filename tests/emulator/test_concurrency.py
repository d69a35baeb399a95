"""The emulator reports the most requests it saw in flight, per mailbox and overall."""

from __future__ import annotations

import asyncio

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.concurrency import ConcurrencyGauge
from tests.emulator.conftest import ALICE, BOB, fetch_token, graph, run


def test_peaks_count_rejected_requests(tenant: Tenant) -> None:
    options = EmulatorOptions(latency_seconds=0.2)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            alice = tenant.user_id(ALICE)
            bob = tenant.user_id(BOB)
            urls = [f"/v1.0/users/{alice}/mailFolders"] * 6 + [f"/v1.0/users/{bob}/mailFolders"]
            responses = await asyncio.gather(*(client.get(url) for url in urls))
            assert sorted(r.status_code for r in responses[:6]) == [200] * 4 + [429] * 2

            peaks = client.app.state.concurrency.peaks()  # type: ignore[attr-defined]
            # Four of Alice's requests wait inside their slots while the fifth arrives.
            assert peaks.per_mailbox[alice] >= 5
            assert peaks.per_mailbox[bob] == 1
            assert peaks.mailboxes == 2
            assert peaks.overall >= 5

    run(scenario())


def test_directory_request_counts_overall_only(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            gauge = client.app.state.concurrency  # type: ignore[attr-defined]
            assert gauge.peaks().overall == 0, "the token request is not Graph traffic"

            assert (await client.get("/v1.0/users")).status_code == 200

            peaks = gauge.peaks()
            assert peaks.overall == 1
            assert peaks.mailboxes == 0
            assert peaks.per_mailbox == {}

    run(scenario())


def test_reset_starts_from_requests_in_flight(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            await fetch_token(client, tenant)
            await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders")
            gauge = client.app.state.concurrency  # type: ignore[attr-defined]
            assert gauge.peaks().overall == 1

            gauge.reset()

            assert gauge.peaks().overall == 0
            assert gauge.peaks().per_mailbox == {}

    run(scenario())


def test_gauge_tracks_distinct_mailboxes() -> None:
    gauge = ConcurrencyGauge()
    gauge.enter("a")
    gauge.enter("a")
    gauge.enter(None)
    gauge.exit("a")
    gauge.enter("b")
    gauge.exit("a")
    gauge.exit("b")
    gauge.exit(None)

    peaks = gauge.peaks()
    assert peaks.overall == 3
    assert peaks.per_mailbox == {"a": 2, "b": 1}
    assert peaks.mailboxes == 2


def test_rendezvous_makes_mailboxes_overlap(tenant: Tenant) -> None:
    options = EmulatorOptions(mailbox_rendezvous=2)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            alice = client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders")
            bob = client.get(f"/v1.0/users/{tenant.user_id(BOB)}/mailFolders")
            responses = await asyncio.gather(alice, bob)

            assert [response.status_code for response in responses] == [200, 200]
            assert client.app.state.concurrency.peaks().mailboxes == 2  # type: ignore[attr-defined]

    run(scenario())


def test_rendezvous_opens_after_timeout(tenant: Tenant) -> None:
    options = EmulatorOptions(mailbox_rendezvous=2, mailbox_rendezvous_timeout_seconds=0.1)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            alone = await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders")
            assert alone.status_code == 200

            later = await client.get(f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders")
            assert later.status_code == 200
            assert client.app.state.concurrency.peaks().mailboxes == 1  # type: ignore[attr-defined]

    run(scenario())
