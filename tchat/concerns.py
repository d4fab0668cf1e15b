# -*- test-case-name: tests.test_hub -*-
"""
The concerns of the hub (L{Concerns}), how they are put together around
one L{Directory} (L{assemble}), and which of them carries out each kind of
command (L{handlers}).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from tchat import commands as c
from tchat import events
from tchat.accounts import Accounts
from tchat.bans import BanList, Mutes
from tchat.continuity import Continuity
from tchat.delivery import Delivery
from tchat.history import HistoryStore
from tchat.metrics import Metrics
from tchat.model import Directory, Settings, User
from tchat.moderation import Moderation
from tchat.naming import Naming
from tchat.oper import OperatorLogin, Verifier
from tchat.pacing import Pacing
from tchat.passwords import Passwords
from tchat.presence import Presence
from tchat.resume import Resume
from tchat.rooms import Rooms
from tchat.seam import IBackplane
from tchat.sessions import Sessions
from tchat.stats import Stats
from tchat.talk import Talk

Handler = Callable[[User, Any], Deferred[Any] | None]
"""Carries out one kind of command; returns what its effect waits on."""


@dataclass(frozen=True)
class Concerns:
    """
    The parts of the chat the hub is a façade over, each in its own module;
    tests drive them directly.
    """

    delivery: Delivery
    pacing: Pacing
    sessions: Sessions
    rooms: Rooms
    presence: Presence
    talk: Talk
    resume: Resume
    moderation: Moderation
    login: OperatorLogin
    stats: Stats
    bans: BanList
    accounts: Accounts
    naming: Naming
    continuity: Continuity


def assemble(
    settings: Settings,
    directory: Directory,
    store: HistoryStore,
    backplane: IBackplane,
    metrics: Metrics,
    clock: IReactorTime,
    rng: random.Random,
    verify: Verifier,
    passwords: Passwords,
) -> Concerns:
    """
    Make every concern of the hub, each given the others it works with.
    """
    bans, mutes = BanList(lambda ban: store.delete_ban(ban.id)), Mutes()
    delivery = Delivery(directory, backplane, metrics, clock)
    pacing = Pacing(settings, clock, metrics)
    sessions = Sessions(store, directory, clock)
    rooms = Rooms(directory, delivery, backplane, pacing, sessions, store, clock)
    presence = Presence(
        directory,
        delivery,
        backplane,
        pacing,
        sessions,
        rooms,
        bans,
        mutes,
        metrics,
        clock,
        rng,
    )
    accounts_concern = Accounts(
        settings,
        directory,
        delivery,
        backplane,
        store,
        presence,
        sessions,
        passwords,
        metrics,
        clock,
    )
    naming = Naming(directory, delivery, backplane, pacing, presence, bans, clock)
    naming.registered = accounts_concern.holder
    presence.on_leave = accounts_concern.left
    resume = Resume(
        directory,
        delivery,
        backplane,
        store,
        sessions,
        rooms,
        presence,
        pacing,
        bans,
        mutes,
        metrics,
        clock,
    )
    resume.restore_account = accounts_concern.resumed
    continuity = Continuity(directory, delivery, presence, resume, sessions, clock)
    presence.linger = continuity.linger
    resume.carry_on = accounts_concern.carry_on = continuity.take
    return Concerns(
        delivery,
        pacing,
        sessions,
        rooms,
        presence,
        Talk(
            directory,
            delivery,
            backplane,
            pacing,
            rooms,
            presence,
            accounts_concern.keeping,
            metrics,
            clock,
        ),
        resume,
        Moderation(
            directory,
            delivery,
            backplane,
            presence,
            bans,
            mutes,
            store,
            metrics,
            clock,
        ),
        OperatorLogin(
            settings,
            delivery,
            metrics,
            clock,
            verify,
        ),
        Stats(directory, delivery, backplane, bans, store, metrics, clock),
        bans,
        accounts_concern,
        naming,
        continuity,
    )


def handlers(parts: Concerns, settings: Settings) -> dict[type, Handler]:
    """Which concern carries out each kind of command, and how."""
    talk, presence, rooms, resume = (
        parts.talk,
        parts.presence,
        parts.rooms,
        parts.resume,
    )
    moderation, login, delivery = parts.moderation, parts.login, parts.delivery
    stats, accounts, naming = parts.stats, parts.accounts, parts.naming
    keeping, attention = accounts.keeping, accounts.attention
    keyring = accounts.keyring
    return {
        c.Say: lambda u, x: talk.say(u, x.text, False, x.room, x.client_id, x.notice),
        c.Me: lambda u, x: talk.say(u, x.text, True, x.room, x.client_id),
        c.Nick: lambda u, x: naming.nick(u, x.name),
        c.Join: lambda u, x: rooms.join_named(u, x.room),
        c.Part: lambda u, x: rooms.part(u, x.room, x.reason),
        c.Rooms: lambda u, x: rooms.list_rooms(u, x.page),
        c.WhoIs: lambda u, x: rooms.who(u, x.room),
        c.SetTopic: lambda u, x: rooms.topic(u, x.text, x.room),
        c.Msg: lambda u, x: talk.private(u, x.nick, x.text),
        c.ShowMotd: lambda u, x: delivery.tell(u, events.Motd(settings.server.motd)),
        c.ShowHelp: lambda u, x: delivery.tell(u, c.help_for(u.operator is not None)),
        c.ShowStats: lambda u, x: stats.show(u),
        c.Oper: lambda u, x: login.oper(u, x.name, x.password),
        c.Kick: lambda u, x: moderation.kick(u, x.nick, x.reason),
        c.Ban: lambda u, x: moderation.ban(u, x.target, x.duration, x.reason),
        c.Unban: lambda u, x: moderation.unban(u, x.target),
        c.ListBans: lambda u, x: moderation.list_bans(u),
        c.Mute: lambda u, x: moderation.mute(u, x.nick, x.duration),
        c.Unmute: lambda u, x: moderation.unmute(u, x.nick),
        c.Announce: lambda u, x: moderation.announce(u, x.text),
        c.SetMotd: lambda u, x: moderation.set_motd(u, x.lines),
        c.Rehash: lambda u, x: moderation.rehash(u),
        c.Quit: lambda u, x: presence.quit(u, x.reason),
        c.Color: lambda u, x: naming.colour(u, x.choice),
        c.ShowHistory: lambda u, x: resume.page(u, x.limit, x.room, x.before, x.after),
        c.Resume: lambda u, x: resume.resume_code(u, x.code),
        c.ResumeRooms: lambda u, x: resume.resume_rooms(u, x.rooms),
        c.Register: lambda u, x: accounts.register(u, x.password),
        c.Login: lambda u, x: accounts.login(u, x.name, x.password),
        c.TokenLogin: lambda u, x: accounts.token_login(u, x.token),
        c.KeyLogin: lambda u, x: accounts.key_login(u, x.fingerprint),
        c.Logout: lambda u, x: accounts.logout(u),
        c.Password: lambda u, x: accounts.credentials.password(u, x.old, x.new),
        c.Unregister: lambda u, x: accounts.credentials.unregister(u, x.password),
        c.ShowAccount: lambda u, x: keeping.show(u),
        c.ShowMentions: lambda u, x: keeping.mentions(u),
        c.Away: lambda u, x: attention.away(u, x.text),
        c.Back: lambda u, x: attention.back(u),
        c.Ignore: lambda u, x: attention.ignore(u, x.nick),
        c.Unignore: lambda u, x: attention.unignore(u, x.nick),
        c.AddKey: lambda u, x: keyring.add(u, x.line),
        c.ListKeys: lambda u, x: keyring.list(u),
        c.RemoveKey: lambda u, x: keyring.remove(u, x.fingerprint),
        c.Settle: lambda u, x: presence.settle(u),
    }
