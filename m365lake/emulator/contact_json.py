"""Graph JSON of contact folders and contacts, and the checks on a contact a client posts."""

from __future__ import annotations

from typing import Any

from m365lake.emulator.contact_store import ContactFolderInfo, ContactInfo
from m365lake.emulator.protocol import GraphHTTPError

FOLDER_PROPERTIES = frozenset(("id", "displayName", "parentFolderId"))

_STRING_PROPERTIES = (
    "assistantName",
    "birthday",
    "businessHomePage",
    "companyName",
    "department",
    "displayName",
    "fileAs",
    "generation",
    "givenName",
    "initials",
    "jobTitle",
    "manager",
    "middleName",
    "mobilePhone",
    "nickName",
    "officeLocation",
    "personalNotes",
    "profession",
    "spouseName",
    "surname",
    "title",
    "yomiCompanyName",
    "yomiGivenName",
    "yomiSurname",
)
_STRING_LIST_PROPERTIES = ("businessPhones", "categories", "children", "homePhones", "imAddresses")
_ADDRESS_PROPERTIES = ("businessAddress", "homeAddress", "otherAddress")
ADDRESS_FIELDS = frozenset(("street", "city", "state", "countryOrRegion", "postalCode"))
_READ_ONLY = ("id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId")

WRITABLE_PROPERTIES = frozenset(
    (*_STRING_PROPERTIES, *_STRING_LIST_PROPERTIES, *_ADDRESS_PROPERTIES, "emailAddresses")
)
CONTACT_PROPERTIES = WRITABLE_PROPERTIES | frozenset(_READ_ONLY)


def folder_json(folder: ContactFolderInfo) -> dict[str, Any]:
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": folder.parent_id,
    }


def contact_json(contact: ContactInfo) -> dict[str, Any]:
    """Return the contact as Graph serialises it: every property, empty ones as null or []."""
    stored = contact.properties
    body: dict[str, Any] = {
        "@odata.etag": f'W/"{contact.change_key}"',
        "id": contact.id,
        "createdDateTime": _utc(contact.created_at),
        "lastModifiedDateTime": _utc(contact.modified_at),
        "changeKey": contact.change_key,
        "parentFolderId": contact.folder_id,
    }
    for name in _STRING_PROPERTIES:
        body[name] = stored.get(name)
    if not body["displayName"]:
        # Outlook shows and stores a name made of the name parts when none was given.
        parts = (stored.get("givenName"), stored.get("middleName"), stored.get("surname"))
        body["displayName"] = " ".join(str(part) for part in parts if part) or ""
    body["fileAs"] = stored.get("fileAs") or ""
    for name in _STRING_LIST_PROPERTIES:
        body[name] = list(stored.get(name) or [])
    body["emailAddresses"] = [dict(entry) for entry in stored.get("emailAddresses") or []]
    for name in _ADDRESS_PROPERTIES:
        body[name] = dict(stored.get(name) or {})
    return body


def _utc(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


def check_contact_body(body: dict[str, Any]) -> dict[str, Any]:
    """Return the writable properties of a posted contact, rejecting what Graph rejects.

    NOTE: Outlook has three email address slots and two business and two home phone
    slots. How Graph responds to a create with more is not modelled: the emulator keeps all.
    """
    properties: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata."):
            continue
        if name not in WRITABLE_PROPERTIES:
            raise GraphHTTPError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.contact' or "
                "is read-only. Make sure to only use property names that are defined by the "
                "type.",
            )
        if value is None:
            continue
        if name in _STRING_PROPERTIES and not isinstance(value, str):
            raise _invalid(name, "a string")
        if name in _STRING_LIST_PROPERTIES and not _strings(value):
            raise _invalid(name, "a collection of strings")
        if name in _ADDRESS_PROPERTIES and not _address(value):
            raise _invalid(name, "a physicalAddress object")
        if name == "emailAddresses" and not _email_addresses(value):
            raise _invalid(name, "a collection of emailAddress objects")
        properties[name] = value
    return properties


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _address(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= ADDRESS_FIELDS | {"@odata.type"}
        and all(isinstance(item, str) or item is None for item in value.values())
    )


def _email_addresses(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(entry, dict)
        and set(entry) <= {"name", "address"}
        and all(isinstance(item, str) or item is None for item in entry.values())
        for entry in value
    )


def _invalid(name: str, expected: str) -> GraphHTTPError:
    return GraphHTTPError(
        400,
        "RequestBodyRead",
        f"Cannot convert the value of property '{name}' to {expected}.",
    )
