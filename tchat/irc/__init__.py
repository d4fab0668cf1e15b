# -*- test-case-name: tests.test_irc -*-
"""
The IRC door: weechat, irssi, HexChat, bots and bridges in the same rooms
as every other door's users.

The protocol is RFC 1459/2812 as clients speak it (modern.ircdocs.horse),
with the IRCv3 capabilities clients ask for (L{CAPABILITIES}).  Each IRC
command becomes one of the hub's commands, each hub event becomes the IRC
lines a client expects; nothing about IRC reaches the hub.

  - Registration (C{NICK}, C{USER}, optional C{PASS}, C{CAP} negotiation
    and SASL PLAIN against tchat's accounts) ends with the welcome
    numerics 001-005 and the MOTD.  The user is not put into the default
    room: IRC clients join rooms themselves.
  - Users of other doors are C{nick!nick@door.tchat}, never an address.
  - Lines are at most 512 bytes (8,191 with message tags): a longer one
    gets 417 and is skipped.  Bad UTF-8 is replaced, control characters
    are stripped (as on every door); a line that is not IRC gets the
    numeric that says so.
  - The connection burst of a client (CAP, NICK, USER, JOINs, WHO, MODE)
    is answered freely; chat lines (C{PRIVMSG}, C{NOTICE}, C{TOPIC},
    C{NICK}, C{JOIN}) count against the hub's flood limits, queries against
    a bucket of their own.  Everything sent goes through the connection's
    bounded output queue.

Twisted's C{twisted.words.protocols.irc} gives the numerics and the
message parser; lines are read by a bounded L{LineReceiver} (its C{IRC}
protocol's reader keeps an unbounded buffer and fails on bad UTF-8).
"""

from tchat.irc.protocol import IRCConnection, IRCFactory

__all__ = ["IRCConnection", "IRCFactory"]
