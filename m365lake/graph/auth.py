"""App-only access tokens for Graph through msal, over m365lake's own TLS settings.

msal's default HTTP client is a ``requests.Session``, which lets ``REQUESTS_CA_BUNDLE`` and
``CURL_CA_BUNDLE`` override the ``verify=`` argument. ``MsalHttpClient`` hands msal an httpx
client with an explicit ``ssl.SSLContext`` instead. ``M365LAKE_CA_BUNDLE`` (or the system
store) then decides which login servers are trusted, whatever the process environment sets.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import msal

from m365lake.config import (
    ENV_AUTHORITY_HOST,
    ENV_CLIENT_CERTIFICATE_PASSWORD,
    ENV_CLIENT_CERTIFICATE_PATH,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_GRAPH_URL,
    ENV_TENANT_ID,
    GraphSettings,
)
from m365lake.errors import AuthenticationError, GraphError, GraphTransientError, ThrottledError
from m365lake.graph.certificate import load_client_certificate
from m365lake.graph.redact import install_httpx_log_redaction, redact_url
from m365lake.graph.retry import parse_retry_after
from m365lake.graph.tls import build_ssl_context, certificate_verification_error

logger = logging.getLogger(__name__)

# Login hosts of Microsoft's public and sovereign clouds (the list msal 1.39 keeps in
# msal.authority.WELL_KNOWN_AUTHORITY_HOSTS). Any other host, such as the tenant emulator,
# gets instance_discovery=False: msal would otherwise ask login.microsoftonline.com to
# vouch for it, which fails offline and is meaningless for a private authority.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
        "login-us.microsoftonline.com",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login.sovcloud-identity.fr",
        "login.sovcloud-identity.de",
        "login.sovcloud-identity.sg",
    }
)

# Graph hosts whose token audience is the host itself. Any other Graph URL, such as a proxy
# or the emulator, is assumed to accept tokens for the public cloud.
SOVEREIGN_GRAPH_HOSTS = frozenset(
    {"graph.microsoft.us", "dod-graph.microsoft.us", "microsoftgraph.chinacloudapi.cn"}
)
PUBLIC_GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# msal renews tokens that have less than five minutes left. BearerTokens does the same, so
# a token does not expire between being read and reaching Graph.
TOKEN_RENEWAL_MARGIN_SECONDS = 300.0

# AADSTS error numbers seen when app-only credentials are wrong, with what to check.
_AADSTS_HINTS: dict[int, str] = {
    7000215: f"{ENV_CLIENT_SECRET} is not a valid secret of this app; use the secret's "
    "Value, not its Secret ID",
    7000222: f"the client secret in {ENV_CLIENT_SECRET} has expired; create a new one",
    700016: f"no application {ENV_CLIENT_ID} exists in tenant {ENV_TENANT_ID}; check both "
    "ids and that an administrator consented to the app in this tenant",
    90002: f"the tenant in {ENV_TENANT_ID} does not exist; check the directory (tenant) id "
    f"and {ENV_AUTHORITY_HOST}",
    900023: f"{ENV_TENANT_ID} is not a valid tenant id or domain",
    700027: "the client assertion signature was rejected; upload the certificate from "
    f"{ENV_CLIENT_CERTIFICATE_PATH} to the app registration",
    700024: "the client assertion is outside its valid time range; check this machine's clock",
    7000112: "the application is disabled in this tenant",
    500011: f"Microsoft Graph is not available in this tenant's cloud; check {ENV_GRAPH_URL}",
    1002012: "the requested scope is invalid; app-only tokens must ask for {resource}/.default",
}


@dataclass(frozen=True, repr=False)
class AccessToken:
    """A bearer token for Graph and when it expires (seconds since the epoch)."""

    token: str
    expires_on: float

    def __repr__(self) -> str:
        return f"AccessToken(token='***', expires_on={self.expires_on!r})"


class TokenSource(Protocol):
    """Token provider interface of the Graph client, implemented by ``TokenProvider``."""

    def get_token(self, *, force_refresh: bool = False) -> AccessToken: ...

    def close(self) -> None: ...


class BearerTokens:
    """The current token for async callers, renewed in a worker thread when needed."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, rejected: str | None = None) -> str:
        """Return a token valid for at least the renewal margin.

        ``rejected`` is a token that Graph rejected with 401. It is replaced only once,
        although several concurrent requests may report it.
        """
        async with self._lock:
            token = self._token
            stale = token is None or token.expires_on - time.time() < TOKEN_RENEWAL_MARGIN_SECONDS
            force = rejected is not None and token is not None and token.token == rejected
            if stale or force:
                # msal is synchronous and may do network I/O, so it runs off the event loop.
                token = await asyncio.to_thread(self.source.get_token, force_refresh=force)
                self._token = token
            assert token is not None
            return token.token


