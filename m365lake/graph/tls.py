"""The one TLS context shared by the token client and the Graph client.

Building the context from ``GraphSettings.ca_bundle`` keeps the choice of trusted CAs in
m365lake's own settings. ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and ``SSL_CERT_FILE``
are ignored when a bundle is configured, because an explicit ``ssl.SSLContext`` overrides
them in both httpx and the msal adapter.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from m365lake.config import ENV_CA_BUNDLE
from m365lake.errors import ConfigError


def build_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Create a verifying client context trusting ``ca_bundle`` only, or the system store."""
    if ca_bundle is None:
        return ssl.create_default_context()
    if ca_bundle.is_dir():
        raise ConfigError(
            f"CA bundle {ca_bundle} is a directory, expected a PEM file: set {ENV_CA_BUNDLE} "
            "to a PEM file of CA certificates, or unset it to use the system trust store"
        )
    if not ca_bundle.is_file():
        raise ConfigError(
            f"CA bundle {ca_bundle} not found: set {ENV_CA_BUNDLE} to a PEM file of CA "
            "certificates, or unset it to use the system trust store"
        )
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"CA bundle {ca_bundle} could not be loaded ({exc.reason or exc}): "
            f"{ENV_CA_BUNDLE} must name a PEM file containing CA certificates"
        ) from exc


def certificate_verification_error(exc: BaseException, host: str) -> ConfigError | None:
    """Return a ConfigError if ``exc`` is a failed TLS certificate check, else None.

    httpx wraps ``ssl.SSLCertVerificationError`` in ``ConnectError``. Retrying cannot fix
    an untrusted certificate, so callers raise this instead of backing off.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return ConfigError(
                f"TLS certificate verification of {host} failed "
                f"({cause.verify_message or cause.reason}): set {ENV_CA_BUNDLE} to the PEM "
                "of the CA that issued its certificate, or check for an intercepting proxy"
            )
        cause = cause.__cause__ or cause.__context__
    return None
