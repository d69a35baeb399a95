"""Turn located item versions into index documents: read content, extract text, write.

Extraction runs in the extraction module's worker processes, several items at a time,
so a slow or hanging parser delays one item until its time limit and never the rest.
Threads here only wait on those workers and read content from the lake; the number of
items in flight is bounded, so memory contains at most that many items' content.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import tantivy

from m365lake.errors import LakeError, SearchIndexError
from m365lake.lake import Lake
from m365lake.search import fields
from m365lake.search.changes import ItemVersion, VersionSet, read_rows
from m365lake.search.documents import Directory, file_document, message_document
from m365lake.search.documents_outlook import (
    AttachmentContent,
    body_content,
    contact_document,
    event_document,
)
from m365lake.search.documents_teams import channel_message_document
from m365lake.search.item_attachments import event_attachments

if TYPE_CHECKING:
    from m365lake.search.extract import Extraction, MessageText

logger = logging.getLogger(__name__)

# Items read and extracted at once, and the content bytes they may hold together (by the
# size the lake recorded). Several items per extraction worker keep the workers busy
# while this process reads content and writes documents; the byte limit bounds memory
# when the items are large.
DEFAULT_IN_FLIGHT = 8
DEFAULT_IN_FLIGHT_BYTES = 256 * 1024 * 1024


class Extractor(Protocol):
    """Text extraction with a per-item time limit, as the extraction worker pool offers it."""

    def extract_text(
        self, data: bytes, *, filename: str | None = None, content_type: str | None = None
    ) -> Extraction: ...

    def extract_message(self, mime: bytes) -> MessageText: ...


@dataclass(frozen=True)
class IndexedDocument:
    """One document written to the index."""

    doc_id: str
    document: fields.SearchDocument
    replaced: bool
    """An earlier document of the same item was deleted first."""
    deleted: bool
    """The document carries ``deleted_at``."""
    issues: tuple[str, ...]


def build_document(
    lake: Lake,
    version: ItemVersion,
    row: dict[str, Any],
    directory: Directory,
    extractor: Extractor,
) -> fields.SearchDocument:
    """Read the content of one version, extract its text and build its document."""
    try:
        if version.table == "messages":
            return _message(lake, version, row, directory, extractor)
        if version.table == "events":
            return _event(lake, version, row, directory, extractor)
        if version.table == "contacts":
            return _contact(lake, version, row, directory)
        if version.table == "channel_messages":
            return _channel_message(lake, version, row, directory, extractor)
        return _file(lake, version, row, directory, extractor)
    except (ValueError, TypeError, KeyError) as error:
        raise SearchIndexError(
            f"could not build the search document of {version.table} item "
            f"{version.container_id}/{version.item_id} (version captured "
            f"{row.get('captured_at')}): {error}"
        ) from error


def _read(lake: Lake, sha256: str | None, inline: bytes | None) -> tuple[bytes | None, str | None]:
    """Return the content, or None and the reason it could not be read."""
    if sha256 is None:
        return None, None
    try:
        return lake.read_content(sha256, inline), None
    except (LakeError, OSError) as error:
        logger.warning("content %s could not be read for indexing: %s", sha256, error)
        return None, f"the archived content could not be read ({error})"


def _message(
    lake: Lake,
    version: ItemVersion,
    row: dict[str, Any],
    directory: Directory,
    extractor: Extractor,
) -> fields.SearchDocument:
    mime, problem = _read(lake, row.get("mime_sha256"), row.pop("mime_inline", None))
    text = extractor.extract_message(mime) if mime is not None else None
    return message_document(
        row,
        text=text,
        directory=directory,
        deleted_at=version.deleted_at,
        mime=mime,
        content_issue=problem or "the message content was not archived",
    )


def _file(
    lake: Lake,
    version: ItemVersion,
    row: dict[str, Any],
    directory: Directory,
    extractor: Extractor,
) -> fields.SearchDocument:
    content, problem = _read(lake, row.get("content_sha256"), row.pop("content_inline", None))
    extraction = None
    if content is not None:
        extraction = extractor.extract_text(
            content, filename=row.get("name"), content_type=row.get("mime_type")
        )
    if problem is None and content is None:
        problem = (
            f"the content of this {row.get('package_type')} package is not downloadable"
            if row.get("package_type")
            else "the content was not archived (see the failures table)"
        )
    return file_document(
        row,
        extraction=extraction,
        directory=directory,
        deleted_at=version.deleted_at,
        content_issue=problem,
    )


def _item_json(lake: Lake, row: dict[str, Any]) -> tuple[Mapping[str, Any] | None, str | None]:
    """Return Graph's JSON of an event, contact or channel message version, or the problem."""
    inline = row.pop("json_inline", None)
    sha256 = row.get("json_sha256")
    if sha256 is None and inline is None:
        return None, "Graph's JSON of this version was not archived"
    if sha256 is None:
        data: bytes | None = inline
    else:
        data, problem = _read(lake, sha256, inline)
        if data is None:
            return None, problem
    try:
        item = json.loads(data or b"")
    except ValueError as error:
        return None, f"Graph's JSON of this version is not valid JSON ({error})"
    if not isinstance(item, dict):
        return None, "Graph's JSON of this version is not an object"
    return item, None


