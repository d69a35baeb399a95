"""Dagster resources: the Graph connection and the lake, configured from the environment."""

from __future__ import annotations

import os

import dagster as dg

from m365lake.config import (
    ENV_AUTHORITY_HOST,
    ENV_CA_BUNDLE,
    ENV_CLIENT_CERTIFICATE_PASSWORD,
    ENV_CLIENT_CERTIFICATE_PATH,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_GRAPH_URL,
    ENV_TENANT_ID,
    GraphSettings,
    default_lake_location,
)
from m365lake.lake import Lake


class GraphResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """App-only access to one tenant through Microsoft Graph (msal client credentials)."""

    tenant_id: str
    client_id: str
    client_secret: str | None = None
    certificate_path: str | None = None
    certificate_password: str | None = None
    authority_host: str | None = None
    """Login host; None reads ``AZURE_AUTHORITY_HOST`` at run time, else the public cloud."""
    graph_url: str | None = None
    """Graph base URL; None reads ``M365LAKE_GRAPH_URL`` at run time, else the public cloud."""
    ca_bundle: str | None = None
    """PEM file of CAs to trust for login and Graph, for a TLS-inspecting proxy or the emulator.

    None reads ``M365LAKE_CA_BUNDLE`` at run time, else the system store is used.
    """

    def settings(self) -> GraphSettings:
        # The optional endpoint settings fall back to the environment when the run starts,
        # so a tenant in a national cloud or behind a TLS-inspecting proxy needs no code
        # change. Credentials never fall back: a deployment names exactly one credential.
        # GraphSettings.from_env then applies the same validation as the CLI.
        environ = {
            name: value
            for name, value in os.environ.items()
            if name in (ENV_AUTHORITY_HOST, ENV_GRAPH_URL, ENV_CA_BUNDLE)
        }
        explicit = {
            ENV_TENANT_ID: self.tenant_id,
            ENV_CLIENT_ID: self.client_id,
            ENV_CLIENT_SECRET: self.client_secret,
            ENV_CLIENT_CERTIFICATE_PATH: self.certificate_path,
            ENV_CLIENT_CERTIFICATE_PASSWORD: self.certificate_password,
            ENV_AUTHORITY_HOST: self.authority_host,
            ENV_GRAPH_URL: self.graph_url,
            ENV_CA_BUNDLE: self.ca_bundle,
        }
        environ.update({name: value for name, value in explicit.items() if value})
        return GraphSettings.from_env(environ)


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The lake: a local folder (object storage comes later)."""

    location: str = ""
    """Empty: ``M365LAKE_LAKE``, else ``lake`` under the user's data directory, read at run time."""

    def open(self) -> Lake:
        return Lake.open(self.location or default_lake_location())
