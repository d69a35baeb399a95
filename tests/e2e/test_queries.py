"""Every ready-made query in queries/ has a header comment and runs on an archived tenant."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.emulator import Tenant

QUERIES = sorted((Path(__file__).resolve().parents[2] / "queries").glob("*.sql"))


def test_queries_folder_not_empty():
    assert len(QUERIES) >= 5


@pytest.fixture
def archived(tenant: Tenant, emulator, backup) -> None:
    backup()
    upn = tenant.users()[0].user.user_principal_name
    tenant.delete_message(upn, sorted(tenant.live_messages(upn))[0])
    backup()


@pytest.mark.parametrize("path", QUERIES, ids=[path.stem for path in QUERIES])
def test_query_runs_on_archived_tenant(path: Path, archived, sql):
    text = path.read_text()

    rows = sql(text)

    assert text.startswith("-- "), f"{path.name} must open with a comment saying what it answers"
    if path.stem in {"volume_per_mailbox_month", "top_sender_domains", "deleted_in_tenant"}:
        assert rows, f"{path.name} returned no rows on a tenant that has data for it"
