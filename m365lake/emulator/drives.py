"""OneDrive and SharePoint drives of the emulated tenant: sites, drives, items and their change log.

``DriveTenantMixin`` adds the drive API to ``Tenant``. It uses the tenant's lock and users
and a change sequence of its own. Every item change appends log entries for the item and
for all its ancestors, because OneDrive reports a folder as changed when anything below it
changes. Change rounds of drive delta read that log the way mail delta reads the message
log: an entry counts only while it is the item's latest, so a round returns the latest
state of each changed item. Initial rounds list the live items in creation order.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import mimetypes
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365lake.emulator import records
from m365lake.emulator.seed import SeedFile, SeedSite, SeedUser
from m365lake.quickxor import quickxor_b64

DRIVE_KINDS = ("onedrive", "site")
ONEDRIVE_LIBRARY = "Documents"
RESYNC_CODES = ("resyncChangesApplyDifferences", "resyncChangesUploadDifferences")

# NOTE: OneDrive and SharePoint reject these characters and names in item names. The list
# follows Microsoft's published restrictions as third-party migration guides restate them,
# and was not checked against Microsoft's own page.
INVALID_NAME_CHARACTERS = frozenset('"*:<>?/\\|')
RESERVED_NAMES = frozenset(
    (
        ".lock",
        "con",
        "prn",
        "aux",
        "nul",
        "desktop.ini",
        *(f"com{n}" for n in range(10)),
        *(f"lpt{n}" for n in range(10)),
    )
)


def check_item_name(name: str) -> None:
    """Raise ValueError for a name OneDrive and SharePoint do not accept."""
    if not name or name in (".", ".."):
        raise ValueError(f"invalid drive item name {name!r}: it is empty or a dot name")
    bad = sorted({c for c in name if c in INVALID_NAME_CHARACTERS or ord(c) < 32})
    if bad:
        raise ValueError(f"invalid drive item name {name!r}: it contains {''.join(bad)!r}")
    lowered = name.lower()
    if lowered in RESERVED_NAMES or lowered.startswith("~$") or "_vti_" in lowered:
        raise ValueError(
            f"invalid drive item name {name!r}: reserved names, '~$' prefixes and '_vti_' "
            "are not allowed"
        )


def item_id_for(*parts: str) -> str:
    """Return a business-style item id: ``01`` and 32 upper-case base32 characters."""
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return "01" + base64.b32encode(digest).decode()[:32]


def drive_id_for_parts(*parts: str) -> str:
    """Return a business-style drive id: ``b!`` and base64url text."""
    digest = hashlib.sha512("|".join(parts).encode()).digest()
    return "b!" + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:64]


@dataclass
class DriveVersion:
    """One stored content version of a file; ``label`` is SharePoint's ``N.0``."""

    label: str
    content: bytes
    modified_at: datetime
    modified_by: str | None


SHARING_SCOPES = ("anonymous", "organization", "users")


@dataclass(frozen=True)
class Sharing:
    """How an item is shared, as Graph's ``shared`` facet reports it."""

    scope: str
    """``anonymous`` (anyone with the link), ``organization`` or ``users``."""
    shared_by: str | None
    """User id of the person who shared it."""
    shared_at: datetime


@dataclass
class _Item:
    id: str
    drive_id: str
    parent_id: str | None
    name: str
    is_folder: bool
    guid: str
    created_at: datetime
    modified_at: datetime
    created_by: str | None
    modified_by: str | None
    created_seq: int
    modified_seq: int
    etag_version: int = 1
    content_version: int = 0
    content: bytes = b""
    quick_xor: str = ""
    package_type: str | None = None
    malware: str | None = None
    versions: list[DriveVersion] = field(default_factory=list)
    source: str | None = None
    sharing: Sharing | None = None


@dataclass(frozen=True)
class DriveTombstone:
    """A deleted item as drive delta reports it."""

    seq: int
    id: str
    parent_id: str | None
    is_folder: bool
    created_seq: int
    deleted_at: datetime


@dataclass(frozen=True)
class DriveLogEntry:
    seq: int
    item_id: str
    time: datetime
    removed: DriveTombstone | None = None


