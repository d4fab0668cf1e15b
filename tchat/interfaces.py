# -*- test-case-name: tests.test_hub -*-
"""
The seam between the hub and its doors.
"""

from zope.interface import Attribute, Interface


class IParticipant(Interface):
    """
    One connected user as the hub sees them: something it can tell events
    to and, when the user quits, disconnect.

    Doors (telnet, WebSocket, ...) provide this; the hub never sees bytes.
    """

    door = Attribute("The door's name as users see it: 'telnet', 'web' or 'onion'.")

    def attached(user: object) -> None:
        """
        Called once by the hub, before any event is delivered, with the
        hub's record of this user (a L{tchat.hub.User}): the door passes it
        back with every command, and reads it (current room, colour
        preference) when rendering.  Called again when the user's session
        moves onto this connection (see L{tchat.continuity}), and with
        C{None} when it moved away from it: from then on this connection
        speaks for nobody.
        """

    def deliver(event: object, renderings: object) -> None:
        """
        Tell the user about C{event}.

        @param event: One of the L{tchat.events} values.
        @param renderings: A L{tchat.events.Renderings} shared by every
            recipient of this event; render through it so that the event
            is encoded once per wire format and variant.
        """

    address = Attribute(
        "The client's IP address on a clear-net door (what bans and limits "
        "apply to); None through the onion service or a unix socket."
    )

    def close(reason: str, why: str = "normal") -> None:
        """
        Close the connection, after flushing what was already delivered.

        @param reason: Why, for the log and the client.
        @param why: C{normal}; C{going-away} when the server stops (a
            WebSocket closes with 1001); C{policy} when an operator or a
            ban sends the user off (1008).
        """

    def abort() -> None:
        """
        Cut the connection now, dropping whatever is still unsent (a
        client that does not let a close finish).
        """
