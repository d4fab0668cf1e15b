# -*- test-case-name: tests.test_bans -*-
"""
Tests for L{tchat.bans}: what a C{/ban} target bans, whom a ban or a mute
hits, and the bans in force, without a hub.  What operators see of them is
tested in L{tests.test_operations}.
"""

import math

from twisted.trial.unittest import SynchronousTestCase

from tchat.bans import (
    BanList,
    Mutes,
    banned_text,
    canonical,
    describe,
    hits,
    matches,
    names_a_user,
    target_patterns,
    user_patterns,
)
from tchat.history import Ban, BanKind
from tchat.model import User
from tchat.palette import PALETTE
from tchat.text import nick_key
from tests.support import FakeParticipant

NOW = 1_700_000_000.0


def ban(
    kind: BanKind,
    pattern: str,
    id: int = 1,
    expires: float | None = None,
    reason: str = "",
) -> Ban:
    """A ban set by the operator account C{root}."""
    return Ban(id, kind, pattern, reason, "root", NOW - 10, expires)


def user(nick: str, address: str | None = None, code: str = "ABCD-EFGH") -> User:
    """A user from C{address}, or through the onion when it is C{None}."""
    door = "telnet" if address is not None else "onion"
    return User(
        FakeParticipant(door, address),
        nick,
        door,
        PALETTE["red"],
        code=code,
        address=address,
    )


class DescribeTests(SynchronousTestCase):
    def test_describe(self) -> None:
        """
        A ban reads as what it bans: an address, a nick, an onion session.
        """
        self.assertEqual(
            [
                describe(ban("address", "10.0.0.0/8")),
                describe(ban("nick", "troll*")),
                describe(ban("session", "ABCD-EFGH")),
            ],
            ["address 10.0.0.0/8", "nick troll*", "onion session ABCD-EFGH"],
        )

    def test_banned_text(self) -> None:
        """
        A banned client is told the server, how long is left, and why, when
        those are known.
        """
        self.assertEqual(
            banned_text(ban("nick", "x"), "tchat", NOW), "you are banned from tchat"
        )
        self.assertEqual(
            banned_text(
                ban("nick", "x", expires=NOW + 5400, reason="spam"), "hub", NOW
            ),
            "you are banned from hub for 1h 30m: spam",
        )


class MatchesTests(SynchronousTestCase):
    """
    L{matches} and L{hits}: whom a ban covers.
    """

    def test_address_in_network(self) -> None:
        """
        An address ban covers the addresses of its network and no others,
        nor clients with no address or something that is not one.
        """
        network = ban("address", "192.0.2.0/24")
        covered = [
            matches(network, address, None, None)
            for address in ("192.0.2.7", "192.0.2.255", "198.51.100.1", None, "unix")
        ]
        self.assertEqual(covered, [True, True, False, False, False])

    def test_ipv4_mapped(self) -> None:
        """
        An IPv4 client seen through an IPv6 socket (an IPv4-mapped address)
        is covered by a ban on its IPv4 network.
        """
        network = ban("address", "192.0.2.0/24")
        self.assertTrue(matches(network, "::ffff:192.0.2.7", None, None))
        self.assertFalse(matches(network, "::ffff:198.51.100.1", None, None))

    def test_ipv6(self) -> None:
        """
        An IPv6 ban covers its IPv6 network, and no IPv4 address.
        """
        network = ban("address", "2001:db8::/32")
        self.assertTrue(matches(network, "2001:db8:1::5", None, None))
        self.assertFalse(matches(network, "2001:db9::5", None, None))
        self.assertFalse(matches(network, "192.0.2.7", None, None))

    def test_nick_pattern(self) -> None:
        """
        A nick ban covers nick keys matching its pattern: C{*} any run of
        characters, C{?} exactly one.
        """
        star, one = ban("nick", "troll*"), ban("nick", "?ob")
        self.assertEqual(
            [
                matches(star, None, key, None)
                for key in ("troll", "trollface", "atroll")
            ],
            [True, True, False],
        )
        self.assertEqual(
            [matches(one, None, key, None) for key in ("bob", "rob", "ob", "bobby")],
            [True, True, False, False],
        )
        self.assertFalse(matches(star, "192.0.2.7", None, "TROLL"))

    def test_nick_pattern_look_alikes(self) -> None:
        """
        A nick pattern is folded as nicks are (L{nick_key}) when it is
        applied: it covers look-alikes (digits for letters, Cyrillic
        letters, fullwidth forms), and C{*} and C{?} keep working.
        """
        star, one = ban("nick", "troll*"), ban("nick", "?ob")
        for nick in (
            "Tr0llFace",
            "tr\u043ell",
            "TR0LL",
            "\uff54\uff52\uff4f\uff4c\uff4c",
        ):
            self.assertTrue(matches(star, None, nick_key(nick), None), ascii(nick))
        self.assertFalse(matches(star, None, nick_key("atr0ll"), None))
        for nick in ("b0b", "R0B", "\u0441ob"):
            self.assertTrue(matches(one, None, nick_key(nick), None), ascii(nick))
        self.assertFalse(matches(one, None, nick_key("b0bby"), None))

    def test_patterns_kept_before_skeletons(self) -> None:
        """
        Bans made before nick keys were skeletons keep their patterns in
        the case-folded form; they still cover the nick and its
        look-alikes (C{m} has the key C{rn}).
        """
        old = ban("nick", "mike")
        for nick in ("mike", "Mike", "rnike", "MIKE"):
            self.assertTrue(matches(old, None, nick_key(nick), None), nick)
        self.assertFalse(matches(old, None, nick_key("mika"), None))

    def test_session(self) -> None:
        """
        A session ban covers that resume code only.
        """
        session = ban("session", "ABCD-EFGH")
        self.assertTrue(matches(session, None, None, "ABCD-EFGH"))
        self.assertFalse(matches(session, None, None, "ABCD-EFGX"))
        self.assertFalse(matches(session, None, "abcd-efgh", None))

    def test_hits(self) -> None:
        """
        A ban hits a user by their address, their nick in any case, or
        their session.
        """
        clear, onion = user("TrollFace", "192.0.2.7"), user("Bob", code="WXYZ-2345")
        self.assertTrue(hits(ban("address", "192.0.2.0/24"), clear))
        self.assertTrue(hits(ban("nick", "troll*"), clear))
        self.assertFalse(hits(ban("nick", "troll*"), onion))
        self.assertTrue(hits(ban("session", "WXYZ-2345"), onion))
        self.assertTrue(hits(ban("nick", "bob"), onion))
        self.assertFalse(hits(ban("address", "0.0.0.0/0"), onion))


