"""Settings from the environment and the TLS context built from them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from m365lake.config import GraphSettings
from m365lake.errors import ConfigError
from m365lake.graph import GraphClient
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


def test_graph_timeout_from_environment() -> None:
    assert GraphSettings.from_env(TENANT).request_timeout_seconds == 60.0
    settings = GraphSettings.from_env({**TENANT, "M365LAKE_GRAPH_TIMEOUT": "2.5"})

    assert settings.request_timeout_seconds == 2.5


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_graph_timeout_invalid_rejected(value: str) -> None:
    with pytest.raises(ConfigError, match="M365LAKE_GRAPH_TIMEOUT"):
        GraphSettings.from_env({**TENANT, "M365LAKE_GRAPH_TIMEOUT": value})


def test_graph_client_uses_settings_timeout() -> None:
    settings = GraphSettings(
        tenant_id="t", client_id="c", client_secret="s", request_timeout_seconds=3.0
    )
    client = GraphClient(settings, token_provider=_NoTokens())
    try:
        assert client._http.timeout.read == 3.0
        assert client._http.timeout.connect == 3.0
    finally:
        asyncio.run(client.aclose())


class _NoTokens:
    def get_token(self, *, force_refresh: bool = False) -> Any:
        raise AssertionError("no token is requested")

    def close(self) -> None:
        pass
