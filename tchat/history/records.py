# -*- test-case-name: tests.test_history -*-
"""
The history records and the interface of every store: L{RoomRecord},
L{Session}, L{Ban}, L{Loaded} and L{HistoryStore}.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from twisted.internet.defer import Deferred

from tchat.config import HistoryConfig
from tchat.events import Mention, RoomMessage


@dataclass
class RoomRecord:
    """
    What is kept of a room besides its messages.

    @ivar key: The room's case-folded name (see L{tchat.text.room_key}).
    @ivar epoch: Changes only when the room's history may have lost messages
        that clients saw; ids are comparable only within an epoch lineage.
    @ivar lineage: (epoch, first id) of every epoch the room had, oldest
        first, ending with the current one.
    @ivar last_id: The latest id given to a message of the room.
    @ivar pruned_to: Every message with an id up to this one is gone.
    """

    key: str
    name: str
    epoch: int
    lineage: list[tuple[int, int]] = field(default_factory=list)
    last_id: int = 0
    pruned_to: int = 0
    topic: str | None = None
    topic_by: str | None = None


@dataclass(frozen=True)
class Session:
    """
    What a resume code brings back: a user as they were when they left.

    @ivar rooms: (room name, epoch, last message id delivered) per room, in
        joining order.
    @ivar saved: When the record was written, in seconds since the epoch.
    @ivar account: The account the user was logged in to, if any, as
        L{tchat.sessions.sealed} gives it: resuming logs them in again,
        while its password is unchanged.
    """

    code: str
    nick: str
    colour: str
    show_colours: bool
    rooms: tuple[tuple[str, int, int], ...]
    current: str | None
    saved: float
    account: str | None = None


BanKind = Literal["address", "nick", "session"]


@dataclass(frozen=True)
class Ban:
    """
    An operator's ban.

    @ivar id: Its number, for C{/unban}.
    @ivar kind: C{address}: an IP address or network (clear-net users);
        C{nick}: a nick or a pattern with C{*} and C{?}; C{session}: an
        onion user's resume code.
    @ivar pattern: What is banned, in the kind's canonical form.
    @ivar by: The operator account that set it.
    @ivar expires: When it lapses (seconds since the epoch); C{None} for
        never.
    """

    id: int
    kind: BanKind
    pattern: str
    reason: str
    by: str
    created: float
    expires: float | None = None


@dataclass
class Loaded:
    """
    Everything the hub needs from the store to start.

    @ivar recent: The latest messages of each room (by room key), oldest
        first, as many as the hub replays on join.
    @ivar tagged: Retained messages that carry a client id, oldest first,
        so retries after a restart are still recognised.
    @ivar lossy: The previous run stopped without flushing; rooms were
        given new epochs.
    @ivar bans: The bans in force.
    """

    rooms: list[RoomRecord] = field(default_factory=list)
    recent: dict[str, list[RoomMessage]] = field(default_factory=dict)
    tagged: dict[str, list[RoomMessage]] = field(default_factory=dict)
    lossy: bool = False
    bans: list[Ban] = field(default_factory=list)


class HistoryStore(Protocol):
    """
    Where the hub keeps rooms, messages and resume codes.

    Writes are fire-and-forget and applied in the order they were made;
    reads see every write made before them.
    """

    description: str

    @property
    def accounts(self) -> "AccountStore":
        """The registered accounts, kept beside the history."""

    observe_write: Callable[[float], None] | None
    """Told how many seconds each batch's transaction took, if set."""

    @property
    def queued(self) -> int:
        """Writes waiting to be committed."""

    def health(self) -> str | None:
        """
        @return: C{None} while the store keeps what it is given; else one
            word naming what is wrong (C{disk-full}, C{deleted}, ...), the
            C{history} check of the admin door's C{/healthz}.
        """

    def reconfigure(self, config: HistoryConfig) -> None:
        """
        Apply a reloaded C{[history]}: C{keep} and C{resume_ttl} take
        effect at once; where the history lives needs a restart.
        """

    def load(self, now: float) -> Deferred[Loaded]:
        """
        Open the store; called once before anything else.

        @param now: The current time, for new epochs.
        """

    def save_room(self, room: RoomRecord) -> None:
        """
        Create a room or record its new name, epoch or topic.
        """

    def append(self, message: RoomMessage, durable: bool) -> Deferred[None] | None:
        """
        Queue a room message for writing.

        @param durable: Return a L{Deferred} that fires once the message is
            committed (C{sync = full}).
        """

    def save_session(self, session: Session) -> None:
        """
        Remember where a user was, under their resume code.
        """

    def read(
        self,
        room_key: str,
        after: int = 0,
        upto: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> Deferred[list[RoomMessage]]:
        """
        Retained messages of a room with C{after < id <= upto} and
        C{id < before}, oldest first.

        @param limit: At most this many: the first ones when C{before} is
            C{None}, else the last ones.
        """

    def session(self, code: str, oldest: float) -> Deferred[Session | None]:
        """
        The session saved under C{code}, unless saved before C{oldest}.
        """

    def save_ban(self, ban: Ban) -> None:
        """
        Keep a ban, so it outlives a restart.
        """

    def delete_ban(self, ban_id: int) -> None:
        """
        Forget a ban.
        """

    def delete_room(self, key: str) -> None:
        """
        Forget the room with key C{key} and its messages: nobody was in it
        for C{room_ttl}, or nothing was said there.
        """

    def delete_session(self, code: str) -> None:
        """
        Forget the resume code C{code} before it expires (its address keeps
        too many).
        """

    def close(self) -> Deferred[None]:
        """
        Write everything queued and record a clean stop.  It always
        finishes, and never fails: what cannot be written in a bounded
        time is given up on, and logged as lost.
        """


# -- accounts -----------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """
    A registered nick: what the store keeps for it.

    @ivar key: The key of the nick (L{tchat.text.nick_key}): unique.
    @ivar name: The nick as it was registered, which its owner is given.
    @ivar hash: The password's hash (L{tchat.passwords}); never shown.
    @ivar created: When it was registered (seconds since the epoch).
    @ivar last_login: When its owner last logged in; C{None}: never.
    @ivar last_seen: When its owner's last logged-in connection ended.
    @ivar rooms: (room name, epoch, latest id shown) of each room the owner
        was in when they last left, where mentions are looked for.
    @ivar ignores: The nicks the owner ignores, as they typed them.
    """

    key: str
    name: str
    hash: str
    created: float
    last_login: float | None = None
    last_seen: float | None = None
    rooms: tuple[tuple[str, int, int], ...] = ()
    ignores: tuple[str, ...] = ()


@dataclass(frozen=True)
class Offline:
    """
    A private message kept for an account whose owner was offline.

    @ivar colour: The sender's colour's name.
    """

    ts: float
    sender: str
    sender_door: str
    colour: str
    text: str


class MailboxFullError(Exception):
    """
    An account keeps as many offline messages as it may: this one is not
    kept.
    """


MAX_KEYS = 10
"""The most SSH public keys one account has."""


@dataclass(frozen=True)
class KeyRecord:
    """
    An SSH public key of an account: whoever connects to the SSH door with
    it is logged in to the account (see L{tchat.sshkeys}).

    @ivar fingerprint: C{SHA256:...}, as C{ssh-keygen -l} shows it: one
        account's alone.
    @ivar line: Its OpenSSH public key line (type, base64, comment).
    @ivar added: When it was added (seconds since the epoch).
    """

    fingerprint: str
    line: str
    added: float


class KeyLimitError(Exception):
    """
    An account has L{MAX_KEYS} keys already: this one is not added.
    """


class AccountStore(Protocol):
    """
    Where accounts live, beside the history: every store has one, as its
    C{accounts}.  Each call is answered when done (or failed with
    L{StorageError} saying why, for L{SQLiteStore}); calls are carried out
    in the order they were made.
    """

    def holder(self, key: str) -> Deferred[str | None]:
        """
        The nick registered under nick key C{key}, as registered; C{None}
        when none is.  Asked at every nick change: cheap.
        """

    def get(self, key: str) -> Deferred[Account | None]:
        """The account registered under nick key C{key}, if any."""

    def create(self, account: Account) -> Deferred[bool]:
        """
        Register C{account}.

        @return: C{False} (and nothing written) when its key is registered
            already.
        """

    def save(self, account: Account) -> Deferred[None]:
        """
        Replace what is kept of an existing account (by its key): a new
        hash, rooms, ignores, times.  Nothing when it no longer exists.
        """

    def delete(self, key: str) -> Deferred[None]:
        """
        Forget the account and everything kept for it: offline messages,
        mentions, login tokens and SSH keys.
        """

    def leave_message(
        self, key: str, message: Offline, most: int, expires: float
    ) -> Deferred[None]:
        """
        Keep C{message} for the account with key C{key} until it logs in,
        or until C{expires} (seconds since the epoch).

        @param most: How many an account keeps at most: past it, fails
            with L{MailboxFullError}, and the message is not kept.
        """

    def take_messages(self, key: str, now: float) -> Deferred[list[Offline]]:
        """
        The offline messages of the account not expired at C{now}, oldest
        first; they are forgotten (delivered).
        """

    def add_mentions(self, key: str, found: list[Mention], most: int) -> Deferred[None]:
        """
        Add C{found} to the account's mentions, keeping the latest C{most}.
        """

    def mentions(self, key: str) -> Deferred[list[Mention]]:
        """The account's mentions kept, oldest first."""

    def issue_token(self, key: str, digest: str, expires: float) -> Deferred[None]:
        """
        Keep a login token for the account: its SHA-256 C{digest} (hex),
        never the token itself, valid until C{expires}.
        """

    def token_holder(self, digest: str, now: float) -> Deferred[str | None]:
        """
        The key of the account whose token has SHA-256 C{digest}, unless
        it expired at C{now} or was revoked.
        """

    def revoke_token(self, digest: str) -> Deferred[None]:
        """Forget one login token."""

    def revoke_tokens(self, key: str) -> Deferred[None]:
        """Forget every login token of the account."""

    def tokens(self, key: str, now: float) -> Deferred[int]:
        """How many login tokens of the account are valid at C{now}."""

    def waiting(self, key: str, now: float) -> Deferred[int]:
        """How many offline messages wait for the account at C{now}."""

    def add_key(
        self, account_key: str, fingerprint: str, line: str, now: float
    ) -> Deferred[bool]:
        """
        Bind an SSH public key to the account with key C{account_key}.

        @param now: When it is added.
        @return: C{False} (and nothing written) when C{fingerprint} is on
            an account already, this one or another: one key, one account.
            Fails with L{KeyLimitError} when the account has L{MAX_KEYS}.
        """

    def remove_key(self, account_key: str, fingerprint: str) -> Deferred[bool]:
        """
        Unbind a key from the account.

        @return: Whether the account had it.
        """

    def keys(self, account_key: str) -> Deferred[list[KeyRecord]]:
        """The account's SSH keys, oldest first."""

    def key_owner(self, fingerprint: str) -> Deferred[str | None]:
        """The key of the account the SSH key C{fingerprint} is on, if any."""
