"""Check a production against its manifest, as a recipient would with ``sha256sum -c``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from m365lake.discovery.production.folder import (
    MANIFEST_FILE,
    STATE_DIR,
    ProductionFolder,
    hash_file,
)


@dataclass
class ProductionCheck:
    """The outcome of ``verify_production``."""

    files: int = 0
    """Files the manifest lists."""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_production(root: str | Path) -> ProductionCheck:
    """Re-hash every file the manifest lists; report missing, changed and unlisted files.

    A production without a manifest is reported as incomplete: its export was
    interrupted and can be finished with ``--resume``.
    """
    folder = ProductionFolder(Path(root))
    check = ProductionCheck()
    manifest = folder.root / MANIFEST_FILE
    if not manifest.is_file():
        check.problems.append(
            f"{manifest} is missing, so the production is incomplete; finish it with "
            "`m365lake export ... --resume`"
        )
        return check
    listed: set[str] = set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, separator, relative = line.partition("  ")
        if not separator or len(digest) != 64:
            check.problems.append(f"line {number} of {MANIFEST_FILE} is not '<sha256>  <path>'")
            continue
        try:
            path = folder.path(relative)
        except ValueError as error:
            check.problems.append(f"line {number} of {MANIFEST_FILE}: {error}")
            continue
        listed.add(relative)
        check.files += 1
        if not path.is_file():
            check.problems.append(f"{relative} is listed in the manifest but missing")
        elif hash_file(path)[2] != digest:
            check.problems.append(f"{relative} does not match its SHA-256 in the manifest")
    for relative in folder.files():
        if relative not in listed and relative != MANIFEST_FILE:
            check.problems.append(f"{relative} is not listed in the manifest")
    if (folder.root / STATE_DIR).exists():
        check.problems.append(f"{STATE_DIR}/ is left over from the export; delete it")
    return check
