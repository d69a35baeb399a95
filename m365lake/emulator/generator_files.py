"""Generated OneDrive and SharePoint content: a few files per user and two team sites.

Randomness comes from its own ``random.Random`` (seeded with a string), so adding files
leaves the generated mail byte-identical. Dates count from the mail generator's start.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from m365lake.emulator import samplefiles
from m365lake.emulator.generator_text import PROJECTS, Person
from m365lake.emulator.seed import SeedFile, SeedSite

SITES = (
    SeedSite("projects", "Project Office", libraries=("Documents", "Deliverables")),
    SeedSite("finance", "Finance Team", libraries=("Documents",)),
)


# Sharing of each user's n-th file, in turn: most files stay private, and the generated
# tenant has every scope once a user has four files.
_SHARING = (None, "organization", "anonymous", "users", None)


def generate_drive_files(
    people: list[Person], *, seed: int, start: datetime, files_per_user: int
) -> tuple[list[SeedSite], list[SeedFile]]:
    """Return the two sites and the files of every user's OneDrive and of the sites."""
    rng = random.Random(f"drives:{seed}")
    files: list[SeedFile] = []
    for person in people:
        for number in range(files_per_user):
            project = rng.choice(PROJECTS)
            folder = ("Documents", project) if number % 2 else ()
            name, content = _document(rng, person, project, number)
            when = start + timedelta(days=rng.randrange(0, 150), minutes=rng.randrange(0, 600))
            files.append(
                SeedFile(
                    "onedrive",
                    person.address,
                    "Documents",
                    (*folder, name),
                    content,
                    modified_at=when,
                    source=f"generated:{seed}:{person.address}:{number}",
                    shared_scope=_SHARING[number % len(_SHARING)],
                )
            )
    for site in SITES:
        for library in site.libraries:
            for number, project in enumerate(PROJECTS[:3]):
                owner = rng.choice(people)
                name, content = _document(rng, owner, project, number)
                path = (project, "2024", "Q" + str(1 + number % 4), name)
                when = start + timedelta(days=rng.randrange(0, 150))
                files.append(
                    SeedFile(
                        "site",
                        site.name,
                        library,
                        path,
                        content,
                        modified_at=when,
                        source=f"generated:{seed}:{site.name}:{library}:{number}",
                    )
                )
    return list(SITES), files


def _document(rng: random.Random, person: Person, project: str, number: int) -> tuple[str, bytes]:
    kind = ("docx", "pdf", "csv", "txt")[number % 4]
    slug = project.lower().replace(" ", "-")
    lines = [f"{project} notes by {person.name}", f"Item {number}: {rng.randrange(10, 99)}"]
    if kind == "docx":
        return f"{project} brief {number}.docx", samplefiles.docx_document(lines)
    if kind == "pdf":
        return f"{slug}-report-{number}.pdf", samplefiles.pdf_document(project, lines)
    if kind == "csv":
        rows: list[list[str | int]] = [["week", "hours"]]
        rows += [[f"W{week}", rng.randrange(1, 40)] for week in range(1, 6)]
        return f"{slug}-hours-{number}.csv", samplefiles.csv_text(rows)
    return f"{slug} todo #{number}.txt", ("\r\n".join(lines) + "\r\n").encode("utf-8")
