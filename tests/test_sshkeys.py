# -*- test-case-name: tests.test_sshkeys -*-
"""
Tests for SSH keys bound to accounts: parsing and fingerprints
(L{tchat.sshkeys}), C{/key add}, C{/key list} and C{/key remove}
(L{tchat.keyring}) through the hub, and logging in by a key
(L{tchat.accounts.Accounts.key_login}).

The keys below were made once with C{ssh-keygen} (C{-t ed25519}, C{-t
ecdsa -b 256/384/521}, C{-t rsa -b 2048/1024}, C{-t dsa}, and a
certificate with C{-s}), and each fingerprint is what C{ssh-keygen -lf}
printed for it.  The stores' own rules are tested in
C{tests/test_account_store.py}.
"""

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.conch.ssh.keys import Key
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat import events
from tchat.config import ServerConfig
from tchat.history import MAX_KEYS, KeyRecord
from tchat.history.memory import MemoryAccounts
from tchat.hub import ChatFactory
from tchat.keyring import NO_KEY
from tchat.model import User
from tchat.sshkeys import (
    MAX_KEY_LINE,
    PublicKey,
    PublicKeyError,
    describe_line,
    fingerprint,
    normalize_fingerprint,
    parse_public_key,
)
from tchat.text import nick_key
from tests.support import FakeParticipant, of, started_hub
from tests.test_accounts import NOW, PASSWORD, AccountsTestCase

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDOivEFiOf9d8gdk+skLinMpNEVXSOyu10Au6M1u"
    "zWCX alice@laptop"
)

ED25519_FP = "SHA256:pUoHKLD/CJgKdY0Tz3f8U+udheRMrQGmoDqI0VkAKpg"

ED25519_BOB = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAGc1Zn5eVRHKpRlKVkTUquy1K+xd0BompAy4vq8"
    "oF4b bob"
)

ED25519_BOB_FP = "SHA256:sf+EfwRgjMKpztSh3zoGiDcHupqvlIcov0ChdtxqFqs"

P256 = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEA8"
    "YJ65Ne/E12hdXjjHMb4ZJQWrz6hORyFAmpGoWCQu1B0agjfKaE+X/eRGpwh1f+tVke2CRWGhwXC/"
    "uJDwKm4= p256"
)

P256_FP = "SHA256:eyKTiPDKunhDOIvwxduZRRXmktxOIXe3izbsY2b0Ml4"

P384 = (
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBDR/"
    "3ZiMYVcxLGPfE3d9CCCiOgB6eyU4OoC8OCr9xPtHRGXdeu8vbuT/W9RsnINspcOGiMG84AiycZDi"
    "HJSDwk75AhtJBLB6KLN4g12WrSmUpUJo24Bp1H6MZGTyXAfBbg== p384"
)

P384_FP = "SHA256:vxo9blqP5i8E0WxEL0L0OjulnJEgZsDrdyJxwMTSDCU"

P521 = (
    "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAHe"
    "Q358cgtlT2JjPO1XfRrGQB5C0s0MvTvmpb/ctKhvuKxrk4E3bTH8lBlLk7qSFk6CVABx6X9zdECR"
    "Uu1lzA2U1gBSuL7hJvz+8e4Bb/cCY31qyyoEKe4LHA4pYztNVSAlrB+VovuGCGWhrIaScXfwKiuM"
    "/cMP98du1jKkT+U87H2hkw== p521"
)

P521_FP = "SHA256:h1KYU5M9gY0AGs/N/7LGtQl0k7zb/ClyGtiYGxNaADg"

RSA_2048 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfeJu82iVtj7YJOSTUaDShaOyDoyp4j57/hm9D"
    "Gz3nm1wuqsSvIrx6TYa69AEZFwJwoUWJfFDcu2n/RAsEsuvf/C4aXz6NsEakPwzSEfXOHqHvarV1"
    "M/7F8L2iYXtIn25y/F3yeGWV2C/rnypqf2rs58HGC0VJlhD1s630Ur8eiIqgliBJPBJGXbtkAfou"
    "l04/yLQS7HM5NOZEJ7bjOFAzvfFXDZZO+JXfriMJtKGkWoXrRTx3LhbGmMVnYfxuYtBBVnJReTLz"
    "82S8Z3TDzsisxbprUH3HnTy9APIp045KEX3hHy3zRMlLz1HW/7kScE9NafkcWXtaJOsdc6f4SspP"
    " rsa2048"
)

