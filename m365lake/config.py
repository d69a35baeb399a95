"""Settings read from the environment, in one place.

Tenant credentials use the Azure SDK's variable names so an existing
``EnvironmentCredential`` set-up works unchanged. The Graph base URL and the CA
bundle are m365lake's own: they point the client at a sovereign cloud, a proxy
or the built-in tenant emulator without touching process-wide TLS settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from m365lake.errors import ConfigError

PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"
PUBLIC_GRAPH_URL = "https://graph.microsoft.com/v1.0"

ENV_TENANT_ID = "AZURE_TENANT_ID"
ENV_CLIENT_ID = "AZURE_CLIENT_ID"
ENV_CLIENT_SECRET = "AZURE_CLIENT_SECRET"
ENV_CLIENT_CERTIFICATE_PATH = "AZURE_CLIENT_CERTIFICATE_PATH"
ENV_CLIENT_CERTIFICATE_PASSWORD = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
ENV_AUTHORITY_HOST = "AZURE_AUTHORITY_HOST"
ENV_GRAPH_URL = "M365LAKE_GRAPH_URL"
ENV_CA_BUNDLE = "M365LAKE_CA_BUNDLE"
ENV_LAKE = "M365LAKE_LAKE"
ENV_GRAPH_TIMEOUT = "M365LAKE_GRAPH_TIMEOUT"
DEFAULT_GRAPH_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class GraphSettings:
    """Tenant location and the app registration's credentials."""

    tenant_id: str
    client_id: str
    client_secret: str | None = None
    certificate_path: Path | None = None
    """PEM (private key and certificate) or PKCS#12 file for certificate credentials."""
    certificate_password: str | None = None
    authority_host: str = PUBLIC_AUTHORITY_HOST
    graph_url: str = PUBLIC_GRAPH_URL
    """Graph base URL including the version segment, without a trailing slash."""
    ca_bundle: Path | None = None
    """PEM file of CA certificates to trust for both login and Graph; None uses the system store."""
    max_concurrent_per_mailbox: int = 4
    """Exchange Online allows four concurrent requests per app and mailbox."""
    request_timeout_seconds: float = DEFAULT_GRAPH_TIMEOUT_SECONDS
    """Seconds a Graph request may wait to connect, or between two reads of its response,
    before it is abandoned and retried."""

    def __post_init__(self) -> None:
        if not self.client_secret and not self.certificate_path:
            raise ConfigError(
                f"no client credential: set {ENV_CLIENT_SECRET} or {ENV_CLIENT_CERTIFICATE_PATH}"
            )
        if not self.request_timeout_seconds > 0:
            raise ConfigError(
                f"the Graph request timeout must be a positive number of seconds, got "
                f"{self.request_timeout_seconds}; check {ENV_GRAPH_TIMEOUT}"
            )

    def __repr__(self) -> str:
        # The secret must never reach logs or Dagster metadata through a repr.
        secret = "***" if self.client_secret else None
        return (
            f"GraphSettings(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, "
            f"client_secret={secret!r}, certificate_path={self.certificate_path!r}, "
            f"authority_host={self.authority_host!r}, graph_url={self.graph_url!r}, "
            f"ca_bundle={self.ca_bundle!r})"
        )

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GraphSettings:
        """Read the settings from ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        missing = [name for name in (ENV_TENANT_ID, ENV_CLIENT_ID) if not env.get(name)]
        if missing:
            raise ConfigError(
                f"missing tenant settings: {', '.join(missing)} not set. Set them to the "
                "directory (tenant) id and application (client) id of the app registration, "
                "or run `m365lake emulator serve` and export what it prints."
            )
        graph_url = (env.get(ENV_GRAPH_URL) or PUBLIC_GRAPH_URL).rstrip("/")
        if not graph_url.lower().startswith("https://"):
            # Every Graph request carries the access token, which must not cross the
            # network in clear text; Microsoft Graph and the emulator serve https only.
            raise ConfigError(
                f"{ENV_GRAPH_URL} is {graph_url!r}, but Microsoft Graph needs an https:// "
                f"URL, such as {PUBLIC_GRAPH_URL} or the URL `m365lake emulator serve` prints"
            )
        certificate = env.get(ENV_CLIENT_CERTIFICATE_PATH)
        ca_bundle = env.get(ENV_CA_BUNDLE)
        authority_host = env.get(ENV_AUTHORITY_HOST) or PUBLIC_AUTHORITY_HOST
        if "://" not in authority_host:
            authority_host = f"https://{authority_host}"
        return cls(
            request_timeout_seconds=_timeout_from(env),
            tenant_id=env[ENV_TENANT_ID],
            client_id=env[ENV_CLIENT_ID],
            client_secret=env.get(ENV_CLIENT_SECRET) or None,
            certificate_path=Path(certificate) if certificate else None,
            certificate_password=env.get(ENV_CLIENT_CERTIFICATE_PASSWORD) or None,
            authority_host=authority_host.rstrip("/"),
            graph_url=graph_url,
            ca_bundle=Path(ca_bundle) if ca_bundle else None,
        )


def _timeout_from(env: Mapping[str, str]) -> float:
    text = env.get(ENV_GRAPH_TIMEOUT)
    if not text:
        return DEFAULT_GRAPH_TIMEOUT_SECONDS
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{ENV_GRAPH_TIMEOUT} is {text!r}, but it must be a number of seconds, such as 60"
        ) from None


def default_lake_location(environ: Mapping[str, str] | None = None) -> str:
    """Return ``M365LAKE_LAKE`` if set, else ``lake`` under the user's data directory."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_LAKE)
    if configured:
        return configured
    return str(Path(platformdirs.user_data_dir("m365lake")) / "lake")
