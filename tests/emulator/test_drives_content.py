"""File content: /content redirects, download URLs, Range, expiry, faults, packages, versions."""

from __future__ import annotations

import time

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, Tenant
from m365lake.emulator.downloads import BrokenDownload
from m365lake.emulator.seed import SeedUser
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import ALICE, CORPUS_FILES, EDGE_NAMES, graph, run

BINARY = bytes(range(256)) * 40


def _file_id(tenant: Tenant, path: tuple[str, ...]) -> str:
    drive = tenant.drive_id_for("onedrive", ALICE)
    return next(i for i, (p, _, _) in tenant.live_files(drive).items() if p == path)


def _content_url(tenant: Tenant, item_id: str) -> str:
    return f"/v1.0/drives/{tenant.drive_id_for('onedrive', ALICE)}/items/{item_id}/content"


def test_content_redirects_to_preauthenticated_url(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("Projects", "Deep", "x.bin"))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            response = await client.get(_content_url(drive_tenant, item))
            assert response.status_code == 302
            location = response.headers["Location"]
            assert location.startswith("https://graph.test/_download/")
            anonymous = await client.get(location, headers={"Authorization": ""})
            assert anonymous.status_code == 200
            assert anonymous.content == BINARY
            assert anonymous.headers["Content-Length"] == str(len(BINARY))
            assert anonymous.headers["Accept-Ranges"] == "bytes"

    run(scenario())


def test_download_range_requests(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("Projects", "Deep", "x.bin"))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            part = await client.get(url, headers={"Range": "bytes=100-1123"})
            assert part.status_code == 206
            assert part.headers["Content-Range"] == f"bytes 100-1123/{len(BINARY)}"
            assert part.content == BINARY[100:1124]
            tail = await client.get(url, headers={"Range": "bytes=10000-"})
            assert tail.content == BINARY[10000:]
            suffix = await client.get(url, headers={"Range": "bytes=-16"})
            assert suffix.content == BINARY[-16:]
            beyond = await client.get(url, headers={"Range": f"bytes={len(BINARY)}-"})
            assert beyond.status_code == 416
            assert beyond.headers["Content-Range"] == f"bytes */{len(BINARY)}"

    run(scenario())


def test_download_url_from_item_json(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = drive_tenant.drive_id_for("onedrive", ALICE)
            body = (await client.get(f"/v1.0/drives/{drive}/items/{item}")).json()
            download = await client.get(
                body["@microsoft.graph.downloadUrl"], headers={"Authorization": ""}
            )
            assert download.content == b"hello world"
            assert quickxor_b64(download.content) == body["file"]["hashes"]["quickXorHash"]

    run(scenario())


def test_download_url_expires(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))

    async def scenario() -> None:
        options = EmulatorOptions(download_url_lifetime_seconds=0.2)
        async with graph(drive_tenant, options) as client:
            url = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            assert (await client.get(url)).status_code == 200
            time.sleep(0.3)
            expired = await client.get(url)
            assert expired.status_code == 401
            assert expired.json()["error"]["code"] == "unauthenticated"
            forged = await client.get(url[:-4] + "0000")
            assert forged.status_code == 401

    run(scenario())


