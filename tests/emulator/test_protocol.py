"""Front-door behaviour: request ids, error bodies, faults and Exchange throttling."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, FaultPlan, Tenant, build_app
from m365lake.emulator.throttling import MailboxThrottle
from tests.emulator.conftest import ALICE, BOB, graph, run


def test_request_id_headers(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            plain = await client.get("/v1.0/users")
            assert plain.headers["request-id"]
            assert plain.headers["client-request-id"] == plain.headers["request-id"]
            echoed = await client.get("/v1.0/users", headers={"client-request-id": "mine-1"})
            assert echoed.headers["client-request-id"] == "mine-1"
            assert echoed.headers["request-id"] != plain.headers["request-id"]

    run(scenario())


def test_error_body_shape_for_unknown_segment(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.get("/v1.0/nothing", headers={"client-request-id": "c-9"})
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "BadRequest"
            assert "nothing" in error["message"]
            inner = error["innerError"]
            assert set(inner) == {"date", "request-id", "client-request-id"}
            assert inner["request-id"] == response.headers["request-id"]
            assert inner["client-request-id"] == "c-9"

    run(scenario())


def test_inject_one_shot_errors(tenant: Tenant) -> None:
    app = build_app(tenant)
    app.state.faults.inject(path_pattern=r"/users$", status=503, times=2, retry_after="2.5")
    app.state.faults.inject(path_pattern=r"/messages", status=500, code="ErrorInternalServerError")

    async def scenario() -> None:
        async with graph(tenant, app=app) as client:
            for _ in range(2):
                response = await client.get("/v1.0/users")
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "2.5"
                assert response.json()["error"]["code"] == "ServiceUnavailable"
            assert (await client.get("/v1.0/users")).status_code == 200
            alice = tenant.user_id(ALICE)
            failed = await client.get(f"/v1.0/users/{alice}/messages")
            assert failed.status_code == 500
            assert failed.json()["error"]["code"] == "ErrorInternalServerError"
            assert "Retry-After" not in failed.headers
            assert (await client.get(f"/v1.0/users/{alice}/messages")).status_code == 200

    run(scenario())


def test_random_faults_are_seeded(tenant: Tenant) -> None:
    def statuses(seed: int) -> list[tuple[int, str | None]]:
        plan = FaultPlan(seed=seed, rate=0.5, retry_after_values=("0.25", "3", None))
        app = build_app(tenant, EmulatorOptions(faults=plan))

        async def scenario() -> list[tuple[int, str | None]]:
            async with graph(tenant, app=app) as client:
                seen = []
                for _ in range(40):
                    response = await client.get("/v1.0/users")
                    seen.append((response.status_code, response.headers.get("Retry-After")))
                return seen

        return run(scenario())

    first, again, other = statuses(1), statuses(1), statuses(2)
    assert first == again
    assert first != other
    codes = {status for status, _ in first}
    assert 200 in codes
    assert codes - {200} <= {429, 500, 502, 503, 504}
    assert len(codes - {200}) >= 3
    for status, retry_after in first:
        if status in (500, 502, 504):
            assert retry_after is None
    assert {r for s, r in first if s in (429, 503)} <= {"0.25", "3", None}
    streak = 0
    for status, _ in first:
        streak = streak + 1 if status != 200 else 0
        assert streak <= 3


def test_fault_plan_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="unsupported fault statuses"):
        FaultPlan(statuses=(418,))
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=1.5)


def test_mailbox_concurrency_429(tenant: Tenant) -> None:
    options = EmulatorOptions(latency_seconds=0.2)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            alice = tenant.user_id(ALICE)
            bob = tenant.user_id(BOB)
            urls = [f"/v1.0/users/{alice}/mailFolders"] * 6 + [f"/v1.0/users/{bob}/mailFolders"]
            responses = await asyncio.gather(*(client.get(url) for url in urls))
            alice_statuses = sorted(r.status_code for r in responses[:6])
            assert alice_statuses == [200] * 4 + [429] * 2
            assert responses[6].status_code == 200
            throttled = next(r for r in responses if r.status_code == 429)
            assert throttled.json()["error"]["code"] == "ApplicationThrottled"
            assert "MailboxConcurrency" in throttled.json()["error"]["message"]
            assert float(throttled.headers["Retry-After"]) > 0
            records = client.app.state.requests.snapshot()  # type: ignore[attr-defined]
            assert {r.mailbox for r in records if r.path.endswith("mailFolders")} == {alice, bob}
            after = await client.get(urls[0])
            assert after.status_code == 200

    run(scenario())


def test_throttle_scope_app_spans_mailboxes(tenant: Tenant) -> None:
    options = EmulatorOptions(latency_seconds=0.2, throttle_scope="app", mailbox_concurrency=2)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            urls = [f"/v1.0/users/{tenant.user_id(u)}/mailFolders" for u in (ALICE, BOB, BOB)]
            responses = await asyncio.gather(*(client.get(url) for url in urls))
            assert sorted(r.status_code for r in responses) == [200, 200, 429]

    run(scenario())


def test_request_budget_window() -> None:
    now = [1000.0]
    throttle = MailboxThrottle(
        concurrency=4, requests_per_window=3, window_seconds=600, clock=lambda: now[0]
    )
    for _ in range(3):
        throttle.release(throttle.acquire("app", "mbx"))
    with pytest.raises(Exception) as caught:
        throttle.acquire("app", "mbx")
    error = caught.value
    assert getattr(error, "status", None) == 429
    assert getattr(error, "headers", {})["Retry-After"] == "600"
    throttle.release(throttle.acquire("app", "other"))
    now[0] += 601
    throttle.release(throttle.acquire("app", "mbx"))
    assert throttle.in_flight("app", "mbx") == 0


def test_request_budget_over_http(tenant: Tenant) -> None:
    options = EmulatorOptions(mailbox_requests_per_window=3)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            url = f"/v1.0/users/{tenant.user_id(ALICE)}/mailFolders"
            statuses = [(await client.get(url)).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            users = await client.get("/v1.0/users")
            assert users.status_code == 200

    run(scenario())


def test_unauthenticated_requests_are_logged(tenant: Tenant) -> None:
    app = build_app(tenant)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://graph.test") as client:
            await client.get("/v1.0/users?$top=5")
        records = app.state.requests.snapshot()
        assert [(r.method, r.path, r.query, r.status) for r in records] == [
            ("GET", "/v1.0/users", "$top=5", 401)
        ]

    run(scenario())
