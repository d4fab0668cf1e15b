# -*- test-case-name: tests.test_hub -*-
"""
L{ChatFactory}: the one hub every door shares.

The hub is a façade.  It has the concerns of the chat (L{Rooms},
L{Presence}, L{Talk}, L{Resume}, L{Moderation}, L{OperatorLogin},
L{Accounts}, L{Pacing}, L{Stats}) put together around one L{Directory} of
users and rooms (L{tchat.concerns.assemble}), runs
start and stop, carries out each user's commands in the order they were
sent, and receives what the other nodes of the chat send (it is the
backplane's L{IHubInbox}).  It knows no wire format, no transport and no
cluster: doors adapt to it, and the backplane it is given decides whether
this node is the whole chat or one node of many.
"""

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tchat import commands as c
from tchat import events
from tchat.backplane import LocalBackplane
from tchat.concerns import assemble, handlers
from tchat.config import (
    AccountsConfig,
    HistoryConfig,
    LimitsConfig,
    OperatorsConfig,
    ServerConfig,
)
from tchat.gate import Admission
from tchat.history import HistoryStore, Loaded, MemoryStore
from tchat.interfaces import IParticipant
from tchat.metrics import Metrics
from tchat.model import Directory, Room, Settings, User
from tchat.moderation import Reloader
from tchat.oper import Verifier, verify_in_thread
from tchat.ordering import InOrder
from tchat.output import Batcher
from tchat.pacing import SWEEP_INTERVAL, Warn
from tchat.passwords import Hashing, Passwords
from tchat.seam import (
    Audience,
    BansKnown,
    BansLifted,
    BansMade,
    Draft,
    IBackplane,
    IHubInbox,
    MotdChanged,
    OperatorRequest,
    Request,
    TakenOver,
)

_FOR_OPERATORS = frozenset(c.OPERATOR_COMMANDS)


