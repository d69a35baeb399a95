"""Mail writes: folder creation, message creation (JSON and MIME), flags, limits, deletes."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
from typing import Any

import httpx

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.incoming_bytes import incoming_bytes_of
from tests.emulator.conftest import ALICE, follow_delta, graph, make_mime, run

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


def _writable(tenant: Tenant) -> Tenant:
    tenant.app.roles.append("Mail.ReadWrite")
    return tenant


def received_mail(subject: str = "Quarterly numbers", **extra: Any) -> dict[str, Any]:
    """Return a create body for received, read mail with original dates."""
    return {
        "subject": subject,
        "body": {"contentType": "html", "content": "<p>See the numbers.</p>"},
        "from": {"emailAddress": {"name": "Jörg Sender", "address": "joerg@fabrikam.example"}},
        "toRecipients": [{"emailAddress": {"address": ALICE}}],
        "ccRecipients": [{"emailAddress": {"name": "Carl", "address": "carl@fabrikam.example"}}],
        "internetMessageId": "<q1@fabrikam.example>",
        "categories": ["Finance"],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0E06", "value": "2001-05-14T16:39:00Z"},
            {"id": "SystemTime 0x0039", "value": "2001-05-14T16:38:00Z"},
        ],
        **extra,
    }


def test_folder_create_and_duplicate(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            _, delta_link = await follow_delta(client, f"/v1.0/users/{alice}/mailFolders/delta")
            created = await client.post(
                f"/v1.0/users/{alice}/mailFolders", json={"displayName": "Restored"}
            )
            assert created.status_code == 201, created.text
            folder = created.json()
            assert folder["displayName"] == "Restored"
            assert folder["totalItemCount"] == 0
            child = await client.post(
                f"/v1.0/users/{alice}/mailFolders/{folder['id']}/childFolders",
                json={"displayName": "Projects"},
            )
            assert child.status_code == 201
            assert child.json()["parentFolderId"] == folder["id"]
            duplicate = await client.post(
                f"/v1.0/users/{alice}/mailFolders", json={"displayName": "restored"}
            )
            assert duplicate.status_code == 409
            error = duplicate.json()["error"]
            assert error["code"] == "ErrorFolderExists"
            assert error["message"] == "A folder with the specified name already exists."
            assert "request-id" in error["innerError"]
            pages, _ = await follow_delta(client, delta_link)
            changed = {item["id"] for page in pages for item in page}
            assert {folder["id"], child.json()["id"]} <= changed
            assert tenant.folder_id(ALICE, ("Restored", "Projects")) == child.json()["id"]

    run(scenario())


def test_json_create_with_flags_is_received_mail(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    inbox = tenant.folder_id(ALICE, ("Inbox",))
    pdf = bytes(range(256)) * 8

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            _, delta_link = await follow_delta(
                client, f"/v1.0/users/{alice}/mailFolders/{inbox}/messages/delta"
            )
            body = received_mail(
                attachments=[
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": "report.pdf",
                        "contentType": "application/pdf",
                        "contentBytes": base64.b64encode(pdf).decode(),
                    },
                    {
                        "@odata.type": "#microsoft.graph.itemAttachment",
                        "name": "Forwarded note",
                        "item": {
                            "@odata.type": "#microsoft.graph.message",
                            "subject": "Forwarded note",
                            "body": {"contentType": "text", "content": "inner"},
                            "from": {"emailAddress": {"address": "fwd@fabrikam.example"}},
                        },
                    },
                ],
                internetMessageHeaders=[{"name": "X-Restored-From", "value": "archive"}],
            )
            response = await client.post(
                f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=body, headers=IMMUTABLE
            )
            assert response.status_code == 201, response.text
            created = response.json()
            assert created["isDraft"] is False
            assert created["isRead"] is True
            assert created["receivedDateTime"] == "2001-05-14T16:39:00Z"
            assert created["sentDateTime"] == "2001-05-14T16:38:00Z"
            assert created["subject"] == "Quarterly numbers"
            assert created["from"]["emailAddress"] == {
                "name": "Jörg Sender",
                "address": "joerg@fabrikam.example",
            }
            assert created["ccRecipients"][0]["emailAddress"]["name"] == "Carl"
            assert created["categories"] == ["Finance"]
            assert created["internetMessageId"] == "<q1@fabrikam.example>"
            assert created["parentFolderId"] == inbox
            assert created["hasAttachments"] is True

            url = f"/v1.0/users/{alice}/messages/{created['id']}"
            mime = (await client.get(url + "/$value")).content
            parsed = email.message_from_bytes(mime, policy=email.policy.compat32)
            assert parsed["X-Restored-From"] == "archive"
            assert parsed["Message-ID"] == "<q1@fabrikam.example>"
            listed = (await client.get(url + "/attachments")).json()["value"]
            assert [a["@odata.type"] for a in listed] == [
                "#microsoft.graph.fileAttachment",
                "#microsoft.graph.itemAttachment",
            ]
            assert base64.b64decode(listed[0]["contentBytes"]) == pdf
            nested = await client.get(f"{url}/attachments/{listed[1]['id']}/$value")
            assert b"Subject: Forwarded note" in nested.content

            pages, _ = await follow_delta(client, delta_link, headers=IMMUTABLE)
            assert [item["id"] for page in pages for item in page] == [created["id"]]

    run(scenario())


def test_json_create_keeps_non_ascii_recipients_apart(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    recipients = [
        {"emailAddress": {"address": "äö@example.com"}},
        {"emailAddress": {"address": "bob@example.com"}},
        {"emailAddress": {"name": "Jörg, Ü", "address": "j@example.com"}},
        {"emailAddress": {"name": "Dö", "address": "dö@exämple.com"}},
    ]

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            body = received_mail(toRecipients=recipients)
            response = await client.post(
                f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=body, headers=IMMUTABLE
            )
            assert response.status_code == 201, response.text
            url = f"/v1.0/users/{alice}/messages/{response.json()['id']}"
            read = (await client.get(url, params={"$select": "toRecipients"})).json()
            assert [r["emailAddress"]["address"] for r in read["toRecipients"]] == [
                "äö@example.com",
                "bob@example.com",
                "j@example.com",
                "dö@exämple.com",
            ]
            assert read["toRecipients"][2]["emailAddress"]["name"] == "Jörg, Ü"
            mime = (await client.get(url + "/$value")).content
            # RFC 6532: the address itself travels as UTF-8, names as encoded words.
            assert "To: äö@example.com, bob@example.com,".encode() in mime

    run(scenario())


def test_json_create_without_flags_is_draft(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            body = received_mail()
            del body["singleValueExtendedProperties"]
            response = await client.post(f"/v1.0/users/{alice}/messages", json=body)
            assert response.status_code == 201
            draft = response.json()
            assert draft["isDraft"] is True
            assert draft["parentFolderId"] == tenant.folder_id(ALICE, ("Drafts",))
            patched = await client.patch(
                f"/v1.0/users/{alice}/messages/{draft['id']}",
                json={
                    "isRead": False,
                    "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
                },
            )
            assert patched.status_code == 200, patched.text
            assert patched.json()["isDraft"] is True
            assert patched.json()["isRead"] is False
            unread = received_mail()
            unread["singleValueExtendedProperties"][0]["value"] = "0"
            created = await client.post(
                f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=unread
            )
            assert created.json()["isDraft"] is False
            assert created.json()["isRead"] is False
            rejected = await client.patch(
                f"/v1.0/users/{alice}/messages/{draft['id']}", json={"subject": "new"}
            )
            assert rejected.status_code == 400

    run(scenario())


def test_json_create_rejects_bad_input(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            url = f"/v1.0/users/{alice}/mailFolders/inbox/messages"
            header = await client.post(
                url,
                json=received_mail(internetMessageHeaders=[{"name": "From", "value": "x"}]),
            )
            assert header.status_code == 400
            assert header.json()["error"]["code"] == "InvalidInternetMessageHeader"
            many = [{"name": f"X-Custom-{index}", "value": "v"} for index in range(6)]
            crowded = await client.post(url, json=received_mail(internetMessageHeaders=many))
            assert crowded.status_code == 400
            assert crowded.json()["error"]["code"] == "InvalidInternetMessageHeaderCollection"
            flags = received_mail()
            flags["singleValueExtendedProperties"][0]["value"] = "read"
            assert (await client.post(url, json=flags)).status_code == 400
            huge = received_mail(
                body={"contentType": "text", "content": "x" * (4 * 1024 * 1024 + 1)}
            )
            too_large = await client.post(url, json=huge)
            assert too_large.status_code == 413
            missing = await client.post(
                f"/v1.0/users/{alice}/mailFolders/nope/messages", json=received_mail()
            )
            assert missing.status_code == 404

    run(scenario())


def test_mime_create_is_draft(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    mime = make_mime(7)

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            url = f"/v1.0/users/{alice}/mailFolders/inbox/messages"
            response = await client.post(
                url,
                content=base64.b64encode(mime),
                headers={"Content-Type": "text/plain"},
            )
            assert response.status_code == 201, response.text
            created = response.json()
            assert created["isDraft"] is True
            assert created["subject"] == "Message 7"
            stored = await client.get(f"/v1.0/users/{alice}/messages/{created['id']}/$value")
            assert stored.content == mime
            bad = await client.post(
                url, content=b"not base64!", headers={"Content-Type": "text/plain"}
            )
            assert bad.status_code == 400
            assert bad.json()["error"]["message"] == "Invalid base64 string for MIME content."

    run(scenario())


def test_writes_need_mail_readwrite(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.post(
                f"/v1.0/users/{alice}/mailFolders", json={"displayName": "X"}
            )
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "ErrorAccessDenied"

    run(scenario())


def test_delete_and_attachment_post(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    small = b"small attachment bytes"

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            created = await client.post(
                f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=received_mail()
            )
            message_url = f"/v1.0/users/{alice}/messages/{created.json()['id']}"
            attached = await client.post(
                message_url + "/attachments",
                json={
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": "note.txt",
                    "contentType": "text/plain",
                    "contentBytes": base64.b64encode(small).decode(),
                },
            )
            assert attached.status_code == 201, attached.text
            assert attached.json()["name"] == "note.txt"
            value = await client.get(f"{message_url}/attachments/{attached.json()['id']}/$value")
            assert value.content == small
            after = (await client.get(message_url)).json()
            assert after["isDraft"] is False
            assert after["receivedDateTime"] == "2001-05-14T16:39:00Z"
            assert (await client.delete(message_url)).status_code == 204
            assert (await client.get(message_url)).status_code == 404
            assert (await client.delete(message_url)).status_code == 404

    run(scenario())


def test_writes_are_throttled_per_mailbox(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    options = EmulatorOptions(mailbox_requests_per_window=2)

    async def scenario() -> None:
        async with graph(_writable(tenant), options) as client:
            statuses = [
                (
                    await client.post(
                        f"/v1.0/users/{alice}/mailFolders", json={"displayName": f"F{index}"}
                    )
                ).status_code
                for index in range(3)
            ]
            assert statuses == [201, 201, 429]

    run(scenario())


# ---- upload sessions --------------------------------------------------------------------


async def _open_session(
    client: httpx.AsyncClient, alice: str, size: int, name: str = "big.bin"
) -> tuple[str, dict[str, Any]]:
    created = await client.post(
        f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=received_mail()
    )
    message_id = created.json()["id"]
    session = await client.post(
        f"/v1.0/users/{alice}/messages/{message_id}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": name, "size": size}},
    )
    assert session.status_code == 201, session.text
    return message_id, session.json()


async def _put(
    url: str,
    data: bytes,
    first: int,
    total: int,
    transport: httpx.AsyncBaseTransport,
    **headers: str,
) -> httpx.Response:
    # A fresh client: the upload URL must not receive the Graph client's Authorization header.
    async with httpx.AsyncClient(transport=transport) as bare:
        range_header = f"bytes {first}-{first + len(data) - 1}/{total}"
        return await bare.put(url, content=data, headers={"Content-Range": range_header, **headers})


def test_upload_session_attaches_large_file(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    content = bytes(range(256)) * (14 * 1024)  # 3.5 MiB
    chunk = 2 * 1024 * 1024

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
            message_id, session = await _open_session(client, alice, len(content))
            assert session["nextExpectedRanges"] == ["0-"]
            url = session["uploadUrl"]
            assert "AttachmentSessions" in url

            with_auth = await _put(
                url, content[:chunk], 0, len(content), transport, Authorization="Bearer x"
            )
            assert with_auth.status_code == 401
            first = await _put(url, content[:chunk], 0, len(content), transport)
            assert first.status_code == 200, first.text
            assert first.json()["NextExpectedRanges"] == [str(chunk)]
            overlap = await _put(url, content[:chunk], 0, len(content), transport)
            assert overlap.status_code == 416
            async with httpx.AsyncClient(transport=transport) as bare:
                status = await bare.get(url)
            assert status.json()["NextExpectedRanges"] == [str(chunk)]
            last = await _put(url, content[chunk:], chunk, len(content), transport)
            assert last.status_code == 201, last.text
            assert "/attachments('" in last.headers["location"]

            listed = await client.get(f"/v1.0/users/{alice}/messages/{message_id}/attachments")
            attachment = listed.json()["value"][0]
            assert attachment["name"] == "big.bin"
            value = await client.get(
                f"/v1.0/users/{alice}/messages/{message_id}/attachments/{attachment['id']}/$value"
            )
            assert hashlib.sha256(value.content).digest() == hashlib.sha256(content).digest()
            gone = await _put(url, content[:chunk], 0, len(content), transport)
            assert gone.status_code == 404

    run(scenario())


def test_upload_session_limits_and_expiry(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            app = client.app  # type: ignore[attr-defined]
            transport = httpx.ASGITransport(app=app)
            created = await client.post(
                f"/v1.0/users/{alice}/mailFolders/inbox/messages", json=received_mail()
            )
            small = await client.post(
                f"/v1.0/users/{alice}/messages/{created.json()['id']}"
                "/attachments/createUploadSession",
                json={"AttachmentItem": {"attachmentType": "file", "name": "s", "size": 1000}},
            )
            assert small.status_code == 400
            assert small.json()["error"]["code"] == (
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
            )
            size = 10_000_000
            _, session = await _open_session(client, alice, size)
            too_big = await _put(
                session["uploadUrl"], b"x" * (4 * 1024 * 1024 + 1), 0, size, transport
            )
            assert too_big.status_code == 413
            app.state.attachment_uploads.lifetime_seconds = -1
            first = await _put(session["uploadUrl"], b"x" * 1000, 0, size, transport)
            assert first.status_code == 200
            expired = await _put(session["uploadUrl"], b"x" * 1000, 1000, size, transport)
            assert expired.status_code == 404

    run(scenario())


def test_upload_ranges_count_against_mailbox(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    options = EmulatorOptions(mailbox_requests_per_window=4)
    size = 10_000_000

    async def scenario() -> None:
        async with graph(_writable(tenant), options) as client:
            transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
            _, session = await _open_session(client, alice, size)
            url = session["uploadUrl"]
            first = await _put(url, b"x" * 1000, 0, size, transport)
            second = await _put(url, b"x" * 1000, 1000, size, transport)
            throttled = await _put(url, b"x" * 1000, 2000, size, transport)
            assert (first.status_code, second.status_code) == (200, 200)
            assert throttled.status_code == 429
            assert throttled.json()["error"]["code"] == "ApplicationThrottled"
            assert "retry-after" in throttled.headers

    run(scenario())


def test_upload_volume_is_limited(tenant: Tenant) -> None:
    alice = tenant.user_id(ALICE)
    size = 10_000_000

    async def scenario() -> None:
        async with graph(_writable(tenant)) as client:
            app = client.app  # type: ignore[attr-defined]
            transport = httpx.ASGITransport(app=app)
            _, session = await _open_session(client, alice, size)
            incoming_bytes_of(app).limit_bytes = 6000
            url = session["uploadUrl"]
            first = await _put(url, b"x" * 4000, 0, size, transport)
            over = await _put(url, b"x" * 4000, 4000, size, transport)
            assert first.status_code == 200
            assert over.status_code == 429
            assert over.json()["error"]["message"] == (
                "Application is over its IncomingBytes limit."
            )

    run(scenario())
