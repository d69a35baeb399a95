"""Token endpoint, OpenID discovery and the 401/403 responses of Graph routes."""

from __future__ import annotations

import time
import uuid

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import load_pem_x509_certificate

from m365lake.emulator import Tenant, build_app, jws
from m365lake.emulator.certs import create_client_certificate
from tests.emulator.conftest import BASE, fetch_token, graph, run

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _client(tenant: Tenant) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(tenant)), base_url=BASE)


def _assertion(tenant: Tenant, key_pem: bytes, cert_pem: bytes, **claims: object) -> str:
    key = serialization.load_pem_private_key(key_pem, password=None)
    thumbprint = load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1())
    now = int(time.time())
    payload = {
        "aud": f"{BASE}/{tenant.tenant_id}/oauth2/v2.0/token",
        "iss": tenant.app.client_id,
        "sub": tenant.app.client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jws.sign(payload, key, headers={"x5t": jws.b64url_encode(thumbprint)})  # type: ignore[arg-type]


def test_openid_configuration_shape(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with _client(tenant) as client:
            response = await client.get(
                f"/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"
            )
            assert response.status_code == 200
            config = response.json()
            assert config["token_endpoint"] == f"{BASE}/{tenant.tenant_id}/oauth2/v2.0/token"
            assert config["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
            assert config["issuer"] == f"{BASE}/{tenant.tenant_id}/v2.0"
            by_domain = await client.get(f"/{tenant.domain}/v2.0/.well-known/openid-configuration")
            assert by_domain.status_code == 200
            unknown = await client.get("/other.example/v2.0/.well-known/openid-configuration")
            assert unknown.status_code == 400
            assert unknown.json()["error_codes"] == [90002]

    run(scenario())


def test_token_with_secret(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with _client(tenant) as client:
            response = await fetch_token(client, tenant)
            assert response.status_code == 200
            body = response.json()
            assert body["token_type"] == "Bearer"
            assert body["expires_in"] == 3599
            assert body["ext_expires_in"] == 3599
            _, claims, _, _ = jws.parse(body["access_token"])
            assert claims["aud"] == "https://graph.microsoft.com"
            assert claims["tid"] == tenant.tenant_id
            assert claims["appid"] == tenant.app.client_id
            assert claims["roles"] == tenant.app.roles
            assert "scp" not in claims

    run(scenario())


def test_token_bad_secret_is_aadsts_error(tenant: Tenant) -> None:
    async def scenario() -> None:
        async with _client(tenant) as client:
            response = await fetch_token(client, tenant, client_secret="wrong")
            assert response.status_code == 401
            body = response.json()
            assert body["error"] == "invalid_client"
            assert body["error_codes"] == [7000215]
            assert body["error_description"].startswith("AADSTS7000215:")
            for key in ("timestamp", "trace_id", "correlation_id"):
                assert body[key]
            assert tenant.app.client_secret not in response.text

    run(scenario())


def test_token_rejections(tenant: Tenant) -> None:
    cases = [
        ({"scope": "https://graph.microsoft.com/Mail.Read"}, 400, "invalid_scope", 1002012),
        ({"scope": ""}, 400, "invalid_request", 900144),
        (
            {"scope": "https://graph.microsoft.com/.default offline_access"},
            400,
            "invalid_scope",
            1002012,
        ),
        ({"client_id": str(uuid.uuid4())}, 400, "unauthorized_client", 700016),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
    ]

    async def scenario() -> None:
        async with _client(tenant) as client:
            for overrides, status, error, code in cases:
                response = await fetch_token(client, tenant, **overrides)
                assert response.status_code == status, overrides
                assert response.json()["error"] == error, overrides
                assert response.json()["error_codes"] == [code], overrides
            wrong_tenant = await client.post(
                "/other.example/oauth2/v2.0/token", data={"client_id": tenant.app.client_id}
            )
            assert wrong_tenant.status_code == 400
            assert wrong_tenant.json()["error"] == "invalid_tenant"

    run(scenario())


def test_token_with_certificate_assertion(tenant: Tenant) -> None:
    key_pem, cert_pem = create_client_certificate()
    tenant.app.add_certificate(cert_pem)
    other_key, other_cert = create_client_certificate("not registered")

    async def post(client: httpx.AsyncClient, assertion: str) -> httpx.Response:
        return await fetch_token(
            client,
            tenant,
            client_secret="",
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=assertion,
        )

    async def scenario() -> None:
        async with _client(tenant) as client:
            good = await post(client, _assertion(tenant, key_pem, cert_pem))
            assert good.status_code == 200, good.text
            assert good.json()["access_token"]

            rejected = {
                "unregistered": _assertion(tenant, other_key, other_cert),
                "wrong aud": _assertion(tenant, key_pem, cert_pem, aud="https://elsewhere/token"),
                "expired": _assertion(tenant, key_pem, cert_pem, exp=int(time.time()) - 5),
                "wrong iss": _assertion(tenant, key_pem, cert_pem, iss="someone-else"),
                "not a jwt": "abc.def",
            }
            for case, assertion in rejected.items():
                response = await post(client, assertion)
                assert response.status_code in (400, 401), case
                assert response.json()["error"] == "invalid_client", case

            # A valid signature header with a body signed by another key must fail.
            forged = _assertion(tenant, other_key, cert_pem)
            response = await post(client, forged)
            assert response.json()["error_codes"] == [700027]

    run(scenario())


def test_graph_401_shapes(tenant: Tenant) -> None:
    app = build_app(tenant)
    expired = app.state.issuer.issue(tenant.app.client_id, tenant.app.roles, lifetime=-10)
    foreign = build_app(tenant).state.issuer.issue(tenant.app.client_id, tenant.app.roles)
    cases = {
        "missing": None,
        "garbage": "Bearer not-a-token",
        "expired": f"Bearer {expired}",
        "other emulator": f"Bearer {foreign}",
        "basic scheme": "Basic abc",
    }

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            for case, header in cases.items():
                headers = {"client-request-id": "c-1"} | (
                    {"Authorization": header} if header else {}
                )
                response = await client.get("/v1.0/users", headers=headers)
                assert response.status_code == 401, case
                error = response.json()["error"]
                assert error["code"] == "InvalidAuthenticationToken", case
                assert error["innerError"]["client-request-id"] == "c-1"
                assert error["innerError"]["request-id"] == response.headers["request-id"]
                assert (
                    'client_id="00000003-0000-0000-c000-000000000000"'
                    in (response.headers["WWW-Authenticate"])
                )
            expired_response = await client.get(
                "/v1.0/users", headers={"Authorization": f"Bearer {expired}"}
            )
            assert "expired" in expired_response.json()["error"]["message"]

    run(scenario())


def test_missing_roles_give_workload_403(tenant: Tenant) -> None:
    tenant.app.roles = ["Mail.ReadBasic.All"]

    async def scenario() -> None:
        async with graph(tenant) as client:
            users = await client.get("/v1.0/users")
            assert users.status_code == 403
            assert users.json()["error"]["code"] == "Authorization_RequestDenied"
            user_id = tenant.user_id("alice@contoso.example")
            listing = await client.get(f"/v1.0/users/{user_id}/mailFolders/inbox/messages")
            assert listing.status_code == 200
            message_id = listing.json()["value"][0]["id"]
            mime = await client.get(f"/v1.0/users/{user_id}/messages/{message_id}/$value")
            assert mime.status_code == 403
            assert mime.json()["error"]["code"] == "ErrorAccessDenied"

    run(scenario())


def test_blocked_mailbox_is_access_denied(tenant: Tenant) -> None:
    alice = tenant.user_id("alice@contoso.example")
    tenant.app.blocked_mailboxes.add(alice)

    async def scenario() -> None:
        async with graph(tenant) as client:
            response = await client.get(f"/v1.0/users/{alice}/mailFolders")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "ErrorAccessDenied"
            bob = tenant.user_id("bob@contoso.example")
            assert (await client.get(f"/v1.0/users/{bob}/mailFolders")).status_code == 200

    run(scenario())
