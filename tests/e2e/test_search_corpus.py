"""KQL over the index of real data agrees with the KQL oracle, query by query.

The Enron maildir (4 custodians, 9,788 messages), the EDRM lokay-m messages with their
real attachments, and the shared files corpus (office documents, PDFs, archives,
encrypted and corrupt files) are archived through the emulator and indexed once per
session. For every query of the table, the set of items
Tantivy returns must equal the set for which ``kql.matches`` is true over the very
documents the index received.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tantivy

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.loaders import load_corpus
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake
from m365lake.search import fields
from m365lake.search.hits import compile_kql
from m365lake.search.index import open_index, update_index
from m365lake.search.kql import PreparedDocument, matches, parse

pytestmark = pytest.mark.corpus

ONEDRIVE_OWNER = "lokay-m@enron.example"
CATEGORIZED = "allen-p@enron.example"
# The oracle's clock for relative dates. The table uses absolute dates only, so the
# compiler's own clock does not change the result.
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@dataclass
class IndexedCorpus:
    lake: Lake
    documents: dict[str, fields.SearchDocument]
    skipped_files: list[str]
    messages: int

    def tantivy_hits(self, query: str) -> set[str]:
        opened = open_index(self.lake)
        searcher = opened.index.searcher()
        compiled = compile_kql(query, opened.index.schema)
        limit = max(searcher.num_docs, 1)
        return {
            searcher.doc(address).to_dict()["doc_id"][0]
            for _, address in searcher.search(compiled, limit=limit).hits
        }


def add_corpus_files(tenant: Tenant, files_root: Path) -> list[str]:
    """Put the files corpus into a site library and a OneDrive; return names left out.

    Names that OneDrive forbids (``? * : " < > |`` and the like) are left out, because
    the emulator rejects them as Graph does.
    """
    tenant.add_site(SeedSite("evidence", "Evidence Room"))
    skipped = []
    for path in sorted(files_root.rglob("*")):
        if not path.is_file() or path.name in ("MANIFEST.csv", "PROVENANCE.md"):
            continue
        relative = path.relative_to(files_root).parts
        in_onedrive = relative[0] in ("enron-edrm-lokay-m-attachments", "pst-extractor-enron")
        try:
            if in_onedrive:
                tenant.add_file(
                    "onedrive", ONEDRIVE_OWNER, "Documents", relative, path.read_bytes()
                )
            else:
                tenant.add_file("site", "evidence", "Documents", relative, path.read_bytes())
        except ValueError:
            skipped.append("/".join(relative))
    return skipped


def add_edrm_messages(tenant: Tenant, folder: Path) -> int:
    """Add the EDRM .eml messages, which carry real attachments, to one mailbox."""
    count = 0
    for path in sorted(folder.rglob("*.eml")):
        relative = path.relative_to(folder).parent.parts
        tenant.add_message(ONEDRIVE_OWNER, ("EDRM", *relative), path.read_bytes())
        count += 1
    return count


def build_tenant(corpus_root: Path) -> tuple[Tenant, int, list[str]]:
    tenant = Tenant.from_seed(load_corpus(corpus_root / "mail" / "enron" / "maildir"))
    # The Enron mail has no Outlook categories; a compliance officer's tagging adds some.
    for number, message_id in enumerate(sorted(tenant.live_messages(CATEGORIZED))[:40]):
        categories = ["Legal hold"] if number % 2 else ["Legal hold", "Privileged"]
        tenant.update_message(CATEGORIZED, message_id, categories=categories)
    edrm = add_edrm_messages(tenant, corpus_root / "mail" / "enron" / "edrm-lokay-m-eml")
    skipped = add_corpus_files(tenant, corpus_root / "files")
    return tenant, edrm, skipped


@pytest.fixture(scope="session")
def indexed_corpus(
    corpus_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IndexedCorpus]:
    tenant, edrm_messages, skipped = build_tenant(corpus_root)
    lake = Lake.open(tmp_path_factory.mktemp("search-corpus") / "lake")
    with EmulatorServer(tenant, tmp_path_factory.mktemp("search-corpus-state")) as server:
        mail = asyncio.run(backup_mail(server.settings(), lake))
        files = asyncio.run(backup_files(server.settings(), lake))
    assert not mail.failed
    assert not files.failed
    documents: dict[str, fields.SearchDocument] = {}

    def keep(document: fields.SearchDocument) -> None:
        documents[str(document["doc_id"][0])] = document

    update_index(lake, on_document=keep)
    yield IndexedCorpus(lake, documents, skipped, 9788 + edrm_messages)


@pytest.fixture(scope="session")
def prepared(indexed_corpus: IndexedCorpus) -> dict[str, PreparedDocument]:
    return {
        doc_id: PreparedDocument(document) for doc_id, document in indexed_corpus.documents.items()
    }


QUERIES = [
    # free text
    "budget",
    "enron",
    "california",
    "Enron",
    "gas power",
    "meeting agenda",
    "contract OR agreement",
    "tika",
    "lorem",
    # phrases
    '"natural gas"',
    '"please let me know"',
    '"conference call"',
    '"the quick brown fox"',
    # prefixes
    "ener*",
    "confid*",
    "subject:meet*",
    # NEAR
    "gas NEAR(3) price",
    "gas NEAR(0) prices",
    "natural ONEAR(1) gas",
    '"natural gas" NEAR(5) california',
    # booleans
    "budget AND NOT meeting",
    "(gas OR power) AND california",
    "budget OR forecast OR outlook",
    "-meeting budget",
    "NOT kind:email",
    "kind:email AND NOT hasattachment:false",
    "(deal OR trade) AND NOT (gas OR power)",
    # mail properties
    "from:phillip",
    'from:"phillip allen"',
    "from:phillip.allen@enron.com",
    "to:jeff",
    "to:enron.com",
    "cc:enron.com",
    "bcc:enron.com",
    "participants:lokay",
    "recipients:griffith",
    "subject:meeting",
    'subject:"re:"',
    "subject:(budget OR forecast)",
    "body:pipeline",
    "folder:inbox",
    'folder:"Sent Items"',
    "folder:deleted",
    "custodian:allen-p",
    "custodian:lokay",
    "kind:email",
    "hasattachment:true",
    "importance:high",
    "importance:normal",
    "isread:false",
    "category:legal",
    'category:"legal hold" AND NOT category:privileged',
    "category:privileged OR importance:high",
    # dates
    "sent>=2001-01-01",
    "sent<2000-06-01",
    "sent:2001-05-14",
    "received:2001-01-01..2001-03-31",
    "sent>=2001-01-01 sent<2001-02-01 gas",
    "received<>2001-05-14",
    # sizes
    "size>10000",
    "size<2KB",
    "size:1KB..5KB",
    "kind:docs size>100KB",
    # files
    "kind:docs",
    "filetype:pdf",
    "fileextension:docx",
    "filetype:xls*",
    "filename:test*",
    "filename:password",
    "author:mccandless",
    'author:"Allison, Timothy"',
    "title:test",
    'title:"transportation service agreement"',
    "path:apache",
    'path:"/apache-poi"',
    "site:evidence",
    'site:"Evidence Room"',
    "createdby:lokay",
    "modifiedby:lokay",
    "lastmodifiedtime>=2001-01-01",
    "created<2100-01-01",
    "attachmentnames:url",
    "attachmentnames:xls*",
    # mixes
    "from:phillip subject:meeting sent>=2000-01-01",
    "kind:docs (filetype:pdf OR filetype:docx) -test",
    "participants:enron.com hasattachment:true size>50KB",
    "custodian:griffith (gas OR power) NOT folder:inbox",
]


def test_query_table_is_large():
    assert len(QUERIES) >= 60


def test_corpus_indexed_whole(indexed_corpus: IndexedCorpus):
    documents = indexed_corpus.documents
    mail = [doc for doc in documents.values() if doc["workload"] == ["mail"]]
    files = [doc for doc in documents.values() if doc["workload"] == ["files"]]

    assert len(mail) == indexed_corpus.messages
    assert len(files) >= 200
    assert len(indexed_corpus.skipped_files) < 20
    opened = open_index(indexed_corpus.lake)
    assert opened.index.searcher().num_docs == len(documents)


def test_encrypted_and_corrupt_files_partially_indexed(indexed_corpus: IndexedCorpus):
    issues = {
        str(doc["filename"][0]): [str(issue) for issue in doc.get("index_issues", [])]
        for doc in indexed_corpus.documents.values()
        if doc["workload"] == ["files"]
    }

    assert issues["protected_normal_case.docx"], "a password-protected Word file"
    assert issues["full_encrypted.7z"], "an encrypted archive"
    assert issues["testWORD_truncated.docx"], "a truncated Word file"
    assert not issues["LibreOfficeWriter_odt_1.3.odt"], "a readable document is complete"
    opened = open_index(indexed_corpus.lake)
    partial = tantivy.Query.term_query(opened.index.schema, "partially_indexed", True)
    expected = sum(
        1 for doc in indexed_corpus.documents.values() if doc["partially_indexed"] == [True]
    )
    assert opened.index.searcher().search(partial, limit=1).count == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("query", QUERIES)
def test_tantivy_matches_oracle(
    indexed_corpus: IndexedCorpus, prepared: dict[str, PreparedDocument], query: str
):
    node = parse(query)
    expected = {doc_id for doc_id, document in prepared.items() if matches(node, document, now=NOW)}

    actual = indexed_corpus.tantivy_hits(query)

    assert actual == expected, (
        f"only Tantivy: {sorted(actual - expected)[:5]}; only the oracle: "
        f"{sorted(expected - actual)[:5]}"
    )
    assert expected, "the query matches nothing, so the comparison proves little"
    assert len(expected) < len(prepared), "the query matches everything"