RSA_2048_FP = "SHA256:23NQLlwqIBaomsPdJR1XLckVXGKPZnHWLrfKvpJj+ZI"

RSA_1024 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDCYyVkIMgD7GafV7B8ij3MmOqa1lFWcc6jMuDR"
    "sI1wTRY/9o6KENboIV6jzw3x112e2IhtwAuBhPnlE83PZs2Tow+UKza6R888pHfSPZQZ30naYIp1"
    "y2xZVGOfqV/M6BCPKThr8OVAd0oWde+Mo2TBFGaZqng3A4qQllpKbPzZcw== rsa1024"
)

DSA = (
    "ssh-dss AAAAB3NzaC1kc3MAAACBAOTGFEph/vRQAdNpCF5mOP8X468BoEP1Be6W7F7O2Pc8VRl3"
    "D9kiL3FV2eYqsw8PNKFT0lgwioZm0zruWQoPdCitsGKDTosWGcuISwPH8u6KMyinFqXaPOkCFz0k"
    "AZ1JYMb//kKLi3jwDVFZLQxPmWQM71eta8foxfGPsAw/a+8DAAAAFQD97kh0XTlYewMTwfVupaZI"
    "TlEwiQAAAIAG66yvX5gsWbkFWqgA5er9rhSFKmeazRQ9E/nlO17PHCqfgJa27NYRLOgV4qdpdXFe"
    "fkXCZKpI6Xiz2cxQ3qyMk1lqxxL/eY91cPe4NHjDZ348Sv4cnfUzVZ5YJv/phu/pR+OGKIRWACVL"
    "ZkB1fBwJGwHK07lXaxxUF5BH1fLCIQAAAIEA2d+ItziEBGTFjlOnQFjxO7s2siZ/wTg1TLad7Y+l"
    "DYqBysZoL3U1LuPBNQz6xSRdtO2qs6O6d1Xmf2qdOBknMydhJrFOI/mu56ydJ8fB6c/q3I4w0pyO"
    "CSS2hTVIPZ87KeBlZROLBz7BXnU3ZWstpqysCu7WX81DIzZKAICWG8Q= root@vm"
)

CERTIFICATE = (
    "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2g"
    "uY29tAAAAILdIpzE08e1QvQjl741V6CGQ5tXaYN+vdCYzULiSw0/zAAAAIAGc1Zn5eVRHKpRlKVk"
    "TUquy1K+xd0BompAy4vq8oF4bAAAAAAAAAAAAAAABAAAABHRlc3QAAAAHAAAAA2JvYgAAAAAAAAA"
    "A//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1"
    "hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJ"
    "taXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQA"
    "AACAzorxBYjn/XfIHZPrJC4pzKTRFV0jsrtdALujNbs1glwAAAFMAAAALc3NoLWVkMjU1MTkAAAB"
    "AWEf8lLAhFdxvelbty1wo4/w82jIGdwVfBg6YoVP6tYB3P/O3iUutOKhrkcv7lwnYyS50nxtlcof"
    "culigZIOWDw== bob"
)

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY----- "
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW "
    "-----END OPENSSH PRIVATE KEY-----"
)
"""A private key pasted on one line (its start: no key is kept here)."""


def fresh_key(comment: str = "") -> str:
    """A new ed25519 public key line, as the SSH door gives it."""
    key = Key(Ed25519PrivateKey.generate().public_key())
    line: str = key.toString("OPENSSH", comment=comment or None).decode("ascii")
    return line


