"""Settings from the environment and the TLS context built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.config import GraphSettings
from m365lake.errors import ConfigError
from m365lake.graph.tls import build_ssl_context

TENANT = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}


def test_http_graph_url_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        GraphSettings.from_env({**TENANT, "M365LAKE_GRAPH_URL": "http://127.0.0.1:8443/v1.0"})

    message = str(caught.value)
    assert "M365LAKE_GRAPH_URL" in message
    assert "http://127.0.0.1:8443/v1.0" in message
    assert "https://" in message


def test_https_graph_url_kept() -> None:
    settings = GraphSettings.from_env(
        {**TENANT, "M365LAKE_GRAPH_URL": "https://127.0.0.1:8443/v1.0/"}
    )

    assert settings.graph_url == "https://127.0.0.1:8443/v1.0"


def test_ca_bundle_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build_ssl_context(tmp_path)

    message = str(caught.value)
    assert str(tmp_path) in message
    assert "is a directory, expected a PEM file" in message
    assert "M365LAKE_CA_BUNDLE" in message


def test_ca_bundle_missing_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        build_ssl_context(tmp_path / "absent.pem")
