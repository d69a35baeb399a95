"""Contract tests of the Teams routes: teams, channels, messages, replies, delta, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.generator_teams import GeneratedThread, generate_teams
from tests.emulator.conftest import ALICE, BOB, follow_delta, graph, run, seed_tenant


@pytest.fixture
def teams_tenant() -> tuple[Tenant, GeneratedThread]:
    tenant = Tenant.from_seed(seed_tenant(messages_per_folder=1))
    generated = generate_teams(tenant)
    assert generated is not None
    return tenant, generated


def _channel_path(thread: GeneratedThread) -> str:
    return f"/v1.0/teams/{thread.team_id}/channels/{thread.channel_id}"


async def _all_pages(client: httpx.AsyncClient, url: str, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    response = await client.get(url, params=params) if params else await client.get(url)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["value"])
        if "@odata.nextLink" not in body:
            return items
        response = await client.get(body["@odata.nextLink"])


def test_teams_groups_and_channels(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant
    tenant.add_team("Plain Group", is_team=False)

    async def scenario() -> None:
        async with graph(tenant) as client:
            teams = (await client.get("/v1.0/teams")).json()["value"]
            assert sorted(team["displayName"] for team in teams) == [
                "Legal Review",
                "Project Falcon",
            ]
            tenant.app.roles.append("Group.Read.All")
        async with graph(tenant) as client:
            groups = await client.get(
                "/v1.0/groups", params={"$select": "id,resourceProvisioningOptions"}
            )
            options = {g["id"]: g["resourceProvisioningOptions"] for g in groups.json()["value"]}
            assert sorted(map(tuple, options.values())) == [(), ("Team",), ("Team",)]
            assert set(groups.json()["value"][0]) == {"id", "resourceProvisioningOptions"}
            channels = (await client.get(f"/v1.0/teams/{thread.team_id}/channels")).json()
            names = sorted(channel["displayName"] for channel in channels["value"])
            assert names == ["Design", "General"]
            for channel in channels["value"]:
                assert channel["id"].startswith("19:")
                assert channel["id"].endswith("@thread.tacv2")
            filtered = await client.get(
                "/v1.0/groups",
                params={"$filter": "resourceProvisioningOptions/Any(x:x eq 'Team')"},
            )
            assert len(filtered.json()["value"]) == 2
            other_filter = await client.get("/v1.0/groups", params={"$filter": "mail eq 'x'"})
            assert other_filter.status_code == 400
            selected = await client.get("/v1.0/teams", params={"$select": "displayName"})
            assert set(selected.json()["value"][0]) == {"id", "displayName"}
            unknown = await client.get("/v1.0/teams", params={"$select": "nope"})
            assert unknown.status_code == 400
            plain = next(g for g, o in options.items() if not o)
            missing = await client.get(f"/v1.0/teams/{plain}/channels")
            assert missing.status_code == 404

    run(scenario())


def test_messages_replies_and_expand(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            path = _channel_path(thread)
            roots = await _all_pages(client, f"{path}/messages", **{"$top": "1"})
            assert [root["id"] for root in roots] == [thread.root_id]
            root = roots[0]
            assert root["replyToId"] is None
            assert root["channelIdentity"] == {
                "teamId": thread.team_id,
                "channelId": thread.channel_id,
            }
            assert root["mentions"][0]["mentioned"]["user"]["displayName"] == "Bob Brown"
            assert '<at id="0">Bob Brown</at>' in root["body"]["content"]
            assert root["reactions"][0]["reactionType"] == "like"
            assert root["messageHistory"][0]["actions"] == "reactionAdded"
            attachment = root["attachments"][0]
            assert attachment["contentType"] == "reference"
            assert attachment["contentUrl"].endswith(
                "/sites/falcon/Shared%20Documents/General/Launch%20plan.docx"
            )
            assert f'<attachment id="{attachment["id"]}">' in root["body"]["content"]

            replies = await _all_pages(client, f"{path}/messages/{thread.root_id}/replies")
            assert len(replies) == 3
            assert all(reply["replyToId"] == thread.root_id for reply in replies)
            edited = next(r for r in replies if r["id"] == thread.edited_id)
            assert edited["lastEditedDateTime"] is not None
            assert "21st" in edited["body"]["content"]
            deleted = next(r for r in replies if r["id"] == thread.deleted_reply_id)
            assert deleted["deletedDateTime"] is not None
            assert deleted["body"]["content"] == ""

            expanded = (await client.get(f"{path}/messages", params={"$expand": "replies"})).json()
            assert [r["id"] for r in expanded["value"][0]["replies"]] == [r["id"] for r in replies]

            one = await client.get(f"{path}/messages/{thread.root_id}/replies/{thread.edited_id}")
            assert one.json()["id"] == thread.edited_id
            single = await client.get(f"{path}/messages/{thread.root_id}")
            assert single.json()["etag"] == root["etag"]
            assert (await client.get(f"{path}/messages/1")).status_code == 404

    run(scenario())


def test_message_page_size_limit(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            path = _channel_path(thread)
            for url in (
                f"{path}/messages",
                f"{path}/messages/delta",
                f"{path}/messages/{thread.root_id}/replies",
            ):
                too_many = await client.get(url, params={"$top": "51"})
                assert too_many.status_code == 400, url
                assert (await client.get(url, params={"$top": "50"})).status_code == 200
            bad_expand = await client.get(f"{path}/messages", params={"$expand": "hostedContents"})
            assert bad_expand.status_code == 400

    run(scenario())


def test_hosted_content_served(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            design = tenant.channel_id(thread.team_id, "Design")
            path = f"/v1.0/teams/{thread.team_id}/channels/{design}/messages"
            root = (await client.get(path)).json()["value"][0]
            assert "hostedContents/" in root["body"]["content"]
            assert "https://graph.test/v1.0/teams/" in root["body"]["content"]
            listed = (await client.get(f"{path}/{root['id']}/hostedContents")).json()["value"]
            assert len(listed) == 1
            value = await client.get(f"{path}/{root['id']}/hostedContents/{listed[0]['id']}/$value")
            assert value.status_code == 200
            assert value.headers["content-type"] == "image/png"
            assert value.content.startswith(b"\x89PNG")
            missing = await client.get(f"{path}/{root['id']}/hostedContents/nope/$value")
            assert missing.status_code == 404

    run(scenario())


def test_delta_rounds_and_reply_changes(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            path = _channel_path(thread)
            url = f"{path}/messages/delta?$top=1&$expand=replies"
            pages, link = await follow_delta(client, url)
            assert [m["id"] for page in pages for m in page] == [thread.root_id]
            assert len(pages[0][0]["replies"]) == 3

            _, link = await follow_delta(client, link)
            quiet, link = await follow_delta(client, link)
            assert [m for page in quiet for m in page] == []

            tenant.edit_channel_message(
                thread.team_id, thread.channel_id, thread.edited_id, "<p>Launch moved again.</p>"
            )
            new_root = tenant.post_channel_message(
                thread.team_id, thread.channel_id, BOB, "<p>New topic</p>"
            )
            changed, link = await follow_delta(client, link)
            roots = [m for page in changed for m in page]
            assert [m["id"] for m in roots] == [thread.root_id, new_root]
            reply = next(r for r in roots[0]["replies"] if r["id"] == thread.edited_id)
            assert "moved again" in reply["body"]["content"]

    run(scenario())


def test_delta_window_and_filter(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            legal_general = tenant.channel_id(tenant.teams()[0].id, "General")
            legal = next(t for t in tenant.teams() if t.display_name == "Legal Review")
            legal_general = tenant.channel_id(legal.id, "General")
            path = f"/v1.0/teams/{legal.id}/channels/{legal_general}/messages"
            listed = [m["id"] for m in (await client.get(path)).json()["value"]]
            assert thread.old_root_id in listed
            pages, _ = await follow_delta(client, f"{path}/delta")
            delta_ids = [m["id"] for page in pages for m in page]
            assert thread.old_root_id not in delta_ids
            assert len(delta_ids) == len(listed) - 1

            since = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            filtered = await client.get(
                f"{path}/delta", params={"$filter": f"lastModifiedDateTime gt {since}"}
            )
            assert filtered.json()["value"] == []
            wrong = await client.get(
                f"{path}/delta", params={"$filter": "createdDateTime gt 2020-01-01T00:00:00Z"}
            )
            assert wrong.status_code == 400
            select = await client.get(f"{path}/delta", params={"$select": "id"})
            assert select.status_code == 400

    run(scenario())


def test_protected_api_switch_and_roles(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant
    tenant.app.protected_apis_approved = False

    async def scenario() -> None:
        async with graph(tenant) as client:
            path = _channel_path(thread)
            assert (await client.get(f"/v1.0/teams/{thread.team_id}/channels")).status_code == 200
            for url in (
                f"{path}/messages",
                f"{path}/messages/delta",
                f"{path}/messages/{thread.root_id}",
                f"{path}/messages/{thread.root_id}/replies",
                f"{path}/messages/{thread.root_id}/hostedContents",
            ):
                response = await client.get(url)
                assert response.status_code == 403, url
                error = response.json()["error"]
                assert error["code"] == "Forbidden"
                assert "Protected API" in error["message"]
        tenant.app.protected_apis_approved = True
        tenant.app.roles = ["User.Read.All"]
        async with graph(tenant) as client:
            assert (await client.get("/v1.0/teams")).status_code == 403
            assert (await client.get(f"/v1.0/teams/{thread.team_id}/channels")).status_code == 403
            denied = await client.get(f"{_channel_path(thread)}/messages")
            assert denied.status_code == 403
            assert "ChannelMessage.Read.All" in denied.json()["error"]["message"]
            assert (await client.get("/v1.0/groups")).status_code == 403

    run(scenario())


def test_channel_throttling(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant
    options = EmulatorOptions(teams_channel_requests_per_second=4)

    async def scenario() -> None:
        async with graph(tenant, options) as client:
            path = _channel_path(thread)
            statuses = [(await client.get(f"{path}/messages")).status_code for _ in range(5)]
            assert statuses == [200, 200, 200, 200, 429]
            throttled = await client.get(f"{path}/messages")
            assert int(throttled.headers["Retry-After"]) >= 1
            assert throttled.json()["error"]["code"] == "TooManyRequests"
            # Another channel has a budget of its own.
            design = tenant.channel_id(thread.team_id, "Design")
            other = await client.get(f"/v1.0/teams/{thread.team_id}/channels/{design}/messages")
            assert other.status_code == 200

    run(scenario())


def test_reply_to_unknown_root_rejected(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant
    with pytest.raises(KeyError):
        tenant.post_channel_message(thread.team_id, thread.channel_id, ALICE, "x", reply_to="123")


def test_expired_delta_gives_410(teams_tenant: tuple[Tenant, GeneratedThread]) -> None:
    tenant, thread = teams_tenant

    async def scenario() -> None:
        async with graph(tenant) as client:
            tenant.post_channel_message(thread.team_id, thread.channel_id, BOB, "<p>Second</p>")
            url = f"{_channel_path(thread)}/messages/delta?$top=1"
            first = (await client.get(url)).json()
            _, link = await follow_delta(client, url)
            tenant.expire_teams_delta()
            for stale in (link, first["@odata.nextLink"]):
                response = await client.get(stale)
                assert response.status_code == 410
                assert response.json()["error"]["code"] == "resyncRequired"
            fresh, _ = await follow_delta(client, url)
            assert len([m["id"] for page in fresh for m in page]) == 2

    run(scenario())


def test_expanded_replies_beyond_limit_paged(
    teams_tenant: tuple[Tenant, GeneratedThread],
) -> None:
    tenant, thread = teams_tenant
    design = tenant.channel_id(thread.team_id, "Design")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    root = tenant.post_channel_message(thread.team_id, design, ALICE, "busy", created_at=start)
    for index in range(1003):
        tenant.post_channel_message(
            thread.team_id,
            design,
            BOB,
            f"reply {index}",
            reply_to=root,
            created_at=start + timedelta(seconds=index + 1),
        )

    async def scenario() -> None:
        async with graph(tenant) as client:
            path = f"/v1.0/teams/{thread.team_id}/channels/{design}/messages"
            listed = (await client.get(path, params={"$expand": "replies"})).json()["value"]
            busy = next(message for message in listed if message["id"] == root)
            assert len(busy["replies"]) == 1000
            rest = await _all_pages(client, busy["replies@odata.nextLink"])
            texts = [r["body"]["content"] for r in busy["replies"] + rest]
            assert texts == [f"reply {index}" for index in range(1003)]

    run(scenario())