class TargetTests(SynchronousTestCase):
    """
    L{target_patterns}, L{names_a_user}, L{user_patterns} and L{canonical}:
    what C{/ban} and C{/unban} targets mean.
    """

    def test_nick_prefix(self) -> None:
        """
        C{nick:X} bans the nick or pattern X, case-folded, whatever the
        prefix's case.
        """
        self.assertEqual(target_patterns("nick:Bob"), [("nick", "bob")])
        self.assertEqual(target_patterns("NICK:Troll*"), [("nick", "troll*")])

    def test_empty_nick(self) -> None:
        """
        C{nick:} with nothing after it cannot be banned, and says why.
        """
        error = self.assertRaises(ValueError, target_patterns, "nick:")
        self.assertEqual(str(error), "nick: needs a nick or pattern")

    def test_ip_prefix(self) -> None:
        """
        C{ip:} bans an address or network, as bans keep it; anything else
        after it is refused, quoting what was typed.
        """
        self.assertEqual(target_patterns("ip:192.0.2.7"), [("address", "192.0.2.7/32")])
        self.assertEqual(
            target_patterns("IP:2001:DB8::/32"), [("address", "2001:db8::/32")]
        )
        error = self.assertRaises(ValueError, target_patterns, "ip:bob")
        self.assertEqual(str(error), "'bob' is not an IP address")

    def test_bare_addresses(self) -> None:
        """
        A bare address or network bans it, canonical: a host address as a
        /32 or /128, a network by its first address.
        """
        self.assertEqual(
            [
                target_patterns(target)
                for target in ("192.0.2.7", "192.0.2.77/24", "2001:DB8::1")
            ],
            [
                [("address", "192.0.2.7/32")],
                [("address", "192.0.2.0/24")],
                [("address", "2001:db8::1/128")],
            ],
        )

    def test_patterns(self) -> None:
        """
        A bare target with C{*} or C{?} is a nick pattern, case-folded.
        """
        self.assertEqual(target_patterns("Troll*"), [("nick", "troll*")])
        self.assertEqual(target_patterns("b?b"), [("nick", "b?b")])

    def test_plain_nick(self) -> None:
        """
        A plain nick names a user: there is no pattern to ban until that
        user is found.
        """
        self.assertIsNone(target_patterns("bob"))
        self.assertEqual(
            [
                names_a_user(t)
                for t in ("bob", "nick:bob", "ip:1.2.3.4", "1.2.3.4", "b*", "b?b")
            ],
            [True, False, False, False, False, False],
        )

    def test_user_patterns(self) -> None:
        """
        Banning a clear-net user bans their address; banning an onion user
        (who all come from the local tor) bans their session and their nick.
        """
        self.assertEqual(
            user_patterns(user("Bob", "192.0.2.7")), [("address", "192.0.2.7/32")]
        )
        self.assertEqual(
            user_patterns(user("Bob", "2001:db8::1")), [("address", "2001:db8::1/128")]
        )
        self.assertEqual(
            user_patterns(user("Bob", code="WXYZ-2345")),
            [("session", "WXYZ-2345"), ("nick", "bob")],
        )
        # The nick as it reads, case-folded (not its key): /bans shows it.
        banned = user_patterns(user("B0b", code="WXYZ-2345"))
        self.assertEqual(banned, [("session", "WXYZ-2345"), ("nick", "b0b")])
        self.assertTrue(hits(ban("nick", banned[1][1]), user("bob", code="OTHR-CODE")))

    def test_ipv4_mapped_banned_as_ipv4(self) -> None:
        """
        A client that came in by a dual-stack listener has an IPv4-mapped
        address: banning them (or that address) bans the IPv4 address,
        which is what their next connection is matched as; a ban kept in
        the mapped form still hits them.
        """
        mapped = user("Bob", "::ffff:192.0.2.7")
        self.assertEqual(user_patterns(mapped), [("address", "192.0.2.7/32")])
        self.assertEqual(
            target_patterns("::ffff:192.0.2.7"), [("address", "192.0.2.7/32")]
        )
        self.assertEqual(canonical("ip:::ffff:192.0.2.0/120"), "192.0.2.0/24")
        self.assertTrue(hits(ban("address", "::ffff:c000:207/128"), mapped))
        self.assertTrue(
            hits(ban("address", "::ffff:c000:207/128"), user("B", "192.0.2.7"))
        )

    def test_canonical(self) -> None:
        """
        An C{/unban} target is looked for as bans keep it: addresses and
        networks canonical, nicks and patterns case-folded.
        """
        self.assertEqual(
            [
                canonical(t)
                for t in ("ip:192.0.2.7", "192.0.2.77/24", "nick:Troll*", "Bob")
            ],
            ["192.0.2.7/32", "192.0.2.0/24", "troll*", "bob"],
        )


