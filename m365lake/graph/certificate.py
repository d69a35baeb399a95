"""Loading the app registration's client certificate for msal's client assertion."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from m365lake.config import ENV_CLIENT_CERTIFICATE_PASSWORD, ENV_CLIENT_CERTIFICATE_PATH
from m365lake.errors import ConfigError


@dataclass(frozen=True, repr=False)
class ClientCertificate:
    """An RSA key with its certificate, in the shape msal's ``client_credential`` takes."""

    private_key_pem: str
    """Unencrypted PKCS#8 PEM, kept in memory only."""
    thumbprint: str
    """SHA-1 of the leaf certificate's DER bytes, upper-case hex, as Entra displays it."""
    chain_pem: str
    """Leaf certificate first, then any intermediates. Sent as ``x5c`` only on request."""

    def __repr__(self) -> str:
        return f"ClientCertificate(thumbprint={self.thumbprint!r})"

    def msal_credential(self, *, send_certificate_chain: bool = False) -> dict[str, str]:
        """Return the ``client_credential`` dict for ``msal.ConfidentialClientApplication``.

        Passing the SHA-1 thumbprint makes msal 1.39 sign the assertion with RS256 and an
        ``x5t`` header, which every Entra tenant accepts. A ``public_certificate`` without
        a thumbprint would switch msal to PS256 with ``x5t#S256``.
        """
        credential = {"private_key": self.private_key_pem, "thumbprint": self.thumbprint}
        if send_certificate_chain:
            credential["public_certificate"] = self.chain_pem
        return credential


def load_client_certificate(path: Path, password: str | None = None) -> ClientCertificate:
    """Read a PEM (key and certificate) or PKCS#12 file and pick the certificate of the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read client certificate {path} ({exc.strerror or exc}): set "
            f"{ENV_CLIENT_CERTIFICATE_PATH} to a readable PEM or PKCS#12 file"
        ) from exc

    password_bytes = password.encode("utf-8") if password else None
    if b"-----BEGIN" in data:
        key, certificates = _load_pem(path, data, password_bytes)
    else:
        key, certificates = _load_pkcs12(path, data, password_bytes)

    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(
            f"client certificate {path} contains a {type(key).__name__} key, but Entra client "
            "assertions need an RSA key: create the certificate with an RSA key (2048 bits or more)"
        )
    leaf = _certificate_for_key(path, key, certificates)
    chain = [leaf] + [cert for cert in certificates if cert is not leaf]

    private_key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    thumbprint = hashlib.sha1(leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    chain_pem = "".join(
        cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in chain
    )
    return ClientCertificate(private_key_pem, thumbprint, chain_pem)


def _load_pem(
    path: Path, data: bytes, password: bytes | None
) -> tuple[object, list[x509.Certificate]]:
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError as exc:
        # cryptography raises TypeError when a password is missing or was not needed.
        raise ConfigError(
            f"client certificate {path}: {exc}. Set or unset "
            f"{ENV_CLIENT_CERTIFICATE_PASSWORD} to match the key"
        ) from exc
    except ValueError as exc:
        raise ConfigError(
            f"client certificate {path} has no readable private key ({exc}). The PEM file "
            f"must contain the private key and the certificate; check "
            f"{ENV_CLIENT_CERTIFICATE_PASSWORD} if the key is encrypted"
        ) from exc
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(
            f"client certificate {path} contains a private key but no certificate: append "
            "the PEM certificate registered on the app to the same file"
        ) from exc
    return key, certificates


def _load_pkcs12(
    path: Path, data: bytes, password: bytes | None
) -> tuple[object, list[x509.Certificate]]:
    try:
        key, leaf, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise ConfigError(
            f"client certificate {path} is neither PEM nor a PKCS#12 file that opens with "
            f"the configured password ({exc}): check {ENV_CLIENT_CERTIFICATE_PATH} and "
            f"{ENV_CLIENT_CERTIFICATE_PASSWORD}"
        ) from exc
    if key is None:
        raise ConfigError(
            f"client certificate {path} is a PKCS#12 file without a private key: export it "
            "again including the private key"
        )
    certificates = ([leaf] if leaf is not None else []) + list(extra)
    return key, certificates


def _certificate_for_key(
    path: Path, key: rsa.RSAPrivateKey, certificates: list[x509.Certificate]
) -> x509.Certificate:
    public_numbers = key.public_key().public_numbers()
    for cert in certificates:
        cert_key = cert.public_key()
        if isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == public_numbers:
            return cert
    raise ConfigError(
        f"client certificate {path} contains {len(certificates)} certificate(s), none of them "
        "for its private key: put the certificate that was uploaded to the app registration "
        "in the same file as its key"
    )
