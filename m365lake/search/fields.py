"""The search index's fields, their analyzers, and the KQL properties that map onto them.

One Tantivy document is one archived item: a message (with its attachments' text folded
in, as Purview treats a message and its attachments as one item), a drive item, a
calendar event, a contact or a Teams channel message. The index keeps the latest
captured version of each item, including items deleted in the tenant, and each document
carries the identity and version columns that join it back to its lake table.

This module is the single definition shared by the index writer, the KQL compiler and the
test oracle, so a field's type and analyzer cannot drift between them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

import tantivy

# Registered on every Index object the project opens, because Tantivy does not persist
# custom analyzers with the index.
TEXT_ANALYZER = "m365lake_text"
KEYWORD_ANALYZER = "m365lake_keyword"

# Tantivy's own default is the same chain. Tokens of 40 bytes or more (base64 runs, long URLs)
# are dropped so they cannot bloat the term dictionary.
MAX_TOKEN_BYTES = 40


def text_analyzer() -> tantivy.TextAnalyzer:
    """Build the analyzer for full-text fields: split on non-alphanumerics, drop long, lowercase."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .build()
    )


def keyword_analyzer() -> tantivy.TextAnalyzer:
    """Build the analyzer for keyword fields: the whole value as one lowercased token."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw())
        .filter(tantivy.Filter.lowercase())
        .build()
    )


_TEXT = text_analyzer()
_KEYWORD = keyword_analyzer()


def analyze_text(value: str) -> list[str]:
    """Return the tokens the index stores for ``value`` in a full-text field."""
    return list(_TEXT.analyze(value))


def analyze_keyword(value: str) -> list[str]:
    """Return the single token (or none, for an empty value) stored in a keyword field."""
    return list(_KEYWORD.analyze(value))


class FieldKind(Enum):
    TEXT = "text"  # analyzed with positions: term, phrase, NEAR, prefix
    KEYWORD = "keyword"  # one lowercased token: exact, prefix
    DATE = "date"  # UTC datetime: comparisons and ranges
    SIZE = "size"  # unsigned integer (bytes): comparisons and ranges
    BOOL = "bool"  # true/false


@dataclass(frozen=True)
class Field:
    name: str
    kind: FieldKind
    stored: bool = False
    fast: bool = False


# Identity and version: stored so a hit joins back to lake rows.
IDENTITY_FIELDS: tuple[Field, ...] = (
    # "<prefix>:<container>:<item>", see documents.doc_id_of
    Field("doc_id", FieldKind.KEYWORD, stored=True),
    # "mail" | "files" | "calendar" | "contacts" | "teams"
    Field("workload", FieldKind.KEYWORD, stored=True, fast=True),
    # mailbox_id (mail, calendar, contacts) | drive_id | channel_id (teams)
    Field("container_id", FieldKind.KEYWORD, stored=True, fast=True),
    # message_id | item_id | event_id | contact_id
    Field("item_id", FieldKind.KEYWORD, stored=True),
    Field("captured_at", FieldKind.DATE, stored=True),
    Field("run_id", FieldKind.KEYWORD, stored=True),
    Field("deleted_at", FieldKind.DATE, stored=True),  # set when the tenant deleted the item
    Field("custodian_key", FieldKind.KEYWORD, stored=True, fast=True),  # UPN for grouping
    Field(
        "location_key", FieldKind.KEYWORD, stored=True, fast=True
    ),  # mailbox UPN or site/drive URL
    Field("partially_indexed", FieldKind.BOOL, stored=True, fast=True),
    Field("index_issues", FieldKind.KEYWORD, stored=True),  # one "part: reason" per problem
    # A hit's title for an item without a subject, file name or display name: a Teams
    # reply's first words, else where it was posted. Kept for display, not a property.
    Field("hit_title", FieldKind.KEYWORD, stored=True),
)

KIND_VALUES: tuple[str, ...] = ("email", "docs", "meetings", "contacts", "microsoftteams")
"""The Purview ``kind`` values of the items m365lake archives: mail, files, calendar
events, contacts and Teams channel messages. Purview's other kinds (``im``, ``tasks``,
``notes`` …) name content that is not archived."""

# Searchable properties. Each kind of document fills the properties that make sense for
# it; a restriction on a property an item does not have never matches it.
PROPERTY_FIELDS: tuple[Field, ...] = (
    Field("kind", FieldKind.KEYWORD),  # one of KIND_VALUES
    Field("custodian", FieldKind.TEXT),
    Field("size", FieldKind.SIZE, stored=True, fast=True),
    # mail
    Field("from", FieldKind.TEXT),  # "Display Name <address>"
    Field("to", FieldKind.TEXT),
    Field("cc", FieldKind.TEXT),
    Field("bcc", FieldKind.TEXT),
    Field("participants", FieldKind.TEXT),  # from + to + cc + bcc
    Field("recipients", FieldKind.TEXT),  # to + cc + bcc
    Field("subject", FieldKind.TEXT, stored=True),
    Field("body", FieldKind.TEXT),
    Field("attachmentnames", FieldKind.TEXT),
    Field("attachment_text", FieldKind.TEXT),  # extracted attachment content, free text only
    Field("hasattachment", FieldKind.BOOL),
    Field("importance", FieldKind.KEYWORD),  # low | normal | high
    Field("isread", FieldKind.BOOL),
    Field("folder", FieldKind.TEXT),  # folder path, e.g. "Inbox/Projects"
    Field("sent", FieldKind.DATE, fast=True),
    Field("received", FieldKind.DATE, fast=True),
    Field("category", FieldKind.TEXT),
    # files
    Field("filename", FieldKind.TEXT, stored=True),
    Field("fileextension", FieldKind.KEYWORD),  # lowercased, without the dot
    Field("author", FieldKind.TEXT),  # document metadata author, else the creator
    Field("createdby", FieldKind.TEXT),
    Field("modifiedby", FieldKind.TEXT),
    Field("created", FieldKind.DATE, fast=True),
    Field("lastmodifiedtime", FieldKind.DATE, fast=True),
    Field("path", FieldKind.TEXT),  # drive path, e.g. "/Finance/Q1 report.xlsx"
    Field("site", FieldKind.TEXT),  # site name and URL; empty for OneDrive
    Field("title", FieldKind.TEXT),  # document metadata title
    Field("content", FieldKind.TEXT),  # extracted file text
    # meetings: "from", "to" (required attendees), "cc" (optional), "participants",
    # "subject", "body", "sent" (created) are shared with mail
    Field("organizer", FieldKind.TEXT),
    Field("attendees", FieldKind.TEXT),  # every attendee, resources included
    Field("location", FieldKind.TEXT),
    Field("start", FieldKind.DATE, fast=True),
    Field("end", FieldKind.DATE),
    # contacts, named as Purview's searchable contact properties
    Field("displayname", FieldKind.TEXT, stored=True),
    Field("givenname", FieldKind.TEXT),
    Field("surname", FieldKind.TEXT),
    Field("nickname", FieldKind.TEXT),
    Field("fileas", FieldKind.TEXT),
    Field("companyname", FieldKind.TEXT),
    Field("jobtitle", FieldKind.TEXT),
    Field("officelocation", FieldKind.TEXT),
    Field("manager", FieldKind.TEXT),
    Field("emailaddress", FieldKind.TEXT),
    Field("imaddress", FieldKind.TEXT),
    Field("businessphone", FieldKind.TEXT),
    Field("homephone", FieldKind.TEXT),
    Field("mobilephone", FieldKind.TEXT),
    Field("businessaddress", FieldKind.TEXT),
    Field("homeaddress", FieldKind.TEXT),
    Field("otheraddress", FieldKind.TEXT),
    # Teams channel messages: "from", "subject", "body", "sent" are shared with mail
    Field("mentions", FieldKind.TEXT),  # display names of the mentioned users
    Field("team", FieldKind.TEXT),  # team display name
    Field("channel", FieldKind.TEXT),  # channel display name
)

ALL_FIELDS: tuple[Field, ...] = IDENTITY_FIELDS + PROPERTY_FIELDS
FIELDS_BY_NAME: Mapping[str, Field] = {field.name: field for field in ALL_FIELDS}

# KQL property name (lowercase) -> index fields it searches (any of them may match).
PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "from": ("from",),
    "to": ("to",),
    "cc": ("cc",),
    "bcc": ("bcc",),
    "participants": ("participants",),
    "recipients": ("recipients",),
    "subject": ("subject",),
    "body": ("body",),
    "attachmentnames": ("attachmentnames",),
    "hasattachment": ("hasattachment",),
    "importance": ("importance",),
    "isread": ("isread",),
    "kind": ("kind",),
    "folder": ("folder",),
    "sent": ("sent",),
    "received": ("received",),
    "size": ("size",),
    "category": ("category",),
    "custodian": ("custodian",),
    "filename": ("filename",),
    "filetype": ("fileextension",),
    "fileextension": ("fileextension",),
    "author": ("author",),
    "createdby": ("createdby",),
    "modifiedby": ("modifiedby",),
    "created": ("created",),
    "lastmodifiedtime": ("lastmodifiedtime",),
    "path": ("path",),
    "site": ("site",),
    "title": ("title",),
    "organizer": ("organizer",),
    "attendees": ("attendees",),
    "location": ("location",),
    "start": ("start",),
    "end": ("end",),
    "displayname": ("displayname",),
    "givenname": ("givenname",),
    "surname": ("surname",),
    "nickname": ("nickname",),
    "fileas": ("fileas",),
    "companyname": ("companyname",),
    "jobtitle": ("jobtitle",),
    "officelocation": ("officelocation",),
    "manager": ("manager",),
    "emailaddress": ("emailaddress",),
    "imaddress": ("imaddress",),
    "businessphone": ("businessphone",),
    "homephone": ("homephone",),
    "mobilephone": ("mobilephone",),
    "businessaddress": ("businessaddress",),
    "homeaddress": ("homeaddress",),
    "otheraddress": ("otheraddress",),
    "mentions": ("mentions",),
    "team": ("team",),
    "channel": ("channel",),
}

# Fields searched by a term with no property, as Purview searches an item's text and its
# main metadata.
FREE_TEXT_FIELDS: tuple[str, ...] = (
    "subject",
    "body",
    "attachment_text",
    "attachmentnames",
    "participants",
    "filename",
    "title",
    "author",
    "content",
    "location",
    "displayname",
    "companyname",
    "emailaddress",
)

FieldValue: TypeAlias = str | int | bool | dt.datetime
# What the document builder produces and both Tantivy and the test oracle consume: field
# name -> values. Multi-valued text fields are separate values, so an exact phrase never
# spans two recipients. Tantivy leaves a one-position gap between values, so NEAR(1) and
# wider can match across them. Dates are timezone-aware UTC.
SearchDocument: TypeAlias = Mapping[str, Sequence[FieldValue]]


def build_schema() -> tantivy.Schema:
    """Build the Tantivy schema from the field table above."""
    builder = tantivy.SchemaBuilder()
    for field in ALL_FIELDS:
        if field.kind is FieldKind.TEXT:
            builder.add_text_field(
                field.name,
                stored=field.stored,
                tokenizer_name=TEXT_ANALYZER,
                index_option="position",
            )
        elif field.kind is FieldKind.KEYWORD:
            builder.add_text_field(
                field.name,
                stored=field.stored,
                fast=field.fast,
                tokenizer_name=KEYWORD_ANALYZER,
                index_option="basic",
            )
        elif field.kind is FieldKind.DATE:
            builder.add_date_field(field.name, stored=field.stored, indexed=True, fast=field.fast)
        elif field.kind is FieldKind.SIZE:
            builder.add_unsigned_field(
                field.name, stored=field.stored, indexed=True, fast=field.fast
            )
        else:
            builder.add_boolean_field(
                field.name, stored=field.stored, indexed=True, fast=field.fast
            )
    return builder.build()


def register_analyzers(index: tantivy.Index) -> None:
    """Register the project's analyzers on ``index``; call after every ``tantivy.Index(...)``."""
    index.register_tokenizer(TEXT_ANALYZER, text_analyzer())
    index.register_tokenizer(KEYWORD_ANALYZER, keyword_analyzer())
    # Keyword fast fields (used to group hits by custodian and location) normalise their
    # values through the fast-field registry, which is separate from the one above.
    index.register_fast_field_tokenizer(KEYWORD_ANALYZER, keyword_analyzer())