class BanListTests(SynchronousTestCase):
    """
    L{BanList}: the bans in force.
    """

    def setUp(self) -> None:
        self.lapsed: list[Ban] = []
        self.bans = BanList(self.lapsed.append)

    def test_find(self) -> None:
        """
        A client is found banned by their address, nick (in any case) or
        session, and not otherwise.
        """
        network = ban("address", "192.0.2.0/24", id=1)
        troll = ban("nick", "troll*", id=2)
        session = ban("session", "WXYZ-2345", id=3)
        for each in (network, troll, session):
            self.bans.add(each)
        self.assertIs(self.bans.find(NOW, address="192.0.2.9"), network)
        self.assertIs(self.bans.find(NOW, nick="TrollFace"), troll)
        self.assertIs(self.bans.find(NOW, session="WXYZ-2345"), session)
        self.assertIsNone(self.bans.find(NOW, "198.51.100.1", "bob", "ABCD-EFGH"))
        self.assertIsNone(BanList().find(NOW, "192.0.2.9"))

    def test_lapsed_dropped_and_told(self) -> None:
        """
        A ban whose time is up is dropped when it is come across, and the
        C{lapsed} callback is told of it; bans still running stay.
        """
        gone = ban("address", "192.0.2.0/24", id=1, expires=NOW)
        running = ban("address", "192.0.2.0/24", id=2, expires=NOW + 1)
        self.bans.add(gone)
        self.bans.add(running)
        self.assertIs(self.bans.find(NOW, address="192.0.2.9"), running)
        self.assertEqual(self.lapsed, [gone])
        self.assertEqual(len(self.bans), 1)
        self.assertIsNone(self.bans.find(NOW + 1, address="192.0.2.9"))
        self.assertEqual(self.lapsed, [gone, running])
        self.assertEqual(len(self.bans), 0)

    def test_in_force(self) -> None:
        """
        The bans in force are listed by number, without the lapsed ones.
        """
        for id, expires in ((5, None), (2, NOW + 60), (9, NOW - 1), (3, None)):
            self.bans.add(ban("nick", f"n{id}", id=id, expires=expires))
        self.assertEqual([b.id for b in self.bans.in_force(NOW)], [2, 3, 5])
        self.assertEqual([b.id for b in self.lapsed], [9])

    def test_numbers(self) -> None:
        """
        The highest number in force is known (0 for none); a ban added under
        a number in use replaces it; removing lifts it, or says there was
        none.
        """
        self.assertEqual(self.bans.highest(), 0)
        self.bans.add(ban("nick", "a", id=4))
        self.bans.add(ban("nick", "b", id=7))
        self.assertEqual(self.bans.highest(), 7)
        replacement = ban("nick", "c", id=4)
        self.bans.add(replacement)
        self.assertEqual(len(self.bans), 2)
        self.assertIs(self.bans.remove(4), replacement)
        self.assertIsNone(self.bans.remove(4))
        self.assertIsNone(self.bans.find(NOW, nick="c"))
        self.assertEqual(self.bans.highest(), 7)

    def test_with_pattern(self) -> None:
        """
        The bans of one pattern are found by it, whatever their kind.
        """
        first = ban("address", "192.0.2.0/24", id=1)
        second = ban("address", "192.0.2.0/24", id=2)
        self.bans.add(first)
        self.bans.add(second)
        self.bans.add(ban("nick", "bob", id=3))
        self.assertEqual(self.bans.with_pattern("192.0.2.0/24"), [first, second])
        self.assertEqual(self.bans.with_pattern("nobody"), [])


