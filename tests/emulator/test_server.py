"""The emulator over real HTTPS on loopback, with msal as the token client."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from m365lake.config import GraphSettings
from m365lake.emulator import EmulatorOptions, EmulatorServer, Tenant
from m365lake.emulator.certs import create_client_certificate
from tests.emulator.conftest import ALICE, GRAPH_SCOPE, run


class HttpxForMsal:
    """The requests-like surface msal calls, backed by httpx so ``verify`` is honoured.

    requests would let REQUESTS_CA_BUNDLE override ``verify``, and this machine sets it.
    """

    def __init__(self, ca_bundle: Path) -> None:
        self.client = httpx.Client(verify=ssl.create_default_context(cafile=str(ca_bundle)))

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> httpx.Response:
        return self.client.get(url, params=params, headers=headers)

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> httpx.Response:
        if isinstance(data, dict):
            # msal passes the client assertion as bytes; httpx would send str(bytes).
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self.client.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def server(tenant: Tenant, tmp_path: Path) -> Any:
    with EmulatorServer(tenant, tmp_path / "state") as running:
        yield running


def _msal_app(server: EmulatorServer, credential: Any) -> tuple[Any, HttpxForMsal]:
    http = HttpxForMsal(server.ca_bundle)
    app = msal.ConfidentialClientApplication(
        server.client_id,
        client_credential=credential,
        authority=f"{server.authority_host}/{server.tenant.tenant_id}",
        http_client=http,
        instance_discovery=False,
    )
    return app, http


def _graph_get(server: EmulatorServer, token: str, path: str) -> httpx.Response:
    verify = ssl.create_default_context(cafile=str(server.ca_bundle))
    with httpx.Client(verify=verify) as client:
        return client.get(f"{server.graph_url}{path}", headers={"Authorization": f"Bearer {token}"})


def test_msal_client_secret_over_https(server: EmulatorServer) -> None:
    app, http = _msal_app(server, server.client_secret)
    try:
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        assert "access_token" in result, result
        assert result["token_type"] == "Bearer"
        again = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        assert again["token_source"] == "cache"
        users = _graph_get(server, result["access_token"], "/users")
        assert users.status_code == 200
        assert users.headers["request-id"]
        paths = [record.path for record in server.requests]
        assert paths.count(f"/{server.tenant.tenant_id}/oauth2/v2.0/token") == 1
        assert "/v1.0/users" in paths
    finally:
        http.close()


def test_msal_wrong_secret_gets_aadsts_error(server: EmulatorServer) -> None:
    app, http = _msal_app(server, "not-the-secret")
    try:
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        assert result["error"] == "invalid_client"
        assert 7000215 in result["error_codes"]
    finally:
        http.close()


@pytest.mark.parametrize("send_certificate", [False, True], ids=["x5t-sha1", "x5t-sha256"])
def test_msal_certificate_credential(server: EmulatorServer, send_certificate: bool) -> None:
    key_pem, cert_pem = create_client_certificate()
    server.tenant.app.add_certificate(cert_pem)
    thumbprint = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex()
    credential: dict[str, str] = {"private_key": key_pem.decode()}
    if send_certificate:
        # msal then signs with PS256 and sends x5t#S256 plus x5c.
        credential["public_certificate"] = cert_pem.decode()
    else:
        credential["thumbprint"] = thumbprint
    app, http = _msal_app(server, credential)
    try:
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        assert "access_token" in result, result
        alice = server.tenant.user_id(ALICE)
        inbox = _graph_get(server, result["access_token"], f"/users/{alice}/mailFolders/inbox")
        assert inbox.json()["displayName"] == "Inbox"
    finally:
        http.close()


def test_tls_needs_the_emulator_ca(server: EmulatorServer, tmp_path: Path) -> None:
    with (
        httpx.Client(verify=ssl.create_default_context()) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(f"{server.graph_url}/users")
    second = EmulatorServer(server.tenant, tmp_path / "state")
    assert second.ca_bundle.read_bytes() == server.ca_bundle.read_bytes()


def test_environment_and_settings(server: EmulatorServer) -> None:
    env = server.environment()
    assert env["AZURE_AUTHORITY_HOST"] == f"https://127.0.0.1:{server.port}"
    assert env["M365LAKE_GRAPH_URL"] == f"https://127.0.0.1:{server.port}/v1.0"
    assert Path(env["M365LAKE_CA_BUNDLE"]) == server.ca_bundle
    assert GraphSettings.from_env(env) == server.settings()
    assert server.port != 0


def test_concurrency_limit_over_https(tenant: Tenant, tmp_path: Path) -> None:
    options = EmulatorOptions(latency_seconds=0.3)
    with EmulatorServer(tenant, tmp_path / "state", options) as running:
        app, http = _msal_app(running, running.client_secret)
        try:
            token = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["access_token"]
        finally:
            http.close()
        url = f"{running.graph_url}/users/{tenant.user_id(ALICE)}/mailFolders"
        verify = ssl.create_default_context(cafile=str(running.ca_bundle))

        async def scenario() -> list[int]:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(verify=verify, headers=headers) as client:
                responses = await asyncio.gather(*(client.get(url) for _ in range(6)))
            return sorted(response.status_code for response in responses)

        assert run(scenario()) == [200] * 4 + [429] * 2
        running.clear_requests()
        running.inject(path_pattern="/mailFolders$", status=429, retry_after="0.5")
        response = _graph_get(running, token, url.removeprefix(running.graph_url))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "0.5"
        assert [record.status for record in running.requests] == [429]
        assert running.requests[0].mailbox == tenant.user_id(ALICE)
