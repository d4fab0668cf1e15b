# -*- test-case-name: tests.test_tls -*-
"""
TLS for C{ssl:} listeners, with certificates that can be reloaded.

Twisted's own C{ssl:} endpoint reads its key and certificate files once, so
a renewed certificate would need a restart.  Here an C{ssl:} endpoint
string is taken apart with Twisted's grammar and the same options and
defaults, the listener is a plain TCP port, and each connection gets its
TLS from a L{ServerTLS}, whose certificate L{ServerTLS.reload} swaps.
Connections already open keep the session they negotiated; new ones get
the certificate in force when they arrive.

TLS 1.2 is the oldest version served, with only forward-secret AEAD
suites (L{MODERN_CIPHERS}, Mozilla's "intermediate" profile) unless the
string's C{ciphers=} says otherwise; TLS 1.3 suites are OpenSSL's own.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from twisted.internet.abstract import isIPv6Address
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import (
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
    ITCPTransport,
)
from twisted.internet.ssl import (
    AcceptableCiphers,
    CertificateOptions,
    DiffieHellmanParameters,
    TLSVersion,
)
from twisted.logger import Logger
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
)
from twisted.python.filepath import FilePath
from zope.interface import implementer


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split an endpoint string the way C{serverFromString} does: fields are
    separated by C{:}; a field with C{=} is C{key=value} (only its first
    C{=} counts); a backslash makes the next character literal (C{\\:} for
    a colon in a path).

    @param description: An endpoint string, e.g.
        C{ssl:443:privateKey=key.pem}.
    @return: The positional fields (the kind first) and the keyword fields;
        a key given twice keeps its last value, as in Twisted.
    @raise ValueError: For a backslash at the very end.
    """
    fields: list[list[str]] = [[""]]
    escaped = False
    for char in description:
        if escaped:
            fields[-1][-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append([""])
        elif char == "=" and len(fields[-1]) == 1:
            fields[-1].append("")
        else:
            fields[-1][-1] += char
    if escaped:
        raise ValueError("it ends with a backslash, which escapes nothing")
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for field in fields:
        if len(field) == 1:
            positional.append(field[0])
        else:
            keywords[field[0]] = field[1]
    return positional, keywords


_SSL_OPTIONS = (
    "port",
    "privateKey",
    "certKey",
    "sslmethod",
    "interface",
    "backlog",
    "extraCertChain",
    "dhParameters",
)
"""The arguments of C{ssl:}, in the order Twisted takes them positionally."""

_TCHAT_OPTIONS = ("ciphers",)
"""Options tchat's C{ssl:} takes besides Twisted's, by name only."""

MODERN_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
    "DHE-RSA-CHACHA20-POLY1305"
)
"""
The TLS 1.2 suites served by default: Mozilla's "intermediate" list
(U{https://wiki.mozilla.org/Security/Server_Side_TLS}), every one forward
secret (ECDHE, or DHE with C{dhParameters}) with AES-GCM or
ChaCha20-Poly1305: no static RSA key exchange, no CBC, no SHA-1.
"""


