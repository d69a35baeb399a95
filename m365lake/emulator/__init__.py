"""A Microsoft 365 tenant emulator: Graph and login endpoints over HTTPS on loopback.

``Tenant`` contains the data, ``build_app`` makes the ASGI app (for in-process tests with
``httpx.ASGITransport``), and ``EmulatorServer`` serves it with TLS for msal and httpx.
"""

from m365lake.emulator.app import EmulatorOptions, RequestRecord, build_app
from m365lake.emulator.faults import FaultPlan
from m365lake.emulator.model import Tenant
from m365lake.emulator.records import AppRegistration, LiveMessage
from m365lake.emulator.server import EmulatorServer

__all__ = [
    "AppRegistration",
    "EmulatorOptions",
    "EmulatorServer",
    "FaultPlan",
    "LiveMessage",
    "RequestRecord",
    "Tenant",
    "build_app",
]
