"""OpenID discovery, the client-credentials token endpoint, and access-token checks.

Access tokens are RS256 JWTs signed with a key made when the app is built, so a token from
one emulator instance is rejected by another. Client assertions are checked the way Entra
ID checks them: registered certificate (``x5t`` or ``x5t#S256``), signature, ``aud`` equal to
the token endpoint URL, ``iss`` and ``sub`` equal to the client id, and the time window.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from m365lake.emulator import jws
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import GRAPH_RESOURCE, GraphHTTPError

logger = logging.getLogger(__name__)

GRAPH_DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The WWW-Authenticate value Graph sends with 401 responses.
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


class TokenIssuer:
    """Issues and verifies the emulator's access tokens for one tenant."""

    def __init__(self, tenant: Tenant, *, lifetime_seconds: int) -> None:
        self.tenant = tenant
        self.lifetime_seconds = lifetime_seconds
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = uuid.uuid4().hex

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant.tenant_id}/"

    def issue(self, client_id: str, roles: list[str], *, lifetime: int | None = None) -> str:
        """Return a signed access token; a negative ``lifetime`` makes an expired one."""
        now = int(time.time())
        seconds = self.lifetime_seconds if lifetime is None else lifetime
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "appid": client_id,
            "azp": client_id,
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{client_id}")),
            "roles": list(roles),
            "tid": self.tenant.tenant_id,
            # Entra ID's unique token identifier: two tokens issued in the same second
            # differ, so revoking one leaves its replacement valid.
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        return jws.sign(claims, self._key, headers={"kid": self.key_id})

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid token or raise 401 ``InvalidAuthenticationToken``."""
        try:
            _, claims = jws.verify(token, self._key.public_key())
        except jws.JwsError as exc:
            logger.info("access token rejected: %s", exc)
            raise unauthenticated(
                "CompactToken validation failed: the token is malformed "
                "or was not issued by this tenant."
            ) from exc
        now = time.time()
        if claims.get("aud") != GRAPH_RESOURCE:
            raise unauthenticated("Access token validation failure. Invalid audience.")
        if claims.get("tid") != self.tenant.tenant_id:
            raise unauthenticated("Access token validation failure. Invalid tenant.")
        if not float(claims.get("nbf", 0)) <= now < float(claims.get("exp", 0)):
            raise unauthenticated("Access token has expired or is not yet valid.")
        return claims

    def authenticate(self, request: Request) -> dict[str, Any]:
        """Check the request's bearer token; return its claims."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("Access token is empty.")
        return self.verify(token.strip())


def unauthenticated(message: str) -> GraphHTTPError:
    return GraphHTTPError(
        401, "InvalidAuthenticationToken", message, headers={"WWW-Authenticate": WWW_AUTHENTICATE}
    )


def require_role(
    claims: dict[str, Any], accepted: tuple[str, ...], code: str, message: str
) -> None:
    """Raise 403 ``code`` unless the token carries one of the ``accepted`` roles."""
    roles = claims.get("roles") or []
    if not any(role in roles for role in accepted):
        raise GraphHTTPError(403, code, message)


# ---- login endpoints -------------------------------------------------------------------


