# -*- test-case-name: tests.test_tls -*-
"""
Keys and certificates for the TLS tests: made on the spot (P-256 keys,
certificates for C{localhost} and 127.0.0.1, self-signed or signed by a
test CA), written as PEM files the way certbot replaces them, and the
C{ssl:} endpoint strings that name those files.

Used by the unit tests in L{tests.test_tls} and by the integration suite
(L{tests.integration.test_tls_server}, and the test CA of the TLS Redis in
L{tests.integration.cluster}).
"""

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.endpoints import quoteStringArgument


def make_key() -> ec.EllipticCurvePrivateKey:
    """
    A new P-256 private key (quick to make, unlike RSA).
    """
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str = "localhost",
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    authority: bool = False,
    days: int = 30,
) -> x509.Certificate:
    """
    A certificate for C{key}, valid for C{localhost} and 127.0.0.1.

    @param common_name: Its subject's CN.
    @param issuer: The CA certificate and key that sign it; self-signed
        when C{None}.
    @param authority: Make it a CA, able to sign others.
    @param days: How long it is valid from now.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    signer_name, signer_key = (
        (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=authority, path_length=None), True)
    )
    if not authority:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            False,
        )
    return builder.sign(signer_key, hashes.SHA256())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """
    C{key} as unencrypted PKCS#8 PEM.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    """
    The certificates as PEM, one after the other.
    """
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def write_files(
    directory: str | Path,
    common_name: str = "localhost",
    *,
    key_name: str = "key.pem",
    certificate_name: str = "cert.pem",
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    chain: Sequence[x509.Certificate] = (),
) -> x509.Certificate:
    """
    Write a new key and its certificate into C{directory}, replacing each
    file atomically (as certbot does), so that a server reading them at
    the same moment sees either the old or the new file.

    @param chain: More certificates written after the leaf, in its file.
    @return: The new certificate.
    """
    key = make_key()
    certificate = make_certificate(key, common_name, issuer=issuer)
    replace_file(Path(directory, key_name), key_pem(key))
    replace_file(
        Path(directory, certificate_name), certificate_pem(certificate, *chain)
    )
    return certificate


def replace_file(path: Path, data: bytes) -> None:
    """
    Write C{data} to C{path} through a temporary file and a rename.
    """
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def fingerprint(certificate: x509.Certificate) -> str:
    """
    Its SHA-256 fingerprint in hex, as L{tchat.tls.LoadedCertificate} has it.
    """
    return certificate.fingerprint(hashes.SHA256()).hex()


def ssl_string(directory: str | Path, port: int | str = 4443, **extra: str) -> str:
    """
    An C{ssl:} endpoint string for the C{key.pem} and C{cert.pem} in
    C{directory}, on 127.0.0.1, with the file names escaped as Twisted
    wants.
    """
    text = (
        f"ssl:{port}:interface=127.0.0.1"
        f":privateKey={quoteStringArgument(str(Path(directory, 'key.pem')))}"
        f":certKey={quoteStringArgument(str(Path(directory, 'cert.pem')))}"
    )
    for name, value in extra.items():
        text += f":{name}={quoteStringArgument(value)}"
    return text
