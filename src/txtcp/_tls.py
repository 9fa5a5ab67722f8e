# -*- test-case-name: tests.test_tls -*-
"""
TLS settings as txtcp takes them everywhere: C{trust_root} on clients,
C{certificate} and C{private_key} on servers.
"""

from __future__ import annotations

import os
import re
from typing import Any, Union, cast

# Twisted documents IOpenSSLTrustRoot but exports it from no public module.
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger

TrustRoot = Union[str, "os.PathLike[str]", Certificate, IOpenSSLTrustRoot, None]
CertificateSource = Union[str, "os.PathLike[str]", PrivateCertificate]
KeySource = Union[str, "os.PathLike[str]", None]

_MINIMUM = TLSVersion.TLSv1_2
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_log = Logger()


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_trust_root(trust_root: TrustRoot) -> IOpenSSLTrustRoot:
    """
    Turn a C{trust_root} argument into a trust root: C{None} is the platform's
    trust store; a path names a PEM file of one or more CA certificates.
    """
    if trust_root is None:
        return cast(IOpenSSLTrustRoot, platformTrust())
    if isinstance(trust_root, Certificate):
        return cast(IOpenSSLTrustRoot, trustRootFromCertificates([trust_root]))
    if IOpenSSLTrustRoot.providedBy(trust_root):
        return trust_root
    if isinstance(trust_root, (str, os.PathLike)):
        pems = _PEM_CERT.findall(_read(trust_root, "trust_root"))
        if not pems:
            raise ValueError(f"trust_root {os.fspath(trust_root)!r} holds no PEM certificate")
        certs = [Certificate.loadPEM(p) for p in pems]
        return cast(IOpenSSLTrustRoot, trustRootFromCertificates(certs))
    raise TypeError(
        "trust_root must be None, a path to a PEM file, a Certificate or an "
        f"IOpenSSLTrustRoot, not {trust_root!r}"
    )


def check_trust_root(trust_root: object) -> None:
    """Raise C{TypeError} unless C{trust_root} has an accepted type."""
    if trust_root is None or isinstance(trust_root, (str, os.PathLike, Certificate)):
        return
    if IOpenSSLTrustRoot.providedBy(trust_root):
        return
    raise TypeError(
        "trust_root must be None, a path to a PEM file, a Certificate or an "
        f"IOpenSSLTrustRoot, not {trust_root!r}"
    )


def client_options(hostname: str, trust_root: TrustRoot = None, *, verify: bool = True) -> Any:
    """
    Client TLS options that send SNI for C{hostname} and verify the server's
    certificate and host name against C{trust_root}; TLS below 1.2 is refused.

    With C{verify=False} nothing is verified, and a warning is logged.
    """
    if not verify:
        _log.warn(
            "TLS to {hostname} without certificate verification: the peer is not authenticated",
            hostname=hostname,
        )
        return CertificateOptions(verify=False, raiseMinimumTo=_MINIMUM)
    return optionsForClientTLS(
        hostname,
        trustRoot=load_trust_root(trust_root),
        extraCertificateOptions={"raiseMinimumTo": _MINIMUM},
    )


def load_certificate(
    certificate: CertificateSource, private_key: KeySource = None
) -> PrivateCertificate:
    """
    Load a server certificate: a C{PrivateCertificate}, or a PEM file path
    (the key may sit in the same file, or in C{private_key}).
    """
    if isinstance(certificate, PrivateCertificate):
        if private_key is not None:
            raise ValueError("private_key must be None when certificate is a PrivateCertificate")
        return certificate
    if not isinstance(certificate, (str, os.PathLike)):
        raise TypeError(
            f"certificate must be a PEM file path or a PrivateCertificate, not {certificate!r}"
        )
    if private_key is not None and not isinstance(private_key, (str, os.PathLike)):
        raise TypeError(f"private_key must be a PEM file path or None, not {private_key!r}")
    cert_pem = _read(certificate, "certificate")
    key_pem = _read(private_key, "private_key") if private_key is not None else cert_pem
    try:
        cert = Certificate.loadPEM(cert_pem)
        key = KeyPair.load(key_pem, 1)  # 1 is OpenSSL's FILETYPE_PEM
    except Exception as exc:
        raise ValueError(
            f"could not load a certificate and private key from {os.fspath(certificate)!r}"
            + (f" and {os.fspath(private_key)!r}" if private_key is not None else "")
            + f": {exc}"
        ) from exc
    return cast(PrivateCertificate, PrivateCertificate.fromCertificateAndKeyPair(cert, key))


def server_options(
    certificate: PrivateCertificate,
    *,
    trust_root: TrustRoot = None,
    require_client_certificate: bool = False,
) -> CertificateOptions:
    """
    Server TLS options for C{certificate}; TLS below 1.2 is refused.  With
    C{require_client_certificate}, clients must present a certificate that
    C{trust_root} signed.
    """
    extra: dict[str, Any] = {}
    if require_client_certificate:
        root = load_trust_root(trust_root)
        extra = {"trustRoot": root}
    return CertificateOptions(
        privateKey=certificate.privateKey.original.to_cryptography_key(),
        certificate=certificate.original.to_cryptography(),
        raiseMinimumTo=_MINIMUM,
        **extra,
    )
