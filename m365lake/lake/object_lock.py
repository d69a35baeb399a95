"""S3 Object Lock for the lake's write-once files: the retention rule and the version index.

``m365lake.retention.immutability`` explains where the settings live and how purge and
holds use them. This module contains what the storage layer needs:

- ``ObjectLockRule``: the lock mode and the number of days that each new write-once
  object (table file, blob, manifest) is retained for, read from the committed lake
  state once per storage object;
- ``VersionIndex``: for each write-once name with more than one version or a delete
  marker, the version the lake wrote. The lake creates every write-once name exactly
  once, with create-if-absent, so that version is the oldest one. A newer version or a
  delete marker came from someone overwriting or deleting the name through the storage
  API. On a locked bucket both requests succeed and leave the lake's version in place,
  so reads go to it and ``verify`` keeps passing;
- ``LockedObjectError``: a delete that Object Lock rejected, with the date it may
  succeed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from m365lake.errors import LakeError

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

SETTINGS_KEY = "immutability/object_lock"
"""Lake state key of the Object Lock settings: ``{"mode": ..., "days": ...}``."""
LEGAL_HOLDS_KEY = "immutability/legal_holds"
"""Lake state key naming each object under an S3 legal hold, with its version and holds."""
POLICY_PREFIX = "retention/policy/"
"""State keys of retention policies (``m365lake.retention.policies``)."""

WRITE_ONCE_DIRS = ("tables/", "blobs/", "commits/")
"""Folders whose names the lake writes once. Leases and caches elsewhere are rewritten."""

Mode = Literal["GOVERNANCE", "COMPLIANCE"]
MODES: tuple[Mode, ...] = ("GOVERNANCE", "COMPLIANCE")


def is_write_once(relative: str) -> bool:
    """Tell whether the lake writes ``relative`` once and never rewrites it."""
    return relative.startswith(WRITE_ONCE_DIRS)


@dataclass(frozen=True)
class ObjectLockRule:
    """How long each new write-once object stays locked, and in which S3 mode."""

    mode: Mode
    days: int
    """The longer of the configured lock period and the longest keep policy."""

    def retain_until(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(days=self.days)

    def upload_arguments(self, now: datetime | None = None) -> dict[str, Any]:
        """Return the PutObject (and CreateMultipartUpload) parameters that lock an upload."""
        return {
            "ObjectLockMode": self.mode,
            "ObjectLockRetainUntilDate": self.retain_until(now),
        }


def rule_from_state(values: Mapping[str, Any]) -> ObjectLockRule | None:
    """Return the lock rule that a lake state sets, or None when Object Lock is off.

    Keep policies extend the lock: a version a keep policy protects for K days from its
    own date is at most K days old when it is written, so locking it K days from the
    upload covers it. The longest keep policy of any workload applies to every file,
    because one blob can be shared by items of several workloads.
    """
    settings = values.get(SETTINGS_KEY)
    if not isinstance(settings, dict) or settings.get("mode") not in MODES:
        return None
    days = int(settings.get("days") or 0)
    for key, policy in values.items():
        is_keep = isinstance(policy, dict) and policy.get("action") == "keep"
        if key.startswith(POLICY_PREFIX) and is_keep:
            days = max(days, int(policy.get("days") or 0))
    if days <= 0:
        return None
    return ObjectLockRule(mode=settings["mode"], days=days)


def load_rule(storage: Storage) -> ObjectLockRule | None:
    """Return the lock rule of the lake on ``storage`` from its committed state."""
    # Imported here: commits imports the storage module, which imports this one lazily.
    from m365lake.lake.commits import ManifestLog, StateView

    return rule_from_state(StateView(storage, ManifestLog(storage)).current())


class LockedObjectError(LakeError):
    """A delete rejected because Object Lock retains the object's version."""

    def __init__(self, relative: str, *, retain_until: datetime | None, legal_hold: bool) -> None:
        self.relative = relative
        self.retain_until = retain_until
        self.legal_hold = legal_hold
        super().__init__(f"{relative} is {self.describe()}")

    def describe(self) -> str:
        """Say why the object is locked and when a purge can delete it."""
        reasons = []
        if self.retain_until is not None and self.retain_until > datetime.now(UTC):
            reasons.append(f"locked until {self.retain_until.isoformat()}")
        if self.legal_hold:
            reasons.append("under an S3 legal hold until a release")
        if not reasons:
            reasons.append("locked by the store")
        return " and ".join(reasons) + "; the next purge after that deletes it"