def tls12_ciphers(cipher_string: str) -> tuple[str, ...]:
    """
    The TLS 1.2 suites an OpenSSL cipher string selects with this OpenSSL
    (TLS 1.3 suites are not chosen by such a string).

    @param cipher_string: E.g. L{MODERN_CIPHERS}; OpenSSL also takes
        commas or spaces between the names.
    @return: Their OpenSSL names, in OpenSSL's order; empty when it selects
        none (or is not a cipher string).
    """
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_cipher_list(cipher_string.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        return ()
    names = SSL.Connection(context, None).get_cipher_list()
    return tuple(name for name in names if not name.startswith("TLS_"))


@dataclass(frozen=True)
class SSLSettings:
    """
    What an C{ssl:} endpoint string says, with Twisted's defaults.

    @ivar port: The TCP port (0 for any free one).
    @ivar interface: The address to listen on; C{""} for all of IPv4.
    @ivar backlog: The listen queue.
    @ivar private_key: The PEM private key file (C{privateKey}).
    @ivar certificate: The PEM certificate file (C{certKey}); the private
        key file unless given.  Certificates after the first one in it are
        sent as the chain too (as in certbot's C{fullchain.pem}).
    @ivar chain: A PEM file of more chain certificates (C{extraCertChain}).
    @ivar dh_parameters: A PEM Diffie-Hellman parameters file.
    @ivar method: The name of an C{OpenSSL.SSL} method constant
        (C{sslmethod}), which Twisted deprecates.
    @ivar ciphers: The OpenSSL cipher string of the TLS 1.2 suites served
        (C{ciphers}, tchat's own option); L{MODERN_CIPHERS} unless given.
    """

    port: int
    interface: str = ""
    backlog: int = 50
    private_key: str = "server.pem"
    certificate: str = "server.pem"
    chain: str | None = None
    dh_parameters: str | None = None
    method: str | None = None
    ciphers: str = MODERN_CIPHERS


def parse_ssl(description: str) -> SSLSettings:
    """
    Read an C{ssl:} endpoint string, accepting what C{serverFromString}
    accepts (arguments by position or by name).

    @param description: E.g. C{ssl:4443:privateKey=key.pem:certKey=cert.pem}.
    @return: Its settings.
    @raise ValueError: Saying what is wrong with it.
    """
    positional, keywords = split_description(description)
    if positional[:1] != ["ssl"]:
        raise ValueError("it is not an ssl: endpoint")
    given = positional[1:]
    if len(given) > len(_SSL_OPTIONS):
        raise ValueError(f"ssl: takes at most {len(_SSL_OPTIONS)} arguments")
    values = dict(zip(_SSL_OPTIONS, given, strict=False))
    for key, value in keywords.items():
        if key not in _SSL_OPTIONS + _TCHAT_OPTIONS:
            known = ", ".join(_SSL_OPTIONS[1:] + _TCHAT_OPTIONS)
            raise ValueError(f"ssl: has no option {key!r} (it has {known})")
        if key in values:
            raise ValueError(f"ssl: {key} is given twice")
        values[key] = value
    if "port" not in values:
        raise ValueError("ssl: needs a port, as in ssl:4443:privateKey=key.pem")
    numbers = {}
    for key in ("port", "backlog"):
        if key in values:
            try:
                numbers[key] = int(values[key])
            except ValueError:
                raise ValueError(
                    f"ssl: {key} {values[key]!r} is not a number"
                ) from None
    method = values.get("sslmethod")
    if method is not None and not isinstance(getattr(SSL, method, None), int):
        raise ValueError(f"ssl: sslmethod {method!r} is not an OpenSSL method")
    ciphers = values.get("ciphers", MODERN_CIPHERS)
    if not tls12_ciphers(ciphers):
        raise ValueError(
            f"ssl: ciphers {ciphers!r} selects no TLS 1.2 cipher suite this "
            "OpenSSL knows (separate names with commas, as in "
            "ciphers=ECDHE-RSA-AES128-GCM-SHA256,ECDHE-RSA-AES256-GCM-SHA384)"
        )
    private_key = values.get("privateKey", "server.pem")
    return SSLSettings(
        port=numbers["port"],
        interface=values.get("interface", ""),
        backlog=numbers.get("backlog", 50),
        private_key=private_key,
        certificate=values.get("certKey", private_key),
        chain=values.get("extraCertChain"),
        dh_parameters=values.get("dhParameters"),
        method=method,
        ciphers=ciphers,
    )


class CertificateError(Exception):
    """
    A key or certificate file cannot be used; the message names the file.
    """


@dataclass(frozen=True)
class LoadedCertificate:
    """
    A key and certificate read from their files, ready to serve.

    @ivar options: The TLS settings connections are made with.
    @ivar subject: Who the certificate is for: C{CN=...}, or its names.
    @ivar expires: When it stops being valid (UTC).
    @ivar fingerprint: The SHA-256 of the certificate, in hex.
    """

    options: CertificateOptions
    subject: str
    expires: datetime
    fingerprint: str

    def describe(self) -> str:
        """
        @return: C{subject CN=..., expires YYYY-MM-DD}, for the log.
        """
        return f"subject {self.subject}, expires {self.expires.date().isoformat()}"


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL
)


