"""Microsoft Graph access: msal tokens, the async client, paging and error mapping."""

from m365lake.graph.auth import AccessToken, TokenProvider
from m365lake.graph.client import GraphClient, GraphStats, UploadResponse
from m365lake.graph.paging import DeltaPage

__all__ = [
    "AccessToken",
    "DeltaPage",
    "GraphClient",
    "GraphStats",
    "TokenProvider",
    "UploadResponse",
]