# Token endpoint statuses that reject a request for now and may carry a Retry-After.
TOKEN_THROTTLE_STATUSES = frozenset({429, 503})


class MsalHttpClient:
    """msal ``http_client`` (its requests-like ``get``/``post`` interface) backed by httpx.

    It records the end of the last ``Retry-After`` wait of the login server, because msal
    drops that header of a 429 or 503 before its caller sees the failure.
    """

    def __init__(self, client: httpx.Client) -> None:
        self._client = client
        self._throttled_until: float | None = None

    def throttle_wait(self) -> float | None:
        """Return the seconds left of the last ``Retry-After`` wait, or None when it is over."""
        if self._throttled_until is None:
            return None
        remaining = self._throttled_until - time.monotonic()
        if remaining <= 0:
            self._throttled_until = None
            return None
        return remaining

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        return self._send("GET", url, params=params, headers=headers, timeout=kwargs.get("timeout"))

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        # msal passes either a form dict or an already encoded string. Its dicts may hold
        # bytes (the client assertion JWT), which requests encodes as text but httpx would
        # send as "b'...'", so they are decoded here.
        if isinstance(data, (str, bytes)):
            body: dict[str, Any] = {"content": data}
        else:
            form = {
                key: value.decode("utf-8") if isinstance(value, bytes) else value
                for key, value in (data or {}).items()
            }
            body = {"data": form}
        return self._send(
            "POST", url, params=params, headers=headers, timeout=kwargs.get("timeout"), **body
        )

    def close(self) -> None:
        self._client.close()

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        headers: Any,
        timeout: float | None,
        **body: Any,
    ) -> httpx.Response:
        # msal sometimes sets a header to None (an absent correlation id), which httpx rejects.
        clean_headers = {k: v for k, v in (headers or {}).items() if v is not None}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        started = time.monotonic()
        response = self._client.request(
            method, url, params=params, headers=clean_headers, **body, **extra
        )
        retry_after = None
        if response.status_code in TOKEN_THROTTLE_STATUSES:
            # Capped like Graph's own Retry-After. msal returns its cached copy of this
            # response to a retry made sooner, without sending the request.
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                self._throttled_until = time.monotonic() + retry_after
        logger.info(
            "login request %s %s status=%s retry_after=%s elapsed_ms=%d",
            method,
            redact_url(response.request.url),
            response.status_code,
            retry_after,
            (time.monotonic() - started) * 1000,
        )
        return response


