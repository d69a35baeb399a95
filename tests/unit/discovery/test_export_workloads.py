"""Productions of calendar events, contacts and Teams threads from a lake written directly."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from m365lake.discovery.production import export_production, verify_production
from m365lake.discovery.production.folder import CSV_FILE, CUSTODY_FILE, DAT_FILE
from m365lake.lake import Lake
from m365lake.search.index import update_index
from tests.unit.discovery.test_export_fixtures import (
    ACTOR,
    InlineExtractor,
    open_case,
    parse_dat,
    read_bytes,
)
from tests.unit.search import workload_fixture as lakes
from tests.unit.search.workload_fixture import ALICE, TEAM_NAME

QUERY = f'kind:meetings OR kind:contacts OR "{lakes.REPLY_PHRASE}"'


def renderer(module: str, name: str) -> Any:
    """Return a production renderer, skipping the test while its module is not installed."""
    found = pytest.importorskip(f"m365lake.discovery.production.{module}")
    return getattr(found, name)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    opened = Lake.open(tmp_path / "lake")
    lakes.seed_workloads(opened)
    update_index(opened, extractor=InlineExtractor())
    return opened


def export(lake: Lake, out: Path, references: list[tuple[str, str]], kql: str = QUERY) -> Any:
    case_id = open_case(lake, "W", references)
    return export_production(lake, case_id, out, actor=ACTOR, kql=kql, extractor=InlineExtractor())


def stored_json(lake: Lake, table: str, key: str, ids: list[str]) -> list[dict[str, Any]]:
    """Return Graph's JSON of the newest version of each item, in the order of ``ids``."""
    import pyarrow.parquet as pq

    newest: dict[str, dict[str, Any]] = {}
    for path in lake.committed_files(table):
        for row in pq.read_table(path).to_pylist():
            if row[key] in ids:
                newest[row[key]] = row
    result = []
    for item in ids:
        row = newest[item]
        data = lake.read_content(row["json_sha256"], row["json_inline"])
        result.append(json.loads(data))
    return result


@pytest.fixture
def produced(lake: Lake, tmp_path: Path) -> dict[str, Any]:
    for module in ("ics", "vcf", "teams_thread"):
        pytest.importorskip(f"m365lake.discovery.production.{module}")
    out = tmp_path / "out"
    result = export(lake, out, [("mailbox", ALICE), ("team", TEAM_NAME)])
    return {"result": result, "out": out, "rows": parse_dat(out / DAT_FILE)}


def test_production_record_types_in_order(produced: dict[str, Any]):
    rows = produced["rows"]

    # Custodians in label order: the team "Finance", then alice@contoso.example.
    assert [row["RECORDTYPE"] for row in rows] == [
        "Teams Thread",
        "Teams Thread JSON",
        "Meeting",
        "Meeting",
        "Contact",
        "Contact",
    ]
    assert [row["CUSTODIAN"] for row in rows] == [TEAM_NAME] * 2 + [ALICE] * 4
    assert [row["FILEEXTENSION"] for row in rows] == ["html", "json", "ics", "ics", "vcf", "vcf"]


def test_series_produced_as_one_ics(lake: Lake, produced: dict[str, Any]):
    render_ics = renderer("ics", "render_ics")
    series, single = produced["rows"][2:4]

    expected = render_ics(stored_json(lake, "events", "event_id", [lakes.SERIES, lakes.EXCEPTION]))
    assert read_bytes(produced["out"], series["NATIVELINK"]) == expected
    assert series["SUBJECT"] == "Weekly budget sync"
    assert series["SOURCEID"] == f"event:{lakes.ALICE_MAILBOX}:{lakes.SERIES}"
    assert series["FROM"] == f"Alice Park <{ALICE}>"
    assert series["TO"] == "Bob Kline <bob@contoso.example>"
    assert series["CC"] == "Lucía Ortega <lucia.ortega@adatum.example>"
    assert series["SOURCEPATH"] == f"{ALICE}/Calendar"
    expected_single = render_ics(stored_json(lake, "events", "event_id", [lakes.SINGLE]))
    assert read_bytes(produced["out"], single["NATIVELINK"]) == expected_single


def test_contacts_produced_as_vcf(lake: Lake, produced: dict[str, Any]):
    render_vcard = renderer("vcf", "render_vcard")
    kenji, lucia = produced["rows"][4:6]

    [kenji_json] = stored_json(lake, "contacts", "contact_id", [lakes.CONTACT_KENJI])
    assert read_bytes(produced["out"], kenji["NATIVELINK"]) == render_vcard(kenji_json)
    assert kenji["SUBJECT"] == "Kenji Sato"
    assert lucia["SUBJECT"] == "Lucía Ortega"
    assert lucia["MIMETYPE"] == "text/vcard"


