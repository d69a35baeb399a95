"""Blob encryption: key loading, round trips, rotation, wrong keys, tampering, memory bound."""

from __future__ import annotations

import base64
import io
import json
import os
import random
from pathlib import Path

import pytest

from m365lake.errors import ConfigError, LakeIntegrityError, LakeKeyError
from m365lake.lake import BlobStore, Lake
from m365lake.lake.blobs import sha256_hex
from m365lake.lake.encryption import (
    CHUNK_BYTES,
    ENV_ENCRYPTION_KEY,
    ENV_ENCRYPTION_KEY_FILE,
    MAGIC,
    RECORD_BYTES,
    DecryptingReader,
    EncryptingWriter,
    KeyRing,
    decrypt_bytes,
    encrypt_bytes,
    load_keyring,
)

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))


def ring(current: str | None, **keys: bytes) -> KeyRing:
    return KeyRing(keys=keys, current=current)


def env_value(key_id: str, key: bytes) -> str:
    return f"{key_id}:{base64.b64encode(key).decode()}"


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def noise(size: int, seed: int = 7) -> bytes:
    """Bytes zstd cannot shrink, so the stored file is about as large as the content."""
    return random_bytes(size, seed)


def open_lake(path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None) -> Lake:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    if value is None:
        monkeypatch.delenv(ENV_ENCRYPTION_KEY, raising=False)
    else:
        monkeypatch.setenv(ENV_ENCRYPTION_KEY, value)
    return Lake.open(path, inline_threshold=100)


def blob_file(lake: Lake, digest: str) -> Path:
    return lake.root / BlobStore.relative_path(digest)


# ---- keys


def test_key_from_environment_is_current() -> None:
    keys = load_keyring({ENV_ENCRYPTION_KEY: env_value("k1", KEY_1)})

    assert keys.current == "k1"
    assert keys.keys == {"k1": KEY_1}
    assert "k1" in repr(keys)
    assert base64.b64encode(KEY_1).decode() not in repr(keys)


def test_no_key_configured_means_no_encryption() -> None:
    assert not load_keyring({}).enabled


def test_key_file_lists_keys_for_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "current": "k2",
                "keys": {
                    "k1": base64.b64encode(KEY_1).decode(),
                    "k2": base64.b64encode(KEY_2).decode(),
                },
            }
        )
    )
    path.chmod(0o600)

    keys = load_keyring({ENV_ENCRYPTION_KEY_FILE: str(path)})

    assert keys.current == "k2"
    assert keys.keys == {"k1": KEY_1, "k2": KEY_2}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-colon", "KEY_ID:BASE64"),
        ("k1:not base64!", "not valid base64"),
        (env_value("k1", b"short"), "is 5 bytes"),
        (env_value("bad id", KEY_1), "invalid encryption key id"),
    ],
)
def test_invalid_environment_key_rejected(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_keyring({ENV_ENCRYPTION_KEY: value})


def test_conflicting_key_id_rejected(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"current": "k1", "keys": {"k1": base64.b64encode(KEY_1).decode()}}))

    with pytest.raises(ConfigError, match="a key id must always name the same key"):
        load_keyring(
            {ENV_ENCRYPTION_KEY_FILE: str(path), ENV_ENCRYPTION_KEY: env_value("k1", KEY_2)}
        )


def test_malformed_key_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"keys": {}}')

    with pytest.raises(ConfigError, match="must be JSON like"):
        load_keyring({ENV_ENCRYPTION_KEY_FILE: str(path)})


# ---- envelope


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 3 * CHUNK_BYTES + 5])
def test_envelope_round_trip(size: int) -> None:
    data = noise(size)
    keys = ring("k1", k1=KEY_1)

    sealed = encrypt_bytes(data, keys)

    assert sealed.startswith(MAGIC)
    assert decrypt_bytes(sealed, keys, "test") == data
    if size >= 64:
        assert data[:64] not in sealed


def test_same_content_seals_differently_each_time() -> None:
    keys = ring("k1", k1=KEY_1)

    assert encrypt_bytes(b"same", keys) != encrypt_bytes(b"same", keys)


def header_length(sealed: bytes) -> int:
    return len(MAGIC) + 2 + sealed[len(MAGIC) + 1] + 8 + 32


def test_reordered_chunks_detected() -> None:
    keys = ring("k1", k1=KEY_1)
    sealed = encrypt_bytes(noise(3 * CHUNK_BYTES), keys)
    start = header_length(sealed)
    first = sealed[start : start + RECORD_BYTES]
    second = sealed[start + RECORD_BYTES : start + 2 * RECORD_BYTES]
    swapped = sealed[:start] + second + first + sealed[start + 2 * RECORD_BYTES :]

    with pytest.raises(LakeIntegrityError, match="fails authentication at chunk 0"):
        decrypt_bytes(swapped, keys, "test")


