"""Load ``onedrive/<user>/…`` and ``sites/<site>/<library>/…`` folders into seed records.

Every file becomes one SeedFile with its exact bytes and its modification time. Files or
folders whose names OneDrive rejects are skipped and counted, so the caller can warn.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from m365lake.emulator.drives import check_item_name
from m365lake.emulator.seed import SeedFile, SeedSite, SeedTenant

SKIPPED_KIND = "name OneDrive rejects"
DEFAULT_LIBRARY = "Documents"


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug or "site"


def _owner_upn(name: str, domain: str) -> str:
    return name.lower() if "@" in name else f"{_slug(name)}@{domain}"


def load_drive_folders(
    tenant: SeedTenant,
    root: Path,
    domain: str,
    skipped: Counter[str],
    skipped_examples: list[str],
) -> set[str]:
    """Add the drive files under ``root`` to ``tenant``; return the OneDrive owners' UPNs."""
    owners: set[str] = set()
    onedrive = root / "onedrive"
    if onedrive.is_dir():
        for user_dir in sorted(p for p in onedrive.iterdir() if p.is_dir()):
            upn = _owner_upn(user_dir.name, domain)
            owners.add(upn)
            _add_tree(
                tenant,
                root,
                user_dir,
                ("onedrive", upn, DEFAULT_LIBRARY),
                skipped,
                skipped_examples,
            )
    sites = root / "sites"
    if sites.is_dir():
        for site_dir in sorted(p for p in sites.iterdir() if p.is_dir()):
            name = _slug(site_dir.name)
            libraries = sorted(p for p in site_dir.iterdir() if p.is_dir())
            loose = sorted(p for p in site_dir.iterdir() if p.is_file())
            library_names = [library.name for library in libraries]
            if loose and DEFAULT_LIBRARY not in library_names:
                library_names.insert(0, DEFAULT_LIBRARY)
            tenant.sites.append(
                SeedSite(name, site_dir.name, libraries=tuple(library_names or [DEFAULT_LIBRARY]))
            )
            for library in libraries:
                _add_tree(
                    tenant, root, library, ("site", name, library.name), skipped, skipped_examples
                )
            for file in loose:
                _add_file(
                    tenant,
                    root,
                    file,
                    ("site", name, DEFAULT_LIBRARY),
                    (file.name,),
                    skipped,
                    skipped_examples,
                )
    return owners


def _add_tree(
    tenant: SeedTenant,
    root: Path,
    top: Path,
    drive: tuple[str, str, str],
    skipped: Counter[str],
    skipped_examples: list[str],
) -> None:
    for dirpath, dirnames, filenames in os.walk(top):
        relative = Path(dirpath).relative_to(top).parts
        kept_dirs = []
        for name in sorted(dirnames):
            if _valid(name):
                kept_dirs.append(name)
            else:
                _skip(root, Path(dirpath) / name, skipped, skipped_examples)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            _add_file(
                tenant,
                root,
                Path(dirpath) / name,
                drive,
                (*relative, name),
                skipped,
                skipped_examples,
            )


def _add_file(
    tenant: SeedTenant,
    root: Path,
    file: Path,
    drive: tuple[str, str, str],
    path: tuple[str, ...],
    skipped: Counter[str],
    skipped_examples: list[str],
) -> None:
    if not _valid(file.name):
        _skip(root, file, skipped, skipped_examples)
        return
    try:
        content = file.read_bytes()
        modified = datetime.fromtimestamp(file.stat().st_mtime, UTC)
    except OSError:
        skipped["unreadable drive file"] += 1
        if len(skipped_examples) < 3:
            skipped_examples.append(file.relative_to(root).as_posix())
        return
    kind, owner, library = drive
    tenant.files.append(
        SeedFile(
            kind,
            owner,
            library,
            path,
            content,
            modified_at=modified,
            source=file.relative_to(root).as_posix(),
        )
    )


def _valid(name: str) -> bool:
    try:
        check_item_name(name)
    except ValueError:
        return False
    return True


def _skip(root: Path, path: Path, skipped: Counter[str], skipped_examples: list[str]) -> None:
    skipped[SKIPPED_KIND] += 1
    if len(skipped_examples) < 3:
        skipped_examples.append(path.relative_to(root).as_posix())
