"""The index, search and search-stats commands as a terminal user runs them."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from m365lake.discovery.audit_chain import read_audit_events
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake, reading


def m365lake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "m365lake", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def emulator_env(emulator: EmulatorServer, tmp_path: Path) -> dict[str, str]:
    return {**emulator.environment(), "M365LAKE_LAKE": str(tmp_path / "cli-lake")}


def backup_and_index(environment: dict[str, str]) -> dict[str, str]:
    backup = m365lake("backup", env=environment)
    assert backup.returncode == 0, backup.stderr
    index = m365lake("index", env=environment)
    assert index.returncode == 0, index.stderr
    return environment


@pytest.fixture
def indexed_env(emulator_env: dict[str, str]) -> dict[str, str]:
    return backup_and_index(emulator_env)


@pytest.fixture(scope="module")
def shared_env(
    tmp_path_factory: pytest.TempPathFactory, emulator_state: Path
) -> Iterator[dict[str, str]]:
    """An archived and indexed lake that tests share; their searches add only audit events."""
    tenant = Tenant.from_seed(generate_tenant(seed=7, users=3, messages_per_user=25))
    with EmulatorServer(tenant, emulator_state) as server:
        lake = tmp_path_factory.mktemp("search-cli") / "lake"
        yield backup_and_index({**server.environment(), "M365LAKE_LAKE": str(lake)})


def live_item_count(tenant: Tenant) -> int:
    messages = sum(
        len(tenant.live_messages(info.user.user_principal_name))
        for info in tenant.users()
        if info.has_mailbox
    )
    drives = [
        tenant.drive_id_for("onedrive", info.user.user_principal_name)
        for info in tenant.users()
        if info.has_mailbox
    ]
    drives += [drive.id for site in tenant.sites() for drive in tenant.drives_of_site(site.id)]
    files = sum(len(tenant.live_files(drive_id)) for drive_id in drives)
    return messages + files


def archived_item_count(lake: Lake) -> int:
    """Return how many events, contacts and channel messages the lake has a live version of."""
    keys = {
        "events": "mailbox_id, event_id",
        "contacts": "mailbox_id, contact_id",
        "channel_messages": "channel_id, message_id",
    }
    total = 0
    with reading.connect(lake) as connection:
        for table, key in keys.items():
            scan = reading.TableScan(lake, lake.committed_entries(table))
            if not scan:
                continue
            with scan.errors():
                source = scan.sql("union_by_name = true", connection=connection)
                [(count,)] = connection.execute(
                    f"SELECT count(DISTINCT ({key})) FROM {source} WHERE change <> 'deleted'"
                ).fetchall()
            total += int(count)
    return total


def test_index_reports_counts(emulator_env: dict[str, str], tenant: Tenant):
    m365lake("backup", env=emulator_env)

    first = m365lake("index", env=emulator_env)
    second = m365lake("index", env=emulator_env)

    assert first.returncode == 0, first.stderr
    lake = Lake.open(Path(emulator_env["M365LAKE_LAKE"]))
    expected = live_item_count(tenant) + archived_item_count(lake)
    assert archived_item_count(lake) > 0
    assert f"{expected} documents added, 0 replaced" in first.stdout
    assert "partially indexed" in first.stdout
    assert " s\n" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "0 documents added, 0 replaced" in second.stdout
    assert f"contains {expected} documents" in second.stdout


def test_search_json_joins_to_views(shared_env: dict[str, str]):
    result = m365lake("search", "--format", "json", "--limit", "3", "budget", env=shared_env)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["query"] == "budget"
    assert output["total"] >= len(output["hits"]) > 0
    assert len(output["hits"]) <= 3
    hit = output["hits"][0]
    assert hit["workload"] in ("mail", "files")
    view = "message_versions" if hit["workload"] == "mail" else "file_versions"
    key = "message_id" if hit["workload"] == "mail" else "item_id"
    joined = m365lake(
        "sql",
        "--format",
        "json",
        f"SELECT count(*) AS n FROM {view} WHERE {key} = '{hit['item_id']}' "
        f"AND captured_at = TIMESTAMPTZ '{hit['captured_at']}' AND run_id = '{hit['run_id']}'",
        env=shared_env,
    )
    assert json.loads(joined.stdout) == [{"n": 1}]


def test_search_table_and_csv(shared_env: dict[str, str]):
    table = m365lake("search", "budget", "--limit", "2", env=shared_env)
    listing = m365lake("search", "--format", "csv", "--limit", "2", "budget", env=shared_env)

    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["workload", "container_id", "item_id"]
    assert "matching items)" in table.stdout.splitlines()[-1]
    assert listing.returncode == 0, listing.stderr
    rows = list(csv.DictReader(io.StringIO(listing.stdout)))
    assert len(rows) == 2
    assert rows[0]["title"]
    assert "matching items listed" in listing.stderr


def test_bad_kql_shows_caret_without_traceback(shared_env: dict[str, str]):
    result = m365lake("search", "budget AND (forecast", env=shared_env)
    unknown = m365lake("search", "colour:red", env=shared_env)

    assert result.returncode != 0
    assert "^" in result.stderr
    assert "Traceback" not in result.stderr
    assert unknown.returncode != 0
    assert "colour" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_search_before_index_says_run_index(emulator_env: dict[str, str]):
    m365lake("backup", env=emulator_env)

    result = m365lake("search", "budget", env=emulator_env)
    stats = m365lake("search-stats", "budget", env=emulator_env)

    assert result.returncode == 1
    assert "run `m365lake index`" in result.stderr
    assert "Traceback" not in result.stderr
    assert stats.returncode == 1
    assert "run `m365lake index`" in stats.stderr


def test_search_without_lake_creates_nothing(tmp_path: Path):
    absent = tmp_path / "absent"

    result = m365lake("search", "budget", env={"M365LAKE_LAKE": str(absent)})

    assert result.returncode == 1
    assert f"no lake at {absent}" in result.stderr
    assert not absent.exists()


def test_search_notes_index_behind_lake(indexed_env: dict[str, str], tenant: Tenant):
    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]
    tenant.add_message(upn, ("Inbox",), b"Subject: late budget\r\n\r\nlate\r\n")
    m365lake("backup", "--workload", "mail", env=indexed_env)

    result = m365lake("search", "budget", env=indexed_env)

    assert result.returncode == 0
    assert "behind the lake" in result.stderr


def test_search_stats_csv_and_keywords_file(shared_env: dict[str, str], tmp_path: Path):
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("# one KQL keyword per line\nbudget\n\nforecast\n", encoding="utf-8")

    result = m365lake(
        "search-stats",
        "budget OR forecast",
        "--keywords-file",
        str(keywords),
        "--keyword",
        "kind:email",
        "--format",
        "csv",
        env=shared_env,
    )

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    sections = [row["section"] for row in rows]
    assert sections[0] == "query"
    keyword_rows = {row["name"]: row for row in rows if row["section"] == "keyword"}
    assert set(keyword_rows) == {"kind:email", "budget", "forecast"}
    total = int(rows[0]["items"])
    assert total > 0
    assert int(keyword_rows["budget"]["items"]) <= total
    assert int(keyword_rows["budget"]["unique_items"]) <= int(keyword_rows["budget"]["items"])
    assert "custodian" in sections
    assert "location" in sections
    custodian_items = sum(int(row["items"]) for row in rows if row["section"] == "custodian")
    assert custodian_items == total


def test_search_stats_json_and_table(shared_env: dict[str, str]):
    result = m365lake(
        "search-stats", "budget", "--keyword", "forecast", "--format", "json", env=shared_env
    )
    table = m365lake("search-stats", "budget", "--keyword", "forecast", env=shared_env)

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["query"] == "budget"
    assert output["keywords"][0]["keyword"] == "forecast"
    assert "partially_indexed_in_scope" in output
    assert table.returncode == 0, table.stderr
    assert table.stdout.split()[:6] == [
        "section",
        "name",
        "items",
        "bytes",
        "unique_items",
        "unique_bytes",
    ]


def test_search_stats_bad_keyword_named(shared_env: dict[str, str]):
    result = m365lake("search-stats", "budget", "--keyword", "subject:(", env=shared_env)

    assert result.returncode != 0
    assert "in keyword 'subject:('" in result.stderr
    assert "^" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_rebuild_replaces_index(indexed_env: dict[str, str]):
    lake = Lake.open(indexed_env["M365LAKE_LAKE"], create=False)
    before = sorted(path.name for path in (lake.root / "index").iterdir())

    result = m365lake("index", "--rebuild", env=indexed_env)

    assert result.returncode == 0, result.stderr
    after = sorted(path.name for path in (lake.root / "index").iterdir())
    assert after != before
    assert not [path for path in lake.root.iterdir() if path.name.startswith("index.")]


def search_events(environment: dict[str, str], actors: set[str]) -> list[tuple[Any, ...]]:
    lake = Lake.open(environment["M365LAKE_LAKE"], create=False)
    return [
        (event.actor, event.action, event.parameters_dict(), event.counts_dict())
        for event in read_audit_events(lake)
        if event.actor in actors
    ]


def test_searches_audited_in_order(shared_env: dict[str, str]):
    as_dana = {**shared_env, "M365LAKE_ACTOR": "dana"}

    first = m365lake("search", "budget", "--limit", "2", "--actor", "carol", env=shared_env)
    stats = m365lake("search-stats", "budget", "--keyword", "forecast", env=as_dana)
    invalid = m365lake("search", "budget AND (", "--actor", "carol", env=shared_env)
    second = m365lake("search", "--exclude-deleted", "--format", "json", "kind:email", env=as_dana)

    assert first.returncode == 0, first.stderr
    assert stats.returncode == 0, stats.stderr
    assert invalid.returncode != 0
    assert second.returncode == 0, second.stderr
    assert "behind the lake" not in second.stderr, "audit commits add no items"
    total = json.loads(second.stdout)["total"]
    first_total = int(first.stdout.splitlines()[-1].split(" of ")[1].split()[0])
    stats_total = next(row for row in stats.stdout.splitlines() if row.startswith("query")).split()
    events = search_events(shared_env, {"carol", "dana"})
    assert [(actor, action) for actor, action, _, _ in events] == [
        ("carol", "search"),
        ("dana", "search.statistics"),
        ("dana", "search"),
    ]
    assert events[0][2] == {
        "kql": "budget",
        "limit": 2,
        "include_deleted": True,
        "index_seq": events[0][2]["index_seq"],
    }
    assert events[0][3] == {"hits": first_total, "listed": 2}
    assert events[1][2]["keywords"] == ["forecast"]
    assert events[1][3]["hits"] == int(stats_total[2])
    assert events[1][3]["bytes"] == int(stats_total[3])
    assert events[2][2]["include_deleted"] is False
    assert events[2][2]["kql"] == "kind:email"
    assert events[2][3]["hits"] == total


def test_search_actor_defaults_to_os_user(shared_env: dict[str, str]):
    user = getpass.getuser()

    result = m365lake("search", "forecast", env={**shared_env, "M365LAKE_ACTOR": ""})

    assert result.returncode == 0, result.stderr
    assert search_events(shared_env, {user})[-1][2]["kql"] == "forecast"


def test_index_optimize_reports_merge(indexed_env: dict[str, str]):
    result = m365lake("index", "--optimize", env=indexed_env)

    assert result.returncode == 0, result.stderr
    assert "0 documents added" in result.stdout
    assert "index optimised" in result.stdout
    assert "segments merged into" in result.stdout


def test_index_names_damaged_table_file(emulator_env: dict[str, str]):
    backup = m365lake("backup", env=emulator_env)
    assert backup.returncode == 0, backup.stderr
    lake = Lake.open(emulator_env["M365LAKE_LAKE"], create=False)
    damaged = sorted(
        path
        for path in lake.root.rglob("*.parquet")
        if "messages" in path.relative_to(lake.root).parts
    )[0]
    damaged.write_bytes(damaged.read_bytes()[:100])

    result = m365lake("index", env=emulator_env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert str(damaged) in errors[0]
    assert "m365lake verify" in errors[0]
    assert "restore" in errors[0]
