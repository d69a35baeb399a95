"""GraphResource settings: explicit values win, optional endpoints fall back to the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.config import PUBLIC_AUTHORITY_HOST, PUBLIC_GRAPH_URL
from m365lake.errors import ConfigError
from pipelines.resources import GraphResource

_OPTIONAL = ("AZURE_AUTHORITY_HOST", "M365LAKE_GRAPH_URL", "M365LAKE_CA_BUNDLE")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*_OPTIONAL, "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_unset_endpoints_default_to_public_cloud() -> None:
    settings = GraphResource(tenant_id="t", client_id="c", client_secret="s").settings()

    assert settings.authority_host == PUBLIC_AUTHORITY_HOST
    assert settings.graph_url == PUBLIC_GRAPH_URL
    assert settings.ca_bundle is None


def test_endpoints_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/")
    monkeypatch.setenv("M365LAKE_GRAPH_URL", "https://graph.microsoft.us/v1.0/")
    monkeypatch.setenv("M365LAKE_CA_BUNDLE", "/etc/proxy-ca.pem")

    settings = GraphResource(tenant_id="t", client_id="c", client_secret="s").settings()

    assert settings.authority_host == "https://login.microsoftonline.us"
    assert settings.graph_url == "https://graph.microsoft.us/v1.0"
    assert settings.ca_bundle == Path("/etc/proxy-ca.pem")


def test_explicit_values_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365LAKE_GRAPH_URL", "https://graph.microsoft.us/v1.0")

    settings = GraphResource(
        tenant_id="t", client_id="c", client_secret="s", graph_url="https://127.0.0.1:8443/v1.0"
    ).settings()

    assert settings.graph_url == "https://127.0.0.1:8443/v1.0"


def test_credentials_never_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A certificate deployment must not silently pick up a stray client secret.
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "stray")

    settings = GraphResource(tenant_id="t", client_id="c", certificate_path="/k.pem").settings()

    assert settings.client_secret is None
    assert settings.certificate_path == Path("/k.pem")


def test_plain_http_graph_url_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365LAKE_GRAPH_URL", "http://graph.example/v1.0")

    with pytest.raises(ConfigError, match="https://"):
        GraphResource(tenant_id="t", client_id="c", client_secret="s").settings()


def test_secret_not_in_repr() -> None:
    settings = GraphResource(tenant_id="t", client_id="c", client_secret="hunter2").settings()

    assert "hunter2" not in repr(settings)
