"""The lake root under a prefix of an object store (S3-compatible or Azure Blob Storage).

``ObjectStorage`` offers the operations of ``storage.LocalStorage`` on an fsspec file
system: s3fs for ``s3://bucket/prefix``, adlfs for ``az://container/prefix``. It uses
fsspec rather than the cloud SDKs (boto3, azure-storage-blob) for two reasons. DuckDB
is to read object storage through a file system registered on its connection, because
its own extensions cannot be downloaded on every machine. And both file systems expose
the one atomic primitive the lake needs, create-if-absent. s3fs sends
``If-None-Match: *`` on the PUT or on the multipart completion (``mode="create"``).
adlfs uploads with ``overwrite=False``, which sends the same condition on the Put Blob
or on the block list commit. Neither store shows an object before its upload completes, so
readers never see a half-written file. Lake code does not list to decide what is
committed, because manifests name every file.

Credentials come from each cloud's usual environment: the AWS chain
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, profiles, instance
roles) for S3, and ``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_NAME``
with a key, a SAS token or Azure identity for Azure. ``open_object_storage`` accepts
explicit options too.

``storage.open_storage`` routes ``s3://``, ``az://`` and ``abfs://`` lake locations
here. Derived files (search index, SQL catalog, state cache, manifest copies, upload
spool) live in ``local_dir``, never in the store.

NOTE: Azure immutability (time-based retention and legal holds on blob versions) is not
implemented, because Azurite, the only Azure server the tests reach, implements none of
it. An Azure lake has no write-once protection beyond create-if-absent uploads.

On S3, write-once names (``object_lock.WRITE_ONCE_DIRS``) get the lake's Object Lock
retention on upload, reads go to the oldest version of a name someone wrote over, and
``remove`` deletes every version (``m365lake.retention.immutability``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import duckdb
import fsspec
import platformdirs
import pyarrow.fs as pafs
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from botocore.exceptions import BotoCoreError
from fsspec.spec import AbstractFileSystem
from s3fs.core import calculate_chunksize

from m365lake.errors import LakeError
from m365lake.lake.object_lock import (
    LockedObjectError,
    ObjectLockRule,
    S3ObjectVersions,
    is_write_once,
    load_rule,
)
from m365lake.lake.storage import TEMP_PREFIX, hash_local_file, make_private_dirs

PROTOCOLS = {"s3": "s3", "az": "az", "abfs": "az"}
"""URL schemes of lakes on object storage, and the fsspec protocol of each."""

_CHUNK_BYTES = 1 << 20
BLOB_PREFIX = "blobs/"
"""Blobs are named by their content's hash, so a blob uploaded again over a delete marker
has the same content as the lake's version. ``exists`` and uploads of blobs therefore
skip the version index, so that backups need not list every blob's versions."""
_PIPE_CHUNK_BYTES = 50 << 20
"""The part size of s3fs's ``pipe_file``; it uploads in parts from twice this size."""

STORE_ERRORS: tuple[type[Exception], ...] = (OSError, BotoCoreError, AzureError)
"""Exceptions a store operation raises for a failure of the store, the network or credentials.

s3fs turns most S3 errors into OSError but lets botocore's credential errors through.
"""


