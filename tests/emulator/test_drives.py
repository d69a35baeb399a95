"""Drives, items, children and drive delta against OneDrive for Business shapes."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from m365lake.emulator import Tenant
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import ALICE, BOB, NOBOX, drive_seed, follow_delta, graph, run

ITEM_ID = re.compile(r"^01[A-Z2-7]{32}$")
ETAG = re.compile(r'^"\{[0-9A-F-]{36}\},\d+"$')
CTAG = re.compile(r'^"c:\{[0-9A-F-]{36}\},\d+"$')


def _alice_drive(tenant: Tenant) -> str:
    return tenant.drive_id_for("onedrive", ALICE)


async def _all_delta(client: Any, url: str) -> tuple[list[dict[str, Any]], str]:
    pages, delta_link = await follow_delta(client, url)
    return [item for page in pages for item in page], delta_link


def test_model_drive_per_mailbox_user(drive_tenant: Tenant) -> None:
    assert drive_tenant.drive_id_for("onedrive", ALICE).startswith("b!")
    assert drive_tenant.drive_id_for("onedrive", BOB) != _alice_drive(drive_tenant)
    with pytest.raises(KeyError):
        drive_tenant.drive_id_for("onedrive", NOBOX)
    legal = drive_tenant.drive_id_for("site", "legal", "Contracts")
    assert legal != drive_tenant.drive_id_for("site", "legal", "Documents")


def test_model_live_files_and_mutations(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    live = drive_tenant.live_files(drive)
    paths = {path: (content, digest) for path, content, digest in live.values()}
    assert paths[("notes.txt",)] == (b"hello world", "aCgDG9jwBhDc4Q1yawMZAAAAAAA=")
    assert set(paths) == {("notes.txt",), ("Projects", "plan.csv"), ("Projects", "Deep", "x.bin")}

    new_id = drive_tenant.add_file("onedrive", ALICE, "Documents", ("New", "a.txt"), b"abc")
    assert ITEM_ID.match(new_id)
    drive_tenant.update_file_content(new_id, b"abcd")
    assert drive_tenant.live_files(drive)[new_id][1:] == (b"abcd", quickxor_b64(b"abcd"))
    drive_tenant.rename_item(new_id, "b.txt")
    projects = drive_tenant.add_folder_item("onedrive", ALICE, "Documents", ("Projects",))
    drive_tenant.move_item(new_id, projects)
    assert drive_tenant.live_files(drive)[new_id][0] == ("Projects", "b.txt")
    drive_tenant.delete_item(projects)
    assert set(drive_tenant.live_files(drive)) == {
        i for i, v in live.items() if v[0] == ("notes.txt",)
    }
    with pytest.raises(ValueError):
        drive_tenant.add_file("onedrive", ALICE, "Documents", ("NOTES.TXT",), b"x")


def test_user_drive_and_drives(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            alice = drive_tenant.user_id(ALICE)
            drive = (await client.get(f"/v1.0/users/{alice}/drive")).json()
            assert drive["id"] == _alice_drive(drive_tenant)
            assert drive["driveType"] == "business"
            assert drive["owner"]["user"]["id"] == alice
            assert drive["quota"]["used"] == 11 + 10 + 10240
            assert drive["quota"]["fileCount"] == 3
            listed = (await client.get(f"/v1.0/users/{ALICE}/drives")).json()
            assert [d["id"] for d in listed["value"]] == [drive["id"]]
            by_id = (await client.get(f"/v1.0/drives/{drive['id']}")).json()
            assert by_id["id"] == drive["id"]
            nobox = await client.get(f"/v1.0/users/{NOBOX}/drive")
            assert nobox.status_code == 404
            unknown = await client.get("/v1.0/drives/b!nothing")
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "itemNotFound"

    run(scenario())


def test_drive_routes_need_files_role(drive_tenant: Tenant) -> None:
    drive_tenant.app.roles = ["User.Read.All", "Mail.Read"]

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            response = await client.get(f"/v1.0/drives/{_alice_drive(drive_tenant)}/root")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "accessDenied"

    run(scenario())


def test_item_shapes(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            root = (await client.get(f"/v1.0/drives/{drive}/root")).json()
            assert root["root"] == {}
            assert root["name"] == "root"
            assert "cTag" not in root
            assert root["parentReference"] == {"driveType": "business", "driveId": drive}
            children = (await client.get(f"/v1.0/drives/{drive}/root/children")).json()["value"]
            names = [c["name"] for c in children]
            assert names == ["notes.txt", "Projects"]
            notes, projects = children
            assert ITEM_ID.match(notes["id"])
            assert ETAG.match(notes["eTag"])
            assert CTAG.match(notes["cTag"])
            assert notes["file"] == {
                "mimeType": "text/plain",
                "hashes": {"quickXorHash": "aCgDG9jwBhDc4Q1yawMZAAAAAAA="},
            }
            assert notes["size"] == 11
            assert notes["parentReference"]["id"] == root["id"]
            assert notes["parentReference"]["path"] == f"/drives/{drive}/root:"
            assert notes["createdBy"]["user"]["id"] == drive_tenant.user_id(ALICE)
            assert notes["@microsoft.graph.downloadUrl"].startswith("https://graph.test/_download/")
            assert projects["folder"] == {"childCount": 2}
            assert "cTag" not in projects
            assert "file" not in projects
            deep = (
                await client.get(f"/v1.0/drives/{drive}/items/{projects['id']}/children")
            ).json()["value"]
            deep_folder = next(c for c in deep if c["name"] == "Deep")
            assert deep_folder["parentReference"]["path"] == f"/drives/{drive}/root:/Projects"
            selected = await client.get(
                f"/v1.0/drives/{drive}/items/{notes['id']}", params={"$select": "id,name,size"}
            )
            assert set(selected.json()) - {"@odata.context"} == {
                "@microsoft.graph.downloadUrl",
                "id",
                "name",
                "size",
            }
            missing = await client.get(
                f"/v1.0/drives/{drive}/items/01AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            )
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "itemNotFound"

    run(scenario())


def test_children_paging(drive_tenant: Tenant) -> None:
    for index in range(7):
        drive_tenant.add_file("onedrive", ALICE, "Documents", ("Many", f"f{index}.txt"), b"x")

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            folder = drive_tenant.add_folder_item("onedrive", ALICE, "Documents", ("Many",))
            url = f"/v1.0/drives/{drive}/items/{folder}/children?$top=3"
            names: list[str] = []
            pages = 0
            while url:
                body = (await client.get(url)).json()
                names += [item["name"] for item in body["value"]]
                url = body.get("@odata.nextLink")
                pages += 1
            assert pages == 3
            assert names == [f"f{index}.txt" for index in range(7)]

    run(scenario())


def test_site_default_drive_and_user_prefix_items(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            site = drive_tenant.resolve_site("legal")
            assert site is not None
            drive = (await client.get(f"/v1.0/sites/{site.id}/drive")).json()
            assert drive["driveType"] == "documentLibrary"
            assert drive["name"] == "Documents"
            assert drive["id"] == drive_tenant.drive_id_for("site", "legal", "Documents")
            root = (await client.get(f"/v1.0/sites/{site.id}/drive/root/children")).json()
            assert [c["name"] for c in root["value"]] == ["Policies"]
            assert root["value"][0]["parentReference"]["siteId"] == site.id
            via_user = await client.get(f"/v1.0/users/{ALICE}/drive/root/children")
            assert [c["name"] for c in via_user.json()["value"]] == ["notes.txt", "Projects"]

    run(scenario())


def test_delta_initial_round_paged(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            first = (await client.get(f"/v1.0/drives/{drive}/root/delta?$top=2")).json()
            assert len(first["value"]) == 2
            assert "@odata.deltaLink" not in first
            assert "token" in parse_qs(urlsplit(first["@odata.nextLink"]).query)
            items, delta_link = await _all_delta(client, first["@odata.nextLink"])
            items = first["value"] + items
            assert "token" in parse_qs(urlsplit(delta_link).query)
            by_name = {item["name"]: item for item in items}
            assert set(by_name) == {"root", "notes.txt", "Projects", "plan.csv", "Deep", "x.bin"}
            assert len(items) == 6
            for item in items:
                assert "path" not in item["parentReference"]
                assert "cTag" not in item
                assert "deleted" not in item
            assert by_name["x.bin"]["file"]["hashes"]["quickXorHash"] == quickxor_b64(
                bytes(range(256)) * 40
            )

    run(scenario())


def test_delta_changes_and_tombstones(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    ids = {path: item for item, (path, _, _) in drive_tenant.live_files(drive).items()}

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = f"/v1.0/users/{ALICE}/drive/root/delta"
            initial, delta_link = await _all_delta(client, url)
            assert delta_link.startswith(f"https://graph.test{url}?token=")
            folders = {i["name"]: i["id"] for i in initial if "folder" in i}

            _, delta_link = await _all_delta(client, delta_link)
            quiet, delta_link = await _all_delta(client, delta_link)
            assert quiet == []

            drive_tenant.update_file_content(ids[("Projects", "Deep", "x.bin")], b"changed")
            new_id = drive_tenant.add_file("onedrive", ALICE, "Documents", ("new.txt",), b"n")
            drive_tenant.delete_item(folders["Projects"])
            changes, delta_link = await _all_delta(client, delta_link)
            latest = {item["id"]: item for item in changes}
            assert latest[new_id]["name"] == "new.txt"
            assert "root" in latest[folders["root"]]
            for deleted_id in (
                folders["Projects"],
                folders["Deep"],
                ids[("Projects", "plan.csv")],
                ids[("Projects", "Deep", "x.bin")],
            ):
                assert latest[deleted_id]["deleted"] == {"state": "deleted"}
                assert "name" not in latest[deleted_id]
                assert "cTag" not in latest[deleted_id]
            assert ids[("notes.txt",)] not in latest

            created_and_deleted = drive_tenant.add_file(
                "onedrive", ALICE, "Documents", ("tmp.txt",), b"t"
            )
            drive_tenant.delete_item(created_and_deleted)
            changes, _ = await _all_delta(client, delta_link)
            assert created_and_deleted not in {item["id"] for item in changes}

    run(scenario())


def test_delta_lists_ancestors_of_changed_item(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    ids = {path: item for item, (path, _, _) in drive_tenant.live_files(drive).items()}

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            _, delta_link = await _all_delta(client, f"/v1.0/drives/{drive}/root/delta")
            drive_tenant.rename_item(ids[("Projects", "Deep", "x.bin")], "y #%&.bin")
            changes, _ = await _all_delta(client, delta_link)
            names = sorted(item["name"] for item in changes)
            assert names == ["Deep", "Projects", "root", "y #%&.bin"]

    run(scenario())


def test_delta_move_reports_new_parent(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    ids = {path: item for item, (path, _, _) in drive_tenant.live_files(drive).items()}

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            _, delta_link = await _all_delta(client, f"/v1.0/drives/{drive}/root/delta")
            deep = drive_tenant.add_folder_item(
                "onedrive", ALICE, "Documents", ("Projects", "Deep")
            )
            drive_tenant.move_item(ids[("notes.txt",)], deep)
            changes, _ = await _all_delta(client, delta_link)
            moved = next(item for item in changes if item["id"] == ids[("notes.txt",)])
            assert moved["parentReference"]["id"] == deep

    run(scenario())


def test_delta_token_latest(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = f"/v1.0/sites/{drive_tenant.resolve_site('legal').id}/drive/root/delta"  # type: ignore[union-attr]
            body = (await client.get(url, params={"token": "latest"})).json()
            assert body["value"] == []
            delta_link = body["@odata.deltaLink"]
            quiet, delta_link = await _all_delta(client, delta_link)
            assert quiet == []
            new_id = drive_tenant.add_file("site", "legal", "Documents", ("fresh.txt",), b"f")
            changes, _ = await _all_delta(client, delta_link)
            assert new_id in {item["id"] for item in changes}
            assert {item["name"] for item in changes} == {"fresh.txt", "root"}

    run(scenario())


def test_delta_timestamp_token(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            url = f"/v1.0/drives/{drive}/root/delta"
            everything, _ = await _all_delta(client, url + "?token=2000-01-01T00%3A00%3A00Z")
            assert len(everything) == 6

    run(scenario())


def test_delta_changes_during_round_go_to_next_round(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            first = (await client.get(f"/v1.0/drives/{drive}/root/delta?$top=2")).json()
            late = drive_tenant.add_file("onedrive", ALICE, "Documents", ("late.txt",), b"l")
            rest, delta_link = await _all_delta(client, first["@odata.nextLink"])
            assert late not in {item["id"] for item in first["value"] + rest}
            changes, _ = await _all_delta(client, delta_link)
            assert late in {item["id"] for item in changes}

    run(scenario())


def test_delta_expired_token_gives_410(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            url = f"/v1.0/drives/{drive}/root/delta"
            _, delta_link = await _all_delta(client, url + "?$top=3")
            drive_tenant.expire_drive_delta(drive)
            expired = await client.get(delta_link)
            assert expired.status_code == 410
            assert expired.json()["error"]["code"] == "resyncChangesApplyDifferences"
            location = expired.headers["Location"]
            assert location == f"https://graph.test{url}"
            items, _ = await _all_delta(client, location)
            assert len(items) == 6

            drive_tenant.expire_drive_delta(drive, code="resyncChangesUploadDifferences")
            stale = await client.get(location)
            assert stale.status_code == 200
            _, link = await _all_delta(client, location)
            drive_tenant.expire_drive_delta(drive, code="resyncChangesUploadDifferences")
            second = await client.get(link)
            assert second.json()["error"]["code"] == "resyncChangesUploadDifferences"

    run(scenario())


def test_drive_seed_is_deterministic() -> None:
    first = Tenant.from_seed(drive_seed())
    second = Tenant.from_seed(drive_seed())
    drive = first.drive_id_for("site", "legal", "Contracts")
    assert drive == second.drive_id_for("site", "legal", "Contracts")
    assert list(first.live_files(drive)) == list(second.live_files(drive))


def test_delta_initial_round_lists_parents_first(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            items, _ = await _all_delta(client, f"/v1.0/drives/{drive}/root/delta?$top=1")
            seen: set[str] = set()
            for item in items:
                parent = item["parentReference"].get("id")
                assert parent is None or parent in seen, item["name"]
                seen.add(item["id"])
            assert "root" in items[0]

    run(scenario())


def test_delta_deletes_children_before_folder(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            initial, delta_link = await _all_delta(client, f"/v1.0/drives/{drive}/root/delta")
            projects = next(i["id"] for i in initial if i["name"] == "Projects")
            drive_tenant.delete_item(projects)
            changes, _ = await _all_delta(client, delta_link)
            deleted = [item["id"] for item in changes if "deleted" in item]
            assert deleted[-1] == projects
            assert len(deleted) == 4

    run(scenario())


def test_delta_repeats_on_demand(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    ids = {path: item for item, (path, _, _) in drive_tenant.live_files(drive).items()}

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            _, delta_link = await _all_delta(client, f"/v1.0/drives/{drive}/root/delta")
            drive_tenant.set_drive_delta_repeats(True)
            drive_tenant.update_file_content(ids[("notes.txt",)], b"selected")
            drive_tenant.update_file_content(ids[("notes.txt",)], b"two")
            changes, _ = await _all_delta(client, delta_link)
            notes = [item for item in changes if item["id"] == ids[("notes.txt",)]]
            assert len(notes) == 2
            assert notes[-1]["size"] == 3

    run(scenario())


def test_delta_select_and_top_bounds(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            url = f"/v1.0/drives/{drive}/root/delta?$select=id,name,file&$top=2"
            items, _ = await _all_delta(client, url)
            assert len(items) == 6
            for item in items:
                assert set(item) - {"@microsoft.graph.downloadUrl"} <= {"id", "name", "file"}
            bad_top = await client.get(f"/v1.0/drives/{drive}/root/delta?$top=1000")
            assert bad_top.status_code == 400
            bad_select = await client.get(f"/v1.0/drives/{drive}/root/delta?$select=nope")
            assert bad_select.status_code == 400

    run(scenario())


def test_delta_stale_next_link_gives_410(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = _alice_drive(drive_tenant)
            first = (await client.get(f"/v1.0/drives/{drive}/root/delta?$top=2")).json()
            drive_tenant.expire_drive_delta(drive)
            stale = await client.get(first["@odata.nextLink"])
            assert stale.status_code == 410
            assert stale.headers["Location"].endswith(f"/v1.0/drives/{drive}/root/delta")

    run(scenario())


def test_delta_token_of_other_drive_rejected(drive_tenant: Tenant) -> None:
    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            alice = _alice_drive(drive_tenant)
            bob = drive_tenant.drive_id_for("onedrive", BOB)
            _, delta_link = await _all_delta(client, f"/v1.0/drives/{alice}/root/delta")
            token = parse_qs(urlsplit(delta_link).query)["token"][0]
            other = await client.get(f"/v1.0/drives/{bob}/root/delta", params={"token": token})
            assert other.status_code == 400

    run(scenario())


def test_shared_facet_in_items_and_delta(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    ids = {path: item for item, (path, _, _) in drive_tenant.live_files(drive).items()}
    notes = ids[("notes.txt",)]

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = f"/v1.0/drives/{drive}/root/delta"
            initial, delta_link = await _all_delta(client, url)
            assert all("shared" not in item for item in initial)
            before = (await client.get(f"/v1.0/drives/{drive}/items/{notes}")).json()

            drive_tenant.share_item(notes, "anonymous", by=BOB)
            changes, _ = await _all_delta(client, delta_link)
            after = (await client.get(f"/v1.0/drives/{drive}/items/{notes}")).json()

            latest = {item["id"]: item for item in changes}
            shared = latest[notes]["shared"]
            assert shared["scope"] == "anonymous"
            assert shared["sharedBy"]["user"]["id"] == drive_tenant.user_id(BOB)
            assert shared["owner"]["user"]["id"] == drive_tenant.user_id(ALICE)
            assert shared["sharedDateTime"].endswith("Z")
            assert after["shared"] == shared
            assert after["eTag"] != before["eTag"]
            assert after["cTag"] == before["cTag"]

    run(scenario())


def test_share_item_rejects_unknown_scope(drive_tenant: Tenant) -> None:
    notes = next(iter(drive_tenant.live_files(_alice_drive(drive_tenant))))

    with pytest.raises(ValueError, match="sharing scope"):
        drive_tenant.share_item(notes, "everyone")


def test_quota_file_count_follows_changes(drive_tenant: Tenant) -> None:
    drive = _alice_drive(drive_tenant)
    files = drive_tenant.live_files(drive)

    drive_tenant.add_file("onedrive", ALICE, "Documents", ("Projects", "new.txt"), b"n")
    drive_tenant.add_package("onedrive", ALICE, "Documents", ("Notebook",))
    drive_tenant.add_folder_item("onedrive", ALICE, "Documents", ("Empty",))
    drive_tenant.delete_item(next(iter(files)))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            body = (await client.get(f"/v1.0/drives/{drive}")).json()
            assert body["quota"]["fileCount"] == len(files)

    run(scenario())
