# -*- test-case-name: tests.test_ssh -*-
"""
The SSH door: C{ssh -p 2222 alice@host}, an encrypted terminal chat in the
same rooms as every other door, built on twisted.conch (see
C{docs/ssh.md}).

  - Any client key is accepted, as ssh-chat does: its fingerprint is who
    you are.  The name you log in as becomes your nick if it is free; a
    key bound to an account logs you in to it (C{/key add}).
  - Without a key, the password prompt logs you in to the account of
    that name; an empty password lets you in as a guest.
  - There is a terminal and nothing else: a shell request gets the chat,
    and every other request (exec, subsystems, port forwarding, agent or
    X11 forwarding) is refused.

The chat is rendered as on the telnet door (L{tchat.terminal.encode}), wrapped
to the terminal's width and printed above the line being typed, which a
line editor with a history keeps intact.
"""

from __future__ import annotations

import hmac
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import avatar, recvline
from twisted.conch.error import ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import _kex, connection, factory, keys, session, userauth
from twisted.conch.ssh import transport as transport_module
from twisted.conch.ssh.common import NS, getNS
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from tchat import commands as c
from tchat import events
from tchat.commands import CommandError, parse_line
from tchat.gate import line_refusal, unwrapped
from tchat.hub import ChatFactory
from tchat.interfaces import IParticipant
from tchat.model import User
from tchat.output import socket_writer
from tchat.terminal import encode, variant
from tchat.text import clean_text

_log = Logger()

MAX_LINE = 4096
"""The longest line the terminal takes (characters); more is not echoed."""

_ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def fingerprint(key: keys.Key) -> str:
    """C{key}'s fingerprint as C{ssh-keygen -l} shows it: C{SHA256:...}."""
    digest: str = key.fingerprint(keys.FingerprintFormats.SHA256_BASE64)
    return "SHA256:" + digest.rstrip("=")


def host_key(path: str) -> keys.Key:
    """
    The server's ed25519 host key at C{path}: made there (readable by its
    owner only) if there is none yet, read otherwise.  Blocking: call it
    before the reactor runs.
    """
    file = Path(path)
    if not file.exists():
        private = ed25519.Ed25519PrivateKey.generate()
        data = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _log.info("ssh: made the host key {path}", path=str(file))
    key: keys.Key = keys.Key.fromFile(str(file))
    if key.type() != "Ed25519" or key.isPublic():
        raise ValueError(f"{path} is not an ed25519 private key")
    return key


@dataclass(frozen=True)
class Identity:
    """
    Who an SSH client said it is.

    @ivar name: The user name it logged in as (C{ssh NAME@host}).
    @ivar key: The public key it proved it holds, as an OpenSSH line.
    @ivar fingerprint: That key's fingerprint.
    @ivar password: The password it gave instead; empty for a guest.
    """

    name: str
    key: str | None = None
    fingerprint: str | None = None
    password: str | None = None


@implementer(ICredentialsChecker)
class AnyKey:
    """
    Accepts every public key its client proves it holds: the key is the
    identity, not a permission.
    """

    credentialInterfaces = (credentials.ISSHPrivateKey,)

    def requestAvatarId(self, creds: Any) -> defer.Deferred[Any]:
        try:
            key = keys.Key.fromString(creds.blob)
        except (keys.BadKeyError, ValueError):
            return defer.fail(error.UnauthorizedLogin("not a public key"))
        if creds.signature is None:
            # The client asks whether this key would do: it would.
            return defer.fail(ValidPublicKey())
        if not key.verify(creds.signature, creds.sigData):
            return defer.fail(error.UnauthorizedLogin("bad signature"))
        line = key.toString("OPENSSH").decode("ascii")
        return defer.succeed(
            Identity(_name(creds.username), line, fingerprint(key), None)
        )