class ObjectStorage:
    """The lake root at ``root`` (``bucket/prefix``) on an fsspec object store.

    A file from ``open_new`` is written to a local spool file first and uploaded by
    ``close_durably`` with create-if-absent, so the name is finally claimed there: a
    writer that lost the race gets FileExistsError from ``close_durably``, not from
    ``open_new``.
    """

    is_remote = True

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        local_dir: Path | None = None,
        *,
        scheme: str | None = None,
    ) -> None:
        self.fs = fs
        self.root = root.strip("/")
        self._url_scheme = scheme
        """The scheme the user wrote (``az`` and ``abfs`` name the same store), for messages."""
        self.local_dir = local_dir or cache_folder(self.location)
        """The local folder for what derives from the lake (search index, SQL catalog)."""
        self.spool = self.local_dir / "spool"
        """Folder of complete files waiting for their upload."""
        self._pending: dict[str, str] = {}
        """Spool file path -> lake-relative name, for the files ``open_new`` handed out."""
        self._lock_rule: ObjectLockRule | None = None
        self._lock_rule_loaded = False
        self._versions: S3ObjectVersions | None = None

    @property
    def location(self) -> str:
        """The lake URL as the user wrote it, such as ``s3://bucket/prefix``."""
        return f"{self._url_scheme or self._scheme}://{self.root}"

    def open_read(self, relative: str) -> BinaryIO:
        version = self._authentic_version(relative)
        if version is not None:
            opened: BinaryIO = self._s3_versions.open_version(self.path(relative), version)
            return opened
        handle: BinaryIO = self.fs.open(self.path(relative), "rb")
        return handle

    def arrow_filesystem(self) -> pafs.FileSystem:
        """Return a pyarrow file system that opens ``path`` names through ``fs``."""
        return pafs.PyFileSystem(pafs.FSSpecHandler(self._reading_fs()))

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read ``url`` names through ``fs``, with no DuckDB extension."""
        if not connection.filesystem_is_registered(self._scheme):
            connection.register_filesystem(self._reading_fs())

    def _reading_fs(self) -> AbstractFileSystem:
        """Return the file system through which DuckDB and pyarrow open ``url`` names.

        When someone wrote over a write-once name, it is one that opens the lake's own
        version of that name (``S3ObjectVersions.pinned_fs``).
        """
        if not self._is_azure and self._s3_versions.index("tables/").authentic:
            pinned: AbstractFileSystem = self._s3_versions.pinned_fs()
            return pinned
        return self.fs

    def new_temp(self, directory: str, label: str) -> Path:
        """Return a free spool path for a file that ``adopt`` later uploads under a lake name."""
        self.path(directory)
        make_private_dirs(self.spool)
        return self.spool / f"{TEMP_PREFIX}{label}-{uuid.uuid4().hex}"

    def adopt(self, temp: Path, relative: str) -> bool:
        """Upload the finished file ``temp`` under ``relative`` unless the name is taken.

        Return False when it existed (the upload is create-if-absent, so the first
        writer wins). ``temp`` is removed either way.
        """
        try:
            self._put_new(str(temp), relative)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        return True

    def check_writable(self, directories: tuple[str, ...]) -> None:
        """Raise LakeError unless an object can be created and removed under the lake prefix.

        Object stores grant rights per bucket or container, not per folder, so one
        probe covers ``directories``.
        """
        del directories
        probe = f"{TEMP_PREFIX}write-check-{uuid.uuid4().hex}"
        try:
            created = self.fs.pipe_file(self.path(probe), b"", mode="create")
            version = created.get("VersionId") if isinstance(created, dict) else None
            if version and not self._is_azure:
                # On a versioned bucket a plain delete would leave the probe behind a
                # delete marker, one more version for each writer that starts.
                bucket, key, _ = self.fs.split_path(self.path(probe))
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, VersionId=version)
            else:
                self.fs.rm_file(self.path(probe))
        except OSError as error:
            raise LakeError(
                f"the lake at {self.location} is not writable: a test object could not be "
                f"created and removed ({error}). Check the credentials in the environment "
                "and their rights on the bucket or container"
            ) from error

    @property
    def _scheme(self) -> str:
        # The file system's first protocol, because fsspec names files with it, and so
        # DuckDB does: adlfs answers ``az://`` names with ``abfs://`` ones.
        protocol = self.fs.protocol
        return str(protocol[0] if isinstance(protocol, tuple | list) else protocol)

    def path(self, relative: str) -> str:
        """Return the store path (``bucket/prefix/name``) of a lake-relative POSIX name."""
        name = PurePosixPath(relative)
        if name.is_absolute() or ".." in name.parts:
            raise LakeError(
                f"invalid lake path {relative!r}: names must be relative to the lake root "
                "and must not contain '..'"
            )
        return f"{self.root}/{name.as_posix()}" if name.parts else self.root

    def url(self, relative: str) -> str:
        """Return the URL under which a connection with ``fs`` registered finds the file."""
        return f"{self._scheme}://{self.path(relative)}"

    def url_aliases(self, relative: str) -> list[str]:
        """Return every URL of the name, one per scheme of the file system (``az``, ``abfs``…)."""
        protocol = self.fs.protocol
        schemes = protocol if isinstance(protocol, tuple | list) else (protocol,)
        return [f"{scheme}://{self.path(relative)}" for scheme in schemes]

    def relative(self, path: str) -> str:
        """Return the lake-relative name of a store path or of a ``url`` name."""
        text = path.split("://", 1)[-1].strip("/")
        if not text.startswith(self.root + "/"):
            raise LakeError(f"store path {path!r} is outside the lake root {self.root!r}")
        return text[len(self.root) + 1 :]

    def exists(self, relative: str) -> bool:
        if not relative.startswith(BLOB_PREFIX) and self._authentic_version(relative) is not None:
            return True
        path = self.path(relative)
        self.fs.invalidate_cache(path)
        if self._is_azure:
            return bool(self.fs.exists(path))
        # After a 404, s3fs's ``exists`` also lists the name as a folder, one request more
        # per missing name. Lake names are always objects, so a HEAD decides.
        bucket, key, _ = self.fs.split_path(path)
        try:
            self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def read_bytes(self, relative: str) -> bytes:
        if self._authentic_version(relative) is not None:
            with self.open_read(relative) as handle:
                return handle.read()
        data: bytes = self.fs.cat_file(self.path(relative))
        return data

    def is_dir(self, relative: str) -> bool:
        path = self.path(relative)
        self.fs.invalidate_cache(path)
        return bool(self.fs.isdir(path))

    def list_tree(self, directory: str) -> list[str]:
        """Return the lake-relative names of all files below ``directory``, temp files excluded."""
        path = self.path(directory)
        self.fs.invalidate_cache(path)
        found = {
            self.relative(found)
            for found in self.fs.find(path)
            if not PurePosixPath(found).name.startswith(TEMP_PREFIX)
        }
        found.update(self._hidden_names(directory, recursive=True))
        return sorted(found)

    def list_names(self, directory: str) -> list[str]:
        """Return the names directly inside ``directory``, temp files excluded."""
        path = self.path(directory)
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        names = {PurePosixPath(entry.rstrip("/")).name for entry in entries}
        names.update(self._hidden_names(directory, recursive=False))
        return [name for name in names if not name.startswith(TEMP_PREFIX)]

    def _hidden_names(self, directory: str, *, recursive: bool) -> list[str]:
        """Return names under ``directory`` that only a delete marker or overwrite hides.

        Listings show the newest version of each name, so a name whose lake version lies
        under a delete marker would go missing. ``recursive`` returns lake-relative
        names below ``directory``; without it, the names directly inside it.
        """
        folder = directory.strip("/")
        if self._is_azure or not is_write_once(f"{folder}/"):
            return []
        bucket = self.fs.split_path(self.path(folder))[0]
        keys = self._s3_versions.keys_under(self._s3_key(folder) + "/")
        names = [self.relative(f"{bucket}/{key}") for key in keys]
        if recursive:
            return names
        return [name[len(folder) + 1 :] for name in names if "/" not in name[len(folder) + 1 :]]

    def make_dirs(self, relative: str) -> None:
        """Do nothing: object stores have no folders, names carry their prefixes."""
        self.path(relative)

    def open_new(self, relative: str) -> BinaryIO:
        """Start a new file; FileExistsError if the name is taken now.

        The name is claimed only by ``close_durably``, which raises FileExistsError if
        another writer took it meanwhile.
        """
        if self.exists(relative):
            raise FileExistsError(errno.EEXIST, "lake file exists", relative)
        make_private_dirs(self.spool)
        descriptor, spool_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.spool)
        os.close(descriptor)
        # Opened by name so that ``handle.name`` finds the file again (mkstemp made it 0600).
        handle = open(spool_name, "r+b")  # noqa: SIM115 - close_durably closes it
        self._pending[spool_name] = relative
        return handle

    def close_durably(self, handle: BinaryIO) -> tuple[str, int]:
        """Close a file from ``open_new`` and upload it under its name if still free.

        Return the SHA-256 and size of its bytes, hashed from the spool file so that
        nobody downloads the object again to list it in a manifest. FileExistsError
        means another writer claimed the name first. The spool file is then kept for
        ``upload_as`` under another name or for ``abandon_new``.
        """
        handle.close()
        return self.upload_as(handle, self._pending[handle.name])

    def upload_as(self, handle: BinaryIO, relative: str) -> tuple[str, int]:
        """Upload a closed file from ``open_new`` under ``relative`` if that name is free.

        Return the SHA-256 and size of its bytes. On FileExistsError, or on a failed
        upload, the spool file stays until ``upload_as`` or ``abandon_new`` is called.
        """
        spool_name = handle.name
        self._pending[spool_name] = relative
        digest = hash_local_file(Path(spool_name))
        self._put_new(spool_name, relative)
        del self._pending[spool_name]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spool_name)
        return digest

    def abandon_new(self, handle: BinaryIO) -> None:
        """Close and delete the spool file of a file from ``open_new``; upload nothing."""
        handle.close()
        self._pending.pop(handle.name, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)

    def _put_new(self, local: str, relative: str) -> None:
        if not relative.startswith(BLOB_PREFIX) and self._authentic_version(relative) is not None:
            # S3 lets a create-if-absent upload through when the newest entry is a
            # delete marker, but the lake's version of the name is still there.
            raise FileExistsError(errno.EEXIST, "lake file exists", relative)
        lock = self._lock_arguments(relative)
        try:
            self.fs.put_file(local, self.path(relative), mode="create", **lock)
        except OSError as error:
            if _name_taken(error):
                raise FileExistsError(errno.EEXIST, "lake file exists", relative) from error
            raise
        size = os.path.getsize(local)
        if lock and size >= 2 * calculate_chunksize(size):
            self._lock_multipart_upload(relative)

    def hash_file(self, relative: str) -> tuple[str, int]:
        """Return the SHA-256 hex digest and size of a stored file, read in chunks."""
        digest = hashlib.sha256()
        size = 0
        with self.open_read(relative) as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def publish(self, relative: str, data: bytes, *, overwrite: bool = False) -> bool:
        """Write ``data`` under ``relative`` in one upload; return False if it already existed.

        Readers see the old object or the new one, never a part. With
        ``overwrite=False`` the upload is conditional, so the first writer wins.
        """
        path = self.path(relative)
        lock: dict[str, Any] = {}
        if not overwrite:
            hidden = not relative.startswith(BLOB_PREFIX) and self._authentic_version(relative)
            if hidden:
                return False
            lock = self._lock_arguments(relative)
        try:
            self.fs.pipe_file(path, data, mode="overwrite" if overwrite else "create", **lock)
        except OSError as error:
            if not overwrite and _name_taken(error):
                return False
            raise
        if lock and len(data) >= 2 * _PIPE_CHUNK_BYTES:
            self._lock_multipart_upload(relative)
        return True

    def read_tagged(self, relative: str) -> tuple[bytes, str]:
        """Return a file's bytes and the entity tag that ``replace_if_unchanged`` expects.

        The tag is read before the bytes, so a change in between makes the replacement
        fail rather than overwrite a record its writer never saw.
        """
        path = self.path(relative)
        self.fs.invalidate_cache(path)
        info = self.fs.info(path)
        tag = str(info.get("ETag") or info.get("etag"))
        data: bytes = self.fs.cat_file(path)
        return data, tag

    def replace_if_unchanged(self, relative: str, data: bytes, tag: str) -> bool:
        """Overwrite a file only while its entity tag is ``tag``; return False otherwise.

        Leases and locks are renewed this way, so that of two holders only the one that
        saw the current record can renew it. False also means the file is gone.
        """
        path = self.path(relative)
        if self._is_azure:
            condition: dict[str, Any] = {
                "etag": tag,
                "match_condition": MatchConditions.IfNotModified,
            }
        else:
            condition = {"IfMatch": tag}
        try:
            self.fs.pipe_file(path, data, **condition)
        except (FileNotFoundError, ResourceModifiedError, ResourceNotFoundError):
            return False
        except OSError as error:
            if _precondition_failed(error):
                return False
            raise
        self.fs.invalidate_cache(path)
        return True

    def set_legal_hold(self, relative: str, *, on: bool) -> str:
        """Place (``on=True``) or release the S3 legal hold on a file's current version.

        Return the version id the hold applies to: later writes or deletes of the name
        leave that version in place, so a caller records it. The bucket must have
        Object Lock enabled.
        """
        _, key = self._s3_bucket_and_key(relative, "legal holds")
        return self._s3_versions.set_legal_hold(key, on=on)

    def _s3_bucket_and_key(self, relative: str, feature: str) -> tuple[str, str]:
        if self._is_azure:
            # NOTE: Azure immutability (version-level legal holds and time-based
            # retention) is not implemented, because Azurite, the only Azure server the
            # tests can reach, implements none of it.
            raise LakeError(
                f"{feature} on Azure Blob Storage are not supported yet: {relative!r} "
                "stays without one; use an S3 bucket with Object Lock for held items"
            )
        bucket, key, _ = self.fs.split_path(self.path(relative))
        return bucket, key

    @property
    def _is_azure(self) -> bool:
        protocol = self.fs.protocol
        protocols = protocol if isinstance(protocol, tuple | list) else (protocol,)
        return "az" in protocols

    def remove(self, relative: str) -> None:
        """Delete a file; a write-once file on a versioned bucket loses every version.

        A plain delete on a versioned bucket only adds a delete marker. Raises
        LockedObjectError when Object Lock keeps the lake's version of the file.
        """
        if not self._is_azure and is_write_once(relative) and self._s3_versions.is_versioned():
            self._s3_versions.delete_all(self._s3_key(relative), relative)
            self.fs.invalidate_cache(self.path(relative))
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    @property
    def object_lock_rule(self) -> ObjectLockRule | None:
        """The S3 Object Lock retention of new write-once objects, from the lake state.

        Read once per storage object, so settings committed by another process apply
        to lakes opened after the commit. Always None on Azure.
        """
        if not self._lock_rule_loaded:
            self._lock_rule = None if self._is_azure else load_rule(self)
            self._lock_rule_loaded = True
        return self._lock_rule

    def reload_object_lock(self) -> None:
        """Read the Object Lock settings from the lake state again at the next upload."""
        self._lock_rule_loaded = False

    def object_lock_enabled(self) -> bool:
        """Tell whether the bucket has S3 Object Lock enabled; LakeError on Azure."""
        self._s3_bucket_and_key("", "Object Lock settings")
        return self._s3_versions.object_lock_enabled()

    def lock_status(self, relative: str) -> LockedObjectError | None:
        """Return why Object Lock keeps the lake's version of a file, or None if it does not."""
        if self._is_azure or not is_write_once(relative):
            return None
        return self._s3_versions.lock_state(self._s3_key(relative), relative)

    @property
    def _s3_versions(self) -> S3ObjectVersions:
        if self._versions is None:
            self._versions = S3ObjectVersions(self.fs, self.root)
        return self._versions

    def _s3_key(self, relative: str) -> str:
        key: str = self.fs.split_path(self.path(relative))[1]
        return key

    def _authentic_version(self, relative: str) -> str | None:
        """Return the version id to read for a write-once name someone wrote over, or None."""
        if self._is_azure or not is_write_once(relative):
            return None
        return self._s3_versions.authentic_version(self._s3_key(relative))

    def _lock_arguments(self, relative: str) -> dict[str, Any]:
        rule = self.object_lock_rule if is_write_once(relative) else None
        return rule.upload_arguments() if rule is not None else {}

    def _lock_multipart_upload(self, relative: str) -> None:
        rule = self.object_lock_rule
        if rule is not None:
            self._s3_versions.lock_latest(self._s3_key(relative), rule)