class AadError(Exception):
    """A token-endpoint failure rendered as Entra ID's OAuth error JSON."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def aad_error_response(request: Request, exc: AadError) -> Response:
    trace_id = str(uuid.uuid4())
    correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    description = (
        f"AADSTS{exc.code}: {exc.description}\r\nTrace ID: {trace_id}\r\n"
        f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
    )
    body = {
        "error": exc.error,
        "error_description": description,
        "error_codes": [exc.code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={exc.code}",
    }
    return JSONResponse(body, status_code=exc.status)


def _check_tenant(tenant: Tenant, segment: str) -> None:
    if segment.lower() not in (tenant.tenant_id.lower(), tenant.domain.lower()):
        raise AadError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{segment}' not found. Check to "
            "make sure you have the correct tenant ID and are signing into the "
            "correct cloud.",
        )


async def openid_configuration(request: Request) -> Response:
    issuer_obj: TokenIssuer = request.app.state.issuer
    tenant = issuer_obj.tenant
    try:
        _check_tenant(tenant, request.path_params["tenant"])
    except AadError as exc:
        return aad_error_response(request, exc)
    base = str(request.base_url).rstrip("/")
    prefix = f"{base}/{tenant.tenant_id}"
    return JSONResponse(
        {
            "issuer": f"{prefix}/v2.0",
            "token_endpoint": f"{prefix}/oauth2/v2.0/token",
            "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
            "jwks_uri": f"{prefix}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "tenant_region_scope": "EU",
        }
    )


async def token_endpoint(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    try:
        _check_tenant(issuer.tenant, request.path_params["tenant"])
        fields = await _form_fields(request)
        client_id = _authenticate_client(request, issuer.tenant, fields)
        _check_grant_and_scope(fields)
    except AadError as exc:
        logger.info("token request rejected: AADSTS%d %s", exc.code, exc.error)
        return aad_error_response(request, exc)
    token = issuer.issue(client_id, issuer.tenant.app.roles)
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": issuer.lifetime_seconds,
            "ext_expires_in": issuer.lifetime_seconds,
            "access_token": token,
        }
    )


async def _form_fields(request: Request) -> dict[str, str]:
    # Parsed here rather than with request.form(), which needs python-multipart.
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must be application/x-www-form-urlencoded.",
        )
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _authenticate_client(request: Request, tenant: Tenant, fields: dict[str, str]) -> str:
    app = tenant.app
    client_id = fields.get("client_id", "")
    if not client_id:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )
    if client_id != app.client_id:
        raise AadError(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the "
            f"directory '{tenant.tenant_id}'.",
        )

    secret = fields.get("client_secret")
    assertion = fields.get("client_assertion")
    if secret is None and assertion is None:
        raise AadError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.",
        )
    if secret is not None:
        if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            raise AadError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the "
                "request is the client secret value, not the client secret ID, for a "
                f"secret added to app '{client_id}'.",
            )
        return client_id

    if fields.get("client_assertion_type") != ASSERTION_TYPE:
        raise AadError(
            400, "invalid_request", 90014, f"The client_assertion_type must be '{ASSERTION_TYPE}'."
        )
    token_url = f"{str(request.base_url).rstrip('/')}{request.url.path}"
    _check_assertion(str(assertion), client_id, token_url, app.certificates)
    return client_id


def _check_assertion(
    assertion: str, client_id: str, token_url: str, certificates: dict[str, bytes]
) -> None:
    try:
        header, _, _, _ = jws.parse(assertion)
    except jws.JwsError as exc:
        raise AadError(
            400, "invalid_client", 50027, f"JWT token is invalid or malformed: {exc}."
        ) from exc
    public_key = _registered_key(header.get("x5t#S256") or header.get("x5t"), certificates)

    try:
        _, claims = jws.verify(assertion, public_key)
    except jws.JwsError as exc:
        raise AadError(
            401, "invalid_client", 700027, f"Client assertion failed signature validation: {exc}."
        ) from exc

    if claims.get("aud") != token_url:
        raise AadError(
            401,
            "invalid_client",
            700212,
            f"No matching federated identity record found for presented assertion "
            f"audience '{claims.get('aud')}'; expected '{token_url}'.",
        )
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AadError(
            401,
            "invalid_client",
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    now = time.time()
    if not float(claims.get("nbf", 0)) <= now < float(claims.get("exp", 0)):
        raise AadError(
            401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        )


def _registered_key(thumbprint: Any, certificates: dict[str, bytes]) -> rsa.RSAPublicKey:
    """Return the public key of the registered certificate whose thumbprint the header names."""
    certificate_pem = None
    if isinstance(thumbprint, str):
        try:
            certificate_pem = certificates.get(jws.b64url_decode(thumbprint).hex())
        except jws.JwsError:
            certificate_pem = None
    if certificate_pem is None:
        raise AadError(
            401,
            "invalid_client",
            700027,
            "The certificate with identifier used to sign the client assertion is "
            "not registered on application. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{thumbprint}']",
        )
    public_key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise AadError(401, "invalid_client", 700027, "Only RSA certificates are supported.")
    return public_key


def _check_grant_and_scope(fields: dict[str, str]) -> None:
    grant = fields.get("grant_type")
    if grant != "client_credentials":
        raise AadError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'; this tenant "
            "only serves client_credentials.",
        )
    scope = fields.get("scope")
    if not scope:
        raise AadError(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    scopes = scope.split()
    if scopes != [GRAPH_DEFAULT_SCOPE]:
        raise AadError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential "
            "flows must have a scope value with /.default suffixed to the resource "
            f"identifier (application ID URI); expected '{GRAPH_DEFAULT_SCOPE}'.",
        )


async def jwks(request: Request) -> Response:
    issuer: TokenIssuer = request.app.state.issuer
    public = issuer._key.public_key().public_numbers()
    key = {
        "kty": "RSA",
        "use": "sig",
        "kid": issuer.key_id,
        "n": jws.b64url_encode(public.n.to_bytes((public.n.bit_length() + 7) // 8, "big")),
        "e": jws.b64url_encode(public.e.to_bytes(3, "big")),
    }
    return Response(json.dumps({"keys": [key]}), media_type="application/json")


routes = [
    Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
    Route("/{tenant}/oauth2/v2.0/token", token_endpoint, methods=["POST"]),
    Route("/{tenant}/discovery/v2.0/keys", jwks),
]
