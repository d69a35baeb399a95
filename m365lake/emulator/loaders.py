"""Load a folder of real mail into a SeedTenant, keeping every message byte-exact.

Accepted layouts (``path`` may also be a tenant folder whose ``mail/`` contains one of them):

* maildir root: ``<custodian>/<folder>[/<subfolder>…]/<N>.`` as in the CMU Enron release.
  One mailbox per custodian, user principal name ``<custodian>@<domain>``.
* folder of message files: ``.eml`` or any RFC 822 file, and mbox files. Wrapper folders
  that hold nothing but one subfolder (as readpst writes them) are skipped. When the
  remaining folder holds messages itself, everything goes into one mailbox, named
  ``archive`` unless ``mailbox`` says otherwise; else each subfolder is one mailbox. An
  mbox file becomes a mail folder named after the file.

A tenant folder may also hold drive content, loaded byte-exact as one SeedFile per file:
``onedrive/<user>/…`` (``<user>`` is a user principal name, or a name that becomes
``<name>@<domain>``) and ``sites/<site>/<library>/…``. Names OneDrive rejects are
skipped and counted in the same warning.

Outlook .msg, TNEF and bare PKCS #7 files are skipped and counted in one warning: they are
not RFC 822 text, Exchange does not accept them as MIME, and a wrapped copy would not be
byte-exact with its source file.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from m365lake.emulator.corpusfiles import (
    DOCUMENT_SUFFIXES,
    is_mbox,
    looks_like_message,
    non_mime_kind,
    split_mbox,
)
from m365lake.emulator.drive_folders import load_drive_folders
from m365lake.emulator.seed import SeedMessage, SeedTenant, SeedUser
from m365lake.errors import ConfigError

logger = logging.getLogger(__name__)

ACCEPTED_LAYOUTS = (
    "a maildir root (<custodian>/<folder>/<N>. files), "
    "a folder of .eml / RFC 822 / .mbox files (optionally one subfolder per mailbox), "
    "or a tenant folder holding mail/ with either of those, "
    "onedrive/<user>/ files, or sites/<site>/<library>/ files"
)

# Maildir folder names that stand for Outlook well-known folders.
WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "sent_items": "Sent Items",
    "sent items": "Sent Items",
    "deleted_items": "Deleted Items",
    "deleted items": "Deleted Items",
    "drafts": "Drafts",
}

_MAILDIR_FILE = re.compile(r"^\d+\.?$")
_SNIFF_BYTES = 4096
_DIGITS = re.compile(r"(\d+)")


@dataclass
class _LoadState:
    root: Path
    domain: str
    tenant: SeedTenant
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    unreadable: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    users: dict[str, SeedUser] = field(default_factory=dict)
    folders: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


def load_corpus(
    path: Path | str, *, domain: str = "enron.example", mailbox: str | None = None
) -> SeedTenant:
    """Read every message under ``path`` into a SeedTenant.

    ``SeedMessage.source`` is the file's path relative to ``path`` in POSIX form; for a
    message from an mbox it is ``<file>#<n>`` with ``n`` counted from 1. ``mailbox``
    forces every message of a folder-of-files corpus into one mailbox of that name.
    Raises ConfigError when ``path`` matches none of the accepted layouts.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(
            f"corpus path {str(root)!r} is not a directory; expected {ACCEPTED_LAYOUTS}"
        )
    mail_root = root / "mail" if (root / "mail").is_dir() else root
    state = _LoadState(root=root, domain=domain, tenant=SeedTenant(domain=domain))

    if _has_drive_folders(root) and not (root / "mail").is_dir():
        # A tenant folder without mail/: its onedrive/ and sites/ are never mailboxes.
        layout = "drives only"
    elif mailbox is None and _is_maildir(mail_root):
        _load_maildir(state, mail_root)
        layout = "maildir"
    else:
        _load_message_files(state, mail_root, mailbox)
        layout = "message files"

    drive_owners = load_drive_folders(
        state.tenant, root, domain, state.skipped, state.skipped_examples
    )
    if not state.tenant.messages and not state.tenant.files:
        raise ConfigError(
            f"no mail messages found under {str(root)!r}, and no drive files; "
            f"expected {ACCEPTED_LAYOUTS}" + _skipped_summary(state)
        )
    # A top-level folder of skipped files only (such as msg/) would become an empty mailbox.
    with_mail = {message.user_principal_name for message in state.tenant.messages}
    for upn in drive_owners:
        state.users.setdefault(upn, SeedUser(upn, upn.split("@")[0], mail=upn))
    with_mail |= drive_owners
    state.tenant.users = sorted(
        (user for upn, user in state.users.items() if upn in with_mail),
        key=lambda user: user.user_principal_name,
    )
    state.tenant.folders = sorted(item for item in state.folders if item[0] in with_mail)
    if state.skipped or state.unreadable:
        logger.warning(
            "skipped %d files under %s that are not RFC 822 mail or could not be read "
            "(dangling symbolic links, no read permission)%s",
            sum(state.skipped.values()) + state.unreadable,
            root,
            _skipped_summary(state),
        )
    logger.info(
        "loaded %d messages in %d mailboxes and %d drive files from %s (%s layout)",
        len(state.tenant.messages),
        len(state.tenant.users),
        len(state.tenant.files),
        root,
        layout,
    )
    return state.tenant


