"""One table of resources per deployment, chosen by ``M365LAKE_DEPLOYMENT``.

Tenant settings are ``dg.EnvVar`` values: Dagster reads them when a run launches and
never shows them in the UI, so secrets stay out of the code location and the run history.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from pipelines.resources import GraphResource, LakeResource

DEFAULT_DEPLOYMENT = "tenant"


def _lake() -> LakeResource:
    # Not an EnvVar: the lake location has a default (the user's data directory), and
    # an EnvVar would make every run fail while M365LAKE_LAKE is unset.
    return LakeResource()


DEPLOYMENTS: dict[str, dict[str, Any]] = {
    # A real tenant, app registration with a client secret.
    "tenant": {
        "graph": GraphResource(
            tenant_id=dg.EnvVar("AZURE_TENANT_ID"),
            client_id=dg.EnvVar("AZURE_CLIENT_ID"),
            client_secret=dg.EnvVar("AZURE_CLIENT_SECRET"),
        ),
        "lake": _lake(),
    },
    # A real tenant, app registration with a certificate (PEM or PKCS#12 file).
    "tenant-certificate": {
        "graph": GraphResource(
            tenant_id=dg.EnvVar("AZURE_TENANT_ID"),
            client_id=dg.EnvVar("AZURE_CLIENT_ID"),
            certificate_path=dg.EnvVar("AZURE_CLIENT_CERTIFICATE_PATH"),
        ),
        "lake": _lake(),
    },
    # The built-in tenant emulator: `m365lake emulator serve` prints these variables.
    "emulator": {
        "graph": GraphResource(
            tenant_id=dg.EnvVar("AZURE_TENANT_ID"),
            client_id=dg.EnvVar("AZURE_CLIENT_ID"),
            client_secret=dg.EnvVar("AZURE_CLIENT_SECRET"),
            authority_host=dg.EnvVar("AZURE_AUTHORITY_HOST"),
            graph_url=dg.EnvVar("M365LAKE_GRAPH_URL"),
            ca_bundle=dg.EnvVar("M365LAKE_CA_BUNDLE"),
        ),
        "lake": _lake(),
    },
}


def resources_for(deployment: str | None = None) -> dict[str, Any]:
    """Return the resources of ``deployment`` (default: ``M365LAKE_DEPLOYMENT`` or ``tenant``)."""
    name = deployment or os.environ.get("M365LAKE_DEPLOYMENT") or DEFAULT_DEPLOYMENT
    if name not in DEPLOYMENTS:
        raise ValueError(
            f"unknown deployment {name!r} in M365LAKE_DEPLOYMENT; "
            f"choose one of: {', '.join(sorted(DEPLOYMENTS))}"
        )
    return DEPLOYMENTS[name]
