"""Drive seeds: tenant folders with onedrive/ and sites/, and the generated tenant's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from m365lake.emulator import Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.emulator.loaders import load_corpus
from m365lake.quickxor import quickxor_b64
from tests.emulator.conftest import EDGE_NAMES, make_mime


def _tenant_folder(tmp_path: Path) -> Path:
    root = tmp_path / "tenant"
    for number, user in enumerate(("alice", "dave")):
        (root / "mail" / user).mkdir(parents=True)
        (root / "mail" / user / f"{number}.eml").write_bytes(make_mime(number))
    notes = root / "onedrive" / "alice" / "Notes 2024" / "deep & deeper"
    notes.mkdir(parents=True)
    (notes / "100% done #1.txt").write_bytes(b"first\r\n")
    (root / "onedrive" / "bob@contoso.example").mkdir(parents=True)
    (root / "onedrive" / "bob@contoso.example" / "b.bin").write_bytes(bytes(range(256)))
    library = root / "sites" / "Legal Team" / "Contracts" / "2024"
    library.mkdir(parents=True)
    (library / "signed.pdf").write_bytes(b"%PDF-1.4\n")
    (root / "sites" / "Legal Team" / "loose.txt").write_bytes(b"loose")
    (root / "onedrive" / "alice" / "bad:name.txt").write_bytes(b"x")
    return root


def test_loader_reads_drive_folders(tmp_path: Path) -> None:
    seed = load_corpus(_tenant_folder(tmp_path), domain="contoso.example")
    assert len(seed.messages) == 2
    by_path = {(f.drive_kind, f.owner, f.library, f.path): f.content for f in seed.files}
    assert by_path == {
        (
            "onedrive",
            "alice@contoso.example",
            "Documents",
            ("Notes 2024", "deep & deeper", "100% done #1.txt"),
        ): b"first\r\n",
        ("onedrive", "bob@contoso.example", "Documents", ("b.bin",)): bytes(range(256)),
        ("site", "legal-team", "Contracts", ("2024", "signed.pdf")): b"%PDF-1.4\n",
        ("site", "legal-team", "Documents", ("loose.txt",)): b"loose",
    }
    assert [(s.name, s.display_name, s.libraries) for s in seed.sites] == [
        ("legal-team", "Legal Team", ("Documents", "Contracts"))
    ]
    assert {u.user_principal_name for u in seed.users} == {
        "alice@contoso.example",
        "bob@contoso.example",
        "dave@contoso.example",
    }

    tenant = Tenant.from_seed(seed)
    bob_drive = tenant.drive_id_for("onedrive", "bob@contoso.example")
    assert [v[1] for v in tenant.live_files(bob_drive).values()] == [bytes(range(256))]
    contracts = tenant.drive_id_for("site", "legal-team", "Contracts")
    assert [v[0] for v in tenant.live_files(contracts).values()] == [("2024", "signed.pdf")]


def test_loader_drives_only_folder(tmp_path: Path) -> None:
    root = _tenant_folder(tmp_path)
    shutil.rmtree(root / "mail")
    seed = load_corpus(root, domain="contoso.example")
    assert seed.messages == []
    assert len(seed.files) == 4


@pytest.mark.skipif(not EDGE_NAMES.is_dir(), reason="the shared corpus is not available")
def test_loader_keeps_edge_names_byte_exact(tmp_path: Path) -> None:
    target = tmp_path / "tenant" / "onedrive" / "carol" / "edge"
    shutil.copytree(EDGE_NAMES, target)
    seed = load_corpus(tmp_path / "tenant", domain="contoso.example")
    loaded = {f.path[-1]: f.content for f in seed.files}
    for source in EDGE_NAMES.iterdir():
        if source.name in ('what? a*b: "x" <y> |z|.txt', "~$budget.xlsx"):
            assert source.name not in loaded
        else:
            assert loaded[source.name] == source.read_bytes()
    tenant = Tenant.from_seed(seed)
    drive = tenant.drive_id_for("onedrive", "carol@contoso.example")
    for path, content, digest in tenant.live_files(drive).values():
        assert digest == quickxor_b64(content)
        assert content == (EDGE_NAMES / path[-1]).read_bytes()


def test_generated_tenant_has_drives() -> None:
    seed = generate_tenant(users=3, messages_per_user=4)
    assert [s.name for s in seed.sites] == ["projects", "finance"]
    onedrive = [f for f in seed.files if f.drive_kind == "onedrive"]
    assert len(onedrive) == 12
    assert any(len(f.path) == 3 for f in onedrive)
    assert {f.path[-1].rsplit(".", 1)[1] for f in seed.files} == {"docx", "pdf", "csv", "txt"}
    assert max(len(f.path) for f in seed.files if f.drive_kind == "site") == 4
    again = generate_tenant(users=3, messages_per_user=4)
    assert again.files == seed.files
    without_files = generate_tenant(users=3, messages_per_user=4, files_per_user=0)
    assert [m.mime for m in without_files.messages] == [m.mime for m in seed.messages]

    tenant = Tenant.from_seed(seed)
    drive = tenant.drive_id_for("site", "projects", "Deliverables")
    assert len(tenant.live_files(drive)) == 3
