"""Optional AES-256-GCM encryption of blob files, streamed in authenticated chunks.

Threat model. Encryption protects the content of blobs when a copy of the lake leaves
the organisation's control without its key. Examples: a stolen or discarded disk, a copy
on backup media or in an object store, a snapshot handed to the wrong team. It does not
protect against a process or person holding the key (every m365lake command that reads
content holds it), against someone who can change the key file or the environment of
the backup job, nor against reading what stays in the clear:

- blob names are the SHA-256 of the plaintext, so dedup keeps working across keys. A
  reader without the key learns which blobs are equal, and can confirm a guess: whoever
  already holds a document can hash it and test whether the lake holds it too;
- blob sizes, within the zstd compression ratio, and the count and timing of blobs;
- the key id of each blob, in its header;
- the manifests and the search index, which stay unencrypted (see "Encryption at rest"
  in the README). The Parquet tables are encrypted too, by ``parquet_keys`` under keys
  derived from the same key ring.

Format of an encrypted blob file. A header, then the zstd stream of the content cut into
chunks, each sealed with AES-256-GCM::

    magic "M365LKE" | version 0x01 | key id length (1 byte) | key id (UTF-8)
    | key check (8 bytes) | salt (32 bytes)
    chunk 0 | chunk 1 | ... | final chunk        each: ciphertext | 16-byte tag

Every blob gets its own key, derived with HKDF-SHA256 from the master key and the
blob's random salt, so the chunk nonces can be a plain counter without any risk of reuse
across blobs. The nonce of chunk ``i`` is ``i`` as 11 big-endian bytes and a final-chunk
flag byte, and each chunk authenticates the whole header as associated data. Swapping,
dropping or repeating chunks changes a nonce, cutting the file short loses the chunk
marked final, and altering the header fails every chunk, so each is detected. Every
chunk but the last holds exactly ``CHUNK_BYTES``; the last holds fewer, possibly none,
so a reader knows where the stream ends without a length field. The key check is
HMAC-SHA256 of a fixed label under the master key, cut to 8 bytes: it tells a wrong key
apart from damaged data without revealing the key.

Files written before encryption was turned on, or with it off, start with the zstd magic
and are read as before.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import json
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from m365lake.errors import ConfigError, LakeIntegrityError, LakeKeyError

logger = logging.getLogger(__name__)

ENV_ENCRYPTION_KEY = "M365LAKE_ENCRYPTION_KEY"
ENV_ENCRYPTION_KEY_FILE = "M365LAKE_ENCRYPTION_KEY_FILE"

MAGIC = b"M365LKE"
VERSION = 1
KEY_BYTES = 32
SALT_BYTES = 32
KEY_CHECK_BYTES = 8
TAG_BYTES = 16
CHUNK_BYTES = 64 * 1024
"""Plaintext bytes in every chunk but the last."""
RECORD_BYTES = CHUNK_BYTES + TAG_BYTES
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HKDF_INFO = b"m365lake blob v1"
_KEY_CHECK_LABEL = b"m365lake key check v1"
WHERE_KEYS_COME_FROM = (
    f"keys come from {ENV_ENCRYPTION_KEY} (KEY_ID:BASE64) and from the JSON key file "
    f"named by {ENV_ENCRYPTION_KEY_FILE}"
)


def derive_key_check(key: bytes) -> bytes:
    """Return the short HMAC that distinguishes a wrong key from damaged data, revealing no key."""
    return hmac.new(key, _KEY_CHECK_LABEL, sha256).digest()[:KEY_CHECK_BYTES]


@dataclass(frozen=True)
class KeyRing:
    """Master keys by id; ``current`` encrypts new blobs, any listed key decrypts."""

    keys: Mapping[str, bytes] = field(default_factory=dict)
    current: str | None = None
    sources: tuple[str, ...] = ()
    """Variables and files the keys were read from, for error messages."""

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            _check_key(key_id, key, "key ring")
        if self.current is not None and self.current not in self.keys:
            raise ConfigError(f"the current encryption key {self.current!r} is not in the key ring")

    def __repr__(self) -> str:
        # Key material must never reach logs or Dagster metadata through a repr.
        return f"KeyRing(ids={sorted(self.keys)!r}, current={self.current!r})"

    @property
    def enabled(self) -> bool:
        return self.current is not None

    def key_for(self, key_id: str, key_check: bytes, location: str) -> bytes:
        """Return the master key ``key_id``; raise LakeKeyError naming what is missing."""
        key = self.keys.get(key_id)
        loaded = ", ".join(sorted(self.keys)) or "none"
        if key is None:
            raise LakeKeyError(
                f"{location} is encrypted with key id {key_id!r}, which is not loaded "
                f"(loaded: {loaded}); {WHERE_KEYS_COME_FROM}: add key {key_id!r} there",
                key_id=key_id,
            )
        if not hmac.compare_digest(derive_key_check(key), key_check):
            raise LakeKeyError(
                f"{location} is encrypted with key id {key_id!r}, but the key loaded under "
                f"that id is a different key (or the file's header is damaged); "
                f"{WHERE_KEYS_COME_FROM}: put the original key {key_id!r} there",
                key_id=key_id,
            )
        return key


def _check_key(key_id: str, key: bytes, source: str) -> None:
    if not _KEY_ID.match(key_id):
        raise ConfigError(
            f"invalid encryption key id {key_id!r} in {source}: use 1 to 64 letters, digits, "
            "'.', '_' or '-'"
        )
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"encryption key {key_id!r} in {source} is {len(key)} bytes; AES-256 needs "
            f"{KEY_BYTES} bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
        )


def _decode_key(key_id: str, encoded: str, source: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"encryption key {key_id!r} in {source} is not valid base64; generate one with "
            "`openssl rand -base64 32`"
        ) from None
    _check_key(key_id, key, source)
    return key


def load_keyring(environ: Mapping[str, str] | None = None) -> KeyRing:
    """Read keys from the environment and the key file; an empty ring means no encryption.

    ``M365LAKE_ENCRYPTION_KEY`` contains ``KEY_ID:BASE64`` and becomes the current key. The
    key file is JSON, ``{"current": "k2", "keys": {"k1": "BASE64", "k2": "BASE64"}}``:
    its current key is used when the variable is unset, and all its keys decrypt.
    """
    env = os.environ if environ is None else environ
    keys: dict[str, bytes] = {}
    current: str | None = None
    sources: list[str] = []
    file_name = env.get(ENV_ENCRYPTION_KEY_FILE)
    if file_name:
        current = _read_key_file(Path(file_name), keys)
        sources.append(f"{ENV_ENCRYPTION_KEY_FILE}={file_name}")
    value = env.get(ENV_ENCRYPTION_KEY)
    if value:
        key_id, sep, encoded = value.partition(":")
        if not sep:
            raise ConfigError(
                f"{ENV_ENCRYPTION_KEY} must be KEY_ID:BASE64 (e.g. k1:$(openssl rand -base64 "
                "32)); the id is recorded in every encrypted file so the key can be found again"
            )
        key = _decode_key(key_id, encoded, ENV_ENCRYPTION_KEY)
        if key_id in keys and keys[key_id] != key:
            raise ConfigError(
                f"key id {key_id!r} has one key in {ENV_ENCRYPTION_KEY} and another in "
                f"{file_name}: a key id must always name the same key"
            )
        keys[key_id] = key
        current = key_id
        sources.append(ENV_ENCRYPTION_KEY)
    return KeyRing(keys=keys, current=current, sources=tuple(sources))


def _read_key_file(path: Path, keys: dict[str, bytes]) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"cannot read the encryption key file {path} ({error}); check {ENV_ENCRYPTION_KEY_FILE}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the encryption key file %s is open to other users (mode %o): run `chmod 600 %s`",
            path,
            stat.S_IMODE(mode),
            path,
        )
    try:
        document = json.loads(text)
        entries = document["keys"]
        current = document["current"]
        if not isinstance(entries, dict) or not isinstance(current, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"the encryption key file {path} must be JSON like "
            '{"current": "k2", "keys": {"k1": "BASE64", "k2": "BASE64"}}'
        ) from None
    for key_id, encoded in entries.items():
        if not isinstance(encoded, str):
            raise ConfigError(f"key {key_id!r} in {path} must be a base64 string")
        keys[key_id] = _decode_key(key_id, encoded, str(path))
    if current not in keys:
        raise ConfigError(f"the current key {current!r} named in {path} is not among its keys")
    return current


def is_encrypted(head: bytes) -> bool:
    """Return whether a file starting with ``head`` (at least 7 bytes) is an encrypted blob."""
    return head.startswith(MAGIC)


def _nonce(index: int, *, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _blob_cipher(master: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=_HKDF_INFO)
    return AESGCM(derived.derive(master))


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> object: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class EncryptingWriter:
    """A file-like sink that seals what it is given in chunks and writes them to ``target``.

    It buffers at most one chunk of plaintext, so memory stays flat for content of any size.
    ``finish`` writes the final chunk; a file without it is rejected as truncated.
    """

    def __init__(self, target: Writable, keys: KeyRing) -> None:
        if keys.current is None:
            raise ConfigError(f"no current encryption key; {WHERE_KEYS_COME_FROM}")
        master = keys.keys[keys.current]
        salt = os.urandom(SALT_BYTES)
        key_id = keys.current.encode("utf-8")
        self.header = (
            MAGIC + bytes([VERSION, len(key_id)]) + key_id + derive_key_check(master) + salt
        )
        self._target = target
        self._cipher = _blob_cipher(master, salt)
        self._buffer = bytearray()
        self._index = 0
        self.max_buffered = 0
        """Maximum plaintext bytes buffered at once, for tests of the memory bound."""
        target.write(self.header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        taken = 0
        while taken < len(view):
            room = CHUNK_BYTES - len(self._buffer)
            self._buffer += view[taken : taken + room]
            taken += room
            self.max_buffered = max(self.max_buffered, len(self._buffer))
            # A full chunk is sealed only when more follows, since the last must be short.
            if len(self._buffer) == CHUNK_BYTES and taken < len(view):
                self._seal(final=False)
        if len(self._buffer) == CHUNK_BYTES:
            self._seal(final=False)
        return len(view)

    def _seal(self, *, final: bool) -> None:
        nonce = _nonce(self._index, final=final)
        self._target.write(self._cipher.encrypt(nonce, bytes(self._buffer), self.header))
        self._buffer.clear()
        self._index += 1

    def finish(self) -> None:
        """Seal the final chunk, which contains fewer than ``CHUNK_BYTES``, possibly none."""
        self._seal(final=True)


def encrypt_bytes(data: bytes, keys: KeyRing) -> bytes:
    """Return ``data`` as one encrypted blob file in memory, for small blobs."""
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, keys)
    writer.write(data)
    writer.finish()
    return sink.getvalue()


class DecryptingReader:
    """A readable over an encrypted blob file that returns the plaintext stream.

    It buffers one chunk at a time. ``location`` names the file in error messages: a
    chunk that fails authentication raises LakeIntegrityError, a key that is missing or
    different raises LakeKeyError.
    """

    def __init__(self, source: Readable, keys: KeyRing, location: str) -> None:
        self._source = source
        self._location = location
        self.header, key_id, check, salt = self._read_header()
        self.key_id = key_id
        self._cipher = _blob_cipher(keys.key_for(key_id, check, location), salt)
        self._plain = b""
        self._offset = 0
        self._index = 0
        self._done = False

    def _damaged(self, what: str) -> LakeIntegrityError:
        return LakeIntegrityError(
            f"encrypted blob {self._location} {what}; the file was damaged or altered after "
            "it was written: restore it from a backup copy of the lake or re-run the backup"
        )

    def _read_exact(self, size: int, what: str) -> bytes:
        data = self._source.read(size)
        if len(data) != size:
            raise self._damaged(f"ends inside its {what}")
        return data

    def _read_header(self) -> tuple[bytes, str, bytes, bytes]:
        fixed = self._read_exact(len(MAGIC) + 2, "header")
        if not fixed.startswith(MAGIC):
            raise self._damaged("does not start with the encrypted blob magic")
        version, id_length = fixed[len(MAGIC)], fixed[len(MAGIC) + 1]
        if version != VERSION:
            raise self._damaged(f"has header version {version}, expected {VERSION}")
        rest = self._read_exact(id_length + KEY_CHECK_BYTES + SALT_BYTES, "header")
        try:
            key_id = rest[:id_length].decode("utf-8")
        except UnicodeDecodeError:
            raise self._damaged("has a key id that is not UTF-8") from None
        check = rest[id_length : id_length + KEY_CHECK_BYTES]
        salt = rest[id_length + KEY_CHECK_BYTES :]
        return fixed + rest, key_id, check, salt

    def _next_chunk(self) -> None:
        record = self._source.read(RECORD_BYTES)
        final = len(record) < RECORD_BYTES
        if not record:
            raise self._damaged(f"ends after chunk {self._index - 1} without its final chunk")
        if len(record) < TAG_BYTES:
            raise self._damaged(f"ends inside chunk {self._index}")
        try:
            self._plain = self._cipher.decrypt(
                _nonce(self._index, final=final), record, self.header
            )
        except InvalidTag:
            raise self._damaged(f"fails authentication at chunk {self._index}") from None
        self._offset = 0
        self._index += 1
        if final:
            self._done = True
            if self._source.read(1):
                raise self._damaged("has data after its final chunk")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while piece := self.read(CHUNK_BYTES):
                parts.append(piece)
            return b"".join(parts)
        while self._offset >= len(self._plain):
            if self._done:
                return b""
            self._next_chunk()
        piece = self._plain[self._offset : self._offset + size]
        self._offset += len(piece)
        return piece

    def readable(self) -> bool:
        return True


def decrypt_bytes(data: bytes, keys: KeyRing, location: str) -> bytes:
    """Return the plaintext stream of an encrypted blob file held in memory."""
    return DecryptingReader(io.BytesIO(data), keys, location).read()
