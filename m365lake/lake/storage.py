"""File operations on the lake root, kept in one place so the lake can move to fsspec.

Everything above this module names files by their POSIX path relative to the lake root
(``tables/messages/mailbox_id=…/run-0.parquet``). Only this module turns those names into
local paths and makes writes durable and exclusive.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO, Literal, overload

from m365lake.errors import LakeError

if TYPE_CHECKING:
    from m365lake.lake.object_store import ObjectStorage

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
REPLACE_LOCK = f"{TEMP_PREFIX}replace.lock"
"""The lock file in a folder whose files ``replace_if_unchanged`` overwrites."""


PRIVATE_DIR_MODE = 0o700
"""Mode of the folders m365lake creates: mail and files are for the archive's owner only."""
PRIVATE_FILE_MODE = 0o600
"""Mode of the files m365lake writes itself (tables, manifests, state, blobs)."""


def make_private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each with PRIVATE_DIR_MODE.

    ``Path.mkdir(parents=True)`` gives the parents the default mode instead.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        # exist_ok: another writer may create the same folder at the same moment.
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def open_private(path: Path) -> BinaryIO:
    """Create ``path`` for writing, readable by its owner only; FileExistsError if it exists."""
    return open(path, "xb", opener=_private_opener)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, PRIVATE_FILE_MODE)