class ParseTests(SynchronousTestCase):
    """
    L{parse_public_key}: the key types taken, with the fingerprints
    C{ssh-keygen -l} shows for them; everything else refused, saying why.
    """

    def refused(self, line: str) -> str:
        """What the user is told of C{line}."""
        with self.assertRaises(PublicKeyError) as caught:
            parse_public_key(line)
        text: str = caught.exception.text
        return text

    def test_taken(self) -> None:
        """
        ed25519, the three ECDSA curves and RSA of 2048 bits are taken,
        each with its fingerprint as ssh-keygen prints it, its size and
        its comment; the line is kept as it was pasted.
        """
        for line, kind, bits, expected, comment in (
            (ED25519, "ed25519", 256, ED25519_FP, "alice@laptop"),
            (P256, "ecdsa-p256", 256, P256_FP, "p256"),
            (P384, "ecdsa-p384", 384, P384_FP, "p384"),
            (P521, "ecdsa-p521", 521, P521_FP, "p521"),
            (RSA_2048, "rsa", 2048, RSA_2048_FP, "rsa2048"),
        ):
            self.assertEqual(
                parse_public_key(line),
                PublicKey(kind, bits, expected, comment, line),
                kind,
            )

    def test_fingerprint_of_a_key(self) -> None:
        """
        L{fingerprint} of the key the SSH door holds is the one kept for
        its line: the door and the store agree.
        """
        key = Key.fromString(ED25519.encode("ascii"))
        self.assertEqual(fingerprint(key), ED25519_FP)

    def test_spacing_and_comment(self) -> None:
        """
        Blanks around the line and within the comment are tidied; a line
        without a comment is taken, and described by its type alone.
        """
        kind, data, _ = ED25519.split(" ")
        found = parse_public_key(f"  {kind}   {data}  my   laptop \n")
        self.assertEqual(
            (found.line, found.comment, found.describe()),
            (f"{kind} {data} my laptop", "my laptop", "ed25519, my laptop"),
        )
        bare = parse_public_key(f"{kind} {data}")
        self.assertEqual((bare.line, bare.describe()), (f"{kind} {data}", "ed25519"))
        self.assertEqual(parse_public_key(RSA_2048).describe(), "rsa 2048, rsa2048")

    def test_private_key(self) -> None:
        """
        A private key is refused, and the user warned never to show it.
        """
        self.assertIn("that is a private key", self.refused(PRIVATE))
        self.assertIn("private key", self.refused("PuTTY-User-Key-File-3: ssh-ed25519"))

    def test_garbage(self) -> None:
        """
        Anything that is not a public key line is refused, saying what to
        paste.
        """
        kind, data, _ = ED25519.split(" ")
        for line, said in (
            ("", "not an OpenSSH public key"),
            ("hello there", "hello keys are not taken"),
            ("AAAAC3NzaC1lZDI1NTE5", "not an OpenSSH public key"),
            ('from="10.0.0.1" ' + ED25519, "not an OpenSSH public key"),
            (f"{kind} not*base64", "not base64"),
            (f"{kind} {data[:-7]}", "not base64"),
            (f"{kind} {data[:-12]}AAAA", "damaged or incomplete"),
            (f"{kind} AAAA", "damaged or incomplete"),
            ("ssh-rsa " + data, "says ssh-rsa but its data is a ssh-ed25519 key"),
        ):
            self.assertIn(said, self.refused(line), line)

    def test_types_not_taken(self) -> None:
        """
        DSA keys, security keys and certificates are refused, saying what
        is taken.
        """
        self.assertIn("ssh-dss keys are not taken: use an ed25519", self.refused(DSA))
        self.assertIn(
            "sk-ssh-ed25519@openssh.com keys are not taken",
            self.refused("sk-ssh-ed25519@openssh.com AAAA x"),
        )
        self.assertIn("certificates are not taken", self.refused(CERTIFICATE))

    def test_short_rsa(self) -> None:
        """
        An RSA key of fewer than 2048 bits is refused, saying its size.
        """
        self.assertIn(
            "RSA keys of 2048 to 16384 bits are taken, and this one has 1024",
            self.refused(RSA_1024),
        )

    def test_too_long(self) -> None:
        """
        A line longer than any public key is refused before anything parses
        it.
        """
        line = ED25519 + " " + "x" * MAX_KEY_LINE
        self.assertIn("longer than any public key", self.refused(line))

    def test_describe_line(self) -> None:
        """
        A kept line is described as when it was added; one that no longer
        parses, by its type word.
        """
        self.assertEqual(describe_line(ED25519), "ed25519, alice@laptop")
        self.assertEqual(describe_line("ssh-rsa AAAA"), "rsa")
        self.assertEqual(describe_line("what"), "unknown")

    def test_normalize_fingerprint(self) -> None:
        """
        A fingerprint is taken as ssh-keygen prints it, without its
        C{SHA256:}, padded, or with the prefix in any case; anything else
        is none.
        """
        digest = ED25519_FP.removeprefix("SHA256:")
        for typed in (ED25519_FP, digest, digest + "=", "sha256:" + digest):
            self.assertEqual(normalize_fingerprint(typed), ED25519_FP, typed)
        for typed in ("", "SHA256:", "MD5:" + digest, digest[:-1], "a b"):
            self.assertIsNone(normalize_fingerprint(typed), typed)


