"""Folder mapping of a contacts restore: by id and parent, never merged by name alone."""

from __future__ import annotations

from typing import Any

from m365lake.restore.contacts_plan import LiveContactBook, _plan_folders
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import RestoreTarget

SOURCE = "mailbox-1"
ROOT = "root"


def _folder(folder_id: str, parent: str, name: str, path: str) -> dict[str, Any]:
    return {
        "folder_id": folder_id,
        "parent_folder_id": parent,
        "display_name": name,
        "folder_path": path,
    }


ARCHIVED = {
    "default": _folder("default", ROOT, "Contacts", "Contacts"),
    "twin": _folder("twin", "default", "contacts", "Contacts/contacts"),
    "clients": _folder("clients", "default", "Clients", "Contacts/Clients"),
    "beside": _folder("beside", ROOT, "Clients", "Clients"),
}


def _live(folders: dict[str, tuple[str | None, str]]) -> LiveContactBook:
    return LiveContactBook(SOURCE, "live-default", {"live-default": (ROOT, "Contacts"), **folders})


def _plan(live: LiveContactBook, target: RestoreTarget | None = None, used: set[str] | None = None):
    return _plan_folders(
        SOURCE,
        SOURCE,
        ARCHIVED,
        "default",
        used or {"default", "twin", "clients", "beside"},
        live,
        target or RestoreTarget(),
        RestoreLedger({}),
    )


def test_twin_folder_is_never_the_default():
    plan = _plan(_live({}))

    assert plan.live_ids["default"] == "live-default"
    assert plan.live_ids["twin"] is None
    assert plan.paths["twin"] == "Contacts/contacts"
    twin = next(item for item in plan.items if item.folder_key == "twin")
    assert twin.action == "create"
    assert twin.parent_key == "default"
    assert twin.display_name == "contacts"


def test_twin_reuses_live_child_of_any_case():
    plan = _plan(_live({"live-twin": ("live-default", "CONTACTS")}))

    assert plan.live_ids["twin"] == "live-twin"
    assert plan.live_ids["default"] == "live-default"


def test_folder_beside_default_comes_back_below_it():
    plan = _plan(_live({}))

    beside = next(item for item in plan.items if item.folder_key == "beside")
    clients = next(item for item in plan.items if item.folder_key == "clients")
    assert beside.parent_key == "default"
    assert {beside.display_name, clients.display_name} == {"Clients", "Clients (2)"}
    assert plan.paths["beside"] != plan.paths["clients"]


def test_restore_folder_receives_default_contents():
    plan = _plan(_live({}), RestoreTarget(restore_folder="Restored"))

    default = next(item for item in plan.items if item.folder_key == "default")
    assert default.display_name == "Restored"
    assert default.parent_key is None
    assert default.action == "create"
    assert plan.paths["twin"] == "Contacts/Restored/contacts"


def test_default_folder_mapped_first():
    plan = _plan(_live({}))

    assert plan.items[0].folder_key == "default"
