"""
Tests for L{tchat.tls}: C{ssl:} endpoint strings taken apart as Twisted
does, key and certificate files read and checked, and a certificate that a
reload replaces.  No sockets: listeners go to a L{MemoryReactor}.

The certificates come from L{tests.certificates}, shared with the
integration suite (C{tests/integration/test_tls_server.py}).
"""

import random
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.application.service import MultiService
from twisted.internet import endpoints as twisted_endpoints
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

from tchat.config import (
    Config,
    ConfigError,
    LimitsConfig,
    ServerConfig,
    config_from_string,
)
from tchat.control import Listeners, Reloader, ReloadResult
from tchat.endpoints import check_endpoint, server_endpoint
from tchat.gate import Gate, line_refusal
from tchat.hub import ChatFactory
from tchat.telnet import TelnetFactory
from tchat.tls import (
    MODERN_CIPHERS,
    CertificateError,
    ServerTLS,
    SSLSettings,
    load_certificate,
    parse_ssl,
    split_description,
    tls12_ciphers,
)
from tests.certificates import (
    certificate_pem,
    fingerprint,
    key_pem,
    make_certificate,
    make_key,
    ssl_string,
    write_files,
)


class _Directory(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def path(self, name: str) -> str:
        return str(self.directory / name)


# -- endpoint strings --------------------------------------------------------


class SplitDescriptionTests(SynchronousTestCase):
    """
    L{split_description} reads endpoint strings exactly as Twisted's
    C{serverFromString} does, so a listen string means the same to tchat.
    """

    def test_fields(self) -> None:
        """
        Colons separate fields; a field with C{=} is a keyword.
        """
        self.assertEqual(
            split_description("ssl:443:privateKey=key.pem:certKey=cert.pem"),
            (["ssl", "443"], {"privateKey": "key.pem", "certKey": "cert.pem"}),
        )

    def test_escaped_colon(self) -> None:
        """
        C{\\:} is a colon inside a value (a Windows path, an IPv6 address).
        """
        self.assertEqual(
            split_description(r"ssl:443:privateKey=C\:/key.pem:interface=\:\:1"),
            (["ssl", "443"], {"privateKey": "C:/key.pem", "interface": "::1"}),
        )

    def test_escaped_backslash_and_equals(self) -> None:
        """
        A backslash makes any next character literal: C{\\\\} is one
        backslash, C{\\=} an equals sign that does not start a value.
        """
        self.assertEqual(
            split_description(r"unix:/tmp/a\=b\\c:mode=660"),
            (["unix", "/tmp/a=b\\c"], {"mode": "660"}),
        )

    def test_second_equals_is_literal(self) -> None:
        """
        Only the first C{=} of a field splits it; the value may hold more.
        """
        self.assertEqual(split_description("x:key=a=b"), (["x"], {"key": "a=b"}))

    def test_empty_fields_and_repeats(self) -> None:
        """
        Empty fields stay, and a key given twice keeps its last value.
        """
        self.assertEqual(
            split_description("ssl::443:k=1:k=2:"),
            (["ssl", "", "443", ""], {"k": "2"}),
        )

    def test_trailing_backslash(self) -> None:
        """
        A backslash at the end escapes nothing: an error, not a crash.
        """
        self.assertRaises(ValueError, split_description, "ssl:443:privateKey=a\\")

    def test_same_as_twisted(self) -> None:
        """
        Twisted's own (private) parser agrees on every example.
        """
        parse = getattr(twisted_endpoints, "_parse", None)
        if parse is None:
            self.skipTest("this Twisted has no _parse to compare with")
        for text in [
            "ssl:443",
            "ssl:443:privateKey=key.pem:certKey=cert.pem",
            r"ssl:443:privateKey=C\:/key.pem:interface=\:\:1",
            r"unix:/tmp/a\=b\\c:mode=660",
            "x:key=a=b",
            "ssl::443:k=1:k=2:",
            "tcp:0:interface=127.0.0.1:backlog=7",
            "=:=:a==",
        ]:
            self.assertEqual(split_description(text), parse(text), text)


class ParseSSLTests(SynchronousTestCase):
    """
    L{parse_ssl} accepts what Twisted's C{ssl:} accepts, with its defaults.
    """

    def test_defaults(self) -> None:
        """
        Only a port: C{server.pem} holds key and certificate, every IPv4
        interface, a backlog of 50.
        """
        self.assertEqual(
            parse_ssl("ssl:443"),
            SSLSettings(443, "", 50, "server.pem", "server.pem"),
        )

    def test_certificate_defaults_to_key(self) -> None:
        """
        Without C{certKey}, the private key file holds the certificate too.
        """
        settings = parse_ssl("ssl:443:privateKey=both.pem")
        self.assertEqual(
            (settings.private_key, settings.certificate), ("both.pem", "both.pem")
        )

    def test_every_option(self) -> None:
        """
        Every option of Twisted's C{ssl:} is read.
        """
        self.assertEqual(
            parse_ssl(
                r"ssl:8443:privateKey=k.pem:certKey=c.pem:interface=\:\:1"
                ":backlog=7:extraCertChain=chain.pem:dhParameters=dh.pem"
                ":sslmethod=TLS_METHOD"
            ),
            SSLSettings(
                8443, "::1", 7, "k.pem", "c.pem", "chain.pem", "dh.pem", "TLS_METHOD"
            ),
        )

    def test_positional(self) -> None:
        """
        As in Twisted, arguments may come by position, in its order.
        """
        settings = parse_ssl("ssl:443:k.pem:c.pem")
        self.assertEqual(
            (settings.port, settings.private_key, settings.certificate),
            (443, "k.pem", "c.pem"),
        )

    def test_mistakes(self) -> None:
        """
        Each mistake is named.
        """
        for text, message in [
            ("ssl:443:privatekey=k.pem", "ssl: has no option 'privatekey'"),
            ("ssl:443:k.pem:privateKey=k.pem", "ssl: privateKey is given twice"),
            ("ssl:privateKey=k.pem", "ssl: needs a port"),
            ("ssl:https", "ssl: port 'https' is not a number"),
            ("ssl:443:backlog=many", "ssl: backlog 'many' is not a number"),
            ("ssl:443:sslmethod=NOPE", "ssl: sslmethod 'NOPE' is not an OpenSSL"),
            ("ssl:443:ciphers=NOPE", "ssl: ciphers 'NOPE' selects no TLS 1.2"),
            ("ssl:443:ciphers=", "ssl: ciphers '' selects no TLS 1.2"),
            ("tcp:443", "it is not an ssl: endpoint"),
        ]:
            with self.assertRaises(ValueError, msg=text) as caught:
                parse_ssl(text)
            self.assertIn(message, str(caught.exception), text)

    def test_ciphers(self) -> None:
        """
        C{ciphers=} (tchat's own option) takes an OpenSSL cipher list, its
        names separated by commas (or escaped colons); without it, the
        modern list.
        """
        self.assertEqual(parse_ssl("ssl:443").ciphers, MODERN_CIPHERS)
        for text in (
            "ssl:443:ciphers=ECDHE-RSA-AES256-GCM-SHA384,ECDHE-RSA-AES128-GCM-SHA256",
            r"ssl:443:ciphers=ECDHE-RSA-AES256-GCM-SHA384\:ECDHE-RSA-AES128-GCM-SHA256",
        ):
            self.assertEqual(
                tls12_ciphers(parse_ssl(text).ciphers),
                ("ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"),
            )

    def test_modern_ciphers(self) -> None:
        """
        The default TLS 1.2 suites are all forward secret (ECDHE or DHE)
        and authenticated encryption (GCM or ChaCha20-Poly1305): no static
        RSA key exchange, no CBC, no SHA-1.
        """
        suites = tls12_ciphers(MODERN_CIPHERS)
        self.assertIn("ECDHE-ECDSA-AES128-GCM-SHA256", suites)
        self.assertIn("ECDHE-RSA-CHACHA20-POLY1305", suites)
        for suite in suites:
            self.assertTrue(suite.startswith(("ECDHE-", "DHE-")), suite)
            self.assertTrue(suite.endswith(("GCM-SHA256", "GCM-SHA384", "POLY1305")))


# -- files -------------------------------------------------------------------


class LoadCertificateTests(_Directory):
    """
    L{load_certificate} reads the files and says which one is wrong.
    """

    def load(self, **settings: Any) -> Any:
        defaults: dict[str, Any] = {
            "port": 0,
            "private_key": self.path("key.pem"),
            "certificate": self.path("cert.pem"),
        }
        return load_certificate(SSLSettings(**{**defaults, **settings}))

    def error(self, **settings: Any) -> str:
        with self.assertRaises(CertificateError) as caught:
            self.load(**settings)
        return str(caught.exception)

    def test_loaded(self) -> None:
        """
        A key and its certificate load; the log line names the CN and the
        expiry date, and the fingerprint is the certificate's.
        """
        certificate = write_files(self.directory, "chat.example")
        loaded = self.load()
        expires = certificate.not_valid_after_utc.date().isoformat()
        self.assertEqual(
            loaded.describe(), f"subject CN=chat.example, expires {expires}"
        )
        self.assertEqual(loaded.fingerprint, fingerprint(certificate))
        self.assertEqual(loaded.options.certificate.to_cryptography(), certificate)

    def test_modern_tls(self) -> None:
        """
        What is served: TLS 1.2 at least, and for TLS 1.2 only the suites
        of the endpoint's cipher list.
        """
        write_files(self.directory, "chat.example")
        context = self.load().options.getContext()
        # set_options answers with the options in force.
        self.assertTrue(context.set_options(0) & SSL.OP_NO_TLSv1_1)
        self.assertTrue(context.set_options(0) & SSL.OP_NO_TLSv1)
        connection = SSL.Connection(context, None)
        self.assertEqual(
            tuple(n for n in connection.get_cipher_list() if not n.startswith("TLS_")),
            tls12_ciphers(MODERN_CIPHERS),
        )
        chosen = self.load(ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
        connection = SSL.Connection(chosen.options.getContext(), None)
        self.assertIn("ECDHE-ECDSA-AES256-GCM-SHA384", connection.get_cipher_list())
        self.assertNotIn("ECDHE-ECDSA-AES128-GCM-SHA256", connection.get_cipher_list())

    def test_one_file(self) -> None:
        """
        Key and certificate may share one file (C{certKey} left out).
        """
        key = make_key()
        both = self.directory / "both.pem"
        both.write_bytes(certificate_pem(make_certificate(key)) + key_pem(key))
        loaded = self.load(private_key=str(both), certificate=str(both))
        self.assertEqual(loaded.options.extraCertChain, [])

    def test_full_chain(self) -> None:
        """
        Certificates after the first in the certificate file (certbot's
        C{fullchain.pem}) and those of C{extraCertChain} are sent as the
        chain, each once.
        """
        ca_key = make_key()
        ca = make_certificate(ca_key, "Test CA", authority=True)
        middle_key = make_key()
        middle = make_certificate(
            middle_key, "Test Intermediate", issuer=(ca, ca_key), authority=True
        )
        write_files(self.directory, issuer=(middle, middle_key), chain=[middle])
        (self.directory / "chain.pem").write_bytes(certificate_pem(middle, ca))
        loaded = self.load(chain=self.path("chain.pem"))
        self.assertEqual(
            [c.to_cryptography() for c in loaded.options.extraCertChain], [middle, ca]
        )

    def test_missing_and_unreadable(self) -> None:
        """
        A missing or unreadable file is named, with the system's reason.
        """
        write_files(self.directory)
        missing = self.path("nope.pem")
        self.assertEqual(
            self.error(private_key=missing),
            f"cannot read the private key file {missing}: No such file or directory",
        )
        self.assertEqual(
            self.error(certificate=str(self.directory)),
            f"cannot read the certificate file {self.directory}: Is a directory",
        )
        self.assertIn(
            f"cannot read the extraCertChain file {missing}",
            self.error(chain=missing),
        )
        self.assertIn(
            f"cannot read the dhParameters file {missing}",
            self.error(dh_parameters=missing),
        )

    def test_not_pem(self) -> None:
        """
        A file without the PEM block it should hold is named.
        """
        write_files(self.directory)
        (self.directory / "junk.pem").write_bytes(b"not a certificate\n")
        junk = self.path("junk.pem")
        self.assertEqual(
            self.error(certificate=junk),
            f"the certificate file {junk} holds no PEM certificate",
        )
        self.assertEqual(
            self.error(private_key=junk),
            f"the private key file {junk} holds no PEM private key",
        )
        self.assertEqual(
            self.error(chain=junk),
            f"the extraCertChain file {junk} holds no PEM certificate",
        )

    def test_refused_by_openssl(self) -> None:
        """
        Files that OpenSSL itself refuses (Diffie-Hellman parameters that
        are not) are refused when read, not at the first connection, and
        the message lists the files.
        """
        write_files(self.directory)
        (self.directory / "dh.pem").write_bytes(b"not parameters\n")
        self.assertIn(
            f"OpenSSL refuses the files {self.path('key.pem')}, "
            f"{self.path('cert.pem')}, {self.path('dh.pem')}: ",
            self.error(dh_parameters=self.path("dh.pem")),
        )

    def test_broken_pem(self) -> None:
        """
        A damaged certificate is named.
        """
        write_files(self.directory)
        text = (self.directory / "cert.pem").read_bytes()
        (self.directory / "cert.pem").write_bytes(text[:40] + b"AAAA" + text[44:])
        self.assertIn(
            f"the certificate file {self.path('cert.pem')} holds a broken certificate",
            self.error(),
        )

    def test_mismatch(self) -> None:
        """
        A key that does not belong to the certificate is refused, naming both.
        """
        write_files(self.directory)
        (self.directory / "key.pem").write_bytes(key_pem(make_key()))
        self.assertEqual(
            self.error(),
            f"the private key in {self.path('key.pem')} does not belong to the "
            f"certificate in {self.path('cert.pem')}",
        )

    def test_encrypted_key(self) -> None:
        """
        An encrypted key is refused with how to decrypt it: there is no one
        to type a passphrase.
        """
        write_files(self.directory)
        (self.directory / "key.pem").write_bytes(
            make_key().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        self.assertIn("is encrypted; tchat cannot ask for its passphrase", self.error())


# -- reloading -----------------------------------------------------------------


def served(tls: ServerTLS) -> x509.Certificate:
    """
    The certificate a new connection would be offered.
    """
    connection = tls.serverConnectionForTLS(None)  # type: ignore[arg-type]
    certificate = connection.get_certificate()
    assert certificate is not None
    return certificate.to_cryptography()


class ServerTLSTests(_Directory):
    """
    L{ServerTLS} gives each new connection the certificate in force, which
    a reload replaces; files that cannot be used keep the old one.
    """

    def setUp(self) -> None:
        super().setUp()
        self.first = write_files(self.directory, "first")
        self.description = ssl_string(self.directory)
        with capturedLogs() as self.started:
            self.tls = ServerTLS(self.description, parse_ssl(self.description))

    def test_interface(self) -> None:
        """
        It is a connection creator that L{TLSMemoryBIOFactory} accepts, and
        a new connection is offered the certificate read at start, which
        the log names.
        """
        verifyObject(IOpenSSLServerConnectionCreator, self.tls)
        self.assertIsInstance(
            self.tls.serverConnectionForTLS(None),  # type: ignore[arg-type]
            SSL.Connection,
        )
        self.assertEqual(served(self.tls), self.first)
        self.assertEqual(
            [formatEvent(e) for e in self.started],
            [
                f"tls: loaded certificate for {self.description} "
                f"({self.tls.current.describe()})"
            ],
        )

    def test_reload(self) -> None:
        """
        After the files are replaced and reloaded, new connections are
        offered the new certificate, and the log says so.  A connection
        made before keeps its own.
        """
        before = self.tls.serverConnectionForTLS(None)  # type: ignore[arg-type]
        second = write_files(self.directory, "second")
        with capturedLogs() as events:
            self.assertIsNone(self.tls.reload())
        self.assertEqual(served(self.tls), second)
        certificate = before.get_certificate()
        assert certificate is not None
        self.assertEqual(certificate.to_cryptography(), self.first)
        expires = second.not_valid_after_utc.date().isoformat()
        self.assertEqual(
            [formatEvent(e) for e in events],
            [
                f"tls: reloaded certificate for {self.description} "
                f"(subject CN=second, expires {expires})"
            ],
        )

    def test_broken_keeps_old(self) -> None:
        """
        A reload with a broken certificate file, then with a key that does
        not match, keeps the certificate in force and logs why, naming the
        file; fixed files are then taken.
        """
        (self.directory / "cert.pem").write_bytes(b"half a certif")
        with capturedLogs() as events:
            reason = self.tls.reload()
        cert = self.path("cert.pem")
        self.assertEqual(
            reason, f"the certificate file {cert} holds no PEM certificate"
        )
        self.assertEqual(served(self.tls), self.first)
        self.assertEqual(
            [(formatEvent(e), e["log_level"].name) for e in events],
            [
                (
                    f"tls: kept the old certificate for {self.description}: {reason}",
                    "error",
                )
            ],
        )

        write_files(self.directory, "second", key_name="other-key.pem")
        reason = self.tls.reload()
        self.assertIsNotNone(reason)
        self.assertIn("does not belong to the certificate", str(reason))
        self.assertEqual(served(self.tls), self.first)

        third = write_files(self.directory, "third")
        self.assertIsNone(self.tls.reload())
        self.assertEqual(served(self.tls), third)

    def test_endpoint(self) -> None:
        """
        It listens on a plain TCP port with the string's port, interface
        and backlog; IPv6 for an IPv6 interface.
        """
        reactor = MemoryReactorClock()
        factory = Factory.forProtocol(Protocol)
        self.tls.endpoint(reactor).listen(factory)
        six = ServerTLS(
            "v6",
            parse_ssl(
                ssl_string(self.directory, 1).replace(
                    "interface=127.0.0.1", r"interface=\:\:1:backlog=9"
                )
            ),
        )
        six.endpoint(reactor).listen(factory)
        self.assertEqual(
            [
                (port, backlog, interface)
                for port, _, backlog, interface in reactor.tcpServers
            ],
            [(4443, 50, "127.0.0.1"), (1, 9, "::1")],
        )

    def test_wrap(self) -> None:
        """
        Wrapped, a door's protocols are under TLS made by this creator, and
        Nagle's algorithm is turned off on the TCP connection, as the doors
        do for bare TCP (they cannot see through TLS).
        """
        door = Factory.forProtocol(Protocol)
        wrapped = self.tls.wrap(door)
        assert isinstance(wrapped, TLSMemoryBIOFactory)
        self.assertIs(wrapped.wrappedFactory, door)

        class TCP(StringTransport):
            nodelay = False

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.nodelay = enabled

        transport = TCP()
        directlyProvides(transport, ITCPTransport)
        protocol = wrapped.buildProtocol(None)
        assert protocol is not None
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        self.assertTrue(transport.nodelay)


class _Reader(Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class TelnetsTests(_Directory):
    """
    A telnets connection becomes a user only once its TLS handshake is
    done; one whose handshake never comes is closed after the silent
    timeout, never having been a user.
    """

    def setUp(self) -> None:
        super().setUp()
        certificate = write_files(self.directory, "localhost")
        self.trusted = certificate_pem(certificate)
        description = ssl_string(self.directory)
        with capturedLogs():
            tls = ServerTLS(description, parse_ssl(description))
        self.clock = Clock()
        self.hub = ChatFactory(
            ServerConfig(reconnect_grace=0),
            self.clock,
            random.Random(1),
            limits=LimitsConfig(silent_timeout=60),
        )
        door = TelnetFactory(self.hub, clock=self.clock)
        gate = Gate(door, self.hub.admission, self.clock, line_refusal)
        # As tls.wrap(gate) does, with the test's clock for TLS's batching.
        self.factory = TLSMemoryBIOFactory(tls, False, gate, clock=self.clock)

    def server(self) -> Any:
        return self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))

    def test_user_after_handshake(self) -> None:
        """
        Connected, the TLS connection is no user yet; once the handshake is
        done it is, and gets the welcome over TLS.
        """
        options = optionsForClientTLS(
            "localhost", trustRoot=Certificate.loadPEM(self.trusted)
        )
        client = TLSMemoryBIOFactory(
            options, True, Factory.forProtocol(_Reader), clock=self.clock
        ).buildProtocol(None)
        server = self.server()
        pump = iosim.connect(
            server,
            iosim.FakeTransport(server, isServer=True),
            client,
            iosim.FakeTransport(client, isServer=False),
            greet=False,
        )
        self.assertEqual(self.hub.users, 0)
        self.assertEqual(self.hub.admission.open, 1)
        pump.flush()
        self.assertEqual(self.hub.users, 1)
        self.clock.advance(0)
        pump.flush()
        reader = client.wrappedProtocol
        assert isinstance(reader, _Reader)
        self.assertIn(b"*** Welcome to tchat", reader.data)
        # Nothing is closed later for want of a handshake.
        self.clock.advance(60)
        self.assertFalse(server.transport.disconnecting)

    def test_stalled_handshake_closed(self) -> None:
        """
        A connection that never starts its handshake is closed after
        C{silent_timeout}, said in the log, and is never a user.
        """
        server = self.server()
        transport = iosim.FakeTransport(server, isServer=True)
        server.makeConnection(transport)
        self.assertEqual(self.hub.users, 0)
        self.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        with capturedLogs() as logged:
            self.clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            [formatEvent(e) for e in logged],
            ["closing a TLS connection whose handshake did not finish in 1m"],
        )
        server.connectionLost(None)
        self.assertEqual(self.hub.users, 0)
        self.assertEqual(self.hub.admission.open, 0)


# -- config check and listeners ------------------------------------------------


class CheckEndpointTests(_Directory):
    """
    C{ssl:} listen strings are checked when C{tap.ini} is read, so a bad
    key or certificate stops start-up (or a reload) with a plain sentence.
    """

    def error(self, description: str) -> str:
        with self.assertRaises(ConfigError) as caught:
            check_endpoint("telnet", description)
        return str(caught.exception)

    def test_good(self) -> None:
        """
        Good files pass.
        """
        write_files(self.directory)
        check_endpoint("telnet", ssl_string(self.directory))

    def test_files(self) -> None:
        """
        A missing key, an unreadable certificate and a mismatched pair are
        each refused, naming the section, the string and the file.
        """
        write_files(self.directory)
        missing = f"ssl:4443:privateKey={self.path('nope.pem')}"
        self.assertEqual(
            self.error(missing),
            f"[telnet] listen: {missing!r} is not a usable endpoint: cannot read "
            f"the private key file {self.path('nope.pem')}: No such file or "
            "directory",
        )
        unreadable = ssl_string(self.directory).replace(
            self.path("cert.pem"), str(self.directory)
        )
        self.assertIn(
            f"cannot read the certificate file {self.directory}: Is a directory",
            self.error(unreadable),
        )
        (self.directory / "key.pem").write_bytes(key_pem(make_key()))
        self.assertIn(
            "does not belong to the certificate", self.error(ssl_string(self.directory))
        )

    def test_syntax(self) -> None:
        """
        A misspelt option is named.
        """
        self.assertIn(
            "ssl: has no option 'certkey'", self.error("ssl:4443:certkey=cert.pem")
        )


class ServerEndpointTests(_Directory):
    """
    L{server_endpoint} gives C{ssl:} strings reloadable TLS and leaves the
    others to Twisted, both with tchat's backlog.
    """

    def test_tcp(self) -> None:
        """
        A C{tcp:} string listens with the door's own factory.
        """
        reactor = MemoryReactorClock()
        door = Factory.forProtocol(Protocol)
        endpoint, factory, tls = server_endpoint(
            reactor, "tcp:4444:interface=127.0.0.1", door
        )
        self.assertIs(factory, door)
        self.assertIsNone(tls)
        endpoint.listen(factory)
        self.assertEqual(reactor.tcpServers, [(4444, door, 1024, "127.0.0.1")])
        self.assertEqual(reactor.sslServers, [])

    def test_ssl(self) -> None:
        """
        An C{ssl:} string listens on TCP with the door's factory under TLS.
        """
        write_files(self.directory)
        reactor = MemoryReactorClock()
        door = Factory.forProtocol(Protocol)
        endpoint, factory, tls = server_endpoint(
            reactor, ssl_string(self.directory), door
        )
        assert isinstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory, door)
        assert tls is not None
        self.assertEqual(tls.description, ssl_string(self.directory))
        endpoint.listen(factory)
        self.assertEqual(reactor.tcpServers, [(4443, factory, 1024, "127.0.0.1")])
        self.assertEqual(reactor.sslServers, [])