def _name_taken(error: OSError) -> bool:
    """Tell whether a failed create-if-absent upload failed because the name exists.

    s3fs raises FileExistsError only when the error names the If-None-Match condition
    (AWS S3 and moto do). A store that omits the condition gets OSError(EINVAL) quoting
    the precondition failure from s3fs, so that case counts too.
    """
    return isinstance(error, FileExistsError) or _precondition_failed(error)


def _precondition_failed(error: OSError) -> bool:
    """Tell whether s3fs raised this OSError(EINVAL) for an S3 PreconditionFailed error.

    s3fs keeps the botocore error as the cause, and its code is the only reliable sign.
    """
    response = getattr(error.__cause__, "response", None)
    if error.errno != errno.EINVAL or not isinstance(response, dict):
        return False
    return response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}


def open_object_storage(url: str, **options: Any) -> ObjectStorage:
    """Return the storage for a lake URL such as ``s3://bucket/lake`` or ``az://container/lake``.

    ``options`` go to the fsspec file system (for example ``endpoint_url`` for an
    S3-compatible store, ``connection_string`` for Azure); without them each cloud's
    usual environment variables apply.
    """
    parts = urlsplit(url)
    protocol = PROTOCOLS.get(parts.scheme)
    if protocol is None:
        raise LakeError(
            f"lake location {url!r}: unknown object storage scheme {parts.scheme!r}; "
            f"use one of {', '.join(f'{scheme}://' for scheme in PROTOCOLS)}"
        )
    if not parts.netloc:
        raise LakeError(
            f"lake location {url!r} names no bucket or container; "
            f"write it as {parts.scheme}://BUCKET/PREFIX"
        )
    root = f"{parts.netloc}{parts.path}".strip("/")
    try:
        fs = fsspec.filesystem(protocol, skip_instance_cache=True, **options)
    except ValueError as error:
        # adlfs raises ValueError when it finds no account to connect to.
        raise LakeError(
            f"could not open the lake at {url}: {error}. {CREDENTIAL_ADVICE[protocol]}"
        ) from error
    return ObjectStorage(fs, root, scheme=parts.scheme)


CREDENTIAL_ADVICE = {
    "s3": "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
    "AWS_ENDPOINT_URL for a store other than AWS",
    "az": "Set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
    "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or a service principal",
}


def cache_folder(location: str) -> Path:
    """Return the local folder for a remote lake's search index, SQL catalog and spool.

    ``M365LAKE_CACHE_DIR`` chooses the parent folder, by default the user's cache folder
    (``~/.cache/m365lake`` on Linux). Each lake URL gets its own subfolder.
    """
    parent = os.environ.get("M365LAKE_CACHE_DIR")
    base = Path(parent).expanduser() if parent else Path(platformdirs.user_cache_dir("m365lake"))
    digest = hashlib.sha256(location.encode("utf-8")).hexdigest()[:16]
    return base / "lakes" / digest