@dataclass
class _Drive:
    id: str
    kind: str
    owner: str
    """User principal name (OneDrive) or site name."""
    library: str
    owner_user_id: str | None
    site_id: str | None
    web_url: str
    root_id: str
    created_at: datetime
    items: dict[str, _Item] = field(default_factory=dict)
    children: dict[tuple[str, str], str] = field(default_factory=dict)
    """(parent id, case-folded name) to item id: names are unique per folder ignoring case."""
    log: list[DriveLogEntry] = field(default_factory=list)
    generation: int = 1
    resync_code: str = RESYNC_CODES[0]
    item_counter: int = 0
    used_bytes: int = 0
    """Sum of the current content sizes of the drive's files, kept up to date by
    ``_set_content`` and ``delete_item`` because every drive route reads it."""


@dataclass(frozen=True)
class SiteInfo:
    """A SharePoint site as the routes see it."""

    id: str
    name: str
    display_name: str
    hostname: str
    web_url: str
    collection_id: str
    web_id: str
    libraries: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class DriveInfo:
    id: str
    kind: str
    owner: str
    library: str
    owner_user_id: str | None
    site_id: str | None
    web_url: str
    root_id: str
    created_at: datetime
    used_bytes: int


@dataclass(frozen=True)
class ItemInfo:
    """A snapshot of one drive item; ``path`` is the names from the root, empty for the root."""

    id: str
    drive_id: str
    parent_id: str | None
    name: str
    path: tuple[str, ...]
    is_folder: bool
    is_root: bool
    guid: str
    etag_version: int
    content_version: int
    size: int
    child_count: int
    quick_xor: str
    mime_type: str
    created_at: datetime
    modified_at: datetime
    created_by: str | None
    modified_by: str | None
    package_type: str | None
    malware: str | None
    modified_seq: int
    sharing: Sharing | None = None