def _read(path: str, what: str) -> list[tuple[str, bytes]]:
    """
    The PEM blocks of a file.

    @param what: What the file should hold, for messages.
    @return: (label, block) pairs, in the file's order.
    @raise CertificateError: If it cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CertificateError(
            f"cannot read the {what} file {path}: {e.strerror or e}"
        ) from None
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def _certificates(path: str, what: str) -> list[x509.Certificate]:
    blocks = [block for label, block in _read(path, what) if label == "CERTIFICATE"]
    if not blocks:
        raise CertificateError(f"the {what} file {path} holds no PEM certificate")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as e:
        raise CertificateError(
            f"the {what} file {path} holds a broken certificate: {e}"
        ) from None


def _private_key(path: str) -> tuple[PKey, bytes]:
    """
    @return: The first private key in the file, and its public key (DER).
    """
    blocks = [
        (label, block)
        for label, block in _read(path, "private key")
        if label.endswith("PRIVATE KEY")
    ]
    if not blocks:
        raise CertificateError(f"the private key file {path} holds no PEM private key")
    label, block = blocks[0]
    if label == "ENCRYPTED PRIVATE KEY" or b"ENCRYPTED" in block[:200]:
        raise CertificateError(
            f"the private key in {path} is encrypted; tchat cannot ask for its "
            "passphrase (openssl pkey -in KEY -out KEY.plain removes it)"
        )
    try:
        key = load_pem_private_key(block, password=None)
        usable = PKey.from_cryptography_key(key)  # type: ignore[arg-type]
        return usable, _public(key.public_key())
    except (ValueError, TypeError) as e:
        raise CertificateError(
            f"the private key file {path} holds a key that cannot be used: {e}"
        ) from None


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _subject(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return f"CN={names[0].value!s}"
    try:
        alternatives = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return certificate.subject.rfc4514_string() or "(none)"
    return "(no CN) " + ", ".join(str(name.value) for name in alternatives)


def load_certificate(settings: SSLSettings) -> LoadedCertificate:
    """
    Read and check the key, certificate, chain and Diffie-Hellman files of
    an C{ssl:} endpoint.  Blocking, but the files are small.

    @param settings: Which files.
    @return: What to serve.
    @raise CertificateError: Naming the file that is missing, unreadable or
        broken, or saying that key and certificate do not belong together.
    """
    key, public = _private_key(settings.private_key)
    leaf, *rest = _certificates(settings.certificate, "certificate")
    if public != _public(leaf.public_key()):
        raise CertificateError(
            f"the private key in {settings.private_key} does not belong to the "
            f"certificate in {settings.certificate}"
        )
    if settings.chain is not None:
        rest += _certificates(settings.chain, "extraCertChain")
    chain: list[X509] = []
    seen = {leaf}
    for certificate in rest:
        if certificate not in seen:
            seen.add(certificate)
            chain.append(X509.from_cryptography(certificate))
    extra: dict[str, Any] = {}
    if settings.dh_parameters is not None:
        _read(settings.dh_parameters, "dhParameters")
        extra["dhParameters"] = DiffieHellmanParameters.fromFile(
            FilePath(settings.dh_parameters)
        )
    if settings.method is not None:
        extra["method"] = getattr(SSL, settings.method)
    else:
        # Twisted's default today, said here so that it stays.
        extra["raiseMinimumTo"] = TLSVersion.TLSv1_2
    options = CertificateOptions(
        privateKey=key,
        certificate=X509.from_cryptography(leaf),
        extraCertChain=chain,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(settings.ciphers),
        **extra,
    )
    try:
        # Build the context now, so that what OpenSSL refuses is refused
        # here rather than at the first connection.
        options.getContext()
    except SSL.Error as e:
        files = [settings.private_key, settings.certificate]
        files += [f for f in (settings.chain, settings.dh_parameters) if f]
        raise CertificateError(
            f"OpenSSL refuses the files {', '.join(dict.fromkeys(files))}: {e}"
        ) from None
    return LoadedCertificate(
        options,
        _subject(leaf),
        leaf.not_valid_after_utc,
        leaf.fingerprint(SHA256()).hex(),
    )


class _InteractiveTLSProtocol(BufferingTLSTransport):
    """
    TLS over a TCP connection with Nagle's algorithm off from the start.
    The doors turn it off too, through the TLS layer, but only once their
    protocol runs (the web door at the WebSocket's opening): before that,
    the handshake's last small records and the page's responses would wait
    ~40 ms for an acknowledgement.
    """

    def makeConnection(self, transport: Any) -> None:
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        super().makeConnection(transport)


class _TLSFactory(TLSMemoryBIOFactory):
    protocol = _InteractiveTLSProtocol


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS of one C{ssl:} listener: each new connection is made with the
    certificate in force, which L{reload} replaces.

    @ivar description: The endpoint string, for the log.
    @ivar settings: Its files and where it listens.
    @ivar current: The certificate in force.
    """

    _log = Logger()

    def __init__(self, description: str, settings: SSLSettings) -> None:
        """
        Load the files.

        @raise CertificateError: If they cannot be used.
        """
        self.description = description
        self.settings = settings
        self.current = load_certificate(settings)
        self._log.info(
            "tls: loaded certificate for {description} ({certificate})",
            description=description,
            certificate=self.current.describe(),
        )

    def serverConnectionForTLS(
        self, tlsProtocol: TLSMemoryBIOProtocol
    ) -> SSL.Connection:
        """
        See L{IOpenSSLServerConnectionCreator.serverConnectionForTLS}.
        """
        return SSL.Connection(self.current.options.getContext(), None)

    def reload(self) -> str | None:
        """
        Read the files again and serve what they hold from the next
        connection on; if they cannot be used, keep the certificate in
        force.  Either way, say so in the log.

        @return: C{None} once reloaded, or why not.
        """
        try:
            self.current = load_certificate(self.settings)
        except CertificateError as e:
            self._log.error(
                "tls: kept the old certificate for {description}: {reason}",
                description=self.description,
                reason=str(e),
            )
            return str(e)
        self._log.info(
            "tls: reloaded certificate for {description} ({certificate})",
            description=self.description,
            certificate=self.current.describe(),
        )
        return None

    def endpoint(self, reactor: Any) -> IStreamServerEndpoint:
        """
        The plain TCP endpoint to listen with: the port, interface and
        backlog of the C{ssl:} string (IPv6 if the interface is).
        """
        settings = self.settings
        kind = (
            TCP6ServerEndpoint
            if isIPv6Address(settings.interface)
            else TCP4ServerEndpoint
        )
        return kind(reactor, settings.port, settings.backlog, settings.interface)

    def wrap(self, factory: IProtocolFactory) -> IProtocolFactory:
        """
        Put TLS between the TCP connection and C{factory}'s protocols.
        """
        return _TLSFactory(self, False, factory)
