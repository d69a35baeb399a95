"""Productions: a case's search exported for review platforms, with chain of custody.

``export_production`` writes natives: ``.eml`` for mail, files as archived, and
attachments as family members after their message. A recurring meeting with its
exceptions, or a single event, is one ``.ics``; a contact is a ``.vcf``; a Teams thread
(the root post and every reply, in order) is an ``.html`` followed by a ``.json``.
Beside them it writes extracted text, a Concordance DAT load file, the same records as
CSV, a duplicates report, a chain-of-custody report and a manifest of SHA-256 hashes,
and it appends the export to the audit trail. ``verify_production`` checks a production
against its manifest. ``folder`` shows the layout.

Load file fields (``loadfile.FIELDS``); dates are ISO 8601 in UTC:

- BEGBATES, ENDBATES: the document's control number (one per document, as natives
  have no pages); BEGATTACH, ENDATTACH: the first and last control number of its
  family; PARENTBATES: the parent's control number, for attachments; ATTACHCOUNT.
- RECORDTYPE: Email, Attachment, File, Meeting, Contact, Teams Thread or Teams Thread
  JSON.
- CUSTODIAN; ALLCUSTODIANS: the custodian and those of the suppressed duplicates;
  DUPLICATECOUNT: how many duplicates were suppressed for the family.
- SOURCEPATH: mailbox and folder path, or library URL and path; FILENAME: the
  original name; FILEEXTENSION.
- SUBJECT, FROM, TO, CC, BCC, DATESENT, DATERECEIVED, MESSAGEID, INREPLYTO,
  CONVERSATIONID (mail); DATECREATED, DATEMODIFIED, AUTHOR (files). A meeting fills
  SUBJECT, FROM (organizer), TO (required attendees), CC (optional), DATESENT and
  DATECREATED (created), DATEMODIFIED and MESSAGEID (iCalUId); a contact SUBJECT (its
  name) and the dates; a Teams thread SUBJECT, FROM, DATESENT of its root post,
  MESSAGEID (the root's id) and CONVERSATIONID (``<channel>/<root>``).
- MIMETYPE, FILESIZE, MD5, SHA256 of the native; DEDUPHASH (see ``dedup``).
- NATIVELINK, TEXTLINK: paths relative to the production folder, ``\\``-separated;
  TEXTSTATUS: ``ok``, ``empty`` or why the text is incomplete.
- SOURCEID: the search index's document id, e.g. ``mail:<mailbox>:<message>``,
  ``file:<drive>:<item>``, ``event:<mailbox>:<series master>``,
  ``contact:<mailbox>:<contact>`` or ``teams:<channel>:<root>`` (``#part<n>`` for an
  attachment, ``#json`` for a thread's JSON), CAPTUREDAT: the archived version,
  DELETEDAT: when the tenant deleted the item; ISSUES: problems with the document, e.g.
  attachments left out.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from m365lake.discovery.production.dedup import DEDUP_SCOPES, DedupScope
    from m365lake.discovery.production.export import export_production
    from m365lake.discovery.production.folder import ProductionFolderError
    from m365lake.discovery.production.loadfile import FIELDS
    from m365lake.discovery.production.options import ExportMode, ExportOptions
    from m365lake.discovery.production.result import ExportResult
    from m365lake.discovery.production.verify import ProductionCheck, verify_production

__all__ = [
    "DEDUP_SCOPES",
    "FIELDS",
    "DedupScope",
    "ExportMode",
    "ExportOptions",
    "ExportResult",
    "ProductionCheck",
    "ProductionFolderError",
    "export_production",
    "verify_production",
]

# Imported on first use, so the CLI can register ``export`` without loading the search
# index and the extractors, which only an export needs.
_MODULES = {
    "DEDUP_SCOPES": "dedup",
    "DedupScope": "dedup",
    "export_production": "export",
    "ProductionFolderError": "folder",
    "FIELDS": "loadfile",
    "ExportMode": "options",
    "ExportOptions": "options",
    "ExportResult": "result",
    "ProductionCheck": "verify",
    "verify_production": "verify",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