def mime_type_of(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


class DriveTenantMixin:
    """Drive half of ``Tenant``; ``Tenant.__init__`` calls ``_init_drives``."""

    _lock: threading.RLock
    domain: str
    _users: dict[str, SeedUser]
    _upn_index: dict[str, str]

    def _init_drives(self) -> None:
        # A sequence of its own, so drive changes leave the mail change keys untouched.
        self._drive_seq = records.SeqCounter()
        self._drives: dict[str, _Drive] = {}
        self._drive_delta_repeats = False
        self._drive_index: dict[tuple[str, str, str], str] = {}
        self._sites: dict[str, SiteInfo] = {}
        self._site_names: dict[str, str] = {}

    # ---- sites and drives --------------------------------------------------------------

    @property
    def sharepoint_hostname(self) -> str:
        return f"{self.domain.split('.')[0]}.sharepoint.com"

    def add_site(self, site: SeedSite) -> str:
        """Add a site with its libraries; return the site id ``{hostname},{guid},{guid}``."""
        with self._lock:
            key = site.name.lower()
            if key in self._site_names:
                raise ValueError(f"site {site.name!r} already exists")
            hostname = self.sharepoint_hostname
            collection = records.derive_uuid("site-collection", hostname, key)
            web = records.derive_uuid("site-web", hostname, key)
            site_id = f"{hostname},{collection},{web}"
            info = SiteInfo(
                id=site_id,
                name=site.name,
                display_name=site.display_name,
                hostname=hostname,
                web_url=f"https://{hostname}/sites/{site.name}",
                collection_id=collection,
                web_id=web,
                libraries=tuple(site.libraries),
                created_at=datetime(2020, 1, 1, tzinfo=UTC),
            )
            self._sites[site_id] = info
            self._site_names[key] = site_id
            for library in site.libraries:
                library_path = "Shared%20Documents" if library == "Documents" else library
                self._new_drive(
                    "site", site.name, library, None, site_id, f"{info.web_url}/{library_path}"
                )
            return site_id

    def sites(self) -> list[SiteInfo]:
        with self._lock:
            return sorted(self._sites.values(), key=lambda s: (s.created_at, s.name.lower()))

    def resolve_site(self, key: str, *, by_name: bool = True) -> SiteInfo | None:
        """Find a site by id (case-insensitive) or, unless ``by_name`` is false, by name.

        Routes pass ``by_name=False`` because Graph addresses a site by id, not by name.
        """
        with self._lock:
            for site_id, info in self._sites.items():
                if site_id.lower() == key.lower():
                    return info
            site_id_by_name = self._site_names.get(key.lower()) if by_name else None
            return None if site_id_by_name is None else self._sites[site_id_by_name]

    def _create_onedrive(self, user_id: str, upn: str) -> None:
        host = f"{self.domain.split('.')[0]}-my.sharepoint.com"
        personal = upn.replace("@", "_").replace(".", "_")
        self._new_drive(
            "onedrive",
            upn,
            ONEDRIVE_LIBRARY,
            user_id,
            None,
            f"https://{host}/personal/{personal}/Documents",
        )

    def _new_drive(
        self,
        kind: str,
        owner: str,
        library: str,
        owner_user_id: str | None,
        site_id: str | None,
        web_url: str,
    ) -> _Drive:
        drive_id = drive_id_for_parts("drive", kind, owner.lower(), library.lower())
        created = datetime(2020, 1, 1, tzinfo=UTC)
        drive = _Drive(
            id=drive_id,
            kind=kind,
            owner=owner,
            library=library,
            owner_user_id=owner_user_id,
            site_id=site_id,
            web_url=web_url,
            root_id=item_id_for(drive_id, "root"),
            created_at=created,
        )
        seq = self._drive_seq.next()
        drive.items[drive.root_id] = _Item(
            id=drive.root_id,
            drive_id=drive_id,
            parent_id=None,
            name="root",
            is_folder=True,
            guid=records.derive_uuid("driveitem", drive.root_id).upper(),
            created_at=created,
            modified_at=created,
            created_by=owner_user_id,
            modified_by=owner_user_id,
            created_seq=seq,
            modified_seq=seq,
        )
        drive.log.append(DriveLogEntry(seq, drive.root_id, datetime.now(UTC)))
        self._drives[drive_id] = drive
        self._drive_index[(kind, owner.lower(), library.lower())] = drive_id
        return drive

    def drive_id_for(self, kind: str, owner: str, library: str = ONEDRIVE_LIBRARY) -> str:
        """Return the drive id of a user's OneDrive (``onedrive``, UPN) or a site library."""
        if kind not in DRIVE_KINDS:
            raise ValueError(f"drive kind must be one of {DRIVE_KINDS}, got {kind!r}")
        with self._lock:
            try:
                return self._drive_index[(kind, owner.lower(), library.lower())]
            except KeyError:
                raise KeyError(f"no {kind} drive for {owner!r} library {library!r}") from None

    def drive_info(self, drive_id: str) -> DriveInfo | None:
        with self._lock:
            drive = self._drives.get(drive_id)
            if drive is None:
                return None
            used = drive.used_bytes
            return DriveInfo(
                drive.id,
                drive.kind,
                drive.owner,
                drive.library,
                drive.owner_user_id,
                drive.site_id,
                drive.web_url,
                drive.root_id,
                drive.created_at,
                used,
            )

    def drives_of_site(self, site_id: str) -> list[DriveInfo]:
        with self._lock:
            found = [d.id for d in self._drives.values() if d.site_id == site_id]
        infos = [self.drive_info(drive_id) for drive_id in found]
        return [info for info in infos if info is not None]

    def onedrive_of(self, user_id: str) -> DriveInfo | None:
        with self._lock:
            for drive in self._drives.values():
                if drive.kind == "onedrive" and drive.owner_user_id == user_id:
                    return self.drive_info(drive.id)
            return None

    # ---- mutations ---------------------------------------------------------------------

    def add_folder_item(
        self,
        owner_kind: str,
        owner: str,
        library: str,
        path: tuple[str, ...],
        *,
        by: str | None = None,
    ) -> str:
        """Return the id of the drive folder at ``path``, creating it and missing parents."""
        with self._lock:
            drive = self._drives[self.drive_id_for(owner_kind, owner, library)]
            return self._ensure_folder(drive, path, self._actor(drive, by)).id

    def add_file(
        self,
        owner_kind: str,
        owner: str,
        library: str,
        path: tuple[str, ...],
        content: bytes,
        *,
        modified_at: datetime | None = None,
        by: str | None = None,
        package_type: str | None = None,
        malware: str | None = None,
        source: str | None = None,
    ) -> str:
        """Store a file at ``path`` (folders created as needed); return its item id.

        ``by`` is the author's user principal name (default: the OneDrive owner, or no
        user for site libraries). ``package_type`` (``oneNote``) makes a package item
        without content. ``malware`` is the malware facet's description.
        """
        if not path:
            raise ValueError("a file path needs at least a file name")
        with self._lock:
            drive = self._drives[self.drive_id_for(owner_kind, owner, library)]
            actor = self._actor(drive, by)
            parent = self._ensure_folder(drive, path[:-1], actor)
            name = path[-1]
            check_item_name(name)
            if (parent.id, name.casefold()) in drive.children:
                raise ValueError(f"{'/'.join(path)!r} already exists in drive {drive.id}")
            item = self._new_item(drive, parent.id, name, is_folder=False, actor=actor)
            when = modified_at or item.created_at
            item.created_at = item.modified_at = when
            item.package_type = package_type
            item.malware = malware
            item.source = source
            if package_type is None:
                self._set_content(item, bytes(content), when, actor)
            self._log_change(drive, item)
            return item.id

    def add_package(self, owner_kind: str, owner: str, library: str, path: tuple[str, ...]) -> str:
        """Store a OneNote notebook: a package item with no downloadable content."""
        return self.add_file(owner_kind, owner, library, path, b"", package_type="oneNote")

    def share_item(
        self, item_id: str, scope: str, *, by: str | None = None, at: datetime | None = None
    ) -> None:
        """Share an item with ``scope`` (``anonymous``, ``organization`` or ``users``).

        The item's metadata changes, so its eTag moves on and delta reports it.
        """
        if scope not in SHARING_SCOPES:
            raise ValueError(f"sharing scope must be one of {SHARING_SCOPES}, got {scope!r}")
        with self._lock:
            drive, item = self._find(item_id)
            actor = self._actor(drive, by)
            item.sharing = Sharing(scope, actor, at or datetime.now(UTC))
            item.etag_version += 1
            self._log_change(drive, item)

    def update_file_content(self, item_id: str, content: bytes, *, by: str | None = None) -> None:
        """Replace a file's content: new cTag, eTag, quickXorHash and version."""
        with self._lock:
            drive, item = self._find(item_id)
            if item.is_folder or item.package_type is not None:
                raise ValueError(f"item {item_id} is not a file with content")
            now = datetime.now(UTC)
            self._set_content(item, bytes(content), now, self._actor(drive, by))
            item.etag_version += 1
            self._log_change(drive, item)

    def rename_item(self, item_id: str, new_name: str) -> None:
        with self._lock:
            drive, item = self._find(item_id)
            if item.parent_id is None:
                raise ValueError("the drive root cannot be renamed")
            check_item_name(new_name)
            self._check_free(drive, item.parent_id, new_name, item.id)
            del drive.children[(item.parent_id, item.name.casefold())]
            item.name = new_name
            drive.children[(item.parent_id, new_name.casefold())] = item.id
            item.etag_version += 1
            item.modified_at = datetime.now(UTC)
            self._log_change(drive, item)

    def move_item(self, item_id: str, new_parent_id: str) -> None:
        """Move an item into another folder of the same drive."""
        with self._lock:
            drive, item = self._find(item_id)
            parent = drive.items.get(new_parent_id)
            if parent is None or not parent.is_folder:
                raise KeyError(f"no folder {new_parent_id!r} in drive {drive.id}")
            if item.parent_id is None or new_parent_id in self._subtree(drive, item.id):
                raise ValueError("an item cannot move into itself or below itself")
            if new_parent_id == item.parent_id:
                return
            self._check_free(drive, new_parent_id, item.name, item.id)
            old_parent = item.parent_id
            del drive.children[(old_parent, item.name.casefold())]
            item.parent_id = new_parent_id
            drive.children[(new_parent_id, item.name.casefold())] = item.id
            item.etag_version += 1
            item.modified_at = datetime.now(UTC)
            self._log_ancestors(drive, old_parent)
            self._log_change(drive, item)

    def delete_item(self, item_id: str) -> None:
        """Delete an item; a folder goes with everything below it."""
        with self._lock:
            drive, item = self._find(item_id)
            if item.parent_id is None:
                raise ValueError("the drive root cannot be deleted")
            doomed = self._subtree(drive, item.id)
            now = datetime.now(UTC)
            # Children first, so the feed lists a folder's deletion after its contents.
            for doomed_id in reversed(doomed):
                removed_item = drive.items.pop(doomed_id)
                drive.used_bytes -= len(removed_item.content)
                assert removed_item.parent_id is not None
                drive.children.pop((removed_item.parent_id, removed_item.name.casefold()), None)
                seq = self._drive_seq.next()
                tombstone = DriveTombstone(
                    seq,
                    removed_item.id,
                    removed_item.parent_id,
                    removed_item.is_folder,
                    removed_item.created_seq,
                    now,
                )
                drive.log.append(DriveLogEntry(seq, removed_item.id, now, tombstone))
            assert item.parent_id is not None
            self._log_ancestors(drive, item.parent_id)

    def expire_drive_delta(
        self, drive_id: str, code: str = "resyncChangesApplyDifferences"
    ) -> None:
        """Invalidate every delta and next link of the drive: the next use gets 410 ``code``."""
        if code not in RESYNC_CODES:
            raise ValueError(f"code must be one of {RESYNC_CODES}, got {code!r}")
        with self._lock:
            drive = self._drives[drive_id]
            drive.generation += 1
            drive.resync_code = code

    # ---- reads -------------------------------------------------------------------------

    def live_files(self, drive_id: str) -> dict[str, tuple[tuple[str, ...], bytes, str]]:
        """Return {item id: (path, content, quickXorHash)} for every file of the drive.

        Package items (OneNote notebooks) are left out because they have no content.
        """
        with self._lock:
            drive = self._drives[drive_id]
            return {
                item.id: (self._path(drive, item), item.content, item.quick_xor)
                for item in drive.items.values()
                if not item.is_folder and item.package_type is None
            }

    def drive_file_count(self, drive_id: str) -> int:
        """Return the number of files in the drive, packages (OneNote notebooks) excluded."""
        with self._lock:
            drive = self._drives[drive_id]
            return sum(
                1
                for item in drive.items.values()
                if not item.is_folder and item.package_type is None
            )

    def item_info(self, drive_id: str, item_id: str) -> ItemInfo | None:
        with self._lock:
            drive = self._drives.get(drive_id)
            if drive is None:
                return None
            item = drive.items.get(item_id)
            return None if item is None else self._info(drive, item)

    def children_of(self, drive_id: str, item_id: str) -> list[ItemInfo]:
        """Return the children of a folder sorted by name, case-insensitively."""
        with self._lock:
            drive = self._drives[drive_id]
            found = [i for i in drive.items.values() if i.parent_id == item_id]
            found.sort(key=lambda i: (i.name.casefold(), i.id))
            return [self._info(drive, item) for item in found]

    def file_content(self, drive_id: str, item_id: str, version: int | None = None) -> bytes | None:
        """Return a file's content, of ``version`` (a content version number) when given."""
        with self._lock:
            drive = self._drives.get(drive_id)
            item = None if drive is None else drive.items.get(item_id)
            if item is None or item.is_folder:
                return None
            if version is None or version == item.content_version:
                return item.content
            if 1 <= version <= len(item.versions):
                return item.versions[version - 1].content
            return None

    def file_versions(self, drive_id: str, item_id: str) -> list[DriveVersion]:
        """Return the stored versions of a file, newest first."""
        with self._lock:
            item = self._drives[drive_id].items[item_id]
            return list(reversed(item.versions))

    def current_drive_seq(self) -> int:
        with self._lock:
            return self._drive_seq.value

    def drive_generation(self, drive_id: str) -> tuple[int, str]:
        with self._lock:
            drive = self._drives[drive_id]
            return drive.generation, drive.resync_code

    def seq_at(self, drive_id: str, moment: datetime) -> int:
        """Return the last change sequence number of the drive at or before ``moment``."""
        with self._lock:
            log = self._drives[drive_id].log
            index = bisect.bisect_right(log, moment, key=lambda entry: entry.time)
            return log[index - 1].seq if index else 0

    def set_drive_delta_repeats(self, enabled: bool) -> None:
        """Make change rounds repeat an item once per change instead of once per round.

        Graph documents that the same item may appear more than once in a delta feed.
        A repeat shows the item's latest state each time.
        """
        with self._lock:
            self._drive_delta_repeats = enabled

    def drive_changes(
        self, drive_id: str, *, after: int, upto: int, cursor: int, limit: int
    ) -> tuple[list[ItemInfo | DriveTombstone], int | None]:
        """Return up to ``limit`` drive events in (after, upto] past ``cursor``.

        ``after == 0`` is an initial round: the live items that existed at ``upto``, in
        creation order, so a folder comes before its contents unless a later move put an
        item under a newer folder. Change rounds read the log, and tombstones come only
        for items that existed at ``after``. The second value is the cursor of the next
        page, or None when the round ends with this page.
        """
        with self._lock:
            drive = self._drives[drive_id]
            if after == 0:
                return self._initial_page(drive, upto, cursor, limit)
            log = drive.log
            repeats = self._drive_delta_repeats
            events: list[ItemInfo | DriveTombstone] = []
            index = bisect.bisect_right(log, max(after, cursor), key=lambda entry: entry.seq)
            last = max(after, cursor)
            while index < len(log) and log[index].seq <= upto:
                entry = log[index]
                last = entry.seq
                index += 1
                event: ItemInfo | DriveTombstone | None = None
                if entry.removed is not None:
                    if entry.removed.created_seq <= after:
                        event = entry.removed
                else:
                    item = drive.items.get(entry.item_id)
                    if item is not None and (repeats or item.modified_seq == entry.seq):
                        event = self._info(drive, item)
                if event is not None:
                    events.append(event)
                    if len(events) == limit:
                        break
            more = index < len(log) and log[index].seq <= upto
            return events, (last if more else None)

    def _initial_page(
        self, drive: _Drive, upto: int, cursor: int, limit: int
    ) -> tuple[list[ItemInfo | DriveTombstone], int | None]:
        candidates = sorted(
            (i for i in drive.items.values() if cursor < i.created_seq <= upto),
            key=lambda i: i.created_seq,
        )
        page = candidates[:limit]
        events: list[ItemInfo | DriveTombstone] = [self._info(drive, i) for i in page]
        more = len(candidates) > limit
        return events, (page[-1].created_seq if more else None)

    # ---- internals ---------------------------------------------------------------------

    def _actor(self, drive: _Drive, by: str | None) -> str | None:
        if by is not None:
            user_id = self._upn_index.get(by.lower())
            if user_id is None:
                raise KeyError(f"no user with user principal name {by!r}")
            return user_id
        return drive.owner_user_id

    def _find(self, item_id: str) -> tuple[_Drive, _Item]:
        for drive in self._drives.values():
            item = drive.items.get(item_id)
            if item is not None:
                return drive, item
        raise KeyError(f"no drive item {item_id!r}")

    def _check_free(self, drive: _Drive, parent_id: str, name: str, item_id: str) -> None:
        existing = drive.children.get((parent_id, name.casefold()))
        if existing is not None and existing != item_id:
            raise ValueError(f"an item named {name!r} already exists in folder {parent_id}")

    def _new_item(
        self, drive: _Drive, parent_id: str, name: str, *, is_folder: bool, actor: str | None
    ) -> _Item:
        drive.item_counter += 1
        item_id = item_id_for(drive.id, "item", str(drive.item_counter))
        now = datetime.now(UTC)
        item = _Item(
            id=item_id,
            drive_id=drive.id,
            parent_id=parent_id,
            name=name,
            is_folder=is_folder,
            guid=records.derive_uuid("driveitem", item_id).upper(),
            created_at=now,
            modified_at=now,
            created_by=actor,
            modified_by=actor,
            created_seq=0,
            modified_seq=0,
        )
        drive.items[item_id] = item
        drive.children[(parent_id, name.casefold())] = item_id
        return item

    def _ensure_folder(self, drive: _Drive, path: tuple[str, ...], actor: str | None) -> _Item:
        folder = drive.items[drive.root_id]
        for name in path:
            child_id = drive.children.get((folder.id, name.casefold()))
            if child_id is None:
                check_item_name(name)
                child = self._new_item(drive, folder.id, name, is_folder=True, actor=actor)
                self._log_change(drive, child)
            else:
                child = drive.items[child_id]
                if not child.is_folder:
                    raise ValueError(f"{name!r} in drive {drive.id} is a file, not a folder")
            folder = child
        return folder

    def _set_content(self, item: _Item, content: bytes, when: datetime, actor: str | None) -> None:
        self._drives[item.drive_id].used_bytes += len(content) - len(item.content)
        item.content = content
        item.quick_xor = quickxor_b64(content)
        item.content_version += 1
        item.modified_at = when
        item.modified_by = actor
        item.versions.append(DriveVersion(f"{item.content_version}.0", content, when, actor))

    def _log_change(self, drive: _Drive, item: _Item) -> None:
        """Log the ancestors of ``item`` from the root down, then ``item`` itself."""
        if item.parent_id is not None:
            self._log_ancestors(drive, item.parent_id)
        seq = self._drive_seq.next()
        if item.created_seq == 0:
            item.created_seq = seq
        item.modified_seq = seq
        drive.log.append(DriveLogEntry(seq, item.id, datetime.now(UTC)))

    def _log_ancestors(self, drive: _Drive, folder_id: str) -> None:
        """Log ``folder_id`` and its ancestors as changed, the root first."""
        chain: list[_Item] = []
        current: str | None = folder_id
        while current is not None:
            chain.append(drive.items[current])
            current = drive.items[current].parent_id
        now = datetime.now(UTC)
        for folder in reversed(chain):
            folder.modified_seq = self._drive_seq.next()
            folder.etag_version += 1
            drive.log.append(DriveLogEntry(folder.modified_seq, folder.id, now))

    def _subtree(self, drive: _Drive, item_id: str) -> list[str]:
        """Return ``item_id`` and its descendants, each parent before its children."""
        children: dict[str, list[str]] = {}
        for candidate in drive.items.values():
            if candidate.parent_id is not None:
                children.setdefault(candidate.parent_id, []).append(candidate.id)
        found: list[str] = []
        pending = [item_id]
        while pending:
            current = pending.pop()
            found.append(current)
            pending.extend(reversed(children.get(current, [])))
        return found

    def _path(self, drive: _Drive, item: _Item) -> tuple[str, ...]:
        names: list[str] = []
        current = item
        while current.parent_id is not None:
            names.append(current.name)
            current = drive.items[current.parent_id]
        return tuple(reversed(names))

    def _info(self, drive: _Drive, item: _Item) -> ItemInfo:
        if item.is_folder:
            child_count = sum(1 for i in drive.items.values() if i.parent_id == item.id)
            descendants = (drive.items[i] for i in self._subtree(drive, item.id))
            size = sum(len(d.content) for d in descendants if not d.is_folder)
        else:
            child_count, size = 0, len(item.content)
        return ItemInfo(
            id=item.id,
            drive_id=drive.id,
            parent_id=item.parent_id,
            name=item.name,
            path=self._path(drive, item),
            is_folder=item.is_folder,
            is_root=item.parent_id is None,
            guid=item.guid,
            etag_version=item.etag_version,
            content_version=item.content_version,
            size=size,
            child_count=child_count,
            quick_xor=item.quick_xor,
            mime_type=mime_type_of(item.name),
            created_at=item.created_at,
            modified_at=item.modified_at,
            created_by=item.created_by,
            modified_by=item.modified_by,
            package_type=item.package_type,
            malware=item.malware,
            modified_seq=item.modified_seq,
            sharing=item.sharing,
        )

    def _seed_drives(self, sites: list[SeedSite], files: list[SeedFile]) -> None:
        for site in sites:
            self.add_site(site)
        for seed_file in files:
            item_id = self.add_file(
                seed_file.drive_kind,
                seed_file.owner,
                seed_file.library,
                seed_file.path,
                seed_file.content,
                modified_at=seed_file.modified_at,
                source=seed_file.source,
            )
            if seed_file.shared_scope is not None:
                if seed_file.shared_scope not in SHARING_SCOPES:
                    raise ValueError(
                        f"sharing scope of {'/'.join(seed_file.path)!r} must be one of "
                        f"{SHARING_SCOPES}, got {seed_file.shared_scope!r}"
                    )
                # Seeded as it was before the first backup: no eTag change, no log entry.
                with self._lock:
                    _, item = self._find(item_id)
                    item.sharing = Sharing(
                        seed_file.shared_scope, item.modified_by, item.modified_at
                    )

    def user_identity(self, user_id: str | None) -> dict[str, Any]:
        """Return the ``identitySet`` of a user id, or SharePoint's system account."""
        with self._lock:
            user = self._users.get(user_id) if user_id is not None else None
            if user is None:
                return {"user": {"displayName": "System Account"}}
            return {
                "user": {
                    "email": user.mail or user.user_principal_name,
                    "id": user_id,
                    "displayName": user.display_name,
                }
            }
