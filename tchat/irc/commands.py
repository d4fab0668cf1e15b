# -*- test-case-name: tests.test_irc -*-
"""
The IRC commands of a registered client, each as the hub's commands.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from twisted.words.protocols import irc as words

from tchat import commands as c
from tchat import events
from tchat.irc.base import Base
from tchat.irc.wire import HISTORY_MAX, parse_msgid

WHO_MOST = 100
"""The most users a WHO by mask lists."""


class Commands(Base):
    """C{irc_COMMAND(params)} for each command a registered client may send."""

    __slots__ = ()

    def irc_PING(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "PING", "Not enough parameters")
            return
        self.send(f":{self.server} PONG {self.server} :{params[0]}\r\n".encode())

    def irc_PONG(self, params: list[str]) -> None:
        pass  # any line shows the client is alive (dataReceived)

    def irc_QUIT(self, params: list[str]) -> None:
        reason = params[0] if params else None
        if self.user is not None and self.user.connected:
            self.execute(c.Quit(reason))
        else:
            self.send(b"ERROR :Closing link: quit\r\n")
            self.close("quit")

    def irc_JOIN(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "JOIN", "Not enough parameters")
            return
        user = self.user
        assert user is not None
        if params[0] == "0":
            for room in list(user.rooms):
                self.quietly(c.Part(room.name), ("PART", room.name))
            return
        for name in params[0].split(","):
            if name:
                if not name.startswith("#"):
                    self.reply(words.ERR_NOSUCHCHANNEL, name, "No such channel")
                    continue
                if any(r.name.casefold() == name.casefold() for r in user.rooms):
                    continue
                self.quietly(c.Join(name), ("JOIN", name))

    def irc_PART(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "PART", "Not enough parameters")
            return
        reason = params[1] if len(params) > 1 and params[1] else None
        for name in params[0].split(","):
            if name:
                self.quietly(c.Part(name, reason), ("PART", name))

    def irc_PRIVMSG(self, params: list[str], command: str = "PRIVMSG") -> None:
        # A NOTICE is never answered with an error (RFC 1459, 4.4.2).
        answer = command == "PRIVMSG"
        if not params:
            if answer:
                self.reply(words.ERR_NORECIPIENT, f"No recipient given ({command})")
            return
        if len(params) < 2 or not params[1]:
            if answer:
                self.reply(words.ERR_NOTEXTTOSEND, "No text to send")
            return
        text = params[1]
        action = False
        if text.startswith("\x01"):
            inner = text.strip("\x01")
            kind, _, rest = inner.partition(" ")
            if kind.upper() != "ACTION":
                return  # CTCP queries are not chat: not passed on
            text, action = rest, True
        for target in params[0].split(",")[:4]:
            if not target:
                continue
            if target.startswith("#"):
                room = self._room_named(target)
                if room is None:
                    if not answer:
                        continue
                    if self.hub.directory.room(target) is None:
                        self.reply(words.ERR_NOSUCHCHANNEL, target, "No such channel")
                    else:
                        self.reply(
                            words.ERR_CANNOTSENDTOCHAN, target, "Cannot send to channel"
                        )
                    continue
                said = (
                    c.Me(text, room) if action else c.Say(text, room, notice=not answer)
                )
                self.execute(said, (command, target))
            else:
                line = f"* {self.nick} {text}" if action else text
                self.execute(c.Msg(target, line), (command, target))

    def irc_NOTICE(self, params: list[str]) -> None:
        self.irc_PRIVMSG(params, "NOTICE")

    def irc_TOPIC(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "TOPIC", "Not enough parameters")
            return
        room = self._room_named(params[0])
        if room is None:
            if self.hub.directory.room(params[0]) is None:
                self.reply(words.ERR_NOSUCHCHANNEL, params[0], "No such channel")
            else:
                self.reply(
                    words.ERR_NOTONCHANNEL, params[0], "You're not on that channel"
                )
            return
        text = params[1] if len(params) > 1 else None
        self.execute(c.SetTopic(text, room), ("TOPIC", room))

    def irc_NAMES(self, params: list[str]) -> None:
        if not params:
            self.reply(words.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        for name in params[0].split(","):
            self._ask("names", name)

    def irc_WHO(self, params: list[str]) -> None:
        target = params[0] if params else "*"
        if target.startswith("#"):
            self._ask("who", target)
            return
        pattern = target.casefold()
        if "*" in pattern or "?" in pattern:
            found = [
                u
                for u in self.hub.directory.users.values()
                if u.connected and fnmatchcase(u.nick.casefold(), pattern)
            ][:WHO_MOST]
        else:
            other = self.hub.directory.user(target)
            found = [other] if other is not None and other.connected else []
        for other in found:
            self._who_line(
                "*",
                events.Member(
                    other.nick, other.door, other.account is not None, other.away
                ),
            )
        self.reply(words.RPL_ENDOFWHO, target, "End of /WHO list")

    def irc_TAGMSG(self, params: list[str]) -> None:
        pass  # tags alone (typing notices): tchat has none to pass on

    def irc_WHOIS(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nick = params[-1].split(",")[0]
        other = self.hub.directory.user(nick)
        if other is None or not other.connected:
            self.reply(words.ERR_NOSUCHNICK, nick, "No such nick/channel")
            self.reply(words.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
            return
        self.reply(
            words.RPL_WHOISUSER,
            other.nick,
            other.nick,
            f"{other.door}.tchat",
            "*",
            self.realname_of(other.nick, other.door),
        )
        rooms = " ".join(r.name for r in other.rooms)
        if rooms:
            self.reply("319", other.nick, rooms)
        self.reply(words.RPL_WHOISSERVER, other.nick, self.server, "tchat")
        if other.account is not None:
            self.reply("330", other.nick, other.account.name, "is logged in as")
        if other.away:
            self.reply(words.RPL_AWAY, other.nick, other.away)
        self.reply(words.RPL_ENDOFWHOIS, other.nick, "End of /WHOIS list")

    def irc_LIST(self, params: list[str]) -> None:
        self._listing = []
        only = params[0].split(",") if params and params[0].startswith("#") else []
        self._list_only = {name.casefold() for name in only if name} or None
        self.reply(words.RPL_LISTSTART, "Channel", "Users  Name")
        self.execute(c.Rooms(1), ("LIST", ""))

    def irc_MODE(self, params: list[str]) -> None:
        if not params:
            self.reply(words.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
            return
        target = params[0]
        if target.startswith("#"):
            if len(params) == 1:
                self.reply(words.RPL_CHANNELMODEIS, target, "+n", "")
            elif params[1].lstrip("+") in ("b", "e", "I"):
                code = {"b": "368", "e": "349", "I": "347"}[params[1].lstrip("+")]
                self.reply(code, target, "End of list")
            else:
                self.reply(
                    words.ERR_CHANOPRIVSNEEDED,
                    target,
                    "Channel modes are not set on tchat",
                )
            return
        if target.casefold() != self.nick.casefold():
            self.reply(words.ERR_USERSDONTMATCH, "Cannot change mode for other users")
        elif len(params) == 1:
            self.reply(words.RPL_UMODEIS, "+i")
        elif params[1].strip("+-") not in ("i", "w", ""):
            self.reply(words.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")

    def irc_AWAY(self, params: list[str]) -> None:
        if params and params[0]:
            self.quietly(c.Away(params[0]), ("AWAY", ""))
            self.reply(words.RPL_NOWAWAY, "You have been marked as being away")
        else:
            self.quietly(c.Back(), ("AWAY", ""))
            self.reply(words.RPL_UNAWAY, "You are no longer marked as being away")

    def irc_ISON(self, params: list[str]) -> None:
        nicks = " ".join(params).split()
        here = [n for n in nicks if (u := self.hub.directory.user(n)) and u.connected]
        self.reply(words.RPL_ISON, " ".join(here))

    def irc_USERHOST(self, params: list[str]) -> None:
        found = []
        for nick in params[:5]:
            other = self.hub.directory.user(nick)
            if other is not None and other.connected:
                away = "-" if other.away else "+"
                found.append(f"{other.nick}={away}{other.nick}@{other.door}.tchat")
        self.reply(words.RPL_USERHOST, " ".join(found))

    def irc_MOTD(self, params: list[str]) -> None:
        self._motd(self.hub.settings.server.motd)

    def irc_OPER(self, params: list[str]) -> None:
        if len(params) < 2:
            self.reply(words.ERR_NEEDMOREPARAMS, "OPER", "Not enough parameters")
            return
        self.oper_pending = True  # answered when the password is checked
        self.execute(c.Oper(params[0], params[1]), ("OPER", params[0]))

    def irc_KICK(self, params: list[str]) -> None:
        if len(params) < 2:
            self.reply(words.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
            return
        reason = params[2] if len(params) > 2 else None
        self.execute(c.Kick(params[1], reason), ("KICK", params[1]))

    def irc_CHATHISTORY(self, params: list[str]) -> None:
        if len(params) < 3:
            self.reply(words.ERR_NEEDMOREPARAMS, "CHATHISTORY", "Not enough parameters")
            return
        sub, target = params[0].upper(), params[1]
        limit_text = params[-1]
        limit = int(limit_text) if limit_text.isdecimal() else HISTORY_MAX
        limit = max(1, min(limit, HISTORY_MAX))
        room = self._room_named(target)
        if room is None:
            self.send(
                f"FAIL CHATHISTORY INVALID_TARGET {sub} {target} "
                ":You are not in that channel\r\n".encode()
            )
            return
        ref = None
        if params[2].startswith("msgid="):
            ref = parse_msgid(params[2][len("msgid=") :])
            known = self.hub.directory.room(room)
            if ref is not None and (known is None or ref[0] != known.epoch):
                ref = None  # of an earlier epoch of the room: not comparable
        elif params[2] != "*" or sub != "LATEST":
            self.send(
                f"FAIL CHATHISTORY INVALID_PARAMS {sub} "
                ":Give LATEST *, or a msgid=ID reference, and a limit\r\n".encode()
            )
            return
        context = ("CHATHISTORY", room)
        if sub == "BEFORE" and ref is not None:
            self.execute(c.ShowHistory(limit, room, before=ref[1]), context)
        elif sub in ("AFTER", "LATEST") and ref is not None:
            # What came after the reference, the oldest first.
            self.execute(c.ShowHistory(limit, room, after=ref[1]), context)
        elif sub in ("LATEST", "AFTER"):
            self.execute(c.ShowHistory(limit, room), context)
        else:
            self.send(
                f"FAIL CHATHISTORY INVALID_PARAMS {sub} "
                ":Give LATEST, BEFORE or AFTER, a msgid=ID of this room\r\n".encode()
            )
