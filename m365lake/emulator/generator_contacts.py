"""Generate deterministic contacts for every generated mailbox.

Each mailbox gets contacts in its default ``Contacts`` folder and in a child folder
``Clients`` with a nested ``Key accounts``. The first mailbox also gets a child folder
named ``contacts``. Exchange forbids siblings whose names differ only in case, but a
child may repeat its parent's name in another case. A backup and a restore must keep
``Contacts`` and ``Contacts/contacts`` apart.
"""

from __future__ import annotations

import random
from typing import Any

from m365lake.emulator.generator_text import CATEGORIES, FIRST_NAMES, LAST_NAMES, Person
from m365lake.emulator.seed import SeedContact

_COMPANIES = (
    ("Fabrikam", "fabrikam.example"),
    ("Northwind Traders", "northwind.example"),
    ("Adatum", "adatum.example"),
    ("Tailspin Toys", "tailspin.example"),
    ("Woodgrove Bank", "woodgrove.example"),
)
_TITLES = ("Buyer", "Account Manager", "Head of Finance", "Project Lead", "Engineer")
_CITIES = (
    ("Lyon", "Auvergne-Rhône-Alpes", "France", "69002"),
    ("Seattle", "WA", "United States", "98101"),
    ("Osaka", "Osaka", "Japan", "530-0001"),
    ("København", "Hovedstaden", "Denmark", "1050"),
)
_NOTES = (
    "Met at the {company} supplier day; prefers calls in the morning.",
    "Send the quarterly report, and copy the assistant.",
    "Notes with punctuation; commas, semicolons and a backslash \\ stay as typed.\n"
    "Second line of the note.",
)

# (folder path below the default folder, contacts in it) for every mailbox.
_LAYOUT: tuple[tuple[tuple[str, ...], int], ...] = (
    ((), 4),
    (("Clients",), 2),
    (("Clients", "Key accounts"), 1),
)
CASE_TWIN_FOLDER = ("contacts",)
"""A child of the default folder ``Contacts`` whose name differs from it only in case."""


def generate_contacts(
    people: list[Person], *, seed: int
) -> tuple[list[tuple[str, tuple[str, ...]]], list[SeedContact]]:
    """Return (empty folders to create, contacts) for the mailboxes of ``people``."""
    folders: list[tuple[str, tuple[str, ...]]] = []
    contacts: list[SeedContact] = []
    for number, owner in enumerate(people):
        rng = random.Random(f"contacts:{seed}:{number}")
        layout = list(_LAYOUT)
        if number == 0:
            layout.append((CASE_TWIN_FOLDER, 2))
        folders.append((owner.address, ("Suppliers",)))
        for path, count in layout:
            for _ in range(count):
                contacts.append(SeedContact(owner.address, path, _contact(rng)))
    return folders, contacts


def _contact(rng: random.Random) -> dict[str, Any]:
    given = rng.choice(FIRST_NAMES)
    surname = rng.choice(LAST_NAMES)
    company, domain = rng.choice(_COMPANIES)
    city, state, country, postal_code = rng.choice(_CITIES)
    local = f"{given}.{surname}".lower().encode("ascii", "ignore").decode() or "contact"
    properties: dict[str, Any] = {
        "givenName": given,
        "surname": surname,
        "displayName": f"{given} {surname}",
        "companyName": company,
        "jobTitle": rng.choice(_TITLES),
        "emailAddresses": [{"name": f"{given} {surname}", "address": f"{local}@{domain}"}],
        "businessPhones": [f"+1 425 555 {rng.randrange(1000, 9999)}"],
        "mobilePhone": f"+44 7700 900{rng.randrange(100, 999)}",
        "businessAddress": {
            "street": f"{rng.randrange(1, 200)} Harbour Street",
            "city": city,
            "state": state,
            "countryOrRegion": country,
            "postalCode": postal_code,
        },
        "categories": rng.sample(CATEGORIES, k=rng.choice((0, 1, 2))),
        "personalNotes": rng.choice(_NOTES).format(company=company),
    }
    if rng.random() < 0.5:
        properties["birthday"] = (
            f"19{rng.randrange(55, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}T11:59:00Z"
        )
        properties["homePhones"] = [f"+33 4 72 00 {rng.randrange(10, 99)} {rng.randrange(10, 99)}"]
    return properties
