"""Corpus loaders: layouts, folder mapping, byte-exact messages, mbox splitting."""

from __future__ import annotations

import csv
import hashlib
import logging
import mailbox
import time
from collections import Counter
from pathlib import Path

import pytest

from m365lake.emulator.corpusfiles import split_mbox
from m365lake.emulator.loaders import load_corpus
from m365lake.errors import ConfigError

MESSAGE = b"From: a@example.com\nSubject: %s\n\nbody %s\n"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _message(tag: str) -> bytes:
    return MESSAGE % (tag.encode(), tag.encode())


def test_maildir_folders_mapped(tmp_path: Path):
    root = tmp_path / "maildir"
    for relative in (
        "alice/inbox/1.",
        "alice/inbox/hist_vols/2.",
        "alice/sent_items/10.",
        "alice/sent_items/2.",
        "alice/deleted_items/1.",
        "alice/drafts/1.",
        "alice/projects/alpha/1.",
        "bob/_sent_mail/1.",
    ):
        _write(root / relative, _message(relative))

    tenant = load_corpus(root, domain="corp.example")

    assert [user.user_principal_name for user in tenant.users] == [
        "alice@corp.example",
        "bob@corp.example",
    ]
    folders = {message.source: message.folder_path for message in tenant.messages}
    assert folders == {
        "alice/inbox/1.": ("Inbox",),
        "alice/inbox/hist_vols/2.": ("Inbox", "hist_vols"),
        "alice/sent_items/10.": ("Sent Items",),
        "alice/sent_items/2.": ("Sent Items",),
        "alice/deleted_items/1.": ("Deleted Items",),
        "alice/drafts/1.": ("Drafts",),
        "alice/projects/alpha/1.": ("projects", "alpha"),
        "bob/_sent_mail/1.": ("_sent_mail",),
    }
    sent = [m.source for m in tenant.messages if m.folder_path == ("Sent Items",)]
    assert sent == ["alice/sent_items/2.", "alice/sent_items/10."]
    for message in tenant.messages:
        assert message.mime == (root / message.source).read_bytes()
    assert ("alice@corp.example", ("projects",)) in tenant.folders


def test_tenant_folder_with_mail(tmp_path: Path):
    _write(tmp_path / "tenant" / "mail" / "carol" / "inbox" / "1.", _message("one"))
    _write(tmp_path / "tenant" / "onedrive" / "ignored.txt", b"not mail")

    tenant = load_corpus(tmp_path / "tenant")

    assert [m.source for m in tenant.messages] == ["mail/carol/inbox/1."]
    assert tenant.users[0].user_principal_name == "carol@enron.example"


def test_message_files_one_mailbox_per_folder(tmp_path: Path):
    root = tmp_path / "export"
    _write(root / "Dana Smith" / "Inbox" / "a.eml", _message("a"))
    _write(root / "Dana Smith" / "top.eml", _message("top"))
    _write(root / "erik" / "Sent Items" / "b.eml", _message("b"))

    tenant = load_corpus(root, domain="x.example")

    by_source = {m.source: (m.user_principal_name, m.folder_path) for m in tenant.messages}
    assert by_source == {
        "Dana Smith/Inbox/a.eml": ("dana-smith@x.example", ("Inbox",)),
        "Dana Smith/top.eml": ("dana-smith@x.example", ("Inbox",)),
        "erik/Sent Items/b.eml": ("erik@x.example", ("Sent Items",)),
    }
    assert {u.display_name for u in tenant.users} == {"Dana Smith", "erik"}


def test_wrapper_folders_collapsed_into_archive(tmp_path: Path):
    base = tmp_path / "Personal folders" / "owner" / "Mailbox"
    _write(base / "1.eml", _message("root"))
    _write(base / "Sent Items" / "1.eml", _message("sent"))

    tenant = load_corpus(tmp_path / "Personal folders")
    assert {m.user_principal_name for m in tenant.messages} == {"archive@enron.example"}
    assert sorted(m.folder_path for m in tenant.messages) == [("Inbox",), ("Sent Items",)]

    named = load_corpus(tmp_path / "Personal folders", mailbox="owner")
    assert {m.user_principal_name for m in named.messages} == {"owner@enron.example"}