class VersionIndex:
    """The lake's own version of each write-once name that has others on top of it."""

    def __init__(self, authentic: dict[str, str]) -> None:
        self.authentic = authentic
        """Store key -> version id of its oldest version, for keys with more than one
        version or with a delete marker."""

    @classmethod
    def scan(cls, call_s3: Any, bucket: str, prefix: str) -> VersionIndex:
        """List every version under ``prefix``, one request per 1,000 versions.

        ``call_s3`` is ``S3FileSystem.call_s3``. S3 lists the versions of one key
        newest first, so the last version listed for a key is its oldest.
        """
        versions: dict[str, list[str]] = {}
        markers: set[str] = set()
        arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = call_s3("list_object_versions", **arguments)
            for entry in page.get("Versions", []):
                versions.setdefault(entry["Key"], []).append(entry["VersionId"])
            markers.update(entry["Key"] for entry in page.get("DeleteMarkers", []))
            if not page.get("IsTruncated"):
                break
            arguments["KeyMarker"] = page["NextKeyMarker"]
            arguments["VersionIdMarker"] = page["NextVersionIdMarker"]
        authentic = {
            key: ids[-1] for key, ids in versions.items() if len(ids) > 1 or key in markers
        }
        return cls(authentic)

    def names_under(self, prefix: str) -> list[str]:
        """Return the keys under ``prefix`` that have a version the lake wrote."""
        return [key for key in self.authentic if key.startswith(prefix)]


