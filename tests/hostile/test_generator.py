"""The generator's bombs are what they claim: small on disk, large when expanded."""

from __future__ import annotations

import gzip
import io
import zipfile

from tests.hostile import generator

SIZE = 8 * generator.MIB + 12345


def test_zip_bomb_expands_to_declared_zeros() -> None:
    bomb = generator.zip_bomb(SIZE)
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        (info,) = archive.infolist()
        assert info.file_size == SIZE
        data = archive.read(info)  # checks the CRC too
    assert data == bytes(SIZE)
    assert len(bomb) < SIZE // 500


def test_gzip_bomb_expands_to_zeros() -> None:
    bomb = generator.gzip_bomb(SIZE)
    assert gzip.decompress(bomb) == bytes(SIZE)
    assert len(bomb) < SIZE // 500


def test_nested_zip_depth() -> None:
    data = generator.nested_zip(depth=30)
    levels = 0
    while data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            data = archive.read(archive.namelist()[0])
        levels += 1
    assert levels == 30
    assert data == b"the bottom of the nested archives"


def test_cases_are_deterministic() -> None:
    first = [(case.name, case.data) for case in generator.mail_cases()]
    second = [(case.name, case.data) for case in generator.mail_cases()]
    assert first == second
    assert len({name for name, _ in first}) == len(first)
