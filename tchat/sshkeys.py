# -*- test-case-name: tests.test_sshkeys -*-
"""
SSH public keys as users paste them: one OpenSSH public key line
(C{ssh-ed25519 AAAA... comment}, a C{.pub} file's line), checked and
given its fingerprint, the identity a key binds to an account (see
C{docs/accounts.md}, "Keys").

Pure functions, run on the reactor thread: the line's length is capped
before anything parses it, and only public keys are parsed (a private
key's passphrase derivation is never started), so no input is slow.
"""

import base64
import binascii
import re
from dataclasses import dataclass

from twisted.conch.ssh.keys import FingerprintFormats, Key

MAX_KEY_LINE = 8 * 1024
"""The longest public key line taken, in characters: a 16384-bit RSA key's
line, the largest there is, is under 3 KiB."""

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384
"""RSA keys are taken from 2048 bits (shorter ones are breakable) to
16384 (OpenSSH's own limit: a larger one is slow to check)."""

KINDS = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-p256",
    "ecdsa-sha2-nistp384": "ecdsa-p384",
    "ecdsa-sha2-nistp521": "ecdsa-p521",
    "ssh-rsa": "rsa",
}
"""The key types taken, by OpenSSH's name, with what users are shown."""

_TAKEN = (
    "use an ed25519 key (ssh-keygen -t ed25519), an ECDSA key, or RSA of "
    f"{MIN_RSA_BITS} bits or more"
)
_EXAMPLE = "paste the one line of your .pub file: ssh-ed25519 AAAA... comment"
_TYPE = re.compile(r"[A-Za-z0-9@._-]{1,64}")
_FINGERPRINT = re.compile(r"(?:SHA256:)?([A-Za-z0-9+/]{43})=?", re.IGNORECASE)


class PublicKeyError(ValueError):
    """
    A line that is not a public key tchat takes.

    @ivar text: A sentence for the user saying why, and what to paste.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass(frozen=True)
class PublicKey:
    """
    A checked public key.

    @ivar kind: What users are shown of its type: C{ed25519},
        C{ecdsa-p256}, C{rsa}...
    @ivar bits: Its size.
    @ivar fingerprint: As C{ssh-keygen -l} shows it: C{SHA256:} and the
        unpadded base64 of the SHA-256 of the key's blob.
    @ivar comment: What followed the key on its line (often
        C{user@host}); empty when nothing did.
    @ivar line: The line as kept: type, base64 and comment, one space
        apart.
    """

    kind: str
    bits: int
    fingerprint: str
    comment: str
    line: str

    def describe(self) -> str:
        """Its type (and size, for RSA) and comment: C{ed25519, alice@laptop}."""
        kind = f"{self.kind} {self.bits}" if self.kind == "rsa" else self.kind
        return f"{kind}, {self.comment}" if self.comment else kind


def fingerprint(key: Key) -> str:
    """
    C{key}'s fingerprint as OpenSSH shows it (C{ssh-keygen -l}, the
    C{authorized_keys} logs): C{SHA256:} then the unpadded base64 of the
    SHA-256 of its blob.  The identity a key binds to an account.
    """
    digest: str = key.fingerprint(FingerprintFormats.SHA256_BASE64)
    return "SHA256:" + digest.rstrip("=")


def parse_public_key(line: str) -> PublicKey:
    """
    Check one pasted OpenSSH public key line.

    @raise PublicKeyError: For a line too long, a private key, a
        certificate, a key type not taken (DSA, security keys), an RSA key
        too short or too long, or anything that is not a public key.
    """
    if len(line) > MAX_KEY_LINE:
        raise PublicKeyError(
            f"that is longer than any public key ({MAX_KEY_LINE} characters); "
            + _EXAMPLE
        )
    line = line.strip()
    if "PRIVATE KEY" in line or "PuTTY-User-Key-File" in line:
        raise PublicKeyError(
            "that is a private key: never show it to anyone; " + _EXAMPLE
        )
    words = line.split(None, 2)
    if len(words) < 2 or _TYPE.fullmatch(words[0]) is None:
        raise PublicKeyError("that is not an OpenSSH public key; " + _EXAMPLE)
    kind, data = words[0], words[1]
    comment = " ".join(words[2].split()) if len(words) > 2 else ""
    if "-cert-" in kind:
        raise PublicKeyError(
            "certificates are not taken: paste the key itself (its .pub line)"
        )
    if kind not in KINDS:
        raise PublicKeyError(f"{kind} keys are not taken: {_TAKEN}")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PublicKeyError("the key's data is not base64; " + _EXAMPLE) from None
    try:
        key = Key.fromString(blob, type="blob")
        parsed = key.sshType().decode("ascii")
        bits = key.size()
    except Exception:
        # Twisted's and cryptography's parsers fail on bad blobs with
        # whatever their reading met (struct.error, IndexError, ValueError,
        # BadKeyError...): to the user it is all one.
        raise PublicKeyError(
            "the key's data is damaged or incomplete; " + _EXAMPLE
        ) from None
    if parsed != kind:
        raise PublicKeyError(
            f"the line says {kind} but its data is a {parsed} key; " + _EXAMPLE
        )
    if kind == "ssh-rsa" and not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise PublicKeyError(
            f"RSA keys of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits are taken, and "
            f"this one has {bits}: {_TAKEN}"
        )
    kept = " ".join((kind, data, comment)) if comment else f"{kind} {data}"
    return PublicKey(KINDS[kind], bits, fingerprint(key), comment, kept)


def describe_line(line: str) -> str:
    """
    What a kept key line is, as L{PublicKey.describe} says it; its type
    word alone if it no longer parses.
    """
    try:
        return parse_public_key(line).describe()
    except PublicKeyError:
        return KINDS.get(line.split(" ", 1)[0], "unknown")


def normalize_fingerprint(text: str) -> str | None:
    """
    A fingerprint as a user typed it (C{SHA256:xxxx}, or the base64 part
    alone, padded or not), as it is kept; C{None} when it is none.
    """
    match = _FINGERPRINT.fullmatch(text.strip())
    if match is None:
        return None
    return "SHA256:" + match.group(1)
