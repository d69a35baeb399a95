"""Compact JWS (JWT) signing and verification with ``cryptography``: RS256 and PS256 only.

The emulator signs its access tokens with RS256 and checks client assertions, which MSAL
Python signs with RS256 (SHA-1 ``x5t``) or PS256 (SHA-256 ``x5t#S256``) since MSAL 1.35.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JwsError(ValueError):
    """The token is malformed, uses an unsupported algorithm, or its signature is invalid."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise JwsError(f"invalid base64url segment: {exc}") from exc


def _padding(algorithm: str) -> padding.AsymmetricPadding:
    if algorithm == "RS256":
        return padding.PKCS1v15()
    if algorithm == "PS256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
    raise JwsError(f"unsupported signing algorithm {algorithm!r}; expected RS256 or PS256")


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, *, headers: dict[str, Any]) -> str:
    """Return a compact RS256 JWT over ``claims``."""
    header = {"typ": "JWT", "alg": "RS256", **headers}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


def parse(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a compact JWT into (header, claims, signing input, signature) without verifying."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError(f"expected 3 dot-separated segments, found {len(parts)}")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwsError(f"header or claims are not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwsError("header and claims must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2])


def verify(token: str, public_key: rsa.RSAPublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the signature of ``token`` and return (header, claims)."""
    header, claims, signing_input, signature = parse(token)
    algorithm = str(header.get("alg"))
    try:
        public_key.verify(signature, signing_input, _padding(algorithm), hashes.SHA256())
    except InvalidSignature as exc:
        raise JwsError("signature does not match the key") from exc
    return header, claims