class ListenersTests(_Directory):
    """
    A reload makes every running C{ssl:} listener read its files again.
    """

    def setUp(self) -> None:
        super().setUp()
        self.first = write_files(self.directory, "first")
        self.reactor = MemoryReactorClock()
        root = MultiService()
        root.startService()
        self.addCleanup(root.stopService)
        door = Factory.forProtocol(Protocol)
        self.listeners = Listeners(root, self.reactor, {"telnet": door, "web": door})
        self.description = ssl_string(self.directory)
        self.listeners.add("telnet", self.description, None)
        self.listeners.add("web", "tcp:8080", None)

    def tls(self) -> ServerTLS:
        tls = self.listeners.services["telnet", self.description].tls
        assert tls is not None
        return tls

    def test_reload_certificates(self) -> None:
        """
        New files are taken; broken ones are reported, and the old
        certificate stays; listeners not asked for are left alone.
        """
        second = write_files(self.directory, "second")
        self.assertEqual(self.listeners.reload_certificates(), [])
        self.assertEqual(served(self.tls()), second)
        (self.directory / "key.pem").write_bytes(b"")
        ((description, reason),) = self.listeners.reload_certificates()
        self.assertEqual(description, self.description)
        self.assertIn("holds no PEM private key", reason)
        self.assertEqual(served(self.tls()), second)
        write_files(self.directory, "third")
        self.assertEqual(self.listeners.reload_certificates(among=()), [])
        self.assertEqual(served(self.tls()), second)

    def test_new_listener_with_broken_files(self) -> None:
        """
        A listener added by a reload whose files went bad since they were
        checked is reported as one that cannot listen, not a crash.
        """
        other = self.directory / "other"
        other.mkdir()
        wanted = [("telnet", self.description), ("web", ssl_string(other, 4444))]
        started, stopped, failed = self.successResultOf(self.listeners.change(wanted))
        self.assertEqual((started, stopped), ([], ["tcp:8080"]))
        ((description, reason),) = failed
        self.assertIn("cannot read the private key file", reason)

    def test_summary(self) -> None:
        """
        A reload's summary says which listeners kept their old certificate,
        whether the new C{tap.ini} was applied or refused.
        """
        kept = (("ssl:1", "bad key"),)
        self.assertEqual(
            ReloadResult(True, certificates=kept).summary(),
            "kept the old certificate for ssl:1 (bad key)",
        )
        self.assertEqual(
            ReloadResult(False, error="typo", certificates=kept).summary(),
            "refused, the configuration in force is unchanged: typo; "
            "kept the old certificate for ssl:1 (bad key)",
        )