def to_tantivy_document(document: SearchDocument) -> tantivy.Document:
    """Convert a ``SearchDocument`` to a Tantivy document, rejecting unknown fields and types.

    Values go through the typed ``add_*`` methods because ``tantivy.Document(**kwargs)``
    stores a Python int as i64, which an unsigned field rejects.
    """
    result = tantivy.Document()
    for name, values in document.items():
        field = FIELDS_BY_NAME.get(name)
        if field is None:
            raise ValueError(
                f"search document has unknown field {name!r}; known: {', '.join(FIELDS_BY_NAME)}"
            )
        for value in values:
            _add_value(result, field, value)
    return result


def _add_value(document: tantivy.Document, field: Field, value: FieldValue) -> None:
    if field.kind in (FieldKind.TEXT, FieldKind.KEYWORD) and isinstance(value, str):
        document.add_text(field.name, value)
    elif (
        field.kind is FieldKind.DATE and isinstance(value, dt.datetime) and value.tzinfo is not None
    ):
        document.add_date(field.name, value)
    elif (
        field.kind is FieldKind.SIZE
        and isinstance(value, int)
        and not isinstance(value, bool)
        and value >= 0
    ):
        document.add_unsigned(field.name, value)
    elif field.kind is FieldKind.BOOL and isinstance(value, bool):
        document.add_boolean(field.name, value)
    else:
        raise ValueError(
            f"search document field {field.name!r} ({field.kind.value}) got "
            f"{type(value).__name__} {value!r}; dates must be timezone-aware and sizes "
            "non-negative integers"
        )
