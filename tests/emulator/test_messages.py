"""Messages: listing limits, ``$select``, ids across moves, ``$value`` bytes, attachments."""

from __future__ import annotations

import base64

from m365lake.emulator import Tenant
from tests.emulator.conftest import ALICE, graph, make_mime, run

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def _inbox_message(tenant: Tenant, index: int) -> str:
    wanted = make_mime(index, attachments=index == 0)
    return next(mid for mid, live in tenant.live_messages(ALICE).items() if live.mime == wanted)


def test_message_listing_pages_and_top_limits(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            url = f"/v1.0/users/{alice}/mailFolders/inbox/messages"
            first = (await client.get(url)).json()
            assert len(first["value"]) == 10
            assert "$skip=10" in first["@odata.nextLink"]
            second = (await client.get(first["@odata.nextLink"])).json()
            assert len(second["value"]) == 2
            assert "@odata.nextLink" not in second
            received = [m["receivedDateTime"] for m in first["value"] + second["value"]]
            assert received == sorted(received, reverse=True)
            for top in ("0", "1001"):
                response = await client.get(url, params={"$top": top})
                assert response.status_code == 400, top
            sized = await client.get(url, headers={"Prefer": "odata.maxpagesize=5"})
            assert len(sized.json()["value"]) == 5
            everything = await client.get(f"/v1.0/users/{alice}/messages", params={"$top": "50"})
            assert len(everything.json()["value"]) == 13

    run(scenario())


def test_message_json_shape_and_select(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    message_id = _inbox_message(tenant, 3)

    async def scenario() -> None:
        async with graph(tenant) as client:
            body = (
                await client.get(f"/v1.0/users/{alice}/messages/{message_id}", headers=IMMUTABLE)
            ).json()
            assert body["id"] == message_id
            assert body["@odata.etag"] == f'W/"{body["changeKey"]}"'
            assert body["subject"] == "Message 3"
            assert body["parentFolderId"] == tenant.folder_id(ALICE, ("Inbox",))
            assert body["isRead"] is False
            assert body["receivedDateTime"] == "2024-01-01T10:03:00Z"
            assert "internetMessageHeaders" not in body
            selected = await client.get(
                f"/v1.0/users/{alice}/messages/{message_id}",
                params={"$select": "subject,internetMessageHeaders"},
                headers=IMMUTABLE,
            )
            keys = set(selected.json()) - {"@odata.context"}
            assert keys == {"@odata.etag", "id", "subject", "internetMessageHeaders"}
            headers = {h["name"] for h in selected.json()["internetMessageHeaders"]}
            assert "Message-ID" in headers
            bad = await client.get(
                f"/v1.0/users/{alice}/messages/{message_id}", params={"$select": "subjekt"}
            )
            assert bad.status_code == 400
            assert "subjekt" in bad.json()["error"]["message"]

    run(scenario())


def test_ids_across_moves(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    immutable_id = _inbox_message(tenant, 4)

    async def scenario() -> None:
        async with graph(tenant) as client:
            url = f"/v1.0/users/{alice}/messages/{immutable_id}"
            rest_before = (await client.get(url)).json()["id"]
            assert rest_before != immutable_id
            assert (
                await client.get(f"/v1.0/users/{alice}/messages/{rest_before}")
            ).status_code == 200

            tenant.move_message(ALICE, immutable_id, ("Archive",))
            moved = (await client.get(url)).json()
            assert moved["id"] != rest_before
            assert moved["parentFolderId"] == tenant.folder_id(ALICE, ("Archive",))
            stale = await client.get(f"/v1.0/users/{alice}/messages/{rest_before}")
            assert stale.status_code == 404
            assert stale.json()["error"]["code"] == "ErrorItemNotFound"
            immutable = (await client.get(url, headers=IMMUTABLE)).json()
            assert immutable["id"] == immutable_id

    run(scenario())


def test_value_is_byte_exact(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            for message_id, live in tenant.live_messages(ALICE).items():
                response = await client.get(f"/v1.0/users/{alice}/messages/{message_id}/$value")
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/plain"
                assert response.content == live.mime
            inbox = tenant.folder_id(ALICE, ("Inbox",))
            message_id = _inbox_message(tenant, 0)
            nested = await client.get(
                f"/v1.0/users/{alice}/mailFolders/{inbox}/messages/{message_id}/$value"
            )
            assert nested.content == make_mime(0, attachments=True)
            assert tenant.source_of(ALICE, message_id) == "alice/inbox/0"

    run(scenario())


def test_attachments(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    message_id = _inbox_message(tenant, 0)

    async def scenario() -> None:
        async with graph(tenant) as client:
            base = f"/v1.0/users/{alice}/messages/{message_id}/attachments"
            values = (await client.get(base)).json()["value"]
            assert [a["@odata.type"] for a in values] == [
                "#microsoft.graph.fileAttachment",
                "#microsoft.graph.itemAttachment",
            ]
            pdf, item = values
            assert pdf["name"] == "report.pdf"
            assert pdf["contentType"] == "application/pdf"
            assert pdf["isInline"] is False
            assert base64.b64decode(pdf["contentBytes"]) == bytes(range(256)) * 4
            assert "contentBytes" not in item

            raw = await client.get(f"{base}/{pdf['id']}/$value")
            assert raw.content == bytes(range(256)) * 4
            single = (await client.get(f"{base}/{pdf['id']}")).json()
            assert single["size"] == 1024
            embedded = await client.get(f"{base}/{item['id']}/$value")
            assert b"Subject: Forwarded" in embedded.content
            slim = (await client.get(base, params={"$select": "name,size"})).json()["value"]
            assert set(slim[0]) == {"@odata.type", "@odata.mediaContentType", "id", "name", "size"}
            missing = await client.get(f"{base}/AAMkATnope")
            assert missing.status_code == 404

            message = (await client.get(f"/v1.0/users/{alice}/messages/{message_id}")).json()
            assert message["hasAttachments"] is True

    run(scenario())
