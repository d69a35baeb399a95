"""A private CA kept in the emulator's state folder, and the certificates it signs.

The CA is created once and reused, so a client that trusts ``ca.pem`` keeps trusting every
later emulator run on the same state folder. Creation is atomic: the CA is written to a
temporary folder that is renamed into place, and a process that loses the race uses the
winner's CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

CA_DIR = "ca"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA's certificate file (the bundle clients trust) and its loaded key."""

    cert_path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(state_dir: Path) -> CertificateAuthority:
    """Load the CA from ``state_dir/ca``, creating it first if it does not exist."""
    ca_dir = state_dir / CA_DIR
    if not (ca_dir / CA_CERT).exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".ca-", dir=state_dir))
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m365lake emulator local CA")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        (staging / CA_CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_private(staging / CA_KEY, _pem_key(key))
        try:
            staging.rename(ca_dir)
            logger.info("created emulator CA in %s", ca_dir)
        except OSError:
            # Another process created the CA first; use theirs.
            shutil.rmtree(staging, ignore_errors=True)
    certificate = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    loaded = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_dir / CA_KEY} is not an EC private key; delete {ca_dir} to recreate")
    return CertificateAuthority(ca_dir / CA_CERT, certificate, loaded)


def issue_server_certificate(ca: CertificateAuthority, directory: Path) -> tuple[Path, Path]:
    """Write a fresh server certificate for 127.0.0.1 and localhost; return (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
        .sign(ca.key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    handle, cert_name = tempfile.mkstemp(prefix="server-", suffix=".pem", dir=directory)
    os.close(handle)
    cert_path = Path(cert_name)
    key_path = cert_path.with_name(cert_path.stem + "-key.pem")
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(key))
    return cert_path, key_path


def create_client_certificate(common_name: str = "m365lake app") -> tuple[bytes, bytes]:
    """Return (private key PEM, self-signed certificate PEM) for certificate client credentials.

    RSA, because Entra ID app certificates and MSAL's RS256/PS256 assertions use RSA keys.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key), certificate.public_bytes(serialization.Encoding.PEM)