class _Hub:
    """
    What L{Reloader} asks of the hub, doing nothing.
    """

    def __init__(self) -> None:
        self.metrics = self

    def reconfigure(self, *settings: object) -> None:
        pass

    def reloaded(self, now: float, ok: bool) -> None:
        pass


class ReloaderTests(_Directory):
    """
    SIGHUP and C{/rehash} reload the certificates, whatever becomes of
    C{tap.ini}.
    """

    def setUp(self) -> None:
        super().setUp()
        write_files(self.directory, "first")
        self.description = ssl_string(self.directory)
        self.text = (
            f"[telnet]\nlisten = {self.description}\n[web]\nlisten =\n"
            "[history]\nenabled = false\n[admin]\nlisten = none\n"
        )
        self.reactor = MemoryReactorClock()
        root = MultiService()
        root.startService()
        self.addCleanup(root.stopService)
        door = Factory.forProtocol(Protocol)
        self.listeners = Listeners(root, self.reactor, {"telnet": door})
        self.listeners.add("telnet", self.description, None)
        self.refuse = False
        self.reloader = Reloader(
            self.reread,
            config_from_string(self.text),
            _Hub(),  # type: ignore[arg-type]
            [],
            [],
            self.listeners,
            self.reactor,
            in_thread=maybeDeferred,
        )

    def reread(self) -> Config:
        if self.refuse:
            raise ConfigError("[server] nmae: unknown key")
        return config_from_string(self.text)

    def served(self) -> x509.Certificate:
        tls = self.listeners.services["telnet", self.description].tls
        assert tls is not None
        return served(tls)

    def reload(self) -> tuple[bool, str]:
        result: tuple[bool, str] = self.successResultOf(self.reloader.reload("test"))
        return result

    def test_reload(self) -> None:
        """
        An unchanged C{tap.ini} reloads the certificate; broken files keep
        the old one and the summary says so.
        """
        second = write_files(self.directory, "second")
        self.assertEqual(self.reload(), (True, "nothing changed"))
        self.assertEqual(self.served(), second)
        (self.directory / "cert.pem").write_bytes(b"")
        ok, summary = self.reload()
        self.assertTrue(ok)
        self.assertEqual(
            summary,
            f"kept the old certificate for {self.description} (the certificate "
            f"file {self.path('cert.pem')} holds no PEM certificate)",
        )
        self.assertEqual(self.served(), second)

    def test_refused_file(self) -> None:
        """
        A C{tap.ini} that is refused does not hold back a renewed
        certificate.
        """
        second = write_files(self.directory, "second")
        self.refuse = True
        self.assertEqual(
            self.reload(),
            (
                False,
                "refused, the configuration in force is unchanged: "
                "[server] nmae: unknown key",
            ),
        )
        self.assertEqual(self.served(), second)
