"""Productions of a small lake: load files, families, dedup, resume, audit and manifest."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from m365lake.cli import main
from m365lake.discovery import read_audit_events, save_search
from m365lake.discovery.errors import InvalidRequestError
from m365lake.discovery.production import (
    FIELDS,
    ExportOptions,
    ProductionFolderError,
    export_production,
    verify_production,
)
from m365lake.lake import Lake, blob_users
from m365lake.lake.blob_users import exclusive_blobs
from tests.unit.discovery.test_export_fixtures import (
    ACTOR,
    InlineExtractor,
    SeedLake,
    mime_message,
    open_case,
    parse_dat,
    read_bytes,
)

ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
CAROL = "carol@contoso.example"
REPORT = b"Quarterly budget report\nRevenue 12\nCosts 7\n" * 3
FIGURES = b"item,amount\nbudget,12\ncosts,7\n"
# Above the lake's inline threshold in these tests, so it is stored as a blob and its
# native is streamed.
BIG = b"budget line with numbers 0123456789\n" * 4000


def _forecast(received_header: str) -> bytes:
    return mime_message(
        subject="Budget forecast",
        sender=ALICE,
        to=[BOB],
        body="Please review the budget forecast.\n",
        message_id="<forecast-1@contoso.example>",
        attachments=[("report.txt", "text/plain", REPORT), ("figures.csv", "text/csv", FIGURES)],
        headers={"X-Folder": received_header},
    )


@dataclass
class Seeded:
    lake: Lake
    case_id: str


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    lake = Lake.open(tmp_path_factory.mktemp("export") / "lake", inline_threshold=4096)
    seed = SeedLake(lake)
    for mailbox, upn in (("mb-alice", ALICE), ("mb-bob", BOB), ("mb-carol", CAROL)):
        seed.mailbox(mailbox, upn)
    seed.onedrive("d-alice", "mb-alice", ALICE)
    seed.message("mb-alice", "a1", _forecast("\\Alice\\Inbox"), folder="Inbox")
    # The same message filed twice by Alice: Enron mailboxes hold such copies.
    seed.message("mb-alice", "a2", _forecast("\\Alice\\Budget"), folder="Inbox/Budget")
    seed.message(
        "mb-alice",
        "a3",
        mime_message(
            subject="Budget lunch",
            sender=BOB,
            to=[ALICE],
            cc=[CAROL],
            body="Lunch to discuss the budget?\nLine two.\n",
        ),
    )
    seed.message("mb-bob", "b1", _forecast("\\Bob\\Inbox"))
    seed.message(
        "mb-bob",
        "b2",
        mime_message(
            subject="Budget, draft",
            sender=BOB,
            to=[ALICE],
            bcc=[CAROL],
            body="Draft budget attached.\n",
            attachments=[("big.txt", "text/plain", BIG)],
        ),
        folder="Sent Items",
    )
    seed.message(
        "mb-carol",
        "c1",
        mime_message(subject="Budget for Carol", sender=CAROL, to=[BOB], body="budget\n"),
    )
    seed.file("d-alice", "f1", "budget.txt", REPORT, path="Finance")
    seed.file("d-alice", "f2", "budget copy.txt", REPORT, path="Finance/Old")
    seed.file("d-alice", "f3", "budget big.txt", BIG, path="Finance")
    seed.commit()
    seed.index()
    case_id = open_case(lake, "CASE-1", [("mailbox", ALICE), ("mailbox", BOB), ("onedrive", ALICE)])
    save_search(lake, case_id, "budget", "budget", actor=ACTOR)
    yield Seeded(lake, case_id)


def _export(seeded: Seeded, destination: Path, **options: object) -> dict[str, object]:
    result = export_production(
        seeded.lake,
        seeded.case_id,
        destination,
        actor=ACTOR,
        options=ExportOptions(**{"prefix": "ABC", **options}),  # type: ignore[arg-type]
        extractor=InlineExtractor(),
    )
    return {"result": result, "rows": parse_dat(destination / "DATA" / "loadfile.dat")}


def test_export_counts_match_search(seeded, tmp_path):
    exported = _export(seeded, tmp_path / "prod")
    counts = exported["result"].counts

    assert counts["hits"] == 9
    assert counts["out_of_scope"] == 1, "Carol is not a custodian of the case"
    assert counts["not_found"] == 0
    assert counts["families"] == 8
    assert (
        counts["families"] == counts["families_produced"] + counts["duplicates"] + counts["errors"]
    )
    assert counts["duplicates"] == 3, "a2 and b1 copy a1; f2 copies f1"
    assert counts["errors"] == 0
    assert counts["documents"] == len(exported["rows"])


def test_dat_rows_have_every_field(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod")["rows"]

    assert list(rows[0]) == list(FIELDS)
    assert [row["BEGBATES"] for row in rows] == [f"ABC{n:07d}" for n in range(1, len(rows) + 1)]


def test_csv_matches_dat(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod")["rows"]
    with open(
        tmp_path / "prod" / "DATA" / "loadfile.csv", encoding="utf-8-sig", newline=""
    ) as handle:
        csv_rows = list(csv.DictReader(handle))

    assert csv_rows == rows


def test_native_hashes_match(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]

    for row in rows:
        data = read_bytes(destination, row["NATIVELINK"])
        assert hashlib.sha256(data).hexdigest() == row["SHA256"], row["BEGBATES"]
        assert hashlib.md5(data).hexdigest() == row["MD5"], row["BEGBATES"]
        assert len(data) == int(row["FILESIZE"]), row["BEGBATES"]


def test_eml_native_is_archived_mime(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]
    lunch = next(row for row in rows if row["SUBJECT"] == "Budget lunch")

    assert lunch["NATIVELINK"].endswith(".eml")
    assert read_bytes(destination, lunch["NATIVELINK"]).startswith(b"From: bob@contoso.example")


def test_families_intact(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod")["rows"]
    by_control = {row["BEGBATES"]: row for row in rows}

    for row in rows:
        first, last = row["BEGATTACH"], row["ENDATTACH"]
        members = [control for control in by_control if first <= control <= last]
        parent = by_control[first]
        assert parent["PARENTBATES"] == ""
        assert int(parent["ATTACHCOUNT"]) == len(members) - 1
        for member in members[1:]:
            assert by_control[member]["PARENTBATES"] == first
            assert by_control[member]["RECORDTYPE"] == "Attachment"
    forecast = next(row for row in rows if row["SUBJECT"] == "Budget forecast")
    children = [row for row in rows if row["PARENTBATES"] == forecast["BEGBATES"]]
    assert [row["FILENAME"] for row in children] == ["report.txt", "figures.csv"]
    assert forecast["ENDATTACH"] == children[-1]["BEGBATES"]


def test_attachment_natives_are_decoded_content(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]
    report = next(row for row in rows if row["FILENAME"] == "report.txt")

    assert read_bytes(destination, report["NATIVELINK"]) == REPORT


def test_big_file_native_streamed_from_blob(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]
    big = next(row for row in rows if row["FILENAME"] == "budget big.txt")

    assert read_bytes(destination, big["NATIVELINK"]) == BIG
    assert "budget line with numbers" in read_bytes(destination, big["TEXTLINK"]).decode(
        "utf-8-sig"
    )


def test_mail_fields(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod")["rows"]
    lunch = next(row for row in rows if row["SUBJECT"] == "Budget lunch")
    draft = next(row for row in rows if row["SUBJECT"] == "Budget, draft")

    assert lunch["FROM"] == BOB
    assert lunch["TO"] == ALICE
    assert lunch["CC"] == CAROL
    assert lunch["DATESENT"] == "2001-05-01T09:30:00Z"
    assert lunch["CUSTODIAN"] == ALICE
    assert lunch["SOURCEPATH"] == f"{ALICE}/Inbox"
    assert lunch["MESSAGEID"].endswith("@enron.example>")
    assert lunch["SOURCEID"] == "mail:mb-alice:a3"
    assert draft["BCC"] == CAROL
    assert draft["SOURCEPATH"] == f"{BOB}/Sent Items"


def test_file_fields(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod")["rows"]
    report = next(row for row in rows if row["FILENAME"] == "budget.txt")

    assert report["RECORDTYPE"] == "File"
    assert report["SOURCEPATH"].endswith("/Finance/budget.txt")
    assert report["DATECREATED"] == "2001-05-01T09:30:00Z"
    assert report["DATEMODIFIED"] == "2001-05-02T09:30:00Z"
    assert report["DEDUPHASH"] == hashlib.sha256(REPORT).hexdigest()
    assert report["BEGATTACH"] == report["ENDATTACH"] == report["BEGBATES"]


def test_text_files_hold_header_and_body(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]
    lunch = next(row for row in rows if row["SUBJECT"] == "Budget lunch")
    text = read_bytes(destination, lunch["TEXTLINK"]).decode("utf-8-sig")

    assert text.startswith(f"From: {BOB}\r\nTo: {ALICE}\r\nCc: {CAROL}\r\n")
    assert "Lunch to discuss the budget?\r\nLine two." in text
    assert lunch["TEXTSTATUS"] == "ok"


def test_global_dedup_maps_copies_to_master(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination, dedup="global")["rows"]
    forecast = [row for row in rows if row["SUBJECT"] == "Budget forecast"]

    assert len(forecast) == 1
    assert forecast[0]["CUSTODIAN"] == ALICE
    assert forecast[0]["ALLCUSTODIANS"] == f"{ALICE}; {BOB}"
    assert forecast[0]["DUPLICATECOUNT"] == "2"
    with open(destination / "REPORTS" / "duplicates.csv", encoding="utf-8-sig") as handle:
        duplicates = list(csv.DictReader(handle))
    suppressed = {row["SUPPRESSED_SOURCEID"]: row for row in duplicates}
    assert set(suppressed) == {"mail:mb-alice:a2", "mail:mb-bob:b1", "file:d-alice:f2"}
    assert suppressed["mail:mb-bob:b1"]["MASTER_BATES"] == forecast[0]["BEGBATES"]
    assert suppressed["mail:mb-bob:b1"]["MASTER_SOURCEID"] == "mail:mb-alice:a1"


def test_custodian_dedup_keeps_each_custodians_copy(seeded, tmp_path):
    rows = _export(seeded, tmp_path / "prod", dedup="custodian")["rows"]
    forecast = [row for row in rows if row["SUBJECT"] == "Budget forecast"]

    assert [row["CUSTODIAN"] for row in forecast] == [ALICE, BOB]
    assert forecast[0]["DUPLICATECOUNT"] == "1", "Alice's second copy is suppressed"
    assert forecast[1]["DUPLICATECOUNT"] == "0"


def test_no_dedup_produces_every_family(seeded, tmp_path):
    exported = _export(seeded, tmp_path / "prod", dedup="none")

    assert exported["result"].counts["duplicates"] == 0
    assert exported["result"].counts["families_produced"] == 8


def test_audit_records_export(seeded, tmp_path):
    result = _export(seeded, tmp_path / "prod", dedup="custodian")["result"]
    event = read_audit_events(seeded.lake, action="export")[-1]
    parameters = event.parameters_dict()

    assert event.seq == result.audit_seq
    assert event.case_id == seeded.case_id
    assert event.actor == ACTOR
    assert parameters["status"] == "complete"
    assert parameters["kql"] == "budget"
    assert parameters["options"]["dedup"] == "custodian"
    assert parameters["options"]["prefix"] == "ABC"
    assert parameters["custodian_ids"] == [
        "mailbox:mb-alice",
        "onedrive:d-alice",
        "mailbox:mb-bob",
    ]
    assert (
        parameters["manifest_sha256"]
        == hashlib.sha256((tmp_path / "prod" / "MANIFEST.sha256").read_bytes()).hexdigest()
    )
    assert event.counts_dict() == result.counts


def test_custody_report(seeded, tmp_path):
    destination = tmp_path / "prod"
    result = _export(seeded, destination)["result"]
    report = json.loads((destination / "REPORTS" / "chain_of_custody.json").read_text())
    head = seeded.lake.head()

    assert report["case"] == {"case_id": "CASE-1", "name": "Matter CASE-1"}
    assert report["query"]["kql"] == "budget"
    assert report["query"]["search_name"] == "budget"
    assert report["actor"] == ACTOR
    assert report["tool"]["name"] == "m365lake"
    assert report["source"]["runs"][0]["lake_head"]["seq"] <= head.seq
    assert report["source"]["runs"][0]["index_seq"] == 1
    assert report["counts"]["documents"] == result.counts["documents"]
    assert report["deduplication"]["scope"] == "global"
    assert report["first_control"] == "ABC0000001"
    assert report["errors"] == []


def test_manifest_lists_every_file(seeded, tmp_path):
    destination = tmp_path / "prod"
    _export(seeded, destination)
    lines = (destination / "MANIFEST.sha256").read_text().splitlines()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}
    on_disk = {
        path.relative_to(destination).as_posix()
        for path in destination.rglob("*")
        if path.is_file() and path.name != "MANIFEST.sha256"
    }

    assert set(listed) == on_disk
    for relative, digest in listed.items():
        assert hashlib.sha256((destination / relative).read_bytes()).hexdigest() == digest
    assert not (destination / ".m365lake-export").exists()
    assert verify_production(destination).ok


def test_verify_reports_changed_native(seeded, tmp_path):
    destination = tmp_path / "prod"
    rows = _export(seeded, destination)["rows"]
    (destination / rows[0]["NATIVELINK"].replace("\\", "/")).write_bytes(b"altered")

    check = verify_production(destination)

    assert len(check.problems) == 1
    assert "does not match its SHA-256" in check.problems[0]


def test_rejects_non_empty_folder(seeded, tmp_path):
    destination = tmp_path / "prod"
    destination.mkdir()
    (destination / "notes.txt").write_text("mine")

    with pytest.raises(ProductionFolderError, match="not empty"):
        _export(seeded, destination)
    assert (destination / "notes.txt").read_text() == "mine"


def test_overwrite_keeps_foreign_folder(seeded, tmp_path):
    destination = tmp_path / "prod"
    destination.mkdir()
    (destination / "notes.txt").write_text("mine")

    with pytest.raises(ProductionFolderError, match="refusing to overwrite"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            mode="overwrite",
            extractor=InlineExtractor(),
        )
    assert (destination / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_production(seeded, tmp_path):
    destination = tmp_path / "prod"
    _export(seeded, destination, dedup="none")

    result = export_production(
        seeded.lake,
        seeded.case_id,
        destination,
        actor=ACTOR,
        options=ExportOptions(prefix="NEW"),
        mode="overwrite",
        extractor=InlineExtractor(),
    )

    assert result.first_control == "NEW0000001"
    assert not list((destination / "NATIVES").rglob("ABC*"))
    assert verify_production(destination).ok


def test_rejects_destination_inside_lake(seeded):
    with pytest.raises(InvalidRequestError, match="inside the lake"):
        export_production(
            seeded.lake,
            seeded.case_id,
            seeded.lake.root / "prod",
            actor=ACTOR,
            extractor=InlineExtractor(),
        )


class FailingExtractor(InlineExtractor):
    """Extracts normally until ``after`` documents, then fails as a killed worker would."""

    def __init__(self, after: int) -> None:
        self.remaining = after

    def _tick(self) -> None:
        self.remaining -= 1
        if self.remaining < 0:
            raise OSError("simulated interruption")

    def extract_text(self, data, **options):  # type: ignore[no-untyped-def,override]
        self._tick()
        return super().extract_text(data, **options)

    def extract_message(self, mime, **options):  # type: ignore[no-untyped-def,override]
        self._tick()
        return super().extract_message(mime, **options)


def test_interrupted_export_is_incomplete(seeded, tmp_path):
    destination = tmp_path / "prod"

    with pytest.raises(OSError, match="simulated interruption"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            extractor=FailingExtractor(3),
            in_flight=1,
        )

    assert not (destination / "MANIFEST.sha256").exists()
    assert not verify_production(destination).ok
    failed = read_audit_events(seeded.lake, action="export")[-1].parameters_dict()
    assert failed["status"] == "failed"


def test_resume_finishes_like_uninterrupted_export(seeded, tmp_path):
    interrupted = tmp_path / "interrupted"
    with pytest.raises(OSError, match="simulated interruption"):
        export_production(
            seeded.lake,
            seeded.case_id,
            interrupted,
            actor=ACTOR,
            extractor=FailingExtractor(4),
            in_flight=1,
        )
    journal = (interrupted / ".m365lake-export" / "journal.jsonl").read_text().splitlines()
    assert 0 < len(journal) < 8, "the interruption came part-way"

    resumed = export_production(
        seeded.lake,
        seeded.case_id,
        interrupted,
        actor=ACTOR,
        mode="resume",
        extractor=InlineExtractor(),
    )
    clean = _export(seeded, tmp_path / "clean", prefix="PROD")

    assert resumed.resumed
    assert verify_production(interrupted).ok
    resumed_rows = parse_dat(interrupted / "DATA" / "loadfile.dat")
    assert resumed_rows == clean["rows"]


def test_resume_rejects_other_options(seeded, tmp_path):
    destination = tmp_path / "prod"
    with pytest.raises(OSError, match="simulated interruption"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            extractor=FailingExtractor(2),
            in_flight=1,
        )

    with pytest.raises(ProductionFolderError, match="other items or settings"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            options=ExportOptions(dedup="none"),
            mode="resume",
            extractor=InlineExtractor(),
        )


def test_resume_of_complete_production_rejected(seeded, tmp_path):
    destination = tmp_path / "prod"
    _export(seeded, destination)

    with pytest.raises(ProductionFolderError, match="complete"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            options=ExportOptions(prefix="ABC"),
            mode="resume",
            extractor=InlineExtractor(),
        )


def test_explicit_kql_overrides_saved_search(seeded, tmp_path):
    result = export_production(
        seeded.lake,
        seeded.case_id,
        tmp_path / "prod",
        actor=ACTOR,
        kql='subject:"lunch"',
        extractor=InlineExtractor(),
    )

    assert result.counts["hits"] == 1
    assert result.counts["documents"] == 1


def test_cli_export(seeded, tmp_path):
    destination = tmp_path / "prod"
    result = CliRunner().invoke(
        main,
        [
            "export",
            seeded.case_id,
            str(destination),
            "--prefix",
            "CLI",
            "--digits",
            "5",
            "--dedup",
            "custodian",
            "--actor",
            ACTOR,
            "--lake",
            str(seeded.lake.root),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "as CLI00001 to" in result.output
    assert "duplicates suppressed" in result.output
    assert verify_production(destination).ok


def test_cli_rejects_resume_with_overwrite(seeded, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "export",
            seeded.case_id,
            str(tmp_path / "p"),
            "--resume",
            "--overwrite",
            "--lake",
            str(seeded.lake.root),
        ],
    )

    assert result.exit_code == 2
    assert "not both" in result.output


def test_resume_redoes_changed_files(seeded, tmp_path):
    destination = tmp_path / "prod"
    with pytest.raises(OSError, match="simulated interruption"):
        export_production(
            seeded.lake,
            seeded.case_id,
            destination,
            actor=ACTOR,
            extractor=FailingExtractor(4),
            in_flight=1,
        )
    first = json.loads(
        (destination / ".m365lake-export" / "journal.jsonl").read_text().splitlines()[0]
    )
    native = destination / first["documents"][0]["native"]["path"]
    native.write_bytes(b"damaged after the interruption")

    export_production(
        seeded.lake,
        seeded.case_id,
        destination,
        actor=ACTOR,
        mode="resume",
        extractor=InlineExtractor(),
    )
    clean = _export(seeded, tmp_path / "clean", prefix="PROD")

    assert native.read_bytes() != b"damaged after the interruption"
    assert parse_dat(destination / "DATA" / "loadfile.dat") == clean["rows"]
    assert verify_production(destination).ok


def test_resume_after_audit_installs_manifest(seeded, tmp_path, monkeypatch):
    from m365lake.discovery.production import finish

    destination = tmp_path / "prod"
    install = finish._install_manifest

    def stop_before_install(pending: Path, root: Path) -> None:
        raise KeyboardInterrupt("stopped between the audit event and the manifest")

    monkeypatch.setattr(finish, "_install_manifest", stop_before_install)
    with pytest.raises(KeyboardInterrupt):
        export_production(
            seeded.lake, seeded.case_id, destination, actor=ACTOR, extractor=InlineExtractor()
        )
    recorded = read_audit_events(seeded.lake, action="export")[-1]
    assert recorded.parameters_dict()["status"] == "complete"
    assert not (destination / "MANIFEST.sha256").exists()
    monkeypatch.setattr(finish, "_install_manifest", install)

    result = export_production(
        seeded.lake,
        seeded.case_id,
        destination,
        actor=ACTOR,
        mode="resume",
        extractor=InlineExtractor(),
    )

    assert result.audit_seq == recorded.seq
    assert read_audit_events(seeded.lake, action="export")[-1].seq == recorded.seq
    assert verify_production(destination).ok


def test_export_waits_out_purge_lock(seeded, tmp_path, monkeypatch):
    # An export reads blobs, so it registers as a blob user and waits while a purge
    # deletes blobs: here the purge lock is held for the whole call.
    monkeypatch.setattr(blob_users, "DEFAULT_USER_WAIT_SECONDS", 0)
    with (
        exclusive_blobs(seeded.lake.storage, owner="purge in progress", wait_seconds=0),
        pytest.raises(blob_users.BlobsInUseError, match="purge in progress"),
    ):
        export_production(
            seeded.lake, seeded.case_id, tmp_path / "prod", actor=ACTOR, extractor=InlineExtractor()
        )

    assert blob_users.live_blob_users(seeded.lake.storage) == []