class LocalStorage:
    """The lake root on a local (or locally mounted) file system."""

    is_remote = False

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        """The lake location as a user names it: here, the folder path."""
        return str(self.root)

    @property
    def local_dir(self) -> Path:
        """The local folder for what derives from the lake (search index, SQL catalog)."""
        return self.root

    def url(self, relative: str) -> str:
        """Return the name under which DuckDB and pyarrow open a lake file."""
        return str(self.path(relative))

    def url_aliases(self, relative: str) -> list[str]:
        """Return every name under which DuckDB may open the file: here only ``url``."""
        return [self.url(relative)]

    def open_read(self, relative: str) -> BinaryIO:
        return open(self.path(relative), "rb")

    def arrow_filesystem(self) -> None:
        """Return the pyarrow file system for ``url`` names; None means the local one."""
        return None

    def register(self, connection: object) -> None:
        """Make ``url`` names readable on a DuckDB connection; local files need nothing."""

    def new_temp(self, directory: str, label: str) -> Path:
        """Return a free local path for a file that ``adopt`` later moves under a lake name.

        It lies in ``directory`` of the lake, so ``adopt`` can link it into place.
        """
        folder = self.path(directory)
        make_private_dirs(folder)
        return folder / f"{TEMP_PREFIX}{label}-{uuid.uuid4().hex}"

    def adopt(self, temp: Path, relative: str) -> bool:
        """Give the finished file ``temp`` the lake name ``relative`` unless it is taken.

        Return False when the name existed: the first writer wins and nothing is
        replaced, because a hard link fails on an existing name. ``temp`` is removed
        either way.
        """
        target = self.path(relative)
        make_private_dirs(target.parent)
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        else:
            self.sync_directory(target.parent)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def check_writable(self, directories: tuple[str, ...]) -> None:
        """Raise LakeError unless a file can be created and removed in each folder."""
        for directory in ("", *directories):
            folder = self.path(directory) if directory else self.root
            try:
                with tempfile.NamedTemporaryFile(dir=folder, prefix=f"{TEMP_PREFIX}write-check-"):
                    pass
            except OSError as error:
                raise LakeError(
                    f"the lake at {self.root} is not writable: a test file in {folder} could "
                    f"not be created ({error.strerror or error}). Fix the folder's "
                    "permissions, or choose another lake folder"
                ) from error

    def path(self, relative: str) -> Path:
        """Return the absolute local path of a lake-relative POSIX name."""
        name = PurePosixPath(relative)
        if name.is_absolute() or ".." in name.parts:
            raise LakeError(
                f"invalid lake path {relative!r}: names must be relative to the lake root "
                "and must not contain '..'"
            )
        return self.root.joinpath(*name.parts)

    def relative(self, path: str | Path) -> str:
        """Return the lake-relative name of a local path or of a ``url`` name."""
        return Path(path).relative_to(self.root).as_posix()

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def read_bytes(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def is_dir(self, relative: str) -> bool:
        return self.path(relative).is_dir()

    def list_tree(self, directory: str) -> list[str]:
        """Return the lake-relative names of all files below ``directory``, temp files excluded."""
        root = self.path(directory)
        return sorted(
            self.relative(path)
            for path in root.rglob("*")
            if path.is_file() and not path.name.startswith(TEMP_PREFIX)
        )

    def list_names(self, directory: str) -> list[str]:
        """Return the file names directly inside ``directory``, temp files excluded."""
        try:
            entries = os.listdir(self.path(directory))
        except FileNotFoundError:
            return []
        return [name for name in entries if not name.startswith(TEMP_PREFIX)]

    def make_dirs(self, relative: str) -> None:
        make_private_dirs(self.path(relative))

    def open_new(self, relative: str) -> BinaryIO:
        """Create a file for writing; raise FileExistsError if the name is taken."""
        target = self.path(relative)
        make_private_dirs(target.parent)
        return open_private(target)

    def close_durably(self, handle: BinaryIO) -> tuple[str, int]:
        """Flush, fsync and close a file from ``open_new``, and return its SHA-256 and size.

        The name was claimed by ``open_new``, so this never raises FileExistsError.
        """
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self.sync_directory(Path(handle.name).parent)
        return hash_local_file(Path(handle.name))

    def upload_as(self, handle: BinaryIO, relative: str) -> tuple[str, int]:
        """Move a closed file from ``open_new`` to the free name ``relative``.

        Raises FileExistsError, keeping the file, when the name is taken. Object
        storage needs this when another writer claimed a name first. Here ``open_new``
        has already claimed one, so the method only keeps both storages alike.
        """
        target = self.path(relative)
        make_private_dirs(target.parent)
        os.link(handle.name, target)
        os.unlink(handle.name)
        self.sync_directory(target.parent)
        return hash_local_file(target)

    def abandon_new(self, handle: BinaryIO) -> None:
        """Close and delete a file from ``open_new`` that is not to be kept."""
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)

    def hash_file(self, relative: str) -> tuple[str, int]:
        """Return the SHA-256 hex digest and size of a stored file, read in chunks."""
        return hash_local_file(self.path(relative))

    def publish(self, relative: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Write ``data`` under ``relative`` atomically; return False if it already existed.

        The bytes go to a temp file in the same directory, are fsynced, and then appear
        under the final name in one step. With ``overwrite=False`` that step is a hard
        link, which fails when the name exists, so the first writer wins and readers never
        see a half-written file. ``overwrite=True`` is for derived caches only.
        """
        target = self.path(relative)
        make_private_dirs(target.parent)
        temp = target.with_name(f"{TEMP_PREFIX}{target.name}-{uuid.uuid4().hex}")
        try:
            with open_private(temp) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if overwrite:
                os.replace(temp, target)
            else:
                try:
                    os.link(temp, target)
                except FileExistsError:
                    return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self.sync_directory(target.parent)
        return True

    def read_tagged(self, relative: str) -> tuple[bytes, str]:
        """Return a file's bytes and the tag that ``replace_if_unchanged`` expects.

        The tag is the SHA-256 of the bytes, so it changes with every write of other
        content. Records written through it carry a fresh token or expiry each time,
        so no write repeats the bytes before it.
        """
        target = self.path(relative)
        # The lock file exists before the first tag is handed out, so every ``remove``
        # that could race with a replacement in this folder takes the lock too.
        _open_replace_lock(target.parent, create=True).close()
        data = target.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def replace_if_unchanged(self, relative: str, data: bytes, tag: str) -> bool:
        """Overwrite a file only while its tag is ``tag``; return False otherwise.

        False also means the file is gone. Replacers and removers in one folder
        serialise on an exclusive ``flock`` of its lock file, and the tag is checked
        again under that lock, so of two replacers holding the same tag one wins.
        """
        target = self.path(relative)
        try:
            lock = _open_replace_lock(target.parent, create=True)
        except FileNotFoundError:
            return False
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                current = target.read_bytes()
            except FileNotFoundError:
                return False
            if hashlib.sha256(current).hexdigest() != tag:
                return False
            self.publish(relative, data, overwrite=True)
        return True

    def remove(self, relative: str) -> None:
        target = self.path(relative)
        lock = _open_replace_lock(target.parent, create=False)
        if lock is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            return
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)

    def sync_directory(self, directory: Path) -> None:
        """Fsync a directory so a new name in it survives a power loss."""
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError as error:  # pragma: no cover - platforms without directory fds
            logger.debug("cannot open %s to fsync it: %s", directory, error)
            return
        try:
            os.fsync(fd)
        except OSError as error:  # pragma: no cover - some file systems reject it
            logger.debug("fsync of directory %s failed: %s", directory, error)
        finally:
            os.close(fd)


def hash_local_file(path: Path) -> tuple[str, int]:
    """Return the SHA-256 hex digest and size of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@overload
def _open_replace_lock(folder: Path, *, create: Literal[True]) -> BinaryIO: ...
@overload
def _open_replace_lock(folder: Path, *, create: Literal[False]) -> BinaryIO | None: ...
def _open_replace_lock(folder: Path, *, create: bool) -> BinaryIO | None:
    """Open the folder's replace lock file, or return None if it is missing and not ``create``.

    NOTE: ``flock`` excludes other processes on this host and on file systems that
    pass the lock on (local disks, NFSv4 through Linux's emulation with fcntl
    locks). A share mounted without lock support lets two hosts replace at once.
    """
    path = folder / REPLACE_LOCK
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        descriptor = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return None
    return os.fdopen(descriptor, "r+b")


def open_storage(location: str | Path) -> LocalStorage | ObjectStorage:
    """Return the storage for a lake location: a local folder, or an object storage URL.

    ``s3://bucket/prefix``, ``az://container/prefix`` and ``abfs://container/prefix``
    name a lake on object storage (``m365lake.lake.object_store``).
    """
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        from m365lake.lake.object_store import open_object_storage

        return open_object_storage(text)
    return LocalStorage(Path(text).expanduser().resolve())


if TYPE_CHECKING:
    from typing import TypeAlias

    Storage: TypeAlias = LocalStorage | ObjectStorage
    """The place of a lake; both classes offer the same operations on lake-relative names."""
