"""Contract tests of the emulator's calendar routes: reads, calendarView delta, writes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from m365lake.emulator import Tenant
from m365lake.emulator.seed import SeedEvent
from tests.emulator.conftest import ALICE, follow_delta, graph, run, seed_tenant

BERLIN = "Europe/Berlin"
FIRST = datetime(2024, 3, 4, 9, 0)  # a Monday, before the switch to summer time
WINDOW = {"startDateTime": "2024-01-01T00:00:00Z", "endDateTime": "2025-01-01T00:00:00Z"}


def weekly_payload(count: int = 8) -> dict[str, Any]:
    return {
        "subject": "Weekly sync",
        "start": {"dateTime": FIRST.isoformat(), "timeZone": BERLIN},
        "end": {"dateTime": (FIRST + timedelta(minutes=30)).isoformat(), "timeZone": BERLIN},
        "attendees": [
            {"type": "required", "emailAddress": {"name": "Bob", "address": "bob@contoso.example"}}
        ],
        "location": {"displayName": "Room 1"},
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "numbered", "startDate": "2024-03-04", "numberOfOccurrences": count},
        },
    }


def single_payload(subject: str = "Lunch", day: int = 6) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2024-03-{day:02d}T12:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2024-03-{day:02d}T13:00:00", "timeZone": "UTC"},
    }


@pytest.fixture
def calendar_tenant() -> Tenant:
    seed = seed_tenant(messages_per_folder=1)
    seed.events = [
        SeedEvent(
            ALICE,
            weekly_payload(),
            moved=((FIRST + timedelta(weeks=2), FIRST + timedelta(weeks=2, days=1, hours=2)),),
            cancelled=(FIRST + timedelta(weeks=4),),
        ),
        SeedEvent(
            ALICE,
            single_payload(),
            attachments=(("agenda.txt", "text/plain", b"1. budget\n"),),
        ),
        SeedEvent(ALICE, single_payload("Offsite", 20), calendar="Team"),
    ]
    return Tenant.from_seed(seed)


def user_id(tenant: Tenant) -> str:
    return tenant.user_id(ALICE)


def master_of(tenant: Tenant) -> str:
    return next(
        v.id for v in tenant.calendar_events(user_id(tenant), None) if v.kind == "seriesMaster"
    )


def test_calendars_list_default_and_second(calendar_tenant: Tenant) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with graph(calendar_tenant) as client:
            response = await client.get(f"/v1.0/users/{ALICE}/calendars")
            assert response.status_code == 200, response.text
            return list(response.json()["value"])

    calendars = run(scenario())
    assert [c["name"] for c in calendars] == ["Calendar", "Team"]
    assert calendars[0]["isDefaultCalendar"] is True
    assert calendars[1]["isDefaultCalendar"] is False


def test_events_list_singles_and_masters_only(calendar_tenant: Tenant) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with graph(calendar_tenant) as client:
            calendar_id = calendar_tenant.default_calendar(user_id(calendar_tenant)).id
            url = f"/v1.0/users/{ALICE}/calendars/{calendar_id}/events"
            response = await client.get(url)
            assert response.status_code == 200, response.text
            return list(response.json()["value"])

    events = run(scenario())
    assert sorted(e["type"] for e in events) == ["seriesMaster", "singleInstance"]
    master = next(e for e in events if e["type"] == "seriesMaster")
    assert master["recurrence"]["pattern"]["type"] == "weekly"
    assert master["start"] == {"dateTime": "2024-03-04T08:00:00.0000000", "timeZone": "UTC"}
    assert master["originalStartTimeZone"] == BERLIN
    assert master["attendees"][0]["emailAddress"]["address"] == "bob@contoso.example"


def test_instances_show_exception_and_skip_cancelled(calendar_tenant: Tenant) -> None:
    master_id = master_of(calendar_tenant)

    async def scenario() -> list[dict[str, Any]]:
        async with graph(calendar_tenant) as client:
            url = f"/v1.0/users/{ALICE}/events/{master_id}/instances"
            missing = await client.get(url)
            assert missing.status_code == 400
            assert missing.json()["error"]["code"] == "ErrorInvalidParameter"
            response = await client.get(url, params=WINDOW)
            assert response.status_code == 200, response.text
            return list(response.json()["value"])

    instances = run(scenario())
    assert len(instances) == 7
    assert all(i["seriesMasterId"] == master_id for i in instances)
    exceptions = [i for i in instances if i["type"] == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0]["originalStart"] == "2024-03-18T08:00:00Z"
    assert exceptions[0]["start"]["dateTime"] == "2024-03-19T10:00:00.0000000"
    originals = {i["originalStart"] for i in instances}
    assert "2024-04-01T07:00:00Z" not in originals
    # Summer time started on 31 March 2024: 09:00 in Berlin is 07:00 UTC from then on.
    assert "2024-04-08T07:00:00Z" in originals


def test_calendar_view_contains_occurrences_not_masters(calendar_tenant: Tenant) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with graph(calendar_tenant) as client:
            response = await client.get(f"/v1.0/users/{ALICE}/calendarView", params=WINDOW)
            assert response.status_code == 200, response.text
            return list(response.json()["value"])

    view = run(scenario())
    kinds = [v["type"] for v in view]
    assert "seriesMaster" not in kinds
    assert kinds.count("singleInstance") == 2
    assert kinds.count("occurrence") == 6
    assert kinds.count("exception") == 1


def test_calendar_roles_enforced(calendar_tenant: Tenant) -> None:
    calendar_tenant.app.roles = ["User.Read.All", "Mail.Read"]

    async def scenario() -> tuple[int, str, int]:
        async with graph(calendar_tenant) as client:
            read = await client.get(f"/v1.0/users/{ALICE}/calendars")
            write = await client.post(f"/v1.0/users/{ALICE}/calendars", json={"name": "X"})
            return read.status_code, read.json()["error"]["code"], write.status_code

    status, code, write_status = run(scenario())
    assert status == 403
    assert code == "ErrorAccessDenied"
    assert write_status == 403


def test_read_role_cannot_write(calendar_tenant: Tenant) -> None:
    async def scenario() -> int:
        async with graph(calendar_tenant) as client:
            response = await client.post(f"/v1.0/users/{ALICE}/events", json=single_payload())
            return response.status_code

    assert run(scenario()) == 403


def test_delta_rounds_report_changes_and_tombstones(calendar_tenant: Tenant) -> None:
    uid = user_id(calendar_tenant)
    master_id = master_of(calendar_tenant)
    headers = {"Prefer": "odata.maxpagesize=3"}

    async def scenario() -> None:
        async with graph(calendar_tenant) as client:
            url = f"/v1.0/users/{ALICE}/calendarView/delta"
            rejected = await client.get(url, params={**WINDOW, "$select": "subject"})
            assert rejected.status_code == 400
            query = "&".join(f"{k}={v}" for k, v in WINDOW.items())
            pages, delta_link = await follow_delta(client, f"{url}?{query}", headers)
            assert len(pages) >= 3
            assert all(len(page) <= 3 for page in pages)
            first_round = [item for page in pages for item in page]
            assert len(first_round) == 9
            assert not any("@removed" in item for item in first_round)

            pages, delta_link = await follow_delta(client, delta_link, headers)
            assert [item for page in pages for item in page] == []

            lunch = next(
                v.id
                for v in calendar_tenant.calendar_events(uid, None)
                if v.master.properties.get("subject") == "Lunch"
            )
            calendar_tenant.delete_event(uid, lunch)
            occurrence = next(
                v.id
                for v in calendar_tenant.instances(
                    uid,
                    master_id,
                    datetime(2024, 4, 20, tzinfo=UTC),
                    datetime(2024, 5, 1, tzinfo=UTC),
                )
            )
            calendar_tenant.delete_event(uid, occurrence)
            pages, delta_link = await follow_delta(client, delta_link, headers)
            changes = [item for page in pages for item in page]
            removed = {item["id"] for item in changes if "@removed" in item}
            assert removed == {lunch, occurrence}
            updated = [item for item in changes if "@removed" not in item]
            # Cancelling an occurrence changes the master, so its occurrences change too.
            assert updated and all(item["seriesMasterId"] == master_id for item in updated)

            calendar_tenant.expire_calendar_sync_state(uid)
            expired = await client.get(delta_link)
            assert expired.status_code == 410
            assert expired.json()["error"]["code"] == "SyncStateNotFound"

    run(scenario())


def test_create_calendar_rejects_duplicate_name(calendar_tenant: Tenant) -> None:
    calendar_tenant.app.roles.append("Calendars.ReadWrite")

    async def scenario() -> tuple[int, int, str]:
        async with graph(calendar_tenant) as client:
            created = await client.post(f"/v1.0/users/{ALICE}/calendars", json={"name": "Restored"})
            duplicate = await client.post(
                f"/v1.0/users/{ALICE}/calendars", json={"name": "restored"}
            )
            return created.status_code, duplicate.status_code, duplicate.json()["error"]["code"]

    created, duplicate, code = run(scenario())
    assert created == 201
    assert duplicate == 409
    assert code == "ErrorFolderExists"


def test_write_series_move_and_cancel_occurrences(calendar_tenant: Tenant) -> None:
    calendar_tenant.app.roles.append("Calendars.ReadWrite")

    async def scenario() -> None:
        async with graph(calendar_tenant) as client:
            created = await client.post(f"/v1.0/users/{ALICE}/events", json=weekly_payload(count=4))
            assert created.status_code == 201, created.text
            master = created.json()
            assert master["type"] == "seriesMaster"
            url = f"/v1.0/users/{ALICE}/events/{master['id']}/instances"
            instances = (await client.get(url, params=WINDOW)).json()["value"]
            assert len(instances) == 4

            moved = await client.patch(
                f"/v1.0/users/{ALICE}/events/{instances[1]['id']}",
                json={
                    "start": {"dateTime": "2024-03-12T15:00:00", "timeZone": "UTC"},
                    "end": {"dateTime": "2024-03-12T15:30:00", "timeZone": "UTC"},
                },
            )
            assert moved.status_code == 200, moved.text
            assert moved.json()["type"] == "exception"
            cancelled = await client.delete(f"/v1.0/users/{ALICE}/events/{instances[2]['id']}")
            assert cancelled.status_code == 204
            gone = await client.get(f"/v1.0/users/{ALICE}/events/{instances[2]['id']}")
            assert gone.status_code == 404

            after = (await client.get(url, params=WINDOW)).json()["value"]
            assert len(after) == 3
            exception = next(i for i in after if i["type"] == "exception")
            assert exception["id"] == instances[1]["id"]
            assert exception["start"]["dateTime"] == "2024-03-12T15:00:00.0000000"
            assert instances[2]["originalStart"] not in {i["originalStart"] for i in after}

            refreshed = await client.get(f"/v1.0/users/{ALICE}/events/{master['id']}")
            assert refreshed.json()["changeKey"] != master["changeKey"]

    run(scenario())


def test_event_attachments_round_trip(calendar_tenant: Tenant) -> None:
    calendar_tenant.app.roles.append("Calendars.ReadWrite")

    async def scenario() -> None:
        async with graph(calendar_tenant) as client:
            created = await client.post(f"/v1.0/users/{ALICE}/events", json=single_payload())
            event_id = created.json()["id"]
            posted = await client.post(
                f"/v1.0/users/{ALICE}/events/{event_id}/attachments",
                json={
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": "plan.bin",
                    "contentType": "application/octet-stream",
                    "contentBytes": base64.b64encode(bytes(range(256))).decode(),
                },
            )
            assert posted.status_code == 201, posted.text
            listed = await client.get(f"/v1.0/users/{ALICE}/events/{event_id}/attachments")
            attachment = listed.json()["value"][0]
            assert attachment["size"] == 256
            assert base64.b64decode(attachment["contentBytes"]) == bytes(range(256))
            value = await client.get(
                f"/v1.0/users/{ALICE}/events/{event_id}/attachments/{attachment['id']}/$value"
            )
            assert value.content == bytes(range(256))
            event = await client.get(f"/v1.0/users/{ALICE}/events/{event_id}")
            assert event.json()["hasAttachments"] is True

    run(scenario())


def test_calendar_requests_count_against_mailbox(calendar_tenant: Tenant) -> None:
    from m365lake.emulator import EmulatorOptions

    options = EmulatorOptions(mailbox_requests_per_window=2, mailbox_window_seconds=600)

    async def scenario() -> list[int]:
        async with graph(calendar_tenant, options) as client:
            statuses = []
            for _ in range(3):
                response = await client.get(f"/v1.0/users/{ALICE}/calendars")
                statuses.append(response.status_code)
            return statuses

    assert run(scenario()) == [200, 200, 429]


def test_generated_tenant_has_series_with_exception() -> None:
    from m365lake.emulator.generator import generate_tenant

    tenant = Tenant.from_seed(generate_tenant(users=2, messages_per_user=1, files_per_user=0))
    for uid in tenant.user_ids():
        masters = [v for v in tenant.calendar_events(uid, None) if v.kind == "seriesMaster"]
        weekly = next(
            m for m in masters if (m.master.recurrence or {})["pattern"]["type"] == "weekly"
        )
        assert len(weekly.master.cancelled) == 1
        assert len(weekly.master.exceptions) == 1
        assert any(e.master.attachments for e in tenant.calendar_events(uid, None))
