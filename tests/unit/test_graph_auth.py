"""TokenProvider and GraphClient over real TLS to a loopback server signed by a private CA.

The process environment keeps REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and SSL_CERT_FILE on a
public bundle that does not contain the private CA, so a passing login proves that
``GraphSettings.ca_bundle`` alone decides trust.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import certifi
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from m365lake.config import GraphSettings
from m365lake.errors import AuthenticationError, ConfigError, GraphTransientError, ThrottledError
from m365lake.graph import GraphClient, TokenProvider
from m365lake.graph.auth import graph_scope
from m365lake.graph.certificate import load_client_certificate
from m365lake.graph.retry import MAX_RETRY_AFTER_SECONDS

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "the-client-secret-value"
SYSTEM_BUNDLE = (
    "/etc/ssl/certs/ca-certificates.crt"
    if Path("/etc/ssl/certs/ca-certificates.crt").is_file()
    else certifi.where()
)


# ---- certificates ---------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificate(
    common_name: str,
    key: rsa.RSAPrivateKey,
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(obj: x509.Certificate | rsa.RSAPrivateKey, password: bytes | None = None) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ---- a loopback login + Graph server --------------------------------------------------


@dataclass
class LoginServer:
    base_url: str
    ca_bundle: Path
    token_forms: list[dict[str, str]] = field(default_factory=list)
    graph_authorizations: list[str] = field(default_factory=list)
    token_error: dict[str, Any] | None = None
    token_status: int = 200
    token_headers: dict[str, str] = field(default_factory=dict)
    issued: int = 0

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{TENANT}/oauth2/v2.0/token"

    def settings(self, **overrides: Any) -> GraphSettings:
        values: dict[str, Any] = {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "authority_host": self.base_url,
            "graph_url": f"{self.base_url}/v1.0",
            "ca_bundle": self.ca_bundle,
        }
        values.update(overrides)
        return GraphSettings(**values)


def _handler_for(state: LoginServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(
            self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("request-id", "server-request-id")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
                tenant_url = f"{state.base_url}/{TENANT}"
                self._json(
                    200,
                    {
                        "token_endpoint": state.token_endpoint,
                        "authorization_endpoint": f"{tenant_url}/oauth2/v2.0/authorize",
                        "issuer": f"{tenant_url}/v2.0",
                    },
                )
            elif self.path.startswith("/v1.0/users"):
                state.graph_authorizations.append(self.headers.get("Authorization", ""))
                self._json(200, {"value": [{"id": "u1"}]})
            else:
                self._json(404, {"error": {"code": "NotFound", "message": self.path}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            state.token_forms.append(form)
            if state.token_error is not None:
                self._json(state.token_status, state.token_error, state.token_headers)
                return
            state.issued += 1
            self._json(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "access_token": f"issued-token-{state.issued}",
                },
            )

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes from the untrusted-CA test are expected.
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = new_key()
    ca_cert = make_certificate("m365lake test CA", ca_key, ca=True)
    server_key = new_key()
    server_cert = make_certificate(
        "127.0.0.1", server_key, issuer=(ca_cert, ca_key), ip="127.0.0.1"
    )
    (directory / "ca.pem").write_bytes(pem(ca_cert))
    (directory / "server.pem").write_bytes(pem(server_cert) + pem(server_key))
    return {"dir": directory, "ca": directory / "ca.pem", "server": directory / "server.pem"}


@pytest.fixture
def login_server(pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[LoginServer]:
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(variable, SYSTEM_BUNDLE)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"])
    state = LoginServer(base_url="", ca_bundle=pki["ca"])
    server = _QuietServer(("127.0.0.1", 0), _handler_for(state))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# ---- tests ----------------------------------------------------------------------------


def test_secret_login_trusts_configured_ca(login_server: LoginServer) -> None:
    provider = TokenProvider(login_server.settings())
    try:
        first = provider.get_token()
        cached = provider.get_token()
        refreshed = provider.get_token(force_refresh=True)
    finally:
        provider.close()
    assert first.token == "issued-token-1"
    assert cached.token == "issued-token-1"
    assert refreshed.token == "issued-token-2"
    assert first.expires_on > time.time() + 3000
    form = login_server.token_forms[0]
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT_ID
    assert form["client_secret"] == SECRET
    assert form["scope"] == "https://graph.microsoft.com/.default"
    assert "issued-token" not in repr(first)


def test_login_without_ca_bundle_rejects_private_ca(login_server: LoginServer) -> None:
    provider = TokenProvider(login_server.settings(ca_bundle=None))
    try:
        with pytest.raises(ConfigError, match="certificate verification") as caught:
            provider.get_token()
    finally:
        provider.close()
    assert "M365LAKE_CA_BUNDLE" in str(caught.value)
    assert login_server.token_forms == []


def test_token_error_names_variables_not_secret(login_server: LoginServer) -> None:
    login_server.token_status = 401
    login_server.token_error = {
        "error": "invalid_client",
        "error_description": f"AADSTS7000215: Invalid client secret provided. ({SECRET})\r\n"
        "Trace ID: t Correlation ID: c Timestamp: 2024-01-01",
        "error_codes": [7000215],
        "correlation_id": "corr-1",
    }
    provider = TokenProvider(login_server.settings())
    try:
        with pytest.raises(AuthenticationError) as caught:
            provider.get_token()
    finally:
        provider.close()
    error = caught.value
    assert error.code == "AADSTS7000215"
    assert error.request_id == "corr-1"
    assert "AZURE_CLIENT_SECRET" in str(error)
    assert SECRET not in str(error)
    assert "Trace ID" not in str(error)


def test_token_outage_is_transient(login_server: LoginServer) -> None:
    login_server.token_status = 400
    login_server.token_error = {"error": "temporarily_unavailable", "error_description": "busy"}
    provider = TokenProvider(login_server.settings())
    try:
        with pytest.raises(GraphTransientError, match="retry later"):
            provider.get_token()
    finally:
        provider.close()


def test_certificate_assertion_has_x5t_and_claims(
    login_server: LoginServer, tmp_path: Path
) -> None:
    key = new_key()
    cert = make_certificate("m365lake app", key)
    path = tmp_path / "app.pem"
    path.write_bytes(pem(key) + pem(cert))
    provider = TokenProvider(
        login_server.settings(client_secret=None, certificate_path=path),
        send_certificate_chain=True,
    )
    try:
        assert provider.get_token().token == "issued-token-1"
    finally:
        provider.close()

    form = login_server.token_forms[0]
    assert "client_secret" not in form
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert header["alg"] == "RS256"
    # msal 1.39 keeps the base64 padding on x5t; Entra accepts both forms.
    assert header["x5t"].rstrip("=") == b64url(hashlib.sha1(der).digest())
    # msal copies x5c from the PEM body, line breaks included.
    assert ["".join(entry.split()) for entry in header["x5c"]] == [
        base64.b64encode(der).decode("ascii")
    ]
    claims = jwt.decode(
        assertion,
        key=cert.public_key(),
        algorithms=["RS256"],
        audience=login_server.token_endpoint,
    )
    assert claims["iss"] == CLIENT_ID
    assert claims["sub"] == CLIENT_ID
    assert claims["exp"] > time.time()


def test_pkcs12_certificate_loads_with_password(tmp_path: Path) -> None:
    key = new_key()
    cert = make_certificate("m365lake app", key)
    path = tmp_path / "app.pfx"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"app", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    loaded = load_client_certificate(path, "pfx-pass")
    expected = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    assert loaded.thumbprint == expected
    assert loaded.msal_credential()["thumbprint"] == expected
    assert "public_certificate" not in loaded.msal_credential()
    assert "PRIVATE KEY" not in repr(loaded)


@pytest.mark.parametrize(
    ("password", "message"),
    [(None, "AZURE_CLIENT_CERTIFICATE_PASSWORD"), ("wrong", "AZURE_CLIENT_CERTIFICATE_PASSWORD")],
)
def test_certificate_password_errors(tmp_path: Path, password: str | None, message: str) -> None:
    key = new_key()
    path = tmp_path / "app.pem"
    path.write_bytes(pem(key, b"right") + pem(make_certificate("app", key)))
    with pytest.raises(ConfigError, match=message):
        load_client_certificate(path, password)


def test_certificate_without_matching_cert_rejected(tmp_path: Path) -> None:
    path = tmp_path / "app.pem"
    path.write_bytes(pem(new_key()) + pem(make_certificate("other", new_key())))
    with pytest.raises(ConfigError, match="none of them for its private key"):
        load_client_certificate(path)


def test_missing_certificate_file_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AZURE_CLIENT_CERTIFICATE_PATH"):
        load_client_certificate(tmp_path / "absent.pem")


def test_graph_client_over_tls_with_private_ca(login_server: LoginServer) -> None:
    async def scenario() -> tuple[dict[str, Any], int]:
        async with GraphClient(login_server.settings()) as graph:
            document = await graph.get_json("/users", params={"$select": "id"})
            return document, graph.stats.bytes_received

    document, received = asyncio.run(scenario())
    assert document == {"value": [{"id": "u1"}]}
    assert received > 0
    assert login_server.graph_authorizations == ["Bearer issued-token-1"]


@pytest.mark.parametrize("status", [429, 503])
def test_throttled_token_waits_retry_after(login_server: LoginServer, status: int) -> None:
    login_server.token_status = status
    login_server.token_headers = {"Retry-After": "40"}
    login_server.token_error = {"error": "throttled", "error_description": "slow down"}
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def scenario() -> None:
        async with GraphClient(login_server.settings(), max_retries=2, sleep=record_sleep) as graph:
            await graph.get_json("/users")

    with pytest.raises(ThrottledError, match="throttled the token request") as caught:
        asyncio.run(scenario())
    # Backoff waits at most 2 s before the second retry, and the server requests 40 s.
    # msal returns its cached 429 or 503 to the retries, so each wait is what remains.
    assert len(sleeps) == 2
    assert all(30 < wait <= 40 for wait in sleeps)
    assert caught.value.retry_after is not None
    assert 30 < caught.value.retry_after <= 40
    assert login_server.graph_authorizations == []


def test_token_retry_after_capped(login_server: LoginServer) -> None:
    login_server.token_status = 429
    login_server.token_headers = {"Retry-After": "86400"}
    login_server.token_error = {"error": "throttled", "error_description": "slow down"}
    provider = TokenProvider(login_server.settings())
    try:
        with pytest.raises(ThrottledError) as caught:
            provider.get_token()
    finally:
        provider.close()
    assert caught.value.retry_after is not None
    assert 800 < caught.value.retry_after <= MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("graph_url", "scope"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/.default"),
        ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default"),
        ("https://127.0.0.1:8443/v1.0", "https://graph.microsoft.com/.default"),
    ],
)
def test_graph_scope_per_cloud(graph_url: str, scope: str) -> None:
    assert graph_scope(graph_url) == scope
