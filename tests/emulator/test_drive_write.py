"""Drive writes: small uploads, conflict behaviours, folders, PATCH, DELETE and throttling."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import ALICE, follow_delta, graph, run

WRITE_ROLE = "Files.ReadWrite.All"


@pytest.fixture
def writable(drive_tenant: Tenant) -> Tenant:
    drive_tenant.app.roles.append(WRITE_ROLE)
    return drive_tenant


def drive_url(tenant: Tenant) -> str:
    return f"/v1.0/drives/{tenant.drive_id_for('onedrive', ALICE)}"


def root_id(tenant: Tenant) -> str:
    info = tenant.drive_info(tenant.drive_id_for("onedrive", ALICE))
    assert info is not None
    return info.root_id


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def put_new(
    client: httpx.AsyncClient, tenant: Tenant, parent: str, name: str, data: bytes, **query: str
) -> httpx.Response:
    params = {f"@microsoft.graph.{key}": value for key, value in query.items()}
    return await client.put(
        f"{drive_url(tenant)}/items/{parent}:/{quote(name, safe='')}:/content",
        content=data,
        params=params,
    )


def test_small_upload_creates_file(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            response = await put_new(client, writable, root_id(writable), "new.txt", b"fresh")
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["name"] == "new.txt"
            assert body["size"] == 5
            assert body["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"fresh")
            assert body["parentReference"]["id"] == root_id(writable)
            drive = writable.drive_id_for("onedrive", ALICE)
            assert writable.file_content(drive, body["id"]) == b"fresh"

    run(scenario())


def test_small_upload_replaces_by_default(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            first = (await put_new(client, writable, root_id(writable), "notes.txt", b"v2")).json()
            second = await put_new(client, writable, root_id(writable), "notes.txt", b"v3")
            assert second.status_code == 200
            body = second.json()
            assert body["id"] == first["id"]
            assert body["cTag"] != first["cTag"]
            assert body["eTag"] != first["eTag"]
            versions = await client.get(f"{drive_url(writable)}/items/{body['id']}/versions")
            assert [v["id"] for v in versions.json()["value"]] == ["3.0", "2.0", "1.0"]

    run(scenario())


def test_small_upload_conflict_fail_and_rename(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            root = root_id(writable)
            failed = await put_new(
                client, writable, root, "notes.txt", b"x", conflictBehavior="fail"
            )
            assert failed.status_code == 409
            assert error_code(failed) == "nameAlreadyExists"
            renamed = await put_new(
                client, writable, root, "NOTES.txt", b"x", conflictBehavior="rename"
            )
            assert renamed.status_code == 201
            assert renamed.json()["name"] == "NOTES 1.txt"
            again = await put_new(
                client, writable, root, "notes.txt", b"y", conflictBehavior="rename"
            )
            assert again.json()["name"] == "notes 2.txt"
            bad = await put_new(client, writable, root, "a.txt", b"x", conflictBehavior="merge")
            assert bad.status_code == 400

    run(scenario())


def test_small_upload_limit_and_names(writable: Tenant) -> None:
    options = EmulatorOptions(drive_simple_upload_max_bytes=1024)

    async def scenario() -> None:
        async with graph(writable, options) as client:
            root = root_id(writable)
            too_big = await put_new(client, writable, root, "big.bin", b"x" * 1025)
            assert too_big.status_code == 413
            fits = await put_new(client, writable, root, "ok.bin", b"x" * 1024)
            assert fits.status_code == 201
            for name in ("a:b.txt", "what?.txt", "~$lock.docx", "CON", "x|y"):
                response = await put_new(client, writable, root, name, b"x")
                assert response.status_code == 400, name
                assert error_code(response) == "invalidRequest"

    run(scenario())


def test_writes_need_write_role(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            response = await put_new(client, drive_tenant, root_id(drive_tenant), "n.txt", b"x")
            assert response.status_code == 403
            assert error_code(response) == "accessDenied"

    run(scenario())


def test_replace_content_by_id_resets_modified(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            created = await client.post(
                f"{drive_url(writable)}/items/{root_id(writable)}/children",
                json={"name": "Dated", "folder": {}},
            )
            folder = created.json()["id"]
            old = await client.put(
                f"{drive_url(writable)}/items/{folder}:/old.txt:/content", content=b"one"
            )
            item = old.json()["id"]
            dated = await client.patch(
                f"{drive_url(writable)}/items/{item}",
                json={
                    "fileSystemInfo": {
                        "createdDateTime": "2001-05-01T10:00:00Z",
                        "lastModifiedDateTime": "2001-06-01T10:00:00Z",
                    }
                },
            )
            assert dated.json()["fileSystemInfo"] == {
                "createdDateTime": "2001-05-01T10:00:00Z",
                "lastModifiedDateTime": "2001-06-01T10:00:00Z",
            }
            replaced = await client.put(
                f"{drive_url(writable)}/items/{item}/content", content=b"two"
            )
            assert replaced.status_code == 200
            body = replaced.json()
            assert body["fileSystemInfo"]["createdDateTime"] == "2001-05-01T10:00:00Z"
            assert body["fileSystemInfo"]["lastModifiedDateTime"] > "2020"
            assert body["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"two")

    run(scenario())


def test_folder_post_idempotent_fail_rename(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            url = f"{drive_url(writable)}/items/{root_id(writable)}/children"
            first = await client.post(url, json={"name": "Restored", "folder": {}})
            assert first.status_code == 201
            again = await client.post(url, json={"name": "restored", "folder": {}})
            assert again.status_code == 200
            assert again.json()["id"] == first.json()["id"]
            body: dict[str, Any] = {
                "name": "Restored",
                "folder": {},
                "@microsoft.graph.conflictBehavior": "fail",
            }
            failed = await client.post(url, json=body)
            assert failed.status_code == 409
            assert error_code(failed) == "nameAlreadyExists"
            body["@microsoft.graph.conflictBehavior"] = "rename"
            renamed = await client.post(url, json=body)
            assert renamed.status_code == 201
            assert renamed.json()["name"] == "Restored 1"
            over_file = await client.post(url, json={"name": "notes.txt", "folder": {}})
            assert over_file.status_code == 409
            root_children = await client.post(
                f"{drive_url(writable)}/root/children", json={"name": "Top", "folder": {}}
            )
            assert root_children.status_code == 201
            bad = await client.post(url, json={"name": "a*b", "folder": {}})
            assert bad.status_code == 400

    run(scenario())


def test_patch_rename_and_delete(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            root = root_id(writable)
            made = (await put_new(client, writable, root, "draft.txt", b"d")).json()
            clash = await client.patch(
                f"{drive_url(writable)}/items/{made['id']}", json={"name": "notes.txt"}
            )
            assert clash.status_code == 409
            renamed = await client.patch(
                f"{drive_url(writable)}/items/{made['id']}", json={"name": "final.txt"}
            )
            assert renamed.status_code == 200
            assert renamed.json()["name"] == "final.txt"
            gone = await client.delete(f"{drive_url(writable)}/items/{made['id']}")
            assert gone.status_code == 204
            missing = await client.delete(f"{drive_url(writable)}/items/{made['id']}")
            assert missing.status_code == 404
            assert error_code(missing) == "itemNotFound"

    run(scenario())


def test_writes_appear_in_drive_delta(writable: Tenant) -> None:
    async def scenario() -> None:
        async with graph(writable) as client:
            _, delta_link = await follow_delta(client, f"{drive_url(writable)}/root/delta")
            made = (await put_new(client, writable, root_id(writable), "seen.txt", b"s")).json()
            pages, delta_link = await follow_delta(client, delta_link)
            changed = {item["id"]: item for page in pages for item in page}
            assert made["id"] in changed
            await client.put(f"{drive_url(writable)}/items/{made['id']}/content", content=b"t")
            pages, _ = await follow_delta(client, delta_link)
            changed = {item["id"]: item for page in pages for item in page}
            assert changed[made["id"]]["file"]["hashes"]["quickXorHash"] == quickxor_b64(b"t")

    run(scenario())


def test_writes_charged_as_sharepoint_units(writable: Tenant) -> None:
    # Writes cost 2 RU each, so a 5 RU budget allows two writes and throttles the third.
    options = EmulatorOptions(sharepoint_ru_per_minute=5)

    async def scenario() -> None:
        async with graph(writable, options) as client:
            root = root_id(writable)
            statuses = [
                (await put_new(client, writable, root, f"f{n}.txt", b"x")).status_code
                for n in range(3)
            ]
            assert statuses == [201, 201, 429]
            throttled = await put_new(client, writable, root, "late.txt", b"x")
            assert throttled.headers["Retry-After"].isdigit()
            assert json.loads(throttled.text)["error"]["code"] == "activityLimitReached"

    run(scenario())


def test_names_that_look_like_odata_keys(writable: Tenant) -> None:
    # Graph's key syntax is users('id'); a file name may contain the same pattern.
    async def scenario() -> None:
        async with graph(writable) as client:
            name = "Budget('draft') v2.xlsx"
            response = await put_new(client, writable, root_id(writable), name, b"b")
            assert response.status_code == 201, response.text
            assert response.json()["name"] == name

    run(scenario())