def test_non_mime_files_skipped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "mixed"
    _write(root / "good.eml", _message("good"))
    _write(root / "outlook.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100))
    _write(root / "winmail.dat", b"\x78\x9f\x3e\x22" + bytes(50))
    _write(root / "smime.p7m", b"\x30\x82\x01\x00" + bytes(50))
    _write(root / "notes.txt", b"just some words\nno headers here\n")
    _write(root / "README.md", b"# About\n")

    with caplog.at_level(logging.WARNING, logger="m365lake.emulator.loaders"):
        tenant = load_corpus(root)

    assert [m.source for m in tenant.messages] == ["good.eml"]
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert "skipped 4 files" in warning
    assert "Outlook .msg: 1" in warning
    assert "TNEF: 1" in warning
    assert "PKCS #7: 1" in warning


@pytest.mark.parametrize("layout", ["missing", "file", "empty", "only-binary"])
def test_unrecognised_path_raises_config_error(tmp_path: Path, layout: str):
    target = tmp_path / "corpus"
    if layout == "file":
        _write(target, b"x")
    elif layout == "empty":
        target.mkdir()
    elif layout == "only-binary":
        _write(target / "a.msg", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")

    with pytest.raises(ConfigError) as raised:
        load_corpus(target)

    message = str(raised.value)
    assert "maildir root" in message
    assert ".mbox" in message
    assert "mail/" in message


def test_mbox_split_byte_exact(tmp_path: Path):
    first = (
        b"From: a@example.com\nSubject: one\n\nline\n>From quoted\nFrom unquoted mid-paragraph\n"
    )
    second = b"From: b@example.com\nSubject: two\n\nFrom the desk of B, first line of the body\n"
    data = b"From a@example.com Mon Jun  1 10:00:00 2009\n" + first + b"\n"
    data += b"From b@example.com Mon Jun  1 11:00:00 2009\n" + second
    _write(tmp_path / "box" / "Archive.mbox", data)

    tenant = load_corpus(tmp_path / "box")

    assert [m.mime for m in tenant.messages] == [first, second]
    assert [m.source for m in tenant.messages] == ["Archive.mbox#1", "Archive.mbox#2"]
    assert {m.folder_path for m in tenant.messages} == {("Archive",)}


def test_mbox_split_crlf_and_leading_text():
    data = (
        b"preamble\r\n\r\nFrom x Mon Jun  1 10:00:00 2009\r\nSubject: a\r\n\r\nA\r\n\r\n"
        b"From y Mon Jun  1 10:00:00 2009\r\nSubject: b\r\n\r\nB"
    )
    assert split_mbox(data) == [
        b"preamble\r\n",
        b"Subject: a\r\n\r\nA\r\n",
        b"Subject: b\r\n\r\nB",
    ]
    assert split_mbox(b"Subject: plain\n\nnot an mbox\n") == [b"Subject: plain\n\nnot an mbox\n"]
    assert split_mbox(b"") == []


def _edge(corpus_root: Path) -> Path:
    return corpus_root / "mail" / "mime-edge"


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    ["thunderbird/mbox_mboxrd", "thunderbird/mbox_modern", "tika/simple.mbox", "tika/complex.mbox"],
)
def test_mbox_matches_stdlib_mailbox(corpus_root: Path, name: str):
    path = _edge(corpus_root) / "mbox" / name
    box = mailbox.mbox(path, create=False)
    expected = [box.get_bytes(key) for key in box.iterkeys()]
    assert split_mbox(path.read_bytes()) == expected


@pytest.mark.corpus
def test_mbox_unquoted_from_line_kept(corpus_root: Path):
    data = (_edge(corpus_root) / "mbox" / "thunderbird" / "mbox_unquoted").read_bytes()
    messages = split_mbox(data)
    assert len(messages) == 2
    assert b"like this:\nFrom \nThis could cause problems" in messages[0]


@pytest.mark.corpus
def test_edge_corpus_loads(corpus_root: Path):
    tenant = load_corpus(_edge(corpus_root))
    users = {user.user_principal_name for user in tenant.users}
    assert users == {"eml@enron.example", "mbox@enron.example"}
    counts = Counter(m.user_principal_name for m in tenant.messages)
    # 161 RFC 822 files less two without any header, and 7 mbox files with 13 messages.
    assert counts == {"eml@enron.example": 159, "mbox@enron.example": 13}
    for message in tenant.messages:
        if "#" not in message.source:
            assert message.mime == (_edge(corpus_root) / message.source).read_bytes()


@pytest.mark.corpus
def test_enron_maildir_counts_and_bytes(corpus_root: Path):
    root = corpus_root / "mail" / "enron" / "maildir"
    started = time.perf_counter()
    tenant = load_corpus(root)
    elapsed = time.perf_counter() - started

    assert len(tenant.messages) == 9788
    assert Counter(m.user_principal_name for m in tenant.messages) == {
        "allen-p@enron.example": 2428,
        "arora-h@enron.example": 524,
        "griffith-j@enron.example": 2382,
        "lokay-m@enron.example": 4454,
    }
    with (corpus_root / "mail" / "enron" / "maildir_manifest.csv").open(newline="") as handle:
        manifest = {row["path"]: row["sha256"] for row in csv.DictReader(handle)}
    actual = {m.source: hashlib.sha256(m.mime).hexdigest() for m in tenant.messages}
    assert actual == manifest
    assert elapsed < 15, f"loading took {elapsed:.1f} s"


@pytest.mark.corpus
def test_enron_maildir_folder_paths(corpus_root: Path):
    tenant = load_corpus(corpus_root / "mail" / "enron" / "maildir")
    paths = {(m.user_principal_name.split("@")[0], m.folder_path) for m in tenant.messages}
    assert ("arora-h", ("Inbox", "hist_vols")) in paths
    assert ("allen-p", ("Sent Items",)) in paths
    assert ("allen-p", ("Deleted Items",)) in paths
    assert ("griffith-j", ("lng", "oman_supply")) in paths
    assert ("allen-p", ("_sent_mail",)) in paths


@pytest.mark.corpus
def test_edrm_eml_loads_into_one_mailbox(corpus_root: Path):
    tenant = load_corpus(corpus_root / "mail" / "enron" / "edrm-lokay-m-eml", mailbox="lokay-m")
    assert len(tenant.messages) == 71
    assert {m.user_principal_name for m in tenant.messages} == {"lokay-m@enron.example"}
    assert Counter(m.folder_path[0] for m in tenant.messages) == {
        "Personal": 47,
        "TW-Commercial Group": 14,
        "Systems": 7,
        "Sent Items": 2,
        "Inbox": 1,
    }


def test_unreadable_files_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "mail"
    _write(root / "a.eml", _message("a"))
    (root / "dangling.eml").symlink_to(tmp_path / "gone.eml")

    with caplog.at_level(logging.WARNING, logger="m365lake.emulator.loaders"):
        tenant = load_corpus(root)

    assert [message.source for message in tenant.messages] == ["a.eml"]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "unreadable: 1" in warnings[0]
    assert "dangling.eml" in warnings[0]