@pytest.mark.parametrize("chunks_kept", [1, 2])
def test_truncation_at_a_chunk_boundary_detected(chunks_kept: int) -> None:
    keys = ring("k1", k1=KEY_1)
    sealed = encrypt_bytes(noise(3 * CHUNK_BYTES), keys)
    cut = sealed[: header_length(sealed) + chunks_kept * RECORD_BYTES]

    with pytest.raises(LakeIntegrityError, match="without its final chunk"):
        decrypt_bytes(cut, keys, "test")


def test_appended_bytes_detected() -> None:
    keys = ring("k1", k1=KEY_1)
    sealed = encrypt_bytes(b"short", keys)

    with pytest.raises(LakeIntegrityError):
        decrypt_bytes(sealed + b"\x00", keys, "test")


def test_altered_key_id_in_header_detected() -> None:
    keys = ring("k1", k1=KEY_1)
    sealed = encrypt_bytes(b"content", keys)
    altered = sealed.replace(b"k1", b"k2", 1)

    with pytest.raises(LakeIntegrityError, match="fails authentication at chunk 0"):
        decrypt_bytes(altered, ring("k1", k1=KEY_1, k2=KEY_1), "test")
    with pytest.raises(LakeKeyError, match="'k2'"):
        decrypt_bytes(altered, keys, "test")


# ---- blob store


def test_put_encrypts_and_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    data = b"quarterly figures, confidential " * 200

    digest = lake.blobs.put(data)

    assert digest == sha256_hex(data)
    stored = blob_file(lake, digest).read_bytes()
    assert stored.startswith(MAGIC + b"\x01\x02k1")
    assert b"confidential" not in stored
    assert lake.blobs.read(digest) == data
    assert b"".join(lake.blobs.read_chunks(digest, chunk_bytes=1000)) == data
    assert lake.verify()["blobs"] == 1


@pytest.mark.parametrize("compressible", [True, False])
def test_streaming_writer_encrypts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressible: bool
) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    data = b"abc" * 700_000 if compressible else noise(2_100_000)

    with lake.blobs.writer() as writer:
        for start in range(0, len(data), 16_384):
            writer.write(data[start : start + 16_384])
        digest, size = writer.commit()

    assert (digest, size) == (sha256_hex(data), len(data))
    assert writer.compressed is compressible
    assert blob_file(lake, digest).read_bytes().startswith(MAGIC)
    assert b"".join(lake.blobs.read_chunks(digest)) == data
    assert lake.blobs.read(digest) == data


def test_same_content_dedups_under_encryption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    data = noise(5000)

    first = lake.blobs.put(data)
    with lake.blobs.writer() as writer:
        writer.write(data)
        second, _ = writer.commit()

    assert first == second
    assert not writer.created
    assert len(list(lake.blobs.iter_hashes())) == 1


def test_blobs_written_before_encryption_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = open_lake(tmp_path / "lake", monkeypatch, None)
    old = plain.blobs.put(b"old plaintext blob " * 50)

    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    new = lake.blobs.put(b"new encrypted blob " * 50)

    assert not blob_file(lake, old).read_bytes().startswith(MAGIC)
    assert blob_file(lake, new).read_bytes().startswith(MAGIC)
    assert lake.blobs.read(old) == b"old plaintext blob " * 50
    assert b"".join(lake.blobs.read_chunks(old)) == b"old plaintext blob " * 50
    assert lake.verify()["blobs"] == 2


def test_missing_key_names_key_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    digest = lake.blobs.put(noise(3000))
    keyless = open_lake(tmp_path / "lake", monkeypatch, None)

    with pytest.raises(LakeKeyError, match="key id 'k1', which is not loaded") as raised:
        keyless.blobs.read(digest)

    assert raised.value.key_id == "k1"
    assert ENV_ENCRYPTION_KEY in str(raised.value)
    assert ENV_ENCRYPTION_KEY_FILE in str(raised.value)
    assert str(blob_file(lake, digest)) in str(raised.value)
    with pytest.raises(LakeKeyError):
        list(keyless.blobs.read_chunks(digest))


def test_wrong_key_is_key_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    digest = lake.blobs.put(noise(3000))
    wrong = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_2))

    with pytest.raises(LakeKeyError, match="is a different key"):
        wrong.blobs.read(digest)


