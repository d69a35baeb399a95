"""SharePoint sites: ``/sites`` (with ``search``), ``/sites/getAllSites``, one site, its drives."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365lake.emulator import context
from m365lake.emulator.auth import require_role
from m365lake.emulator.drive_json import drive_json, site_json
from m365lake.emulator.model import Tenant
from m365lake.emulator.protocol import (
    GraphHTTPError,
    absolute_link,
    decode_token,
    encode_token,
    json_response,
    parse_top,
)

SITES_READ_ROLES = (
    "Sites.Read.All",
    "Sites.ReadWrite.All",
    "Sites.Manage.All",
    "Sites.FullControl.All",
)
SITES_DEFAULT_PAGE = 200
# NOTE: Graph documents no maximum $top for site listing; 999 is an assumption.
SITES_MAX_PAGE = 999


def sites_reader(request: Request) -> Tenant:
    require_role(
        context.claims_of(request),
        SITES_READ_ROLES,
        "accessDenied",
        "Either scp or roles claim need to be present in the token.",
    )
    return context.tenant_of(request)


def _site_page(request: Request, path: str) -> dict[str, Any]:
    """Page the tenant's sites, filtered by ``search``; the nextLink carries ``$skiptoken``."""
    tenant = sites_reader(request)
    params = request.query_params
    raw = params.get("$skiptoken")
    if raw is not None:
        state = decode_token(raw, name="$skiptoken")
        search, top, offset = state["q"], state["t"], state["o"]
    else:
        search = params.get("search")
        top = parse_top(params.get("$top"), maximum=SITES_MAX_PAGE, default=SITES_DEFAULT_PAGE)
        offset = 0
    sites = tenant.sites()
    if search is not None and search.strip() not in ("", "*"):
        words = search.strip().strip('"').lower().split()
        sites = [
            s
            for s in sites
            if all(w in f"{s.name} {s.display_name} {s.web_url}".lower() for w in words)
        ]
    base = str(request.base_url).rstrip("/")
    payload: dict[str, Any] = {
        "@odata.context": f"{base}/v1.0/$metadata#sites",
        "value": [site_json(s) for s in sites[offset : offset + top]],
    }
    if offset + top < len(sites):
        token = encode_token({"q": search, "t": top, "o": offset + top})
        payload["@odata.nextLink"] = absolute_link(request, path, {"$skiptoken": token})
    return payload


async def list_sites(request: Request) -> Response:
    return json_response(_site_page(request, "/v1.0/sites"))


async def get_all_sites(request: Request) -> Response:
    return json_response(_site_page(request, "/v1.0/sites/getAllSites"))


def _site_or_404(request: Request) -> tuple[Tenant, Any]:
    tenant = sites_reader(request)
    site = tenant.resolve_site(request.path_params["site"], by_name=False)
    if site is None:
        raise GraphHTTPError(404, "itemNotFound", "Requested site could not be found")
    return tenant, site


async def get_site(request: Request) -> Response:
    _, site = _site_or_404(request)
    base = str(request.base_url).rstrip("/")
    return json_response(
        {"@odata.context": f"{base}/v1.0/$metadata#sites/$entity", **site_json(site)}
    )


async def list_site_drives(request: Request) -> Response:
    tenant, site = _site_or_404(request)
    base = str(request.base_url).rstrip("/")
    drives = [drive_json(tenant, d) for d in tenant.drives_of_site(site.id)]
    return json_response({"@odata.context": f"{base}/v1.0/$metadata#drives", "value": drives})


routes = [
    Route("/v1.0/sites", list_sites),
    Route("/v1.0/sites/getAllSites", get_all_sites),
    Route("/v1.0/sites/{site}", get_site),
    Route("/v1.0/sites/{site}/drives", list_site_drives),
]