class S3ObjectVersions:
    """Version-aware reads, deletes and locks of write-once objects under one S3 prefix.

    ``fs`` is the lake's ``S3FileSystem``; ``root`` is ``bucket/prefix``. Nothing here
    runs before the first read or delete of a write-once name, and a bucket without
    versioning costs one GetBucketVersioning request per storage object.
    """

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.bucket, _, prefix = root.partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self._versioned: bool | None = None
        self._indexes: dict[str, VersionIndex] = {}
        """Top-level lake folder (``tables/``, ``blobs/``, ``commits/``) -> its index."""
        self._versioned_fs: Any = None
        self._pinned_fs: Any = None

    def is_versioned(self) -> bool:
        if self._versioned is None:
            status = self.fs.call_s3("get_bucket_versioning", Bucket=self.bucket).get("Status")
            self._versioned = status in {"Enabled", "Suspended"}
        return self._versioned

    def index(self, folder: str) -> VersionIndex:
        """Return the version index of a top-level lake folder, listing it on first use.

        Each folder is listed on its own, so a process that only reads manifests and
        tables never lists the blobs.
        NOTE: an index is built once per storage object, so a delete marker or an
        overwrite placed later is seen by the next process that opens the lake. Version
        ids recorded in the manifests would make the listing unnecessary.
        """
        index = self._indexes.get(folder)
        if index is None:
            index = (
                VersionIndex.scan(self.fs.call_s3, self.bucket, self.prefix + folder)
                if self.is_versioned()
                else VersionIndex({})
            )
            self._indexes[folder] = index
        return index

    def _folder_of(self, key: str) -> str:
        return key[len(self.prefix) :].split("/", 1)[0] + "/"

    def authentic_version(self, key: str) -> str | None:
        """Return the version id to read for ``key``, or None when its latest is the lake's."""
        return self.index(self._folder_of(key)).authentic.get(key)

    def keys_under(self, key_prefix: str) -> list[str]:
        return self.index(self._folder_of(key_prefix)).names_under(key_prefix)

    def open_version(self, store_path: str, version_id: str) -> Any:
        return self.fs_with_versions().open(store_path, "rb", version_id=version_id)

    def fs_with_versions(self) -> Any:
        # s3fs opens a given version only when built with version_aware=True, which
        # also makes listings read versions, so the lake's own fs stays without it.
        if self._versioned_fs is None:
            options = {**self.fs.storage_options, "version_aware": True}
            self._versioned_fs = type(self.fs)(skip_instance_cache=True, **options)
        return self._versioned_fs

    def pinned_fs(self) -> Any:
        """Return a version-aware s3fs that opens the lake's version of overwritten tables.

        DuckDB globs the names it is given, so a ``?versionId=`` suffix cannot reach
        s3fs through it. This file system takes plain names and substitutes the version.
        """
        if self._pinned_fs is None:
            authentic = self.index("tables/").authentic
            pinned = {f"{self.bucket}/{key}": version for key, version in authentic.items()}
            options = {**self.fs.storage_options, "version_aware": True}
            self._pinned_fs = _pinning_class(type(self.fs))(
                pinned, skip_instance_cache=True, **options
            )
        return self._pinned_fs

    def delete_all(self, key: str, relative: str) -> None:
        """Delete every version and delete marker of ``key``.

        Raises LockedObjectError when Object Lock keeps a version; the other versions
        are deleted all the same, and a later call deletes the rest.
        """
        listed = self.fs.call_s3("list_object_versions", Bucket=self.bucket, Prefix=key)
        entries = [
            {"Key": key, "VersionId": entry["VersionId"]}
            for section in ("Versions", "DeleteMarkers")
            for entry in listed.get(section, [])
            if entry["Key"] == key
        ]
        index = self._indexes.get(self._folder_of(key))
        if index is not None:
            index.authentic.pop(key, None)
        if not entries:
            return
        result = self.fs.call_s3(
            "delete_objects", Bucket=self.bucket, Delete={"Objects": entries, "Quiet": True}
        )
        failures = [error for error in result.get("Errors", []) if error.get("Key") == key]
        if not failures:
            return
        kept = [error["VersionId"] for error in failures if error.get("VersionId")]
        if index is not None and kept:
            index.authentic[key] = kept[-1]
        locked = self.lock_state(key, relative, kept[-1] if kept else None)
        if locked is not None:
            raise locked
        codes = ", ".join(sorted({str(error.get("Code")) for error in failures}))
        raise LakeError(
            f"{relative} could not be deleted: the store returned {codes} for some of its "
            "versions. Check the credentials' s3:DeleteObjectVersion right, then purge again"
        )

    def lock_state(
        self, key: str, relative: str, version_id: str | None = None
    ) -> LockedObjectError | None:
        """Return why Object Lock keeps ``key``'s version (default: the lake's), or None."""
        version = version_id or self.authentic_version(key)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version is not None:
            arguments["VersionId"] = version
        head = self.fs.call_s3("head_object", **arguments)
        until = parse_retain_until(head.get("ObjectLockRetainUntilDate"))
        legal_hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        if not legal_hold and (until is None or until <= datetime.now(UTC)):
            return None
        return LockedObjectError(relative, retain_until=until, legal_hold=legal_hold)

    def set_legal_hold(self, key: str, *, on: bool) -> str:
        """Place or release the legal hold on the lake's version of ``key``; return its id."""
        version = self.authentic_version(key)
        if version is None:
            head = self.fs.call_s3("head_object", Bucket=self.bucket, Key=key)
            version = str(head["VersionId"])
        self.fs.call_s3(
            "put_object_legal_hold",
            Bucket=self.bucket,
            Key=key,
            VersionId=version,
            LegalHold={"Status": "ON" if on else "OFF"},
        )
        return version

    def lock_latest(self, key: str, rule: ObjectLockRule) -> None:
        """Set ``rule``'s retention on the newest version of ``key``, just uploaded.

        S3 applies lock parameters given to CreateMultipartUpload, but moto 5.2 ignores
        them, so a multipart upload is locked in this second request.
        NOTE: a version written by someone else between the upload and this request
        would get the lock instead.
        """
        head = self.fs.call_s3("head_object", Bucket=self.bucket, Key=key)
        if head.get("ObjectLockMode"):
            return
        self.fs.call_s3(
            "put_object_retention",
            Bucket=self.bucket,
            Key=key,
            VersionId=head["VersionId"],
            Retention={"Mode": rule.mode, "RetainUntilDate": rule.retain_until()},
        )

    def object_lock_enabled(self) -> bool:
        """Tell whether the bucket has Object Lock enabled (it can only be set at creation)."""
        try:
            answer = self.fs.call_s3("get_object_lock_configuration", Bucket=self.bucket)
        except OSError as error:
            code = getattr(error.__cause__, "response", {}).get("Error", {}).get("Code")
            if code == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        configuration = answer.get("ObjectLockConfiguration") or {}
        return bool(configuration.get("ObjectLockEnabled") == "Enabled")


def _pinning_class(base: type) -> type:
    """Return a subclass of the s3fs class ``base`` that reads pinned versions by default."""

    class PinnedVersionsFileSystem(base):  # type: ignore[misc]
        def __init__(self, pinned: dict[str, str], **options: Any) -> None:
            super().__init__(**options)
            self.pinned = pinned
            """Store path (``bucket/key``) -> the version id to open for it."""

        def _pinned_version(self, path: str) -> str | None:
            bucket, key, _ = self.split_path(path)
            version: str | None = self.pinned.get(f"{bucket}/{key}")
            return version

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            if kwargs.get("version_id") is None and "r" in mode:
                kwargs["version_id"] = self._pinned_version(path)
            return super()._open(path, mode, **kwargs)

        async def _info(
            self,
            path: str,
            bucket: str | None = None,
            key: str | None = None,
            refresh: bool = False,
            version_id: str | None = None,
        ) -> Any:
            if version_id is None:
                version_id = self._pinned_version(path)
            return await super()._info(path, bucket, key, refresh, version_id)

    return PinnedVersionsFileSystem


def parse_retain_until(value: Any) -> datetime | None:
    """Return a retain-until date from a HeadObject response as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None