@implementer(ICredentialsChecker)
class AnyPassword:
    """
    Lets in a client without a key: its password is checked as a login to
    the account of its user name once it is in (so that failures count as
    every other login's); an empty one makes it a guest.
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def requestAvatarId(self, creds: Any) -> defer.Deferred[Any]:
        password = creds.password.decode("utf-8", errors="replace")
        return defer.succeed(Identity(_name(creds.username), password=password))


def _name(raw: bytes) -> str:
    """The user name a client gave, as text fit to try as a nick."""
    return clean_text(raw.decode("utf-8", errors="replace")).strip()[:64]


@implementer(portal.IRealm)
class ChatRealm:
    """Makes an authenticated client a chat user of C{hub}."""

    def __init__(self, hub: ChatFactory, door: str) -> None:
        self.hub = hub
        self.door = door

    def requestAvatar(
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> tuple[Any, Any, Any]:
        if IConchUser not in interfaces:
            raise NotImplementedError("only conch users")
        user = ChatAvatar(self.hub, self.door, avatarId)
        return IConchUser, user, user.logout


class ChatSession(session.SSHSession):
    """A session channel that takes a terminal and a shell, and no more."""

    def request_exec(self, data: bytes) -> int:
        _log.info("ssh: refused a command")
        return 0

    def request_subsystem(self, data: bytes) -> int:
        _log.info("ssh: refused a subsystem")
        return 0

    def request_x11_req(self, data: bytes) -> int:
        return 0


@implementer(ISession)
class ChatAvatar(avatar.ConchUser):
    """
    One SSH login: a session channel with a terminal, and nothing else.
    """

    def __init__(self, hub: ChatFactory, door: str, identity: Identity) -> None:
        super().__init__()
        self.hub = hub
        self.door = door
        self.identity = identity
        self.channelLookup = {b"session": ChatSession}
        self.size = (80, 24)
        self.terminal: ChatTerminal | None = None

    # Port forwarding and the like: refused (no such channel, no such
    # global request; subsystems are looked up in an empty table).
    def gotGlobalRequest(self, requestType: bytes, data: bytes) -> int:
        return 0

    def logout(self) -> None:
        self.terminal = None

    # -- ISession ------------------------------------------------------------

    def getPty(self, term: bytes, windowSize: Any, modes: Any) -> None:
        self.size = _size(windowSize)

    def openShell(self, transport: Any) -> None:
        terminal = ChatTerminal(
            self.hub, self.door, self.identity, self.size, transport.session
        )
        self.terminal = terminal
        server = Screen(lambda: terminal)
        server.makeConnection(transport)
        transport.makeConnection(session.wrapProtocol(server))

    def execCommand(self, proto: Any, command: bytes) -> None:
        # Never asked: ChatSession refuses commands first.
        raise ValueError("this server runs no commands")

    def windowChanged(self, newWindowSize: Any) -> None:
        self.size = _size(newWindowSize)
        if self.terminal is not None and self.terminal.terminal is not None:
            self.terminal.terminalSize(*self.size)

    def eofReceived(self) -> None:
        if self.terminal is not None:
            self.terminal.end("ctrl-d")

    def closed(self) -> None:
        pass


_TYPED = re.compile(rb"[\x20-\x7e\x80-\xff]+")
"""Characters a line takes as typed (UTF-8 bytes included)."""


class Screen(insults.ServerProtocol):
    """
    The terminal emulation of one session, answering each chunk the client
    sends with one write: a pasted line (or a client that sends a line in
    one packet) is echoed in one SSH packet, not one per character.
    """

    _held: list[bytes] | None = None

    def dataReceived(self, data: bytes) -> None:
        self._held = []
        try:
            typed = getattr(self.terminalProtocol, "typed", None)
            if typed is None or self.state != b"data" or b"\x1b" in data:
                super().dataReceived(data)
                return
            # No escape sequence: runs of plain characters go to the line
            # editor in one piece, the keys between them one by one.
            at = 0
            for run in _TYPED.finditer(data):
                if run.start() > at:
                    super().dataReceived(data[at : run.start()])
                typed(run.group())
                at = run.end()
            if at < len(data):
                super().dataReceived(data[at:])
        finally:
            self.release()

    def raw(self, data: bytes, channel: Any = None) -> None:
        """
        Write bytes whose line ends are CR LF already, after what is held;
        straight to C{channel} (the session's) when nothing is.
        """
        held = self._held
        if held is not None:
            held.append(data)
        elif channel is not None:
            channel.write(data)
        elif self.transport is not None:
            self.transport.write(data)

    def release(self) -> None:
        """Write what this chunk's answer holds so far."""
        held, self._held = self._held, None
        if held and self.transport is not None:
            self.transport.write(b"".join(held))

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            super().write(data)
        elif data:
            held.append(b"\r\n".join(data.split(b"\n")))


def _size(window: Any) -> tuple[int, int]:
    """(columns, rows) of a pty request's window; 80x24 when it says 0."""
    rows, columns = window[0], window[1]
    return (max(columns, 20) if columns else 80, max(rows, 2) if rows else 24)


@implementer(IParticipant)
class ChatTerminal(recvline.HistoricRecvLine):
    """
    One SSH user's terminal: a line editor (arrows, history, Ctrl-A/E/U/W,
    Ctrl-D on an empty line to leave) whose lines are chat, with what the
    hub tells them printed above the line being typed.
    """

    def __init__(
        self,
        hub: ChatFactory,
        door: str,
        identity: Identity,
        size: tuple[int, int],
        channel: Any = None,
    ) -> None:
        self.hub = hub
        self._channel = channel
        self.door = door
        self.identity = identity
        self.width, self.height = size
        self.user: User | None = None
        self.ps = (b"> ", b"> ")
        # What was printed this reactor turn, not yet written (see _print).
        self._gathered: list[bytes] = []
        self._prompt_after = True

    # -- the terminal --------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        channel = self._channel
        if channel is not None:
            # Chat wants its lines out at once, as the telnet door does.
            tcp = unwrapped(channel.conn.transport.transport)
            if hasattr(tcp, "setTcpNoDelay"):
                tcp.setTcpNoDelay(True)
        t = self.terminal
        self.keyHandlers.update(
            {
                b"\x01": self.handle_HOME,  # Ctrl-A
                b"\x05": self.handle_END,  # Ctrl-E
                b"\x15": self.kill_line,  # Ctrl-U
                b"\x17": self.kill_word,  # Ctrl-W
                b"\x04": self.ctrl_d,
                b"\x03": self.kill_line,  # Ctrl-C: forget the line
                b"\x7f": self.handle_BACKSPACE,
                t.BACKSPACE: self.handle_BACKSPACE,
            }
        )
        user = self.hub.connect(self)
        if not user.connected:
            return
        self._identify(user)

    def initializeScreen(self) -> None:
        # The chat starts on a fresh line, not a cleared screen.
        self.terminal.write(b"\n")
        self.setInsertMode()
        self._prompt()

    def _prompt(self) -> None:
        user = self.user
        room = user.current.name if user is not None and user.current else ""
        self.ps = ((room + "> ").encode("utf-8"),) * 2

    def _identify(self, user: User) -> None:
        """Make the user who their SSH login says they are."""
        identity = self.identity
        user.ssh_key = identity.key
        hub = self.hub
        if identity.key is not None and not identity.password:
            # The same key, back within the reconnect grace: the session
            # goes on, nobody else the wiser.
            held = hub.concerns.continuity.by_key(identity.key)
            if held is not None:
                hub.concerns.continuity.take(user, held, "resumed by a new connection")
                return
        if identity.name and identity.name.lower() not in ("guest", "anonymous"):
            hub.execute(user, c.Nick(identity.name))
        if identity.password:
            hub.execute(user, c.Login(identity.name or None, identity.password))
        elif identity.fingerprint is not None:
            # A key bound to an account logs in to it (carrying on its
            # session if it is still here); any other key changes nothing.
            hub.execute(user, c.KeyLogin(identity.fingerprint))
        hub.execute(user, c.Settle())

    def terminalSize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.terminal.write(b"\r\x1b[2K")
        self._redraw()

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        if (
            isinstance(keyID, bytes)
            and keyID not in self.keyHandlers
            and len(keyID) == 1
            and keyID[0] >= 0x80
        ):
            # Part of a UTF-8 character: take it as typed.
            self.characterReceived(keyID, False)
            return
        super().keystrokeReceived(keyID, modifier)

    def typed(self, run: bytes) -> None:
        """
        Characters typed or pasted together: what as many calls of
        L{characterReceived} would do, with one echo.
        """
        run = run[: MAX_LINE - len(self.lineBuffer)]
        if not run:
            return
        chars = [run[i : i + 1] for i in range(len(run))]
        at = self.lineBufferIndex
        if self.mode == "insert":
            self.lineBuffer[at:at] = chars
        else:
            self.lineBuffer[at : at + len(chars)] = chars
        self.lineBufferIndex = at + len(chars)
        self.terminal.write(run)

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        if len(self.lineBuffer) >= MAX_LINE:
            return
        super().characterReceived(ch, moreCharactersComing)

    def kill_line(self) -> None:
        self.lineBuffer = self.lineBuffer[self.lineBufferIndex :]
        self.lineBufferIndex = 0
        self.terminal.write(b"\r\x1b[2K")
        self._redraw()

    def kill_word(self) -> None:
        before = b"".join(self.lineBuffer[: self.lineBufferIndex])
        kept = before.rstrip(b" ")
        cut = kept.rfind(b" ") + 1
        del self.lineBuffer[cut : self.lineBufferIndex]
        self.lineBufferIndex = cut
        self.terminal.write(b"\r\x1b[2K")
        self._redraw()

    def ctrl_d(self) -> None:
        if not self.lineBuffer:
            self.end("ctrl-d")
        else:
            self.handle_DELETE()

    def _limit(self) -> int:
        return self.hub.limits.output_queue or 1 << 62

    def end(self, why: str) -> None:
        """Leave the chat, as C{/quit} does."""
        user = self.user
        if user is not None and user.connected:
            self.hub.execute(user, c.Quit(None))
        else:
            self.close(why)

    def lineReceived(self, line: bytes) -> None:
        user = self.user
        self._redraw()  # a fresh prompt: the line was just taken
        if user is None or not self.hub.received(user):
            return
        text = line.decode("utf-8", errors="replace")
        if not text.strip():
            return
        try:
            command = parse_line(text)
        except CommandError as e:
            self.deliver(events.Error(e.code, e.text), events.Renderings())
            return
        if command is not None:
            self.hub.execute(user, command)

    def connectionLost(self, reason: Any = None) -> None:
        user = self.user
        if user is not None:
            self.hub.disconnect(user, "ssh connection closed", clean=True)

    # -- printing above the line being typed ---------------------------------

    def _input_line(self) -> bytes:
        """The prompt and the line typed so far, the cursor where it was."""
        self._prompt()
        line = self.ps[0] + b"".join(self.lineBuffer)
        back = len(self.lineBuffer) - self.lineBufferIndex
        return line + b"\x1b[%dD" % back if back else line

    def _redraw(self) -> None:
        """Write the prompt and the line typed so far, cursor where it was."""
        self.terminal.write(self._input_line())

    def _print(self, text: bytes, prompt: bool = True) -> None:
        """
        Print lines above the prompt: C{text}, wrapped to the terminal's
        width with CR LF line ends (L{screen_lines}).
        """
        terminal = self.terminal
        if terminal is None or terminal.transport is None:
            return
        channel = self._channel
        if channel is not None and len(channel.buf) > self._limit():
            # The client stopped reading (its window is shut): what waits
            # for it is bounded like every door's output queue.
            user = self.user
            if user is not None and user.connected:
                self.hub.too_slow(user, len(channel.buf))
            self.user = None
            channel.buf = b""
            channel.conn.transport.loseConnection()
            return
        self._prompt_after = self._prompt_after and prompt
        batcher = self.hub.batcher
        if batcher is None:
            # No running server (tests): at once.
            self._gathered.append(text)
            self.flush()
            return
        # Everything for this terminal in one reactor turn goes out as one
        # write, so one SSH packet, prompt included: packets, not the
        # cipher, are what SSH costs (docs/performance.md).
        if not self._gathered:
            batcher.add(self)  # type: ignore[arg-type]
        self._gathered.append(text)

    def flush(self) -> None:
        """Write the lines gathered, then the prompt and the typed line."""
        lines, self._gathered = self._gathered, []
        terminal = self.terminal
        if not lines or terminal is None or terminal.transport is None:
            return
        lines.insert(0, b"\r\x1b[2K")
        if self._prompt_after:
            lines.append(self._input_line())
        self._prompt_after = True
        if isinstance(terminal, Screen):
            # Past the terminal emulation's own write: these line ends are
            # CR LF already.
            terminal.raw(b"".join(lines), self._channel)
        else:
            terminal.transport.write(b"".join(lines))

    # -- IParticipant --------------------------------------------------------

    def attached(self, user: object) -> None:
        assert user is None or isinstance(user, User)
        self.user = user

    def deliver(self, event: object, renderings: object) -> None:
        user = self.user
        if user is None:
            return
        shown = variant(event, user)  # type: ignore[arg-type]
        if shown is None:
            return
        assert isinstance(renderings, events.Renderings)
        # Once per event for every terminal of this width.
        key = ("ssh", shown, self.width)
        text = renderings.cache.get(key)
        if text is None:
            text = renderings.get(
                key, screen_lines, renderings, event, shown, self.width
            )
        # After a goodbye the session ends: no prompt under it.
        self._print(text, prompt=event.__class__ is not events.Goodbye)

    @property
    def address(self) -> str | None:
        """See L{IParticipant.address}."""
        if self.door == "onion" or self._channel is None:
            return None
        peer = self._channel.conn.transport.getPeer()
        host = getattr(getattr(peer, "address", peer), "host", None)
        return host if isinstance(host, str) else None

    def close(self, reason: str, why: str = "normal") -> None:
        """
        End the session once what was sent is written: exit status 0, and
        the screen left as it is (no terminal reset).
        """
        channel = self._channel
        if channel is None or channel.closing:
            return
        self.flush()
        if isinstance(self.terminal, Screen):
            self.terminal.release()  # before the exit status, in order
        channel.conn.sendRequest(channel, b"exit-status", struct.pack(">L", 0))
        channel.loseConnection()

    def abort(self) -> None:
        self.close("aborted")


def screen_lines(
    renderings: events.Renderings, event: object, shown: object, width: int
) -> bytes:
    """
    What a terminal C{width} columns wide prints for an event: the telnet
    door's rendering (shared with it), wrapped, each line ending in CR LF.
    """
    key = ("telnet", shown)
    wire = renderings.cache.get(key)
    if wire is None:
        wire = renderings.get(key, encode, event, shown)
    return b"".join(
        part + b"\r\n"
        for line in wire.split(b"\r\n")
        if line
        for part in wrap(line, width)
    )


def wrap(line: bytes, width: int) -> list[bytes]:
    """
    C{line} in pieces no wider than C{width} columns on the screen, colour
    codes (which take none) kept with the text they colour.
    """
    if width <= 0 or len(_ANSI.sub(b"", line)) <= width:
        return [line]
    pieces: list[bytes] = []
    current, shown, i = bytearray(), 0, 0
    text = line.decode("utf-8", errors="replace")
    while i < len(text):
        match = _ANSI.match(text[i:].encode("utf-8"))
        if match is not None:
            current += match.group(0)
            i += len(match.group(0).decode("ascii"))
            continue
        if shown == width:
            pieces.append(bytes(current))
            current, shown = bytearray(b"  "), 2
        current += text[i].encode("utf-8")
        shown += 1
        i += 1
    pieces.append(bytes(current))
    return pieces


class ChatUserAuth(userauth.SSHUserAuthServer):
    """
    The user authentication service, with tchat's pace, and
    keyboard-interactive besides public keys and passwords: one prompt
    that says an empty answer makes you a guest.
    """

    # A client gets a few tries, not twenty; the password prompt answers
    # at once (the password itself is checked once in, like any login).
    attemptsBeforeDisconnect = 6
    passwordDelay = 0
    loginTimeout = 120

    _asked: defer.Deferred[bytes] | None = None

    def serviceStarted(self) -> None:
        super().serviceStarted()
        if b"password" in self.supportedAuthentications:
            self.supportedAuthentications.insert(
                self.supportedAuthentications.index(b"password"),
                b"keyboard-interactive",
            )

    def auth_keyboard_interactive(self, packet: bytes) -> defer.Deferred[Any]:
        """Ask for the password of the account of the user name, once."""
        if self._asked is not None:
            return defer.fail(error.UnauthorizedLogin("already asking"))
        user: bytes = self.user or b""
        transport = self.transport
        assert transport is not None
        name = _name(user) or "this name"
        prompt = f"Password of {name}'s account (Enter: come in as a guest): "
        transport.sendPacket(
            userauth.MSG_USERAUTH_INFO_REQUEST,
            NS(b"tchat")
            + NS(b"")
            + NS(b"")
            + struct.pack(">L", 1)
            + NS(prompt.encode("utf-8"))
            + b"\x00",
        )
        asked: defer.Deferred[bytes] = defer.Deferred()
        self._asked = asked

        def answered(password: bytes) -> defer.Deferred[Any]:
            creds = credentials.UsernamePassword(user, password)
            login: defer.Deferred[Any] = self.portal.login(creds, None, IConchUser)
            return login

        return asked.addCallback(answered)

    def ssh_USERAUTH_INFO_RESPONSE(self, packet: bytes) -> None:
        asked, self._asked = self._asked, None
        if asked is None:
            return
        try:
            (count,) = struct.unpack(">L", packet[:4])
            answers = getNS(packet[4:], count) if count else [b""]
        except (struct.error, ValueError):
            asked.errback(error.UnauthorizedLogin("a garbled answer"))
            return
        asked.callback(answers[0] if count else b"")


class ChatTransport(transport_module.SSHServerTransport):
    """
    conch's server transport, writing the chat's many small packets with
    less Python per packet: the MAC in one call of OpenSSL's HMAC, and the
    random padding cut from a pool of C{os.urandom} bytes rather than a
    system call each. The packets are the ones conch makes (RFC 4253, 6);
    during a key exchange, with compression or without a MAC, conch's own
    writer makes them.
    """

    _pool = b""
    _pool_at = 0
    _mac: tuple[object, str] | None = None
    """The ciphers in use and their MAC's hash, by its OpenSSL name."""
    _write: Any = None

    def connectionMade(self) -> None:
        # Packets go to the socket at once while Twisted holds nothing for
        # it (as every door's first write of a turn does, see
        # tchat.output.socket_writer): no trip through the poller each.
        self._write = socket_writer(unwrapped(self.transport))
        super().connectionMade()

    def sendPacket(self, messageType: int, payload: bytes) -> None:
        ciphers = self.currentEncryptions
        mac = ciphers.outMAC
        if (
            self._keyExchangeState != self._KEY_EXCHANGE_NONE
            or self.outgoingCompression
            or not mac[0]
        ):
            super().sendPacket(messageType, payload)
            return
        known = self._mac
        if known is None or known[0] is not ciphers:
            known = self._mac = (ciphers, mac[0]().name)
        payload = bytes((messageType,)) + payload
        size = ciphers.encBlockSize
        total = 5 + len(payload)
        pad = size - total % size
        if pad < 4:
            pad += size
        at = self._pool_at
        if at + pad > len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._pool_at = at + pad
        packet = (
            struct.pack("!LB", total + pad - 4, pad)
            + payload
            + self._pool[at : at + pad]
        )
        sequence = self.outgoingPacketSequence
        digest = hmac.digest(mac.key, struct.pack(">L", sequence) + packet, known[1])
        write = self._write or self.transport.write
        write(ciphers.encrypt(packet) + digest)
        self.outgoingPacketSequence = (sequence + 1) & 0xFFFFFFFF


def _unfinished(protocol: Any) -> None:
    """Disconnect C{protocol} unless its client has logged in."""
    if isinstance(getattr(protocol, "service", None), connection.SSHConnection):
        return
    transport = protocol.transport
    if transport is not None and getattr(transport, "connected", True):
        _log.info("ssh: a client that did not log in in time was disconnected")
        protocol.sendDisconnect(
            transport_module.DISCONNECT_PROTOCOL_ERROR, b"too slow to log in"
        )


class SSHDoor(factory.SSHFactory):
    """
    The SSH door's factory for one listener.

    @ivar door: What users of this listener are shown as (C{ssh}).
    """

    noisy = False
    protocol = ChatTransport
    refusal = staticmethod(line_refusal)
    """How a connection over the limits is told why (L{tchat.gate.Gate}):
    a line before the SSH banner, which clients show or ignore."""

    def __init__(self, hub: ChatFactory, key: keys.Key, door: str = "ssh") -> None:
        self.hub = hub
        self.door = door
        self.portal = portal.Portal(ChatRealm(hub, door), [AnyKey(), AnyPassword()])
        self.privateKeys = {b"ssh-ed25519": key}
        self.publicKeys = {b"ssh-ed25519": key.public()}
        self.services = dict(factory.SSHFactory.services)
        self.services[b"ssh-userauth"] = ChatUserAuth

    def getPrimes(self) -> None:
        return None

    def buildProtocol(self, addr: IAddress | None) -> Any:
        # As SSHFactory does, without its log line for every connection:
        # no moduli file, so no exchange that needs one.
        protocol = Factory.buildProtocol(self, addr)
        assert protocol is not None
        protocol.supportedPublicKeys = [b"ssh-ed25519"]
        protocol.supportedKeyExchanges = [
            kex
            for kex in protocol.supportedKeyExchanges
            if not _kex.isDynamicPrimesGroup(kex)
        ]
        # A client that does not get as far as logging in (a stalled key
        # exchange, a login never finished) is let go, like any silent
        # connection.
        deadline = self.hub.limits.silent_timeout
        if deadline:
            self.hub.clock.callLater(deadline, _unfinished, protocol)
        return protocol