def test_rotation_keeps_old_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    old = lake.blobs.put(b"written under k1 " * 100)
    old_bytes = blob_file(lake, old).read_bytes()
    key_file = tmp_path / "keys.json"
    key_file.write_text(
        json.dumps(
            {
                "current": "k2",
                "keys": {
                    "k1": base64.b64encode(KEY_1).decode(),
                    "k2": base64.b64encode(KEY_2).decode(),
                },
            }
        )
    )
    key_file.chmod(0o600)
    monkeypatch.delenv(ENV_ENCRYPTION_KEY)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY_FILE, str(key_file))
    rotated = Lake.open(tmp_path / "lake", inline_threshold=100)

    new = rotated.blobs.put(b"written under k2 " * 100)

    assert blob_file(rotated, new).read_bytes().startswith(MAGIC + b"\x01\x02k2")
    assert blob_file(rotated, old).read_bytes() == old_bytes
    assert rotated.blobs.read(old) == b"written under k1 " * 100
    assert rotated.blobs.read(new) == b"written under k2 " * 100
    assert rotated.verify()["blobs"] == 2


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_blob_byte_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    digest = lake.blobs.put(noise(200_000))
    path = blob_file(lake, digest)
    flip_byte(path, path.stat().st_size - 40_000)

    with pytest.raises(LakeIntegrityError, match="fails authentication at chunk 2") as raised:
        lake.blobs.read(digest)
    assert str(path) in str(raised.value)
    with pytest.raises(LakeIntegrityError, match="fails authentication"):
        list(lake.blobs.read_chunks(digest))
    with pytest.raises(LakeIntegrityError) as verified:
        lake.verify()
    assert any(str(path) in problem for problem in verified.value.problems)


def test_verify_reports_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    lake.blobs.put(noise(3000))
    keyless = open_lake(tmp_path / "lake", monkeypatch, None)

    with pytest.raises(LakeIntegrityError) as verified:
        keyless.verify()

    assert len(verified.value.problems) == 1
    assert "key id 'k1', which is not loaded" in verified.value.problems[0]


def test_blob_sample_reports_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    lake.blobs.put(noise(3000))
    keyless = open_lake(tmp_path / "lake", monkeypatch, None)

    with pytest.raises(LakeIntegrityError) as verified:
        keyless.verify(blob_sample=1, seed=1)

    assert len(verified.value.problems) == 1
    assert "key id 'k1', which is not loaded" in verified.value.problems[0]


def test_flipped_parquet_byte_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = open_lake(tmp_path / "lake", monkeypatch, env_value("k1", KEY_1))
    with lake.begin(run_id="r1", kind="mail", container="u1") as tx:
        tx.write_rows("runs", [{"run_id": "r1", "status": "succeeded"}], partition={})
        manifest = tx.commit()
    path = lake.root / manifest["files"][0]["path"]
    flip_byte(path, path.stat().st_size // 2)

    with pytest.raises(LakeIntegrityError) as verified:
        lake.verify()

    assert any(manifest["files"][0]["path"] in problem for problem in verified.value.problems)


# ---- memory bound


class RecordingSink(io.RawIOBase):
    """A file that keeps only the size of the largest write it was given."""

    def __init__(self) -> None:
        self.largest = 0
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.largest = max(self.largest, len(data))
        self.total += len(data)
        return len(data)


def test_writer_buffers_one_chunk() -> None:
    sink = RecordingSink()
    writer = EncryptingWriter(sink, ring("k1", k1=KEY_1))
    piece = os.urandom(5 * CHUNK_BYTES + 17)

    for _ in range(40):
        writer.write(piece)
    writer.finish()

    assert writer.max_buffered <= CHUNK_BYTES
    assert sink.largest <= RECORD_BYTES
    chunks = -(-40 * len(piece) // CHUNK_BYTES)
    assert sink.total == len(writer.header) + 40 * len(piece) + chunks * 16


def test_reader_reads_one_record(tmp_path: Path) -> None:
    keys = ring("k1", k1=KEY_1)
    path = tmp_path / "sealed"
    size = 200 * CHUNK_BYTES + 3
    with path.open("wb") as handle:
        writer = EncryptingWriter(handle, keys)
        for index in range(200):
            writer.write(random_bytes(CHUNK_BYTES, index))
        writer.write(b"end")
        writer.finish()

    requests: list[int] = []

    class Recording(io.FileIO):
        def read(self, size: int = -1, /) -> bytes:
            requests.append(size)
            return super().read(size)

    with Recording(path, "rb") as handle:
        reader = DecryptingReader(handle, keys, str(path))
        total = 0
        while piece := reader.read(1 << 20):
            assert len(piece) <= CHUNK_BYTES
            total += len(piece)

    assert total == size
    assert all(0 < request <= RECORD_BYTES for request in requests)
