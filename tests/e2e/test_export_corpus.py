"""A production of a search over the archived Enron corpus, read back by the DAT rules.

The lake is the one the search corpus tests build (Enron maildir, the EDRM lokay-m
messages with their attachments, and the files corpus in a OneDrive and a site), archived
through the emulator and indexed. The case's custodians are two of the four mailboxes, a
OneDrive and the site, so part of the search falls outside the case.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from m365lake.catalog import run_sql
from m365lake.discovery import add_custodians, create_case, read_audit_events
from m365lake.discovery.production import ExportOptions, export_production, verify_production
from m365lake.discovery.production.result import ExportResult
from m365lake.lake import Lake
from m365lake.search import search
from tests.e2e.test_search_corpus import IndexedCorpus, indexed_corpus  # noqa: F401
from tests.unit.discovery.test_export_fixtures import parse_dat, read_bytes

pytestmark = pytest.mark.corpus

ACTOR = "counsel@firm.example"
CASE_ID = "ENRON-EXPORT"
QUERY = "budget OR hasattachment:true"
CUSTODIANS = [
    ("mailbox", "allen-p@enron.example"),
    ("mailbox", "lokay-m@enron.example"),
    ("onedrive", "lokay-m@enron.example"),
    ("site", "https://enron.sharepoint.com/sites/evidence"),
]


@dataclass
class Production:
    root: Path
    result: ExportResult
    rows: list[dict[str, str]]


@pytest.fixture(scope="module")
def productions(
    indexed_corpus: IndexedCorpus,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Production]:
    lake = indexed_corpus.lake
    create_case(lake, "Enron export", actor=ACTOR, case_id=CASE_ID)
    add_custodians(lake, CASE_ID, CUSTODIANS, actor=ACTOR)
    made = {}
    for dedup in ("global", "custodian", "none"):
        root = tmp_path_factory.mktemp(f"production-{dedup}") / "prod"
        result = export_production(
            lake,
            CASE_ID,
            root,
            actor=ACTOR,
            kql=QUERY,
            options=ExportOptions(prefix="ENR", dedup=dedup),  # type: ignore[arg-type]
        )
        made[dedup] = Production(root, result, parse_dat(root / "DATA" / "loadfile.dat"))
    return made


def _custodian_containers(lake: Lake) -> set[str]:
    upns = "'allen-p@enron.example', 'lokay-m@enron.example'"
    rows = run_sql(
        lake,
        f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name IN ({upns}) "
        "UNION ALL SELECT drive_id FROM drives WHERE owner_name = 'lokay-m@enron.example' "
        "OR web_url LIKE 'https://enron.sharepoint.com/sites/evidence/%'",
    )[1]
    return {row[0] for row in rows}


def test_counts_match_search(indexed_corpus, productions):  # noqa: F811
    lake = indexed_corpus.lake
    counts = productions["global"].result.counts
    hits = search(lake, QUERY, limit=10_000).hits
    containers = _custodian_containers(lake)
    in_scope = [hit for hit in hits if hit.container_id in containers]

    assert counts["hits"] == len(hits)
    assert counts["out_of_scope"] == len(hits) - len(in_scope)
    assert counts["out_of_scope"] > 0, "griffith-j and arora-h are outside the case"
    assert counts["families"] == len(in_scope)
    assert counts["not_found"] == 0
    assert counts["errors"] == 0
    assert counts["families"] == counts["families_produced"] + counts["duplicates"]


def test_every_row_parses(productions):
    for production in productions.values():
        counts = production.result.counts
        assert len(production.rows) == counts["documents"]
        assert counts["attachments"] > 0, "the EDRM messages carry attachments"
        controls = [row["BEGBATES"] for row in production.rows]
        assert controls == [f"ENR{number:07d}" for number in range(1, len(controls) + 1)]


def test_csv_has_same_records(productions):
    production = productions["global"]
    with open(
        production.root / "DATA" / "loadfile.csv", encoding="utf-8-sig", newline=""
    ) as handle:
        csv_rows = list(csv.DictReader(handle))

    assert len(csv_rows) == len(production.rows)
    for csv_row, dat_row in zip(csv_rows, production.rows, strict=True):
        for field in ("BEGBATES", "ENDATTACH", "SHA256", "NATIVELINK", "CUSTODIAN"):
            assert csv_row[field] == dat_row[field]


def test_native_hashes_match(productions):
    for production in productions.values():
        for row in production.rows:
            data = read_bytes(production.root, row["NATIVELINK"])
            assert hashlib.sha256(data).hexdigest() == row["SHA256"], row["BEGBATES"]
            assert hashlib.md5(data).hexdigest() == row["MD5"], row["BEGBATES"]
            assert len(data) == int(row["FILESIZE"]), row["BEGBATES"]


def test_eml_natives_are_archived_mime(indexed_corpus, productions):  # noqa: F811
    rows = run_sql(indexed_corpus.lake, "SELECT mailbox_id, message_id, mime_sha256 FROM messages")[
        1
    ]
    archived = {f"mail:{mailbox}:{message}": digest for mailbox, message, digest in rows}
    emails = [row for row in productions["none"].rows if row["RECORDTYPE"] == "Email"]

    assert emails
    for row in emails:
        assert row["SHA256"] == archived[row["SOURCEID"]], row["BEGBATES"]


def test_families_intact(indexed_corpus, productions):  # noqa: F811
    rows = run_sql(
        indexed_corpus.lake,
        "SELECT mailbox_id, message_id, count(*) FROM attachments a "
        "JOIN messages m USING (mailbox_id, message_id, mime_sha256) GROUP BY ALL",
    )[1]
    archived = {f"mail:{mailbox}:{message}": count for mailbox, message, count in rows}
    production = productions["global"]
    parents = [row for row in production.rows if row["RECORDTYPE"] != "Attachment"]
    position = {row["BEGBATES"]: index for index, row in enumerate(production.rows)}

    for parent in parents:
        start = position[parent["BEGBATES"]]
        count = int(parent["ATTACHCOUNT"])
        family = production.rows[start : start + count + 1]
        assert parent["BEGATTACH"] == parent["BEGBATES"]
        assert parent["ENDATTACH"] == family[-1]["BEGBATES"]
        for member in family[1:]:
            assert member["RECORDTYPE"] == "Attachment"
            assert member["PARENTBATES"] == parent["BEGBATES"]
            assert (member["BEGATTACH"], member["ENDATTACH"]) == (
                parent["BEGATTACH"],
                parent["ENDATTACH"],
            )
        if parent["RECORDTYPE"] == "Email":
            assert count == archived.get(parent["SOURCEID"], 0), parent["SOURCEID"]
    attachments = sum(int(parent["ATTACHCOUNT"]) for parent in parents)
    assert attachments == production.result.counts["attachments"]


def test_dedup_scopes_nest(productions):
    documents = {name: len(production.rows) for name, production in productions.items()}
    duplicates = {name: p.result.counts["duplicates"] for name, p in productions.items()}

    assert documents["global"] <= documents["custodian"] < documents["none"]
    assert duplicates["none"] == 0
    assert duplicates["custodian"] > 0, "allen-p files a sent message in several folders"


def test_duplicates_map_to_master(productions):
    production = productions["custodian"]
    by_control = {row["BEGBATES"]: row for row in production.rows}
    with open(production.root / "REPORTS" / "duplicates.csv", encoding="utf-8-sig") as handle:
        duplicates = list(csv.DictReader(handle))

    assert len(duplicates) == production.result.counts["duplicates"]
    for duplicate in duplicates:
        master = by_control[duplicate["MASTER_BATES"]]
        assert duplicate["DEDUPHASH"] == master["DEDUPHASH"]
        assert duplicate["SUPPRESSED_CUSTODIAN"] == master["CUSTODIAN"]
    suppressed = Counter(duplicate["MASTER_BATES"] for duplicate in duplicates)
    for control, count in suppressed.items():
        assert by_control[control]["DUPLICATECOUNT"] == str(count)


def test_productions_verify(productions):
    for production in productions.values():
        check = verify_production(production.root)
        assert check.ok, check.problems[:5]
        assert check.files == production.result.counts["files"]


def test_audit_trail_shows_exports(indexed_corpus, productions):  # noqa: F811
    events = read_audit_events(indexed_corpus.lake, case_id=CASE_ID, action="export")

    assert [event.parameters_dict()["options"]["dedup"] for event in events] == [
        "global",
        "custodian",
        "none",
    ]
    for event, production in zip(events, productions.values(), strict=True):
        assert event.parameters_dict()["kql"] == QUERY
        assert event.counts_dict() == production.result.counts
