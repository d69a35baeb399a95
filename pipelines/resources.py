"""Dagster resources: the Graph connection and the lake, configured from the environment."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from m365lake.config import (
    PUBLIC_AUTHORITY_HOST,
    PUBLIC_GRAPH_URL,
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
    authority_host: str = PUBLIC_AUTHORITY_HOST
    graph_url: str = PUBLIC_GRAPH_URL
    ca_bundle: str | None = None
    """PEM file of CAs to trust for login and Graph, for a TLS-inspecting proxy or the emulator."""

    def settings(self) -> GraphSettings:
        return GraphSettings(
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            client_secret=self.client_secret or None,
            certificate_path=Path(self.certificate_path) if self.certificate_path else None,
            certificate_password=self.certificate_password or None,
            authority_host=self.authority_host.rstrip("/"),
            graph_url=self.graph_url.rstrip("/"),
            ca_bundle=Path(self.ca_bundle) if self.ca_bundle else None,
        )


class LakeResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The lake: a local folder (object storage comes later)."""

    location: str = ""
    """Empty: ``M365LAKE_LAKE``, else ``lake`` under the user's data directory, read at run time."""

    def open(self) -> Lake:
        return Lake.open(self.location or default_lake_location())
