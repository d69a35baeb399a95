"""Drive item names that OneDrive and SharePoint accept, for restoring archived names.

An archived name came from Graph, so it was valid where it was. It may still be rejected
at the target: a restore from another source, an archive written by an older tool, or a
name rule that differs between OneDrive and a SharePoint library. The planner rewrites
such names and reports each rewrite instead of failing the item.
"""

from __future__ import annotations

import re

# NOTE: these rules follow Microsoft's published restrictions as third-party migration
# guides restate them, and the emulator enforces the same list. They were not checked
# against Microsoft's own page.
_INVALID_CHARACTERS = re.compile(r'["*:<>?/\\|\x00-\x1f]')
_RESERVED_NAMES = frozenset(
    (
        ".lock",
        "con",
        "prn",
        "aux",
        "nul",
        "desktop.ini",
        *(f"com{number}" for number in range(10)),
        *(f"lpt{number}" for number in range(10)),
    )
)
REPLACEMENT = "_"


def safe_item_name(name: str) -> tuple[str, str | None]:
    """Return a name SharePoint accepts for ``name`` and why it changed (None if unchanged).

    Invalid characters and control characters become ``_``. A reserved device name gets
    ``_`` appended, a ``~$`` prefix becomes ``_$``, ``_vti_`` becomes ``_vti-``, and an
    empty or dot-only name becomes ``_``.
    """
    reasons: list[str] = []
    cleaned = name
    bad = sorted(set(_INVALID_CHARACTERS.findall(cleaned)))
    if bad:
        cleaned = _INVALID_CHARACTERS.sub(REPLACEMENT, cleaned)
        reasons.append("contains " + " ".join(repr(character) for character in bad))
    if cleaned.strip() in ("", ".", ".."):
        cleaned = REPLACEMENT
        reasons.append("is empty or a dot name")
    lowered = cleaned.lower()
    if lowered in _RESERVED_NAMES:
        cleaned += REPLACEMENT
        reasons.append("is a reserved name")
    if cleaned.startswith("~$"):
        cleaned = "_$" + cleaned[2:]
        reasons.append("starts with '~$'")
    if "_vti_" in cleaned.lower():
        cleaned = re.sub("_vti_", "_vti-", cleaned, flags=re.IGNORECASE)
        reasons.append("contains '_vti_'")
    if not reasons:
        return name, None
    return cleaned, (
        f"name {name!r} rewritten to {cleaned!r} because SharePoint rejects a name that "
        + " and ".join(reasons)
    )