def test_download_serves_version_of_url(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            drive_tenant.update_file_content(item, b"second version")
            assert (await client.get(url)).content == b"hello world"
            fresh = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            assert (await client.get(fresh)).content == b"second version"
            drive_tenant.delete_item(item)
            assert (await client.get(fresh)).status_code == 404

    run(scenario())


def test_content_if_none_match(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = drive_tenant.drive_id_for("onedrive", ALICE)
            body = (await client.get(f"/v1.0/drives/{drive}/items/{item}")).json()
            for tag in (body["eTag"], body["cTag"]):
                cached = await client.get(
                    _content_url(drive_tenant, item), headers={"If-None-Match": tag}
                )
                assert cached.status_code == 304
            other = await client.get(
                _content_url(drive_tenant, item), headers={"If-None-Match": '"other"'}
            )
            assert other.status_code == 302

    run(scenario())


def test_broken_download_in_process(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("Projects", "Deep", "x.bin"))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            client.app.state.downloads.inject_broken_download(item, 1000)  # type: ignore[attr-defined]
            with pytest.raises(BrokenDownload):
                await client.get(url)
            again = await client.get(url)
            assert again.content == BINARY

    run(scenario())


def test_malware_file_is_blocked(drive_tenant: Tenant) -> None:
    item = drive_tenant.add_file(
        "onedrive", ALICE, "Documents", ("evil.exe",), b"MZ..", malware="Trojan:Win32/Fake"
    )

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = drive_tenant.drive_id_for("onedrive", ALICE)
            body = (await client.get(f"/v1.0/drives/{drive}/items/{item}")).json()
            assert body["malware"] == {"description": "Trojan:Win32/Fake"}
            assert "@microsoft.graph.downloadUrl" not in body
            blocked = await client.get(_content_url(drive_tenant, item))
            assert blocked.status_code == 403
            assert blocked.json()["error"]["code"] == "malwareDetected"

    run(scenario())


def test_onenote_package_has_no_content(drive_tenant: Tenant) -> None:
    item = drive_tenant.add_package("onedrive", ALICE, "Documents", ("Notebooks", "Team Notes"))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = drive_tenant.drive_id_for("onedrive", ALICE)
            body = (await client.get(f"/v1.0/drives/{drive}/items/{item}")).json()
            assert body["package"] == {"type": "oneNote"}
            assert "file" not in body
            assert "folder" not in body
            assert "@microsoft.graph.downloadUrl" not in body
            content = await client.get(_content_url(drive_tenant, item))
            assert content.status_code == 404
            assert item not in drive_tenant.live_files(drive)

    run(scenario())


def test_versions_newest_first(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))
    drive_tenant.update_file_content(item, b"v2")
    drive_tenant.update_file_content(item, b"version three")

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            drive = drive_tenant.drive_id_for("onedrive", ALICE)
            base = f"/v1.0/drives/{drive}/items/{item}/versions"
            versions = (await client.get(base)).json()["value"]
            assert [v["id"] for v in versions] == ["3.0", "2.0", "1.0"]
            assert [v["size"] for v in versions] == [13, 2, 11]
            old = await client.get(f"{base}/1.0/content")
            assert old.status_code == 302
            assert (await client.get(old.headers["Location"])).content == b"hello world"
            missing = await client.get(f"{base}/9.0/content")
            assert missing.status_code == 404

    run(scenario())


@pytest.mark.skipif(not EDGE_NAMES.is_dir(), reason="the shared corpus is not available")
def test_edge_names_round_trip() -> None:
    tenant = Tenant()
    tenant.add_user(SeedUser(ALICE, "Alice Adams", mail=ALICE))
    expected: dict[str, bytes] = {}
    rejected: list[str] = []
    for path in sorted(EDGE_NAMES.iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            tenant.add_file(
                "onedrive", ALICE, "Documents", ("edge", "lead. dots..", path.name), data
            )
        except ValueError:
            rejected.append(path.name)
            continue
        expected[path.name] = data
    nested = ("..dots..", "trailing.", "quote's & 100% #1.txt")
    tenant.add_file("onedrive", ALICE, "Documents", ("edge", "lead. dots..", *nested), b"nested")
    assert len(expected) >= 8
    assert sorted(rejected) == ['what? a*b: "x" <y> |z|.txt', "~$budget.xlsx"]

    async def scenario() -> None:
        async with graph(tenant) as client:
            drive = tenant.drive_id_for("onedrive", ALICE)
            folder = tenant.add_folder_item(
                "onedrive", ALICE, "Documents", ("edge", "lead. dots..")
            )
            url: str | None = f"/v1.0/drives/{drive}/items/{folder}/children"
            seen: dict[str, bytes] = {}
            while url:
                body = (await client.get(url)).json()
                for child in body["value"]:
                    path = child["parentReference"]["path"]
                    assert path.endswith("/root:/edge/lead.%20dots..")
                    if "file" not in child:
                        continue
                    download = await client.get(child["@microsoft.graph.downloadUrl"])
                    seen[child["name"]] = download.content
                    assert child["file"]["hashes"]["quickXorHash"] == quickxor_b64(download.content)
                url = body.get("@odata.nextLink")
            assert seen == expected

    run(scenario())


def test_invalid_names_rejected() -> None:
    tenant = Tenant()
    tenant.add_user(SeedUser(ALICE, "Alice Adams", mail=ALICE))
    for name in ("a:b.txt", "CON", "~$x.docx", "x_vti_y", "desktop.ini", "tab\there"):
        with pytest.raises(ValueError):
            tenant.add_file("onedrive", ALICE, "Documents", (name,), b"x")
    item = tenant.add_file("onedrive", ALICE, "Documents", ("ok.txt",), b"x")
    with pytest.raises(ValueError):
        tenant.rename_item(item, "no|pipe.txt")


@pytest.mark.skipif(not CORPUS_FILES.is_dir(), reason="the shared corpus is not available")
def test_real_documents_byte_exact() -> None:
    tenant = Tenant()
    tenant.add_user(SeedUser(ALICE, "Alice Adams", mail=ALICE))
    sources = sorted(p for p in (CORPUS_FILES / "apache-poi").rglob("*") if p.is_file())[:15]
    ids = {
        tenant.add_file("onedrive", ALICE, "Documents", ("poi", p.name), p.read_bytes()): p
        for p in sources
    }

    async def scenario() -> None:
        async with graph(tenant) as client:
            drive = tenant.drive_id_for("onedrive", ALICE)
            for item, path in ids.items():
                redirect = await client.get(f"/v1.0/drives/{drive}/items/{item}/content")
                download = await client.get(redirect.headers["Location"])
                assert download.content == path.read_bytes(), path.name

    if sources:
        run(scenario())


def test_download_needs_no_graph_token(drive_tenant: Tenant) -> None:
    item = _file_id(drive_tenant, ("notes.txt",))

    async def scenario() -> None:
        async with graph(drive_tenant) as client:
            url = (await client.get(_content_url(drive_tenant, item))).headers["Location"]
            transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
            async with httpx.AsyncClient(transport=transport) as anonymous:
                response = await anonymous.get(url)
                assert response.content == b"hello world"

    run(scenario())
