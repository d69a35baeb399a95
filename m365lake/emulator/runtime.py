"""Start an emulated tenant from a corpus folder or the built-in generator."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import platformdirs

from m365lake.emulator.app import EmulatorOptions
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.generator_teams import generate_teams
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.model import Tenant
from m365lake.emulator.server import EmulatorServer

log = logging.getLogger(__name__)

PORT_FILE = "port"


def default_state_dir() -> Path:
    """Folder that keeps the emulator's private CA between runs."""
    return Path(platformdirs.user_data_dir("m365lake")) / "emulator"


def build_tenant(corpus: Path | None = None) -> Tenant:
    """Build the tenant from ``corpus`` when given, else from the deterministic generator."""
    seed = load_corpus(corpus) if corpus is not None else generate_tenant()
    log.info("emulated tenant: %d users, %d messages", len(seed.users), len(seed.messages))
    tenant = Tenant.from_seed(seed)
    # A corpus has no Teams content, so generated teams are added to either tenant.
    generate_teams(tenant)
    return tenant


class RunningEmulator:
    """An emulator server started outside a ``with`` block; call ``stop()`` when done."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.tenant = server.tenant

    def environment(self) -> dict[str, str]:
        return self.server.environment()

    def stop(self) -> None:
        self.server.stop()


def _remembered_port(state_dir: Path) -> int:
    try:
        return int((state_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0


def start_emulator(
    *,
    corpus: Path | None,
    state_dir: Path,
    port: int = 0,
    options: EmulatorOptions | None = None,
    extra_roles: Sequence[str] = (),
) -> RunningEmulator:
    """Start the emulator; with ``port`` 0, reuse the port of the last start when it is free.

    Delta links are absolute URLs, so a lake filled from this emulator keeps working
    across restarts only while the emulator listens on the same address. ``extra_roles``
    are granted to the app besides the read permissions, e.g. ``RESTORE_ROLES``.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    tenant = build_tenant(corpus)
    tenant.app.roles.extend(role for role in extra_roles if role not in tenant.app.roles)
    candidates = [port] if port else [_remembered_port(state_dir), 0]
    for candidate in dict.fromkeys(candidates):
        server = EmulatorServer(tenant, state_dir, options=options, port=candidate)
        try:
            server.start()
        except OSError as error:
            log.info("port %d is taken (%s); choosing another", candidate, error)
            continue
        (state_dir / PORT_FILE).write_text(f"{server.port}\n")
        return RunningEmulator(server)
    raise OSError(f"the emulator could not listen on 127.0.0.1 port {port}")
