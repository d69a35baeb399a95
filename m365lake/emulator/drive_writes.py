"""Drive writes of the emulated tenant: file uploads, folder creation, renames and timestamps.

``DriveWriteMixin`` adds the operations restore needs on top of ``DriveTenantMixin``.
Every write goes through the same change log as the seeding helpers, so new content gets a
new eTag, cTag, QuickXorHash and version, and shows up in drive delta like any other change.
Name clashes follow Graph's ``@microsoft.graph.conflictBehavior``: ``fail`` raises
``NameConflictError``, ``rename`` picks a free name such as ``report 1.docx``, and
``replace`` overwrites the existing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from m365lake.emulator.drives import DriveTenantMixin, ItemInfo, _Drive, _Item, check_item_name

ConflictBehavior = Literal["fail", "rename", "replace"]
CONFLICT_BEHAVIORS: tuple[ConflictBehavior, ...] = ("fail", "rename", "replace")
RENAME_ATTEMPTS = 10_000


class NameConflictError(ValueError):
    """An item with the requested name already exists in the target folder."""

    def __init__(self, name: str, parent_id: str, existing_id: str) -> None:
        super().__init__(f"an item named {name!r} already exists in folder {parent_id}")
        self.name = name
        self.parent_id = parent_id
        self.existing_id = existing_id


@dataclass(frozen=True)
class FileSystemInfo:
    """The client-side timestamps of ``fileSystemInfo``; None leaves a value to the server."""

    created_at: datetime | None = None
    modified_at: datetime | None = None


def free_name(taken: set[str], name: str) -> str:
    """Return ``name``, or ``stem N.ext`` with the lowest N >= 1 not in ``taken`` (case-folded)."""
    if name.casefold() not in taken:
        return name
    dot = name.rfind(".")
    stem, extension = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    for number in range(1, RENAME_ATTEMPTS):
        candidate = f"{stem} {number}{extension}"
        if candidate.casefold() not in taken:
            return candidate
    raise ValueError(f"no free name for {name!r} after {RENAME_ATTEMPTS} attempts")


class DriveWriteMixin(DriveTenantMixin):
    """Write half of the drive API; every method takes the tenant lock."""

    def put_drive_file(
        self,
        drive_id: str,
        parent_id: str,
        name: str,
        content: bytes,
        *,
        conflict: ConflictBehavior = "replace",
        file_system_info: FileSystemInfo | None = None,
        by: str | None = None,
    ) -> tuple[ItemInfo, bool]:
        """Store ``content`` as file ``name`` in folder ``parent_id``.

        Returns the item and True when a new item was created (False when ``replace``
        overwrote an existing file). Raises KeyError for an unknown drive or folder,
        ValueError for a name SharePoint rejects, and NameConflictError for a clash under
        ``fail`` or a clash with a folder under ``replace``.
        """
        with self._lock:
            drive = self._writable_drive(drive_id)
            parent = self._folder(drive, parent_id)
            check_item_name(name)
            actor = self._actor(drive, by)
            existing_id = drive.children.get((parent.id, name.casefold()))
            if existing_id is not None:
                existing = drive.items[existing_id]
                if conflict == "fail":
                    raise NameConflictError(name, parent.id, existing_id)
                if conflict == "replace":
                    # NOTE: Graph's documents do not say what replacing a folder with a
                    # file does; the emulator rejects it rather than delete the folder.
                    if existing.is_folder or existing.package_type is not None:
                        raise NameConflictError(name, parent.id, existing_id)
                    self._write_content(drive, existing, content, file_system_info, actor)
                    return self._info(drive, existing), False
                name = free_name(self._names_in(drive, parent.id), name)
            item = self._new_item(drive, parent.id, name, is_folder=False, actor=actor)
            self._write_content(drive, item, content, file_system_info, actor)
            return self._info(drive, item), True

    def replace_drive_file_content(
        self,
        drive_id: str,
        item_id: str,
        content: bytes,
        *,
        file_system_info: FileSystemInfo | None = None,
        by: str | None = None,
    ) -> ItemInfo:
        """Replace the content of an existing file, as ``PUT /items/{id}/content`` does."""
        with self._lock:
            drive = self._writable_drive(drive_id)
            item = drive.items.get(item_id)
            if item is None:
                raise KeyError(f"no drive item {item_id!r} in drive {drive_id}")
            if item.is_folder or item.package_type is not None:
                raise ValueError(f"item {item_id} is a folder or package, not a file")
            self._write_content(drive, item, content, file_system_info, self._actor(drive, by))
            return self._info(drive, item)

    def create_drive_folder(
        self,
        drive_id: str,
        parent_id: str,
        name: str,
        *,
        conflict: ConflictBehavior | None = None,
        file_system_info: FileSystemInfo | None = None,
        by: str | None = None,
    ) -> tuple[ItemInfo, bool]:
        """Create folder ``name`` in ``parent_id``; return it and whether it is new.

        Without ``fail`` an existing folder of that name is returned unchanged, as
        OneDrive does when a folder POST is repeated. ``fail``, or a file of that name
        under any behaviour but ``rename``, raises NameConflictError.
        """
        with self._lock:
            drive = self._writable_drive(drive_id)
            parent = self._folder(drive, parent_id)
            check_item_name(name)
            existing_id = drive.children.get((parent.id, name.casefold()))
            if existing_id is not None:
                existing = drive.items[existing_id]
                if conflict == "rename":
                    name = free_name(self._names_in(drive, parent.id), name)
                elif conflict == "fail" or not existing.is_folder:
                    raise NameConflictError(name, parent.id, existing_id)
                else:
                    # NOTE: with ``replace`` real OneDrive may empty the folder; the emulator
                    # treats it like the default and keeps the folder and its contents.
                    return self._info(drive, existing), False
            actor = self._actor(drive, by)
            folder = self._new_item(drive, parent.id, name, is_folder=True, actor=actor)
            self._apply_times(folder, file_system_info)
            self._log_change(drive, folder)
            return self._info(drive, folder), True

    def update_drive_item(
        self,
        drive_id: str,
        item_id: str,
        *,
        name: str | None = None,
        file_system_info: FileSystemInfo | None = None,
    ) -> ItemInfo:
        """Rename an item and/or set its ``fileSystemInfo`` timestamps, as PATCH does."""
        with self._lock:
            drive = self._writable_drive(drive_id)
            item = drive.items.get(item_id)
            if item is None:
                raise KeyError(f"no drive item {item_id!r} in drive {drive_id}")
            if item.parent_id is None:
                raise ValueError("the drive root cannot be renamed or re-dated")
            if name is not None and name != item.name:
                check_item_name(name)
                existing_id = drive.children.get((item.parent_id, name.casefold()))
                if existing_id is not None and existing_id != item.id:
                    raise NameConflictError(name, item.parent_id, existing_id)
                del drive.children[(item.parent_id, item.name.casefold())]
                item.name = name
                drive.children[(item.parent_id, name.casefold())] = item.id
            if file_system_info is None:
                item.modified_at = datetime.now(UTC)
            else:
                self._apply_times(item, file_system_info)
            item.etag_version += 1
            self._log_change(drive, item)
            return self._info(drive, item)

    def drive_folder_names(self, drive_id: str, folder_id: str) -> set[str]:
        """Return the case-folded names in a folder, for choosing a free name."""
        with self._lock:
            return self._names_in(self._writable_drive(drive_id), folder_id)

    # ---- internals ---------------------------------------------------------------------

    def _writable_drive(self, drive_id: str) -> _Drive:
        drive = self._drives.get(drive_id)
        if drive is None:
            raise KeyError(f"no drive {drive_id!r}")
        return drive

    def _folder(self, drive: _Drive, folder_id: str) -> _Item:
        folder = drive.items.get(folder_id)
        if folder is None or not folder.is_folder:
            raise KeyError(f"no folder {folder_id!r} in drive {drive.id}")
        return folder

    @staticmethod
    def _names_in(drive: _Drive, folder_id: str) -> set[str]:
        return {name for parent, name in drive.children if parent == folder_id}

    def _write_content(
        self,
        drive: _Drive,
        item: _Item,
        content: bytes,
        file_system_info: FileSystemInfo | None,
        actor: str | None,
    ) -> None:
        """Set new content; without ``fileSystemInfo`` the modification time becomes now."""
        times = file_system_info or FileSystemInfo()
        when = times.modified_at or datetime.now(UTC)
        first_content = item.content_version == 0
        self._set_content(item, bytes(content), when, actor)
        if times.created_at is not None:
            item.created_at = times.created_at
        elif first_content:
            # A new file dated in the past must not look created after its last change.
            item.created_at = min(item.created_at, when)
        if not first_content:
            item.etag_version += 1
        self._log_change(drive, item)

    @staticmethod
    def _apply_times(item: _Item, times: FileSystemInfo | None) -> None:
        if times is None:
            return
        if times.created_at is not None:
            item.created_at = times.created_at
        if times.modified_at is not None:
            item.modified_at = times.modified_at
