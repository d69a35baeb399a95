"""Start an emulated tenant from a corpus folder or the built-in generator."""

from __future__ import annotations

import logging
from pathlib import Path

import platformdirs

from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.model import Tenant
from m365lake.emulator.server import EmulatorOptions, EmulatorServer

log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    """Folder that keeps the emulator's private CA between runs."""
    return Path(platformdirs.user_data_dir("m365lake")) / "emulator"


def build_tenant(corpus: Path | None = None) -> Tenant:
    """Build the tenant from ``corpus`` when given, else from the deterministic generator."""
    seed = load_corpus(corpus) if corpus is not None else generate_tenant()
    log.info("emulated tenant: %d users, %d messages", len(seed.users), len(seed.messages))
    return Tenant.from_seed(seed)


class RunningEmulator:
    """An emulator server started outside a ``with`` block; call ``stop()`` when done."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.tenant = server.tenant

    def environment(self) -> dict[str, str]:
        return self.server.environment()

    def stop(self) -> None:
        self.server.__exit__(None, None, None)


def start_emulator(
    *, corpus: Path | None, state_dir: Path, port: int = 0, options: EmulatorOptions | None = None
) -> RunningEmulator:
    state_dir.mkdir(parents=True, exist_ok=True)
    server = EmulatorServer(build_tenant(corpus), state_dir, options=options, port=port)
    server.__enter__()
    return RunningEmulator(server)
