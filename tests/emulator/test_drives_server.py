"""Drive downloads over real HTTPS on loopback: redirects, Range resume after a cut-off."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import ALICE, GRAPH_SCOPE

BINARY = bytes(range(256)) * 40


@pytest.fixture
def client(drive_tenant: Tenant, tmp_path: Path) -> Iterator[tuple[EmulatorServer, httpx.Client]]:
    options = EmulatorOptions(download_url_lifetime_seconds=60)
    with EmulatorServer(drive_tenant, tmp_path / "state", options) as server:
        verify = ssl.create_default_context(cafile=str(server.ca_bundle))
        with httpx.Client(verify=verify, timeout=10) as http:
            token = http.post(
                f"{server.authority_host}/{drive_tenant.tenant_id}/oauth2/v2.0/token",
                data={
                    "client_id": server.client_id,
                    "client_secret": server.client_secret,
                    "grant_type": "client_credentials",
                    "scope": GRAPH_SCOPE,
                },
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            yield server, http


def _binary_item(tenant: Tenant) -> tuple[str, str]:
    drive = tenant.drive_id_for("onedrive", ALICE)
    item = next(i for i, (path, _, _) in tenant.live_files(drive).items() if path[-1] == "x.bin")
    return drive, item


def test_download_over_https(
    drive_tenant: Tenant, client: tuple[EmulatorServer, httpx.Client]
) -> None:
    server, http = client
    drive, item = _binary_item(drive_tenant)
    redirect = http.get(f"{server.graph_url}/drives/{drive}/items/{item}/content")
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith(f"{server.authority_host}/_download/")
    download = http.get(location, headers={"Authorization": ""})
    assert download.content == BINARY
    meta = http.get(f"{server.graph_url}/drives/{drive}/items/{item}").json()
    assert meta["file"]["hashes"]["quickXorHash"] == quickxor_b64(download.content)


def test_cut_off_download_resumes_with_range(
    drive_tenant: Tenant, client: tuple[EmulatorServer, httpx.Client]
) -> None:
    server, http = client
    drive, item = _binary_item(drive_tenant)
    meta = http.get(f"{server.graph_url}/drives/{drive}/items/{item}").json()
    url = meta["@microsoft.graph.downloadUrl"]
    server.inject_broken_download(item, after_bytes=3000)

    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), http.stream("GET", url) as response:
        assert response.headers["Content-Length"] == str(len(BINARY))
        for chunk in response.iter_bytes():
            received += chunk
    assert len(received) == 3000

    rest = http.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes 3000-{len(BINARY) - 1}/{len(BINARY)}"
    assert bytes(received) + rest.content == BINARY