class MutesTests(SynchronousTestCase):
    """
    L{Mutes}: who may not talk, across reconnects.
    """

    def setUp(self) -> None:
        self.mutes = Mutes()

    def test_mute_and_left(self) -> None:
        """
        A muted user is told how long is left; none once it has lapsed.
        """
        bob = user("bob", "192.0.2.7")
        self.assertIsNone(Mutes.left(bob, NOW))
        self.mutes.mute(bob, NOW + 60)
        self.assertEqual(bob.muted_until, NOW + 60)
        self.assertEqual(Mutes.left(bob, NOW + 15), 45)
        self.assertIsNone(Mutes.left(bob, NOW + 60))
        self.assertIsNone(bob.muted_until)

    def test_until_lifted(self) -> None:
        """
        A mute without end stays until lifted.
        """
        bob = user("bob", "192.0.2.7")
        self.mutes.mute(bob, math.inf)
        self.assertEqual(Mutes.left(bob, NOW + 10 * 365 * 86400), math.inf)
        self.mutes.unmute(bob)
        self.assertIsNone(Mutes.left(bob, NOW))

    def test_reconnect_same_address(self) -> None:
        """
        A clear-net user who comes back from the same address is muted
        again, under any nick; someone from another address is not.
        """
        self.mutes.mute(user("bob", "192.0.2.7"), NOW + 60)
        again, other = user("robert", "192.0.2.7"), user("bob", "192.0.2.8")
        self.mutes.apply(again, NOW + 30)
        self.mutes.apply(other, NOW + 30)
        self.assertEqual(again.muted_until, NOW + 60)
        self.assertIsNone(other.muted_until)

    def test_reconnect_onion_session(self) -> None:
        """
        An onion user is muted by session: resuming it brings the mute
        back, while another onion user is not muted.
        """
        self.mutes.mute(user("bob", code="WXYZ-2345"), math.inf)
        resumed, other = user("bob", code="WXYZ-2345"), user("bob", code="ABCD-EFGH")
        self.mutes.apply(resumed, NOW)
        self.mutes.apply(other, NOW)
        self.assertEqual(resumed.muted_until, math.inf)
        self.assertIsNone(other.muted_until)

    def test_unmute_forgets(self) -> None:
        """
        A lifted mute is not brought back by reconnecting.
        """
        bob = user("bob", "192.0.2.7")
        self.mutes.mute(bob, math.inf)
        self.mutes.unmute(bob)
        self.assertIsNone(bob.muted_until)
        again = user("bob", "192.0.2.7")
        self.mutes.apply(again, NOW)
        self.assertIsNone(again.muted_until)

    def test_lapsed_forgotten(self) -> None:
        """
        A mute that lapsed before the user came back is not applied, and is
        forgotten for good.
        """
        self.mutes.mute(user("bob", "192.0.2.7"), NOW + 60)
        late = user("bob", "192.0.2.7")
        self.mutes.apply(late, NOW + 60)
        self.assertIsNone(late.muted_until)
        earlier = user("bob", "192.0.2.7")
        self.mutes.apply(earlier, NOW)
        self.assertIsNone(earlier.muted_until)