class TokenProvider:
    """App-only Graph tokens from msal's ``ConfidentialClientApplication``, cached in memory.

    The credential is the client secret when ``AZURE_CLIENT_SECRET`` is set (the order the
    Azure SDK's ``EnvironmentCredential`` uses), else the certificate file. Thread-safe.
    """

    def __init__(
        self,
        settings: GraphSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        send_certificate_chain: bool = False,
    ) -> None:
        install_httpx_log_redaction()
        self._settings = settings
        context = ssl_context or build_ssl_context(settings.ca_bundle)
        self._http = httpx.Client(verify=context, timeout=timeout)
        self._msal_http = MsalHttpClient(self._http)
        self._credential = self._load_credential(send_certificate_chain)
        self._scope = graph_scope(settings.graph_url)
        self._cache = msal.TokenCache()
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        """Return a valid token, asking the login endpoint only when the cache has none.

        ``force_refresh`` drops cached tokens first, for a Graph 401 on a token msal
        still considered valid.
        """
        with self._lock:
            try:
                app = self._application()
                if force_refresh:
                    self._drop_cached_tokens()
                result = app.acquire_token_for_client(scopes=[self._scope])
            except httpx.TransportError as exc:
                host = urlsplit(self._settings.authority_host).netloc
                verification = certificate_verification_error(exc, host)
                if verification is not None:
                    raise verification from exc
                raise GraphTransientError(
                    f"failed to connect to the login endpoint {self._settings.authority} "
                    f"({type(exc).__name__}: {exc}); check {ENV_AUTHORITY_HOST} and the network",
                    url=self._settings.authority,
                ) from exc
            except msal.exceptions.MsalServiceError as exc:
                # msal raises this when the token endpoint returns a 5xx status.
                self._raise_if_throttled(exc)
                raise GraphTransientError(
                    f"the login endpoint {self._settings.authority} failed ({exc}); retry later",
                    url=self._settings.authority,
                ) from exc
            except ValueError as exc:
                # msal raises ValueError when OIDC discovery of the authority returns a 4xx
                # status, and for a token response that is not JSON, such as a bare 429.
                self._raise_if_throttled(exc)
                raise AuthenticationError(
                    f"authority {self._settings.authority} rejected discovery ({exc}); check "
                    f"{ENV_TENANT_ID} and {ENV_AUTHORITY_HOST}",
                    url=self._settings.authority,
                ) from exc

        if "access_token" not in result:
            self._raise_if_throttled(None)
            raise self._error_from_result(result)
        if result.get("token_source") != "cache":
            logger.info(
                "access token acquired from %s for client %s, expires_in=%s s",
                urlsplit(self._settings.authority_host).netloc,
                self._settings.client_id,
                result.get("expires_in"),
            )
        expires_in = float(result.get("expires_in") or 0)
        return AccessToken(result["access_token"], time.time() + expires_in)

    def close(self) -> None:
        self._http.close()

    def _load_credential(self, send_certificate_chain: bool) -> str | dict[str, str]:
        settings = self._settings
        if settings.client_secret:
            return settings.client_secret
        assert settings.certificate_path is not None  # GraphSettings requires one of the two
        certificate = load_client_certificate(
            settings.certificate_path, settings.certificate_password
        )
        logger.debug("using client certificate with thumbprint %s", certificate.thumbprint)
        return certificate.msal_credential(send_certificate_chain=send_certificate_chain)

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built on first use because msal fetches the OIDC configuration in its constructor.
        if self._app is None:
            host = (urlsplit(self._settings.authority_host).hostname or "").lower()
            self._app = msal.ConfidentialClientApplication(
                self._settings.client_id,
                client_credential=self._credential,
                authority=self._settings.authority,
                http_client=self._msal_http,
                token_cache=self._cache,
                instance_discovery=host in MICROSOFT_AUTHORITY_HOSTS,
            )
        return self._app

    def _raise_if_throttled(self, cause: Exception | None) -> None:
        wait = self._msal_http.throttle_wait()
        if wait is None:
            return
        raise ThrottledError(
            f"the login endpoint {self._settings.authority} throttled the token request "
            f"for client {self._settings.client_id} and asked for a wait of {wait:.1f} s; "
            "retry after that wait",
            retry_after=wait,
            method="POST",
            url=self._settings.authority,
            code="throttled",
        ) from cause

    def _drop_cached_tokens(self) -> None:
        # The cache belongs to this provider alone, so every access token in it is this app's.
        # msal's remove_tokens_for_client() would also work, but it may call instance discovery.
        for item in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            self._cache.remove_at(item)

    def _error_from_result(self, result: dict[str, Any]) -> GraphError:
        error = str(result.get("error") or "unknown_error")
        codes = [int(c) for c in result.get("error_codes") or [] if str(c).isdigit()]
        description = str(result.get("error_description") or "").strip()
        # Entra appends trace and correlation ids on later lines; the first line is the cause.
        summary = description.splitlines()[0] if description else error
        secret = self._settings.client_secret
        if secret and secret in summary:
            summary = summary.replace(secret, "***")

        # temporarily_unavailable is the OAuth 2.0 error code for an outage of the server.
        transient = error == "temporarily_unavailable"
        hint = next((_AADSTS_HINTS[c] for c in codes if c in _AADSTS_HINTS), None)
        if transient:
            hint = "the login service is temporarily unavailable; retry later"
        elif hint is None:
            hint = (
                f"check {ENV_TENANT_ID}, {ENV_CLIENT_ID}, {self._credential_variables()} "
                f"and {ENV_AUTHORITY_HOST}"
            )
        code = f"AADSTS{codes[0]}" if codes else error
        message = (
            f"token request for client {self._settings.client_id} at "
            f"{self._settings.authority} failed: {summary} ({error}). Next step: {hint}"
        )
        error_class = GraphTransientError if transient else AuthenticationError
        return error_class(
            message,
            method="POST",
            url=self._settings.authority,
            code=code,
            request_id=result.get("correlation_id"),
        )

    def _credential_variables(self) -> str:
        if self._settings.client_secret:
            return ENV_CLIENT_SECRET
        return f"{ENV_CLIENT_CERTIFICATE_PATH} ({ENV_CLIENT_CERTIFICATE_PASSWORD})"


def graph_scope(graph_url: str) -> str:
    """Return the ``.default`` scope for the cloud that serves ``graph_url``."""
    host = (urlsplit(graph_url).hostname or "").lower()
    if host in SOVEREIGN_GRAPH_HOSTS:
        return f"https://{host}/.default"
    return PUBLIC_GRAPH_SCOPE