@implementer(IHubInbox)
class ChatFactory:
    """
    The chat hub: users, rooms, and the fan-out of what they say.

    The name is the design's: it is the one place chat is made, whatever
    the door. It is not a Twisted protocol factory; each door has its own.

    @ivar settings: The configuration in force.
    @ivar directory: This node's users and rooms.
    @ivar store: Where history, sessions and bans are kept.
    @ivar backplane: The other nodes of the chat, or none.
    @ivar concerns: The parts of the chat the hub is a façade over.
    @ivar admission: Who may connect: the doors' gates share it.
    @ivar batcher: Gathers each client's writes per reactor turn (the
        running server sets one; without it, doors write at once).
    """

    _log = Logger()

    def __init__(
        self,
        config: ServerConfig,
        clock: IReactorTime,
        rng: random.Random | None = None,
        history: HistoryConfig | None = None,
        store: HistoryStore | None = None,
        operators: OperatorsConfig | None = None,
        verify: Verifier | None = None,
        metrics: Metrics | None = None,
        limits: LimitsConfig | None = None,
        backplane: IBackplane | None = None,
        accounts: AccountsConfig | None = None,
        passwords: Passwords | None = None,
    ) -> None:
        """
        @param config: The C{[server]} section.
        @param clock: Where timestamps come from.
        @param rng: Picks guest nicks; tests pass a seeded one.
        @param history: The C{[history]} section.
        @param store: Where history is kept; in memory by default.  Call
            L{start} before connecting anyone.
        @param operators: The C{[operators]} section.
        @param verify: Checks operator passwords; by default in a thread.
        @param metrics: Where the hub counts what it does.
        @param limits: The C{[limits]} section.
        @param backplane: The other nodes of the chat; by default none
            (L{LocalBackplane} over C{store}).
        @param accounts: The C{[accounts]} section.
        @param passwords: Hashes and checks account passwords; by default
            in threads of its own (L{Hashing}) on the global reactor.
        """
        settings = self.settings = Settings(
            config,
            history if history is not None else HistoryConfig(),
            limits if limits is not None else LimitsConfig(),
            operators if operators is not None else OperatorsConfig(),
            accounts if accounts is not None else AccountsConfig(),
        )
        self._clock = clock
        metrics = self.metrics = metrics if metrics is not None else Metrics()
        self.store = store if store is not None else MemoryStore(settings.history)
        self.store.observe_write = metrics.history_write.observe
        self.backplane = (
            backplane if backplane is not None else LocalBackplane(self.store)
        )
        self.admission = Admission(settings.limits, clock, metrics)
        self.batcher: Batcher | None = None
        directory = self.directory = Directory(clock, settings)
        if passwords is None:
            from twisted.internet import reactor

            passwords = Hashing(settings.accounts, reactor)
        self.passwords = passwords
        self.concerns = parts = assemble(
            settings,
            directory,
            self.store,
            self.backplane,
            metrics,
            clock,
            rng if rng is not None else random.Random(),
            verify if verify is not None else verify_in_thread,
            passwords,
        )
        delivery = parts.delivery
        self._handlers = handlers(parts, settings)
        self._in_order = InOrder(self._dispatch, delivery, metrics)
        self._sweeping = LoopingCall(self._sweep)
        self._sweeping.clock = clock
        self._ready: list[Deferred[None]] | None = []
        self.backplane.attach(self, directory)

    # -- what the doors, the admin door and the controls read --------------

    @property
    def config(self) -> ServerConfig:
        """The C{[server]} settings in force."""
        return self.settings.server

    @property
    def history(self) -> HistoryConfig:
        """The C{[history]} settings in force."""
        return self.settings.history

    @property
    def limits(self) -> LimitsConfig:
        """The C{[limits]} settings in force."""
        return self.settings.limits

    @property
    def clock(self) -> IReactorTime:
        """Where the hub's time comes from; doors time their limits by it."""
        return self._clock

    @property
    def users(self) -> int:
        """How many users are connected."""
        return len(self.directory.users)

    @property
    def rooms(self) -> int:
        """How many rooms exist."""
        return len(self.directory.rooms)

    @property
    def bans(self) -> int:
        """How many bans are in force."""
        return len(self.concerns.bans)

    @property
    def onion_address(self) -> str | None:
        """The onion service's address once published, shown to onion users."""
        return self.concerns.presence.onion_address

    @onion_address.setter
    def onion_address(self, address: str | None) -> None:
        self.concerns.presence.onion_address = address

    @property
    def onion_status(self) -> Callable[[], dict[str, Any]] | None:
        """The onion door's status, for operators' C{/stats}."""
        return self.concerns.stats.onion_status

    @onion_status.setter
    def onion_status(self, status: Callable[[], dict[str, Any]] | None) -> None:
        self.concerns.stats.onion_status = status

    @property
    def reloader(self) -> Reloader | None:
        """Reloads C{tap.ini} for C{/rehash}: (success, what happened)."""
        return self.concerns.moderation.reloader

    @reloader.setter
    def reloader(self, reloader: Reloader | None) -> None:
        self.concerns.moderation.reloader = reloader

    # -- start and stop ------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether L{start} has loaded the store, so users may come in."""
        return self._ready is None

    def when_ready(self) -> Deferred[None]:
        """
        @return: Fires once L{start} has loaded the store.
        """
        d: Deferred[None] = Deferred()
        if self._ready is None:
            d.callback(None)
        else:
            self._ready.append(d)
        return d

    def start(self) -> Deferred[None]:
        """
        Load rooms, their latest messages and the bans from the store, then
        join the chat through the backplane.

        @return: Fires when the hub is ready for users.
        """

        async def starting() -> None:
            self._load(await self.store.load(self._clock.seconds()))
            await self.backplane.start()
            waiting, self._ready = self._ready or [], None
            self._sweeping.start(SWEEP_INTERVAL, now=False)
            for d in waiting:
                d.callback(None)

        return Deferred.fromCoroutine(starting())

    def _load(self, found: Loaded) -> None:
        self.directory.restore(found)
        now = self._clock.seconds()
        for ban in found.bans:
            if ban.expires is None or ban.expires > now:
                self.concerns.bans.add(ban)
        lobby = self.directory.lobby
        if not lobby.stored:
            self.store.save_room(lobby.record())
            lobby.stored = True
        if found.lossy:
            self._log.warn(
                "history: the last run did not stop cleanly, so its last "
                "batch of messages may be lost; every room starts a new "
                "epoch and resuming clients are told of the gap"
            )

    def stop(self, grace: float | None = None) -> Deferred[None]:
        """
        Tell every user the server is going down and close their
        connections (cutting those still open after C{grace} seconds), then
        leave the chat and write all queued history with everyone's resume
        code.

        @param grace: Seconds to wait for connections to close; C{[server]
            shutdown_grace} by default.
        @return: Fires when everything is on disk.
        """
        self.concerns.presence.closing = True
        self.concerns.delivery.crowds.stop()
        if self._sweeping.running:
            self._sweeping.stop()
        if grace is None:
            grace = self.settings.server.shutdown_grace

        async def stopping() -> None:
            await self.concerns.presence.send_away(grace)
            for user in list(self.directory.users.values()):
                self.concerns.sessions.save(user)
            await self.backplane.stop()
            await self.store.close()

        return Deferred.fromCoroutine(stopping())

    def cut_short(self) -> None:
        """
        A second stop signal: cut every connection still open now.
        """
        self.concerns.presence.cut_short()

    def reconfigure(
        self,
        server: ServerConfig,
        history: HistoryConfig,
        operators: OperatorsConfig,
        limits: LimitsConfig | None = None,
        accounts: AccountsConfig | None = None,
    ) -> None:
        """
        Apply a reloaded C{tap.ini}: the server's name, MOTD, default room
        and shutdown grace; how much history is kept, replayed and resumed
        (where it is kept needs a restart); the operator accounts; and the
        limits (rates start afresh).  Nobody is disconnected.
        """
        settings, directory = self.settings, self.directory
        if limits is not None and limits != settings.limits:
            settings.limits = limits
            self.admission.reconfigure(limits)
            self.concerns.pacing.restart(
                directory.users.values(), directory.rooms.values()
            )
        if directory.room(server.default_room) is None:
            room = directory.new_room(server.default_room)
            self.store.save_room(room.record())
            room.stored = True
        settings.server = server
        reloaded = ("keep", "replay", "resume_ttl", "room_ttl")
        changes = {name: getattr(history, name) for name in reloaded}
        settings.history = replace(settings.history, **changes)
        directory.resize_replay()
        self.store.reconfigure(settings.history)
        settings.operators = operators
        self.concerns.login.reconfigured(list(directory.users.values()))
        if accounts is not None:
            settings.accounts = accounts
            if isinstance(self.passwords, Hashing):
                self.passwords.config = accounts

    # -- what the doors call -------------------------------------------------

    def connect(self, participant: IParticipant) -> User:
        """
        A user arrived through a door: give them a guest nick, welcome them
        and put them in the default room.

        @param participant: The door's side of the user.
        @return: The user, also given to the participant's C{attached}.
        """
        return self.concerns.presence.arrive(participant)

    def disconnect(self, user: User, reason: str, clean: bool = False) -> None:
        """
        A user's connection ended without C{/quit}.  Idempotent.

        @param reason: Why, for the log.
        @param clean: C{True} when the client closed the connection itself
            (others see "quit (connection closed)"); C{False} when it broke
            or was dropped (others see "lost connection").
        """
        self.concerns.presence.disconnect(user, reason, clean)

    def received(self, user: User) -> bool:
        """
        A door got a line or frame from C{user}: may it be handled?  (See
        L{Pacing.received}.)

        @return: C{False} when it must be dropped.
        """
        return self.concerns.presence.received(user)

    def misbehaved(self, user: User, said: str) -> None:
        """
        A door is closing C{user}'s connection for flooding it in a way
        only the door sees (telnet option requests): tell them and their
        rooms why (C{said}).
        """
        self.concerns.presence.close_for(user, "flooding", said)

    def too_slow(self, user: User, waiting: int) -> None:
        """
        A door is closing C{user}'s connection because they stopped
        reading: count it and tell the others why they left.

        @param waiting: Bytes they had not taken.
        """
        self.concerns.presence.too_slow(user, waiting)

    def execute(self, user: User, command: c.Command, tag: str | None = None) -> None:
        """
        Carry out one command for C{user}, after those they sent before it
        (see L{InOrder}).  Mistakes are answered with an L{events.Error} to
        the user alone.

        @param command: What they asked for, parsed by the door.
        @param tag: The client's tag of the request, which errors it causes
            carry.
        """
        if not user.connected:
            return
        if not user.settled and not isinstance(command, c.IDENTIFYING):
            # Whoever this connection is, it is not carrying on a session
            # that is still here: the others are told it came, first.
            self._in_order.execute(user, c.Settle(), None)
        self._in_order.execute(user, command, tag)

    def _dispatch(self, user: User, command: c.Command) -> Deferred[Any] | None:
        problem = c.too_long(command)
        if problem is not None:
            # Whatever door built it: every string has its maximum.
            self.concerns.delivery.error(user, "bad-arguments", problem)
            return None
        if type(command) in _FOR_OPERATORS and user.operator is None:
            self._log.info(
                "refused /{command} to {nick}, who is not an operator",
                command=type(command).__name__.lower(),
                nick=user.nick,
            )
            self.concerns.delivery.error(
                user,
                "not-operator",
                "that command is for operators; /oper NAME PASSWORD first",
            )
            return None
        return self._handlers[type(command)](user, command)

    def _sweep(self) -> None:
        """
        Close connections that never said anything, telnet users idle too
        long (warning them first), and guests who did not pick a nick in
        time; forget rooms nobody was in for C{room_ttl}.
        """
        self.concerns.rooms.expire()
        for user, verdict in self.concerns.pacing.sweep(
            list(self.directory.users.values())
        ):
            if isinstance(verdict, Warn):
                self.concerns.delivery.tell(user, verdict.notice)
            elif user.connected:
                self.concerns.presence.close_for(user, verdict.reason, verdict.said)

    # -- IHubInbox: what the backplane hands over ----------------------------

    def message(self, room: Room, message: events.RoomMessage, received: float) -> None:
        self.concerns.talk.arrived(room, message, received)

    def repeated(self, sender: User, room: Room, client_id: str, id: int) -> None:
        self.concerns.talk.repeated(sender, room, client_id, id)

    def unsaid(self, sender: User, draft: Draft, why: Failure) -> None:
        self.concerns.talk.unsaid(sender, draft, why)

    def event(self, event: events.Event, audience: Audience) -> None:
        if isinstance(event, events.PrivateMessage):
            self.concerns.talk.private_arrived(event, audience)
            return
        if isinstance(event, events.TopicChanged):
            self.concerns.rooms.topic_changed(event)
        self.concerns.delivery.here(event, audience)

    def request(self, request: Request) -> None:
        moderation = self.concerns.moderation
        match request:
            case OperatorRequest():
                moderation.request(request)
            case BansMade():
                moderation.bans_made(request)
            case BansLifted():
                moderation.bans_lifted(request)
            case BansKnown():
                moderation.bans_known(request)
            case MotdChanged():
                moderation.motd_changed(request)
            case TakenOver(code, login):
                user = self.directory.codes.get(code)
                if user is not None:
                    # The session went on on another node.
                    user.moved = True
                    self.concerns.presence.taken_over(user, login)

    def nick_lost(self, user: User) -> None:
        if user.connected:
            self.concerns.presence.nick_lost(user)

    def reachable(self, up: bool) -> None:
        if up or not self.concerns.presence.closing:
            self.concerns.presence.reachable(up)