def _body(extractor: Extractor, item: Mapping[str, Any] | None) -> Extraction | str | None:
    """Return the text of an item's Graph ``body``: HTML goes through extraction."""
    found = body_content(item or {})
    if found is None:
        return None
    content_type, content = found
    if content_type != "html":
        return content
    return extractor.extract_text(content.encode("utf-8"), content_type="text/html")


def _event(
    lake: Lake,
    version: ItemVersion,
    row: dict[str, Any],
    directory: Directory,
    extractor: Extractor,
) -> fields.SearchDocument:
    item, problem = _item_json(lake, row)
    attachments: list[AttachmentContent] = []
    if row.get("has_attachments") or row.get("attachment_count"):
        for attachment in event_attachments(lake, row):
            content, problem = _read(lake, attachment.get("content_sha256"), None)
            if content is None:
                attachments.append(
                    AttachmentContent(attachment.get("name"), None, problem or "not archived")
                )
                continue
            extraction = extractor.extract_text(
                content,
                filename=attachment.get("name"),
                content_type=attachment.get("content_type"),
            )
            attachments.append(AttachmentContent(attachment.get("name"), extraction))
    return event_document(
        row,
        item,
        body=_body(extractor, item),
        attachments=attachments,
        directory=directory,
        deleted_at=version.deleted_at,
        content_issue=problem,
    )


def _contact(
    lake: Lake, version: ItemVersion, row: dict[str, Any], directory: Directory
) -> fields.SearchDocument:
    item, problem = _item_json(lake, row)
    return contact_document(
        row, item, directory=directory, deleted_at=version.deleted_at, content_issue=problem
    )


def _channel_message(
    lake: Lake,
    version: ItemVersion,
    row: dict[str, Any],
    directory: Directory,
    extractor: Extractor,
) -> fields.SearchDocument:
    item, problem = _item_json(lake, row)
    return channel_message_document(
        row,
        item,
        body=_body(extractor, item),
        directory=directory,
        deleted_at=version.deleted_at,
        content_issue=problem,
    )


def index_documents(
    lake: Lake,
    versions: VersionSet,
    directory: Directory,
    extractor: Extractor,
    writer: tantivy.IndexWriter,
    searcher: tantivy.Searcher,
    *,
    in_flight: int = DEFAULT_IN_FLIGHT,
    in_flight_bytes: int = DEFAULT_IN_FLIGHT_BYTES,
) -> Iterator[IndexedDocument]:
    """Build and write the document of every version; yield each one written.

    ``searcher`` (opened before this update's uncommitted changes) tells whether an item
    already has a document, which is deleted by its ``doc_id`` term before the new one
    is added. Nothing is committed here.
    """
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=in_flight, thread_name_prefix="index-extract"
    ) as pool:
        pending: dict[concurrent.futures.Future[fields.SearchDocument], int] = {}
        for group in versions.versions():
            for version, row in read_rows(lake, group):
                size = max(int(row.get("size") or 0), 0)
                while pending and (
                    len(pending) >= in_flight or sum(pending.values()) + size > in_flight_bytes
                ):
                    yield from _write_finished(pending, writer, searcher)
                future = pool.submit(build_document, lake, version, row, directory, extractor)
                pending[future] = size
        while pending:
            yield from _write_finished(pending, writer, searcher)


def _write_finished(
    pending: dict[concurrent.futures.Future[fields.SearchDocument], int],
    writer: tantivy.IndexWriter,
    searcher: tantivy.Searcher,
) -> Iterator[IndexedDocument]:
    """Wait for at least one pending document, then write every finished one."""
    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
    for future in done:
        del pending[future]
        yield write_document(future.result(), writer, searcher)


def write_document(
    document: fields.SearchDocument, writer: tantivy.IndexWriter, searcher: tantivy.Searcher | None
) -> IndexedDocument:
    """Replace the item's document in the index (uncommitted) with ``document``."""
    doc_id = str(document["doc_id"][0])
    term = fields.analyze_keyword(doc_id)[0]
    replaced = searcher is not None and searcher.doc_freq("doc_id", term) > 0
    if replaced:
        writer.delete_documents_by_term("doc_id", term)
    writer.add_document(fields.to_tantivy_document(document))
    return IndexedDocument(
        doc_id=doc_id,
        document=document,
        replaced=replaced,
        deleted=bool(document.get("deleted_at")),
        issues=tuple(str(issue) for issue in document.get("index_issues", ())),
    )
