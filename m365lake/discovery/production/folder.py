"""The production folder: its layout, and files written with their MD5 and SHA-256.

Layout (paths relative to the production folder, ``/`` shown; the load file uses ``\\``)::

    NATIVES/0001/ABC0000001.eml     natives, 1,000 documents per numbered folder by default
    TEXT/0001/ABC0000001.txt        extracted text, UTF-8
    DATA/loadfile.dat               Concordance DAT load file
    DATA/loadfile.csv               the same records as CSV
    REPORTS/duplicates.csv          every suppressed family and its master
    REPORTS/chain_of_custody.json   who, what, when, from which lake state, counts, errors
    MANIFEST.sha256                 SHA-256 of every other file, written last
    .m365lake-export/               progress of an export that has not finished

Each file is written under a temporary name beside its final one and renamed into place
when complete, so a file under its final name is always complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m365lake.discovery.errors import DiscoveryError
from m365lake.discovery.production.names import check_relative_path
from m365lake.errors import Terminal

NATIVES_DIR = "NATIVES"
TEXT_DIR = "TEXT"
DATA_DIR = "DATA"
REPORTS_DIR = "REPORTS"
DAT_FILE = f"{DATA_DIR}/loadfile.dat"
CSV_FILE = f"{DATA_DIR}/loadfile.csv"
DUPLICATES_FILE = f"{REPORTS_DIR}/duplicates.csv"
CUSTODY_FILE = f"{REPORTS_DIR}/chain_of_custody.json"
MANIFEST_FILE = "MANIFEST.sha256"
STATE_DIR = ".m365lake-export"
PARTIAL_SUFFIX = ".partial"
PRODUCTION_ENTRIES = frozenset(
    {NATIVES_DIR, TEXT_DIR, DATA_DIR, REPORTS_DIR, MANIFEST_FILE, STATE_DIR}
)
"""The top-level names a production consists of."""
_HASH_CHUNK_BYTES = 1 << 20


class ProductionFolderError(DiscoveryError, Terminal):
    """The destination folder cannot take this export: not empty, or another export's."""


@dataclass(frozen=True)
class FileRecord:
    """A file written into the production, with the hashes of its bytes."""

    path: str
    """Relative to the production folder, with ``/`` between components."""
    size: int
    md5: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "md5": self.md5, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FileRecord:
        return cls(str(value["path"]), int(value["size"]), str(value["md5"]), str(value["sha256"]))


def windows_path(relative: str) -> str:
    """Return a production path with ``\\`` separators, as review platforms expect."""
    return relative.replace("/", "\\")


def hash_file(path: Path) -> tuple[int, str, str]:
    """Return the size, MD5 and SHA-256 of the file at ``path``."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return size, md5.hexdigest(), sha256.hexdigest()


class ProductionFolder:
    """Write files under one production folder, never outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()

    def path(self, relative: str) -> Path:
        """Return the absolute path of ``relative`` after checking that it stays inside."""
        return self.root / check_relative_path(relative)

    def write_chunks(self, relative: str, chunks: Iterable[bytes]) -> FileRecord:
        """Write ``chunks`` to ``relative``, hashing them on the way; return the record.

        An exception from ``chunks`` (a blob that fails its hash check at the end) leaves
        no file behind.
        """
        target = self.path(relative)
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        temporary = target.with_name(target.name + PARTIAL_SUFFIX)
        md5 = hashlib.md5(usedforsecurity=False)
        sha256 = hashlib.sha256()
        size = 0
        try:
            with open(temporary, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    size += len(chunk)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return FileRecord(relative, size, md5.hexdigest(), sha256.hexdigest())

    def write_bytes(self, relative: str, data: bytes) -> FileRecord:
        return self.write_chunks(relative, [data])

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def remove_partials(self) -> int:
        """Delete temporary files that an interrupted export left; return how many."""
        removed = 0
        for directory in (NATIVES_DIR, TEXT_DIR, DATA_DIR, REPORTS_DIR):
            base = self.root / directory
            if not base.is_dir():
                continue
            for leftover in base.rglob(f"*{PARTIAL_SUFFIX}"):
                leftover.unlink(missing_ok=True)
                removed += 1
        return removed

    def files(self) -> list[str]:
        """Return every file in the production but the state folder, sorted, ``/``-separated."""
        found = []
        for directory, subdirectories, names in os.walk(self.root):
            here = Path(directory)
            if here == self.root:
                subdirectories[:] = [name for name in subdirectories if name != STATE_DIR]
            for name in names:
                found.append((here / name).relative_to(self.root).as_posix())
        return sorted(found)


def prepare_destination(root: Path, *, overwrite: bool) -> None:
    """Create ``root``, or empty it for ``overwrite``; raise when it contains other files.

    Only a folder whose entries are all production entries is emptied, so a wrong path
    given with --overwrite cannot delete unrelated files.
    """
    if root.exists() and not root.is_dir():
        raise ProductionFolderError(f"the destination {root} is a file; give a folder path")
    entries = sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []
    if entries and not overwrite:
        raise ProductionFolderError(
            f"the destination {root} is not empty ({len(entries)} entries, e.g. "
            f"{entries[0]!r}). Give an empty or new folder, --resume to continue an "
            "interrupted export there, or --overwrite to replace an earlier production"
        )
    foreign = [name for name in entries if name not in PRODUCTION_ENTRIES]
    if foreign:
        raise ProductionFolderError(
            f"refusing to overwrite {root}: it contains {', '.join(repr(n) for n in foreign[:5])}, "
            "which no production has. Check the path, or empty the folder yourself"
        )
    for name in entries:
        entry = root / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    root.mkdir(parents=True, exist_ok=True)