class SSHParticipant(FakeParticipant):
    """A user of the SSH door."""

    def __init__(self) -> None:
        super().__init__("ssh", "192.0.2.9")


class KeyCommandTests(AccountsTestCase):
    """
    C{/key add}, C{/key list} and C{/key remove}, through the hub.
    """

    def keys(self, nick: str) -> list[KeyRecord]:
        """The keys kept for C{nick}'s account."""
        return self.successResultOf(self.store.accounts.keys(nick_key(nick)))

    def test_add_list_remove(self) -> None:
        """
        A pasted key is added, listed with its fingerprint, type, comment
        and when it was added, and removed by its fingerprint.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.AddKey(ED25519))
        self.assertEqual(
            self.statuses(participant),
            [f"key {ED25519_FP} (ed25519, alice@laptop) added to alice"],
        )
        self.assertEqual(self.keys("alice"), [KeyRecord(ED25519_FP, ED25519, NOW)])
        self.clock.advance(60)
        self.do(alice, c.AddKey(RSA_2048), c.ListKeys())
        (listing,) = of(events.Listing, participant.take())
        self.assertEqual(listing.kind, "keys")
        self.assertEqual(listing.title, f"SSH keys of alice (2 of {MAX_KEYS}):")
        self.assertEqual(len(listing.lines), 2)
        self.assertTrue(
            listing.lines[0].startswith(f"{ED25519_FP} (ed25519, alice@laptop), added ")
        )
        self.assertTrue(
            listing.lines[1].startswith(f"{RSA_2048_FP} (rsa 2048, rsa2048), added ")
        )
        self.assertEqual(
            listing.data["keys"][1],
            {"fingerprint": RSA_2048_FP, "key": RSA_2048, "added": NOW + 60},
        )
        self.do(alice, c.RemoveKey(ED25519_FP.removeprefix("SHA256:")))
        self.assertEqual(
            self.statuses(participant), [f"key {ED25519_FP} removed from alice"]
        )
        self.assertEqual([r.fingerprint for r in self.keys("alice")], [RSA_2048_FP])
        self.do(alice, c.RemoveKey(RSA_2048_FP), c.ListKeys())
        (listing,) = of(events.Listing, participant.take())
        self.assertEqual(
            (listing.title, listing.lines),
            ("alice has no SSH keys: /key add to add one", ()),
        )

    def test_add_the_connection_key(self) -> None:
        """
        C{/key add} alone adds the key the SSH connection authenticated
        with; off the SSH door there is none, and the user is told to
        paste one.
        """
        line = fresh_key()
        participant, alice = self.registered("alice", participant=SSHParticipant())
        alice.ssh_key = line
        self.do(alice, c.AddKey(None))
        found = parse_public_key(line)
        self.assertEqual(
            self.statuses(participant),
            [f"key {found.fingerprint} (ed25519) added to alice"],
        )
        self.assertEqual(self.keys("alice"), [KeyRecord(found.fingerprint, line, NOW)])
        telnet_p, bob = self.registered("bob")
        self.do(bob, c.AddKey(None))
        self.assertEqual(self.error(telnet_p), events.Error("bad-arguments", NO_KEY))

    def test_not_logged_in(self) -> None:
        """
        A guest has no account to add keys to, list or remove them from.
        """
        participant, guest = self.arrive("carol")
        self.do(guest, c.AddKey(ED25519), c.ListKeys(), c.RemoveKey(ED25519_FP))
        self.assertEqual(
            [e.code for e in of(events.Error, participant.take())],
            ["not-logged-in"] * 3,
        )
        self.assertIsNone(
            self.successResultOf(self.store.accounts.key_owner(ED25519_FP))
        )

    def test_mistakes(self) -> None:
        """
        A key that does not parse, a fingerprint that is none, and one the
        account does not have are each refused, saying so.
        """
        participant, alice = self.registered("alice")
        self.do(alice, c.AddKey(RSA_1024))
        error = self.error(participant)
        self.assertEqual(error.code, "key-invalid")
        self.assertIn("this one has 1024", error.text)
        self.do(alice, c.AddKey(PRIVATE))
        self.assertIn("that is a private key", self.error(participant).text)
        self.do(alice, c.RemoveKey("nope"))
        self.assertEqual(self.error(participant).code, "bad-arguments")
        self.do(alice, c.RemoveKey(ED25519_FP))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "no-such-key", f"alice has no key {ED25519_FP}; /key list shows them"
            ),
        )
        self.assertEqual(self.keys("alice"), [])

    def test_one_account_per_key(self) -> None:
        """
        A key on one account cannot be added to another (nor again to the
        same one), and the other cannot remove it.
        """
        alice_p, alice = self.registered("alice")
        bob_p, bob = self.registered("bob")
        self.do(alice, c.AddKey(ED25519))
        self.forget()
        self.do(bob, c.AddKey(ED25519))
        error = self.error(bob_p)
        self.assertEqual(error.code, "key-taken")
        self.assertIn(f"key {ED25519_FP} (ed25519, alice@laptop) is on an", error.text)
        self.do(alice, c.AddKey(ED25519))
        self.assertEqual(self.error(alice_p).code, "key-taken")
        self.do(bob, c.RemoveKey(ED25519_FP))
        self.assertEqual(self.error(bob_p).code, "no-such-key")
        self.assertEqual(len(self.keys("alice")), 1)
        self.assertEqual(self.keys("bob"), [])

    def test_limit(self) -> None:
        """
        An account has at most L{MAX_KEYS} keys: the next is refused,
        saying so.
        """
        participant, alice = self.registered("alice")
        for _ in range(MAX_KEYS):
            self.do(alice, c.AddKey(fresh_key()))
        self.assertEqual(len(self.statuses(participant)), MAX_KEYS)
        self.do(alice, c.AddKey(ED25519))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "too-many-keys",
                f"alice has {MAX_KEYS} keys, as many as an account may: "
                "/key remove one first",
            ),
        )
        self.assertEqual(len(self.keys("alice")), MAX_KEYS)

    def test_unregister_removes_keys(self) -> None:
        """
        Deleting the account unbinds its keys: they log in to nothing, and
        can be added to another account.
        """
        _, alice = self.registered("alice")
        self.do(alice, c.AddKey(ED25519), c.Unregister(PASSWORD))
        self.assertFalse(alice.registered)
        self.assertIsNone(
            self.successResultOf(self.store.accounts.key_owner(ED25519_FP))
        )
        self.assertEqual(self.keys("alice"), [])
        bob_p, bob = self.registered("bob")
        self.do(bob, c.AddKey(ED25519))
        self.assertEqual(len(self.statuses(bob_p)), 1)

    def test_help(self) -> None:
        """C{/help} lists C{/key}."""
        participant, alice = self.arrive("alice")
        self.do(alice, c.ShowHelp())
        (shown,) = of(events.Help, participant.take())
        self.assertIn("/key add|list|remove", [usage for usage, _ in shown.commands])


class BrokenKeys(MemoryAccounts):
    """Accounts whose SSH keys cannot be read."""

    def key_owner(self, fingerprint: str) -> Deferred[str | None]:
        return fail(OSError("disk I/O error"))


class KeyLoginTests(AccountsTestCase):
    """
    The SSH door logs its user in by their key, with no password.
    """

    def make_hub(self, *args: Any, **kwargs: Any) -> ChatFactory:
        # Sessions linger for a minute after their connection is lost.
        return started_hub(
            self,
            self.clock,
            server=ServerConfig(reconnect_grace=60),
            history=self.history,
            store=self.store,
            accounts=self.accounts,
            operators=self.operators,
            passwords=self.passwords,
        )

    def with_key(self) -> tuple[FakeParticipant, User]:
        """alice, registered, with the ed25519 key on her account."""
        participant, alice = self.registered("alice")
        self.do(alice, c.AddKey(ED25519))
        self.forget()
        return participant, alice

    def ssh_user(self) -> tuple[FakeParticipant, User]:
        """Someone who just connected to the SSH door, not yet settled."""
        participant = SSHParticipant()
        user = self.hub.connect(participant)
        self.participants.append(participant)
        participant.take()
        return participant, user

    def test_logs_in(self) -> None:
        """
        A user whose key is on an account is logged in to it, as by a
        password: the account's nick, the mark, the last login; then they
        are announced, once, as alice.
        """
        _, alice = self.with_key()
        self.do(alice, c.Quit(None))
        bob_p, _ = self.arrive("bob")
        self.clock.advance(60)
        participant, user = self.ssh_user()
        self.do(user, c.KeyLogin(ED25519_FP), c.Settle())
        self.assertEqual((user.nick, user.registered), ("alice", True))
        self.assertEqual(
            self.logged_in(participant), events.LoggedIn("alice", None, None, NOW)
        )
        self.assertEqual(
            [(p.kind, p.nick) for p in of(events.Presence, bob_p.take())],
            [("join", "alice")],
        )

    def test_direct(self) -> None:
        """
        C{Accounts.key_login}, called directly, logs in too, and answers
        once it has.
        """
        _, alice = self.with_key()
        self.do(alice, c.Quit(None))
        participant, user = self.ssh_user()
        done = self.hub.concerns.accounts.key_login(user, ED25519_FP)
        assert done is not None
        self.successResultOf(done)
        self.assertEqual((user.nick, user.registered), ("alice", True))

    def test_unknown_key(self) -> None:
        """
        A key on no account does nothing and says nothing: the user stays
        who they are.
        """
        self.with_key()
        participant, user = self.ssh_user()
        guest = user.nick
        self.do(user, c.KeyLogin(ED25519_BOB_FP))
        self.assertEqual(participant.take(), [])
        self.assertEqual((user.nick, user.registered), (guest, False))

    def test_already_logged_in(self) -> None:
        """
        The account's own user, logging in by its key again, is left as
        they are.
        """
        participant, alice = self.with_key()
        self.do(alice, c.KeyLogin(ED25519_FP))
        self.assertEqual(participant.take(), [])
        self.assertTrue(alice.registered)

    def test_carries_on_a_lingering_session(self) -> None:
        """
        A key login to an account whose session lingers (its connection
        lost a moment ago) carries that session on: rooms, account and
        what was missed; nobody else sees a thing, and the session knows
        the key of its new connection.
        """
        bob_p, bob = self.arrive("bob")
        _, alice = self.with_key()
        self.do(alice, c.Join("#dev"))
        self.hub.disconnect(alice, "reset")
        self.forget()
        self.do(bob, c.Msg("alice", "hello"))
        participant, user = self.ssh_user()
        user.ssh_key = ED25519
        self.do(user, c.KeyLogin(ED25519_FP), c.Settle())
        self.assertIs(participant.user, alice)
        told = participant.take()
        (continued,) = of(events.Continued, told)
        self.assertEqual(
            (continued.account, continued.rooms), ("alice", ("#lobby", "#dev"))
        )
        self.assertEqual([m.text for m in of(events.PrivateMessage, told)], ["hello"])
        self.assertEqual(of(events.Presence, bob_p.take()), [])
        self.assertEqual((alice.door, alice.ssh_key), ("ssh", ED25519))

    def test_store_failure(self) -> None:
        """
        When the keys cannot be read, the user is told once (and it is
        logged), and stays who they are.
        """
        self.store.accounts = BrokenKeys()
        self.hub = self.make_hub()
        participant, user = self.ssh_user()
        self.do(user, c.KeyLogin(ED25519_FP))
        self.assertEqual(
            self.error(participant),
            events.Error(
                "account-unavailable",
                "accounts cannot be reached right now; try again soon",
            ),
        )
        self.assertFalse(user.registered)
