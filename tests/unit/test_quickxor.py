"""QuickXorHash against published test vectors and across chunk boundaries."""

from __future__ import annotations

import base64

import pytest

from m365lake.quickxor import QuickXorHash, quickxor_b64

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