def test_thread_produced_whole_in_order(lake: Lake, produced: dict[str, Any]):
    render_html = renderer("teams_thread", "render_thread_html")
    render_json = renderer("teams_thread", "render_thread_json")
    page, as_json = produced["rows"][0:2]

    # The reply deleted in Teams is shown as first captured, with its text, marked deleted.
    thread = stored_json(
        lake, "channel_messages", "message_id", [lakes.ROOT, lakes.REPLY_ONE, lakes.REPLY_TWO]
    )
    [before_deletion] = [
        item for item in lakes.thread_messages() if item["id"] == lakes.REPLY_DELETED
    ]
    thread.append(before_deletion)
    deleted = {lakes.REPLY_DELETED: "2024-03-04T11:00:00Z"}
    native = read_bytes(produced["out"], page["NATIVELINK"])
    assert native == render_html(thread, deleted=deleted)
    assert read_bytes(produced["out"], as_json["NATIVELINK"]) == render_json(
        thread, deleted=deleted
    )
    assert b"This message was deleted. Its text before the deletion:" in native
    assert page["BEGATTACH"] == page["BEGBATES"]
    assert page["ENDATTACH"] == as_json["BEGBATES"]
    assert as_json["PARENTBATES"] == page["BEGBATES"]
    assert page["SOURCEID"] == f"teams:{lakes.CHANNEL}:{lakes.ROOT}"
    assert as_json["SOURCEID"] == f"teams:{lakes.CHANNEL}:{lakes.ROOT}#json"
    assert page["SUBJECT"] == "Quarter close"
    assert page["FROM"] == f"Alice Park <{ALICE}>"
    assert page["SOURCEPATH"] == f"{TEAM_NAME}/{lakes.CHANNEL_NAME}"


def test_thread_text_holds_every_reply(produced: dict[str, Any]):
    page = produced["rows"][0]

    text = read_bytes(produced["out"], page["TEXTLINK"]).decode("utf-8-sig")
    assert "The ledger closes" in text
    assert "Thanks, noted." in text
    assert lakes.ROOT_WORD in text
    assert lakes.DELETED_WORD in text
    assert page["TEXTSTATUS"] == "ok"


def test_load_file_hashes_verify(produced: dict[str, Any]):
    out = produced["out"]
    with open(out / CSV_FILE, encoding="utf-8-sig", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))

    assert csv_rows == produced["rows"]
    for row in produced["rows"]:
        data = read_bytes(out, row["NATIVELINK"])
        assert row["SHA256"] == hashlib.sha256(data).hexdigest()
        assert row["MD5"] == hashlib.md5(data).hexdigest()
        assert row["FILESIZE"] == str(len(data))
    assert verify_production(out).ok


def test_custody_report_counts_per_kind(produced: dict[str, Any]):
    counts = produced["result"].counts
    report = json.loads((produced["out"] / CUSTODY_FILE).read_text(encoding="utf-8-sig"))

    assert counts["documents_meeting"] == 2
    assert counts["documents_contact"] == 2
    assert counts["documents_teams_thread"] == 1
    assert counts["documents_teams_thread_json"] == 1
    assert counts["families_produced"] == 5
    assert "documents_meeting" in json.dumps(report)


def test_team_outside_case_is_out_of_scope(lake: Lake, tmp_path: Path):
    renderer("ics", "render_ics")
    renderer("vcf", "render_vcard")

    result = export(lake, tmp_path / "out", [("mailbox", ALICE)])

    assert result.counts["out_of_scope"] == 1
    assert result.counts["families_produced"] == 4
    rows = parse_dat(tmp_path / "out" / DAT_FILE)
    assert {row["RECORDTYPE"] for row in rows} == {"Meeting", "Contact"}


def test_contacts_only_production(lake: Lake, tmp_path: Path):
    renderer("vcf", "render_vcard")

    result = export(lake, tmp_path / "out", [("mailbox", ALICE)], "kind:contacts")

    rows = parse_dat(tmp_path / "out" / DAT_FILE)
    assert [row["SUBJECT"] for row in rows] == ["Kenji Sato", "Lucía Ortega"]
    assert [row["FILENAME"] for row in rows] == ["Kenji Sato.vcf", "Lucía Ortega.vcf"]
    assert result.counts["documents_contact"] == 2
    assert verify_production(tmp_path / "out").ok


def test_teams_only_production(lake: Lake, tmp_path: Path):
    renderer("teams_thread", "render_thread_json")
    out = tmp_path / "out"

    result = export(lake, out, [("team", TEAM_NAME)], f'"{lakes.REPLY_PHRASE}"')

    page, as_json = parse_dat(out / DAT_FILE)
    thread = json.loads(read_bytes(out, as_json["NATIVELINK"]))
    assert [message["id"] for message in thread["messages"]] == [
        lakes.ROOT,
        lakes.REPLY_ONE,
        lakes.REPLY_TWO,
        lakes.REPLY_DELETED,
    ]
    assert thread["rootMessageId"] == lakes.ROOT
    assert page["FILEEXTENSION"] == "html"
    assert page["ATTACHCOUNT"] == "1"
    assert result.counts["documents_teams_thread"] == 1
    assert verify_production(out).ok
