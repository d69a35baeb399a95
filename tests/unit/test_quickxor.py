"""QuickXorHash against published test vectors, the pure-Python reference and chunking."""

from __future__ import annotations

import base64
import random

import pytest

from m365lake.quickxor import QuickXorHash, quickxor_b64
from tests.unit.quickxor_reference import ReferenceQuickXorHash, reference_quickxor_b64

# Vectors from rclone's quickxorhash tests and from two independent implementations.
VECTORS = [
    ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
    ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
    ("T6LYJIfDh81JrAK309H2JMJTXis=", "zBTHrspn3mEcohlJdIUAbjGNaNg="),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_published_vectors(data: str, expected: str):
    assert quickxor_b64(base64.b64decode(data)) == expected


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_reference_published_vectors(data: str, expected: str):
    assert reference_quickxor_b64(base64.b64decode(data)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"quick_xor_hash_text_of_some_sort", "x26n1MWtON/m0nET1m1ygSm5BPs="),
        (b"hello world", "aCgDG9jwBhDc4Q1yawMZAAAAAAA="),
        (b"abc", "YRDDGAAAAAAAAAAAAwAAAAAAAAA="),
    ],
)
def test_ascii_vectors(text: bytes, expected: str):
    assert quickxor_b64(text) == expected


def test_one_mebibyte_counting_bytes():
    data = bytes(i % 256 for i in range(1 << 20))

    assert quickxor_b64(data) == "QkGEfSisZcA7k+FCh7x72dbCayY="


@pytest.mark.parametrize("chunk", [1, 7, 159, 160, 161, 4096, 65537])
def test_streaming_matches_one_shot(chunk: int):
    data = bytes((i * 31 + 7) % 251 for i in range(200_003))
    hasher = QuickXorHash()
    for start in range(0, len(data), chunk):
        hasher.update(data[start : start + chunk])

    assert hasher.b64digest() == quickxor_b64(data)


def test_reference_one_mebibyte_counting_bytes():
    data = bytes(i % 256 for i in range(1 << 20))

    assert reference_quickxor_b64(data) == "QkGEfSisZcA7k+FCh7x72dbCayY="


@pytest.mark.parametrize(
    "length",
    [1, 8, 159, 160, 161, 319, 320, 321, 4095, 65_537, (1 << 20) - 1, (1 << 20) + 161, 3_000_017],
)
def test_matches_reference_on_random_data(length: int):
    data = random.Random(length).randbytes(length)

    assert quickxor_b64(data) == reference_quickxor_b64(data)


@pytest.mark.parametrize("seed", range(6))
def test_random_chunking_matches_reference(seed: int):
    generator = random.Random(seed)
    data = generator.randbytes(generator.randrange(1, 700_000))
    fast, reference = QuickXorHash(), ReferenceQuickXorHash()
    start = 0
    while start < len(data):
        # Chunks from empty to past a 160-byte block, and some long ones.
        size = generator.choice([0, 1, 7, 159, 160, 161, 999, generator.randrange(1, 200_000)])
        chunk = data[start : start + size]
        fast.update(chunk)
        reference.update(chunk)
        start += size

    assert fast.b64digest() == reference.b64digest()
    assert fast.b64digest() == quickxor_b64(data)


def test_update_accepts_bytearray_and_memoryview():
    data = random.Random(3).randbytes(1000)
    hasher = QuickXorHash()
    hasher.update(bytearray(data[:333]))
    hasher.update(memoryview(data)[333:])

    assert hasher.b64digest() == reference_quickxor_b64(data)


def test_digest_can_be_taken_twice_and_extended():
    data = random.Random(4).randbytes(500)
    hasher = QuickXorHash(data[:250])

    assert hasher.b64digest() == hasher.b64digest()
    hasher.update(data[250:])
    assert hasher.b64digest() == reference_quickxor_b64(data)