def _has_drive_folders(root: Path) -> bool:
    return (root / "onedrive").is_dir() or (root / "sites").is_dir()


def _skipped_summary(state: _LoadState) -> str:
    counts = sorted(state.skipped.items())
    if state.unreadable:
        counts.append(("unreadable", state.unreadable))
    if not counts:
        return ""
    kinds = ", ".join(f"{kind}: {count}" for kind, count in counts)
    examples = state.skipped_examples + state.unreadable_examples
    return f" (skipped {kinds}; for example {', '.join(examples)})"


def _natural_key(name: str) -> list[object]:
    """Sort ``2.`` before ``10.`` so messages load in the order a person reads them."""
    return [int(piece) if piece.isdigit() else piece.lower() for piece in _DIGITS.split(name)]


def _visible_entries(directory: Path) -> tuple[list[Path], list[Path]]:
    """Return (subdirectories, files) of ``directory``, sorted, without hidden entries."""
    directories, files = [], []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                directories.append(Path(entry.path))
            elif entry.is_file():
                files.append(Path(entry.path))
    directories.sort(key=lambda item: _natural_key(item.name))
    files.sort(key=lambda item: _natural_key(item.name))
    return directories, files


def _is_maildir(root: Path) -> bool:
    """Return True when custodian folders contain folders of ``N.`` files and root has no mail."""
    custodians, files = _visible_entries(root)
    if not custodians or any(_is_candidate(file) for file in files):
        return False
    for custodian in custodians:
        for dirpath, _dirnames, filenames in os.walk(custodian):
            if Path(dirpath) == custodian:
                continue
            if any(_MAILDIR_FILE.match(name) for name in filenames):
                return True
    return False


def _is_candidate(file: Path) -> bool:
    return file.suffix.lower() not in DOCUMENT_SUFFIXES and not file.name.startswith(
        ("README", "PROVENANCE", "MANIFEST", "LICENSE", "COPYING")
    )


def _map_folder(parts: tuple[str, ...]) -> tuple[str, ...]:
    if not parts:
        return ("Inbox",)
    top = WELL_KNOWN_FOLDERS.get(parts[0].lower(), parts[0])
    return (top, *parts[1:])


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    return slug or "mailbox"


def _user(state: _LoadState, name: str, display_name: str) -> str:
    upn = f"{_slug(name)}@{state.domain}"
    if upn not in state.users:
        state.users[upn] = SeedUser(user_principal_name=upn, display_name=display_name, mail=upn)
    return upn


def _add_file(state: _LoadState, upn: str, folder: tuple[str, ...], file: Path) -> None:
    """Add the message or messages in ``file``, or count it as skipped."""
    if not _is_candidate(file):
        return
    source = file.relative_to(state.root).as_posix()
    try:
        data = file.read_bytes()
    except OSError as error:
        # A dangling symbolic link or a file without read permission is skipped, so one
        # bad entry does not stop a corpus of thousands of messages from loading.
        state.unreadable += 1
        if len(state.unreadable_examples) < 3:
            state.unreadable_examples.append(f"{source} ({error.strerror or error})")
        return
    head = data[:_SNIFF_BYTES]

    kind = non_mime_kind(file, head)
    if kind is None and not looks_like_message(head):
        kind = "no RFC 822 header"
    if kind is not None:
        state.skipped[kind] += 1
        if len(state.skipped_examples) < 3:
            state.skipped_examples.append(source)
        return

    if is_mbox(file, data):
        mbox_folder = (*folder, file.stem) if folder != ("Inbox",) else (file.stem,)
        mbox_folder = _map_folder(mbox_folder)
        state.folders.add((upn, mbox_folder))
        for number, message in enumerate(split_mbox(data), start=1):
            state.tenant.messages.append(
                SeedMessage(upn, mbox_folder, message, source=f"{source}#{number}")
            )
        return
    state.folders.add((upn, folder))
    state.tenant.messages.append(SeedMessage(upn, folder, data, source=source))


def _load_tree(state: _LoadState, upn: str, top: Path) -> None:
    """Add everything under ``top`` to one mailbox, folder names from the relative path."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=_natural_key)
        relative = Path(dirpath).relative_to(top).parts
        folder = _map_folder(tuple(relative))
        if relative:
            state.folders.add((upn, folder))
        for name in sorted(filenames, key=_natural_key):
            if not name.startswith("."):
                _add_file(state, upn, folder, Path(dirpath) / name)


def _load_maildir(state: _LoadState, root: Path) -> None:
    custodians, _files = _visible_entries(root)
    for custodian in custodians:
        upn = _user(state, custodian.name, custodian.name)
        _load_tree(state, upn, custodian)


def _load_message_files(state: _LoadState, root: Path, mailbox: str | None) -> None:
    base = root
    while True:
        directories, files = _visible_entries(base)
        if any(_is_candidate(file) for file in files) or len(directories) != 1:
            break
        base = directories[0]

    if mailbox is not None or any(_is_candidate(file) for file in files):
        name = mailbox or "archive"
        _load_tree(state, _user(state, name, name), base)
        return
    for directory in directories:
        _load_tree(state, _user(state, directory.name, directory.name), directory)
