"""File names inside a production: control numbers, Windows-safe names, contained paths.

Natives and text files are named after their control number, which is unique within a
production, so two originals that differ only in letter case, or that sanitise to the
same text, still get different files. The load file maps each control number to the
original name (FILENAME) and to the file written (NATIVELINK).

A safe name is valid as one path component on Windows (NTFS, with the Win32 rules),
macOS and Linux: none of ``< > : " / \\ |  ? *``, no control or bidirectional-override
characters, no trailing dot or space, not a reserved device name such as CON or COM1
(with or without an extension), at most 255 bytes of UTF-8 and 255 UTF-16 code units.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from m365lake.discovery.errors import InvalidRequestError

# Win32 device names; "COM¹" and the like are reserved as well since Windows 10.
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"}
)
_FORBIDDEN = re.compile('[<>:"/\\\\|?*\x00-\x1f\x7f-\x9f]')
# Bidirectional controls let a name display in another order than it is stored, the
# "annexe\u202efdp.exe" trick that shows a program as a PDF.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,12}$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,19}$")

MAX_NAME_BYTES = 255
DEFAULT_MAX_NAME_CHARS = 100
"""Characters kept of an original name, so paths stay well inside Windows' 260 limit."""
REPLACEMENT = "_"


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` for control numbers, or raise InvalidRequestError."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InvalidRequestError(
            f"invalid control number prefix {prefix!r}: use 1-20 letters, digits, '_' or "
            "'-', starting with a letter (for example ABC or CASE17-)"
        )
    return prefix


def control_number(prefix: str, number: int, digits: int) -> str:
    """Return the control number ``<prefix><number>``, zero-padded to ``digits`` digits.

    Raises InvalidRequestError when ``number`` needs more digits, because a longer number
    would sort out of order in the review platform.
    """
    text = str(number)
    if len(text) > digits:
        raise InvalidRequestError(
            f"control number {number} does not fit in {digits} digits; export again with "
            "more digits (--digits) or a lower start number (--start)"
        )
    return f"{prefix}{text.zfill(digits)}"


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _fits(text: str, max_chars: int) -> bool:
    return (
        len(text) <= max_chars
        and len(text.encode("utf-8")) <= MAX_NAME_BYTES
        and _utf16_units(text) <= MAX_NAME_BYTES
    )


def _shorten(stem: str, extension: str, max_chars: int) -> str:
    """Drop characters from the end of ``stem`` until stem and extension fit."""
    while stem and not _fits(stem + extension, max_chars):
        stem = stem[:-1]
    return stem.rstrip(" .") + extension


def is_device_name(name: str) -> bool:
    """Return whether Windows reads ``name`` as a device, e.g. ``nul.txt`` or ``COM1 .log``."""
    base = name.split(".", 1)[0].rstrip(" ")
    return base.upper() in _DEVICE_NAMES


def safe_file_name(
    name: str | None, *, fallback: str = "file", max_chars: int = DEFAULT_MAX_NAME_CHARS
) -> str:
    """Return ``name`` changed as little as possible into a safe path component.

    Forbidden and control characters become "_", leading spaces and trailing dots and
    spaces are removed, a device name gets a "_" in front, and a long name is cut at the
    end of its stem so its extension stays. An empty result becomes ``fallback``.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = _FORBIDDEN.sub(REPLACEMENT, _BIDI_CONTROLS.sub(REPLACEMENT, text))
    text = text.lstrip(" ").rstrip(" .")
    if not text.strip(" ._"):
        text = fallback
    if is_device_name(text):
        text = REPLACEMENT + text
    extension = safe_extension(text)
    stem = text[: len(text) - len(extension)] if extension else text
    result = _shorten(stem, extension, max_chars)
    if not result or result == extension:
        result = _shorten(fallback, extension, max_chars)
    return result


def safe_extension(name: str | None) -> str:
    """Return the extension of ``name`` with its dot when it is 1-12 ASCII letters or digits.

    Anything else (no extension, spaces, symbols, a whole sentence after a dot) returns
    "", so an extension never carries a character a file system could reject.
    """
    suffix = PurePosixPath((name or "").replace("\\", "/")).suffix
    return suffix if _EXTENSION.match(suffix) else ""


def is_safe_component(component: str) -> bool:
    """Return whether ``component`` is already a safe path component."""
    return (
        bool(component)
        and component not in (".", "..")
        and safe_file_name(component, fallback="", max_chars=MAX_NAME_BYTES) == component
    )


def check_relative_path(relative: str) -> str:
    """Return ``relative`` when it stays inside the production folder; else raise ValueError.

    Every component must be a safe name, so the path is not absolute, has no ``..`` and
    no drive letter, and means the same on Windows and POSIX.
    """
    parts = relative.split("/")
    if not relative or any(not is_safe_component(part) for part in parts):
        raise ValueError(
            f"refusing to write {relative!r}: production paths are relative, use '/' "
            "between components, and each component must be a safe file name"
        )
    return relative


def native_file_name(control: str, original: str | None, *, extension: str, mode: str) -> str:
    """Return the file name of a native: ``<control><ext>`` or ``<control>_<safe original>``.

    ``extension`` (with its dot, or "") is used when ``original`` has no safe one.
    """
    own = safe_extension(original)
    if mode == "original" and original:
        name = safe_file_name(original, fallback="item")
        if not own and extension:
            name = _shorten(name, extension, DEFAULT_MAX_NAME_CHARS)
        return f"{control}_{name}"
    return f"{control}{(own or extension).lower()}"
