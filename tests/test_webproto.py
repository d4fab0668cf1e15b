"""
Tests for L{tchat.webproto}: the web door's JSON, both ways, without sockets.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from tchat import commands, events
from tchat.palette import PALETTE
from tchat.webproto import FrameError, Request, encode, parse_frame, to_json

RED = PALETTE["red"]


def frame(**fields: object) -> bytes:
    return json.dumps(fields).encode()


class ParseTypedTests(SynchronousTestCase):
    """
    Typed requests map onto the shared command layer.
    """

    def test_every_type(self) -> None:
        """
        Each request type becomes its command.
        """
        cases = [
            (frame(type="message", message="hi"), commands.Say("hi")),
            (
                frame(type="message", message="hi", room="#dev", client_id="c1"),
                commands.Say("hi", "#dev", "c1"),
            ),
            (frame(type="me", message="waves"), commands.Me("waves")),
            (frame(type="nick", name="bob"), commands.Nick("bob")),
            (frame(type="join", room="#dev"), commands.Join("#dev")),
            (frame(type="part"), commands.Part(None)),
            (frame(type="part", room="#dev"), commands.Part("#dev")),
            (frame(type="rooms"), commands.Rooms()),
            (frame(type="who", room="#dev"), commands.WhoIs("#dev")),
            (frame(type="topic"), commands.SetTopic(None)),
            (frame(type="topic", topic="ship"), commands.SetTopic("ship")),
            (frame(type="msg", to="al", message="psst"), commands.Msg("al", "psst")),
            (frame(type="motd"), commands.ShowMotd()),
            (frame(type="help"), commands.ShowHelp()),
            (frame(type="quit", reason="bye"), commands.Quit("bye")),
            (frame(type="color", color="Blue"), commands.Color("blue")),
        ]
        for payload, expected in cases:
            self.assertEqual(parse_frame(payload, "me").commands, (expected,), payload)

    def test_slash_text_is_a_command(self) -> None:
        """
        A message text starting with C{/} runs as the same command as on
        telnet; C{//} escapes it.
        """
        self.assertEqual(
            parse_frame(frame(type="message", message="/join #dev"), "me").commands,
            (commands.Join("#dev"),),
        )
        self.assertEqual(
            parse_frame(frame(type="message", message="//etc"), "me").commands,
            (commands.Say("/etc"),),
        )

    def test_client_id_kept(self) -> None:
        """
        The client's tag is returned with the request.
        """
        request = parse_frame(frame(type="message", message="x", client_id="7"), "me")
        self.assertEqual(request.client_id, "7")


class ParseHistoryTests(SynchronousTestCase):
    """
    History, resume and hello requests.
    """

    def parse(self, **fields: object) -> tuple[commands.Command, ...]:
        return parse_frame(frame(**fields), "me").commands

    def test_history(self) -> None:
        self.assertEqual(
            self.parse(type="history", room="#dev", before=41, limit=10),
            (commands.ShowHistory(10, "#dev", 41),),
        )
        self.assertEqual(self.parse(type="history"), (commands.ShowHistory(50),))

    def test_resume(self) -> None:
        """
        A bare id means the current epoch; an object gives the epoch.
        """
        self.assertEqual(
            self.parse(type="resume", rooms={"#a": 4, "#b": {"id": 7, "epoch": 9}}),
            (commands.ResumeRooms((("#a", 4, None), ("#b", 7, 9))),),
        )

    def test_hello(self) -> None:
        """
        A hello takes back the nick and resumes the rooms in one frame.
        """
        self.assertEqual(
            self.parse(type="hello", name="alice", resume={"#a": 4}),
            (
                commands.Nick("alice"),
                commands.Settle(),
                commands.ResumeRooms((("#a", 4, None),)),
            ),
        )

    def test_bad(self) -> None:
        """
        Wrong shapes are refused with a sentence, not a crash.
        """
        bad: list[dict[str, object]] = [
            {"type": "history", "limit": 0},
            {"type": "history", "limit": 201},
            {"type": "history", "before": "x"},
            {"type": "history", "limit": True},
            {"type": "resume"},
            {"type": "resume", "rooms": []},
            {"type": "resume", "rooms": {"#a": -1}},
            {"type": "resume", "rooms": {"#a": {"id": 1, "epoch": "x"}}},
            {"type": "resume", "rooms": {f"#r{i}": 1 for i in range(101)}},
            {"type": "hello", "resume": {"#a": "x"}},
        ]
        for fields in bad:
            with self.assertRaises(FrameError) as caught:
                self.parse(**fields)
            self.assertEqual(caught.exception.code, "bad-request", fields)


class ParseClassicTests(SynchronousTestCase):
    """
    Frames from the classic PHP chat client work unchanged.
    """

    def test_message_with_own_name(self) -> None:
        """
        C{{message, name, color}} with the user's own nick is just a message.
        """
        request = parse_frame(frame(message="hello", name="me", color="#123456"), "me")
        self.assertEqual(request.commands, (commands.Say("hello"),))

    def test_other_name_is_nick_change(self) -> None:
        """
        A different C{name} asks for a nick change before the message.
        """
        request = parse_frame(frame(message="hi", name="Bob"), "me")
        self.assertEqual(request.commands, (commands.Nick("Bob"), commands.Say("hi")))

    def test_palette_colour_taken(self) -> None:
        """
        A palette colour, by CSS value or name, is taken; others are ignored.
        """
        request = parse_frame(
            frame(message="hi", name="me", color=RED.css.upper()), "me"
        )
        self.assertEqual(request.commands, (commands.Color("red"), commands.Say("hi")))
        request = parse_frame(frame(message="hi", name="me", color="blue"), "me")
        self.assertEqual(request.commands[0], commands.Color("blue"))
        request = parse_frame(frame(message="hi", name="me", color="#ABCDEF"), "me")
        self.assertEqual(request.commands, (commands.Say("hi"),))

    def test_name_only(self) -> None:
        """
        A frame with only a new name is a nick change.
        """
        request = parse_frame(frame(name="zed"), "me")
        self.assertEqual(request.commands, (commands.Nick("zed"),))

    def test_slash_command(self) -> None:
        """
        A classic message starting with C{/} is a command.
        """
        request = parse_frame(frame(message="/who", name="me"), "me")
        self.assertEqual(request.commands, (commands.WhoIs(None),))


class ParseErrorTests(SynchronousTestCase):
    """
    Every recoverable mistake has a code and a sentence.
    """

    def assertFrameError(self, payload: bytes, code: str, fragment: str) -> None:
        with self.assertRaises(FrameError) as caught:
            parse_frame(payload, "me")
        self.assertEqual(caught.exception.code, code)
        self.assertIn(fragment, caught.exception.message)

    def test_bad_json(self) -> None:
        """
        Not JSON, or JSON nested too deep to parse.
        """
        self.assertFrameError(b"{nope", "bad-json", "not valid JSON")
        self.assertFrameError(b"[" * 100000 + b"]" * 100000, "bad-json", "JSON")
        self.assertFrameError(b"\xff\xfe", "bad-json", "JSON")

    def test_lone_surrogate(self) -> None:
        """
        A lone surrogate (valid JSON escape, but not text) is refused
        wherever it is, rather than reaching the hub, where no door could
        encode it; a pair of them (an emoji) is fine.
        """
        for payload in (
            b'{"type": "message", "message": "a\\ud800b"}',
            b'{"type": "message", "message": "hi", "client_id": "\\udfff"}',
            b'{"type": "dance", "client_id": "\\ud800"}',
            b'{"type": "resume", "rooms": {"#\\udc00": 1}}',
            b'{"message": "\xed\xa0\x80"}',
        ):
            self.assertFrameError(payload, "bad-json", "lone surrogate")
        self.assertEqual(
            parse_frame(b'{"type": "message", "message": "\\ud83d\\ude00"}', "me"),
            Request((commands.Say("\U0001f600"),)),
        )

    def test_not_an_object(self) -> None:
        """
        A JSON array or string is not a request.
        """
        self.assertFrameError(b"[1, 2]", "bad-request", "JSON object")
        self.assertFrameError(b'"hi"', "bad-request", "JSON object")

    def test_unknown_type(self) -> None:
        """
        An unknown C{type} is named.
        """
        self.assertFrameError(frame(type="dance"), "unknown-type", "'dance'")

    def test_missing_field(self) -> None:
        """
        A missing required field is named.
        """
        self.assertFrameError(frame(type="join"), "bad-request", "'room' is missing")
        self.assertFrameError(frame(type="msg", to="x"), "bad-request", "'message'")

    def test_wrong_field_type(self) -> None:
        """
        A field of the wrong JSON type is named.
        """
        self.assertFrameError(
            frame(type="nick", name=5), "bad-request", "'name' must be a string"
        )
        self.assertFrameError(frame(type=["x"]), "bad-request", "'type' must be")

    def test_empty_object(self) -> None:
        """
        A frame with neither type nor message says what it needs.
        """
        self.assertFrameError(b"{}", "bad-request", "'type' or a 'message'")

    def test_bad_command(self) -> None:
        """
        A slash command error keeps the command layer's code.
        """
        self.assertFrameError(
            frame(type="message", message="/nope"), "unknown-command", "/nope"
        )

    def test_client_id_in_errors(self) -> None:
        """
        An error for a request with a C{client_id} carries it.
        """
        with self.assertRaises(FrameError) as caught:
            parse_frame(frame(type="join", client_id="c9"), "me")
        self.assertEqual(caught.exception.client_id, "c9")

    def test_client_id_bounded(self) -> None:
        """
        An over-long C{client_id} is refused.
        """
        self.assertFrameError(
            frame(type="rooms", client_id="x" * 65), "bad-request", "client_id"
        )


class EncodeTests(SynchronousTestCase):
    """
    Events become the documented JSON.
    """

    def test_usermsg(self) -> None:
        """
        Room messages are classic C{usermsg} plus room, id, ts, door, action;
        only the sender's copy has C{client_id}.
        """
        message = events.RoomMessage(
            "#dev", 3, 1.5, "al", "telnet", RED, "hi", False, "c1", epoch=7
        )
        expected = {
            "type": "usermsg",
            "name": "al",
            "message": "hi",
            "color": RED.css,
            "color_name": "red",
            "room": "#dev",
            "id": 3,
            "epoch": 7,
            "ts": 1.5,
            "door": "telnet",
            "action": False,
        }
        self.assertEqual(to_json(message), expected)
        self.assertEqual(
            to_json(message, sender_copy=True), {**expected, "client_id": "c1"}
        )

    def test_compact_utf8(self) -> None:
        """
        The payload is compact UTF-8 JSON; hostile text stays a JSON string.
        """
        text = "<img src=x onerror=alert(1)> é"
        payload = encode(events.RoomMessage("#a", 1, 0.0, "n", "web", RED, text))
        self.assertIn(text.encode(), payload)
        self.assertEqual(json.loads(payload)["message"], text)
        self.assertNotIn(b": ", payload)

    def test_system_events(self) -> None:
        """
        Every notice and answer is C{type: system} with an C{event} and a
        readable C{message}.
        """
        cases: list[tuple[events.Event, str, str]] = [
            (
                events.Presence(1.0, "join", "al", "web", "#a"),
                "join",
                "al (web) joined #a",
            ),
            (
                events.Presence(1.0, "part", "al", "web", "#a"),
                "part",
                "al (web) left #a",
            ),
            (
                events.Presence(1.0, "quit", "al", "web", reason="lunch"),
                "quit",
                "al (web) quit (lunch)",
            ),
            (
                events.Presence(1.0, "lost", "al", "web"),
                "lost",
                "al (web) lost connection",
            ),
            (
                events.Presence(1.0, "nick", "al", "web", new_nick="bo"),
                "nick",
                "al (web) is now known as bo",
            ),
            (
                events.Presence(1.0, "away", "al", "irc", reason="lunch"),
                "away",
                "al (irc) is away: lunch",
            ),
            (
                events.Presence(1.0, "away", "al", "irc"),
                "away",
                "al (irc) is back",
            ),
            (
                events.TopicChanged(1.0, "#a", "al", "x"),
                "topic",
                "al set the topic of #a: x",
            ),
            (
                events.TopicChanged(1.0, "#a", "al", ""),
                "topic",
                "al cleared the topic of #a",
            ),
            (
                events.Welcome("hub", ("m",), "g-1", "#lobby", RED),
                "welcome",
                "Welcome to hub. You are g-1.",
            ),
            (
                events.RoomList((events.RoomInfo("#a", 2, None),)),
                "rooms",
                "Rooms: #a (2)",
            ),
            (
                events.Who(
                    "#a", (events.Member("al", "web"), events.Member("bo", "telnet"))
                ),
                "who",
                "#a (2): al (web), bo (telnet)",
            ),
            (events.Topic("#a", None, None), "topic_info", "#a has no topic"),
            (events.Motd(("one", "two")), "motd", "one\ntwo"),
            (events.Status("now talking in #a"), "status", "now talking in #a"),
            (events.Goodbye("bye"), "goodbye", "Goodbye (bye)"),
        ]
        for event, name, message in cases:
            data = to_json(event)
            self.assertEqual(
                (data["type"], data["event"], data["message"]),
                ("system", name, message),
            )

    def test_structured_answers(self) -> None:
        """
        Answers carry their data for clients that render it.
        """
        who = to_json(events.Who("#a", (events.Member("al", "web"),)))
        self.assertEqual(
            who["members"],
            [{"name": "al", "door": "web", "registered": False, "away": None}],
        )
        rooms = to_json(events.RoomList((events.RoomInfo("#a", 2, "t"),)))
        self.assertEqual(rooms["rooms"], [{"name": "#a", "members": 2, "topic": "t"}])
        welcome = to_json(events.Welcome("hub", ("m",), "g-1", "#lobby", RED))
        self.assertEqual(welcome["palette"]["red"], RED.css)
        self.assertEqual((welcome["name"], welcome["color"]), ("g-1", RED.css))
        help_ = to_json(events.Help((("/nick NAME", "take another nick"),)))
        self.assertEqual(
            help_["commands"],
            [{"usage": "/nick NAME", "description": "take another nick"}],
        )

    def test_rooms_paged(self) -> None:
        """
        A page of a long room list says which page it is, of how many, and
        how many rooms there are; a short list says nothing of pages.
        """
        page = to_json(events.RoomList((events.RoomInfo("#a", 2, None),), 2, 39, 3850))
        self.assertEqual((page["page"], page["pages"], page["total"]), (2, 39, 3850))
        self.assertIn("(page 2 of 39; 3850 rooms in all)", page["message"])
        whole = to_json(events.RoomList((events.RoomInfo("#a", 2, None),)))
        self.assertNotIn("pages", whole)
        self.assertEqual(
            parse_frame(b'{"type": "rooms", "page": 3}', "al").commands,
            (commands.Rooms(3),),
        )

    def test_private_and_error(self) -> None:
        """
        Private messages and errors have their own types.
        """
        private = to_json(
            events.PrivateMessage(1.0, "al", "web", RED, "bo", "psst", True)
        )
        self.assertEqual(
            private,
            {
                "type": "private",
                "from": "al",
                "to": "bo",
                "message": "psst",
                "color": RED.css,
                "color_name": "red",
                "door": "web",
                "ts": 1.0,
                "outgoing": True,
            },
        )
        self.assertEqual(
            to_json(events.Error("nick-taken", "x is taken")),
            {"type": "error", "code": "nick-taken", "message": "x is taken"},
        )


class OperationsEncodeTests(SynchronousTestCase):
    """
    What web clients get for operators' notices, listings and a stop.
    """

    def test_notice(self) -> None:
        """
        A notice is a C{system} frame with event C{notice}, its kind, who
        made it, and readable text.
        """
        frame = to_json(events.Notice(5.0, "announce", "alice", "noon", None))
        self.assertEqual(
            frame,
            {
                "type": "system",
                "event": "notice",
                "message": "Announcement from alice: noon",
                "kind": "announce",
                "by": "alice",
                "text": "noon",
                "room": None,
                "ts": 5.0,
            },
        )

    def test_listing_and_shutdown(self) -> None:
        """
        A listing carries its lines and data; a stop is a C{shutdown}
        system frame.
        """
        frame = to_json(
            events.Listing("stats", "tchat stats", ("users: 1",), {"users": 1})
        )
        self.assertEqual(frame["event"], "stats")
        self.assertEqual(frame["lines"], ["users: 1"])
        self.assertEqual(frame["users"], 1)
        self.assertEqual(frame["message"], "tchat stats\nusers: 1")
        shutdown = to_json(events.Shutdown("the server is shutting down"))
        self.assertEqual((shutdown["type"], shutdown["event"]), ("system", "shutdown"))


class AccountFrameTests(SynchronousTestCase):
    """
    The account requests, and what the page is told of accounts.
    """

    def parse(self, **fields: object) -> tuple[commands.Command, ...]:
        return parse_frame(frame(**fields), "me").commands

    def test_requests(self) -> None:
        """
        Each account request becomes its command; passwords are taken as
        sent, spaces and all.
        """
        for fields, expected in (
            (
                {"type": "register", "password": " two  spaces "},
                commands.Register(" two  spaces "),
            ),
            (
                {"type": "login", "name": "alice", "password": "pw"},
                commands.Login("alice", "pw"),
            ),
            ({"type": "login", "password": "pw"}, commands.Login(None, "pw")),
            (
                {"type": "identify", "name": "alice", "password": "pw"},
                commands.Login("alice", "pw"),
            ),
            ({"type": "identify", "password": "pw"}, commands.Login(None, "pw")),
            ({"type": "logout"}, commands.Logout()),
            (
                {"type": "password", "old": "old pw", "new": "new pw"},
                commands.Password("old pw", "new pw"),
            ),
            ({"type": "unregister", "password": "pw"}, commands.Unregister("pw")),
            ({"type": "account"}, commands.ShowAccount()),
            ({"type": "mentions"}, commands.ShowMentions()),
            ({"type": "away"}, commands.Away(None)),
            ({"type": "away", "message": ""}, commands.Away(None)),
            ({"type": "away", "message": "lunch"}, commands.Away("lunch")),
            ({"type": "back"}, commands.Back()),
            ({"type": "ignore"}, commands.Ignore(None)),
            ({"type": "ignore", "name": "bob"}, commands.Ignore("bob")),
            ({"type": "unignore", "name": "bob"}, commands.Unignore("bob")),
            ({"type": "key", "action": "add"}, commands.AddKey(None)),
            ({"type": "key", "action": "add", "key": " "}, commands.AddKey(None)),
            (
                {"type": "key", "action": "add", "key": "ssh-ed25519 AAAA x"},
                commands.AddKey("ssh-ed25519 AAAA x"),
            ),
            ({"type": "key", "action": "list"}, commands.ListKeys()),
            (
                {"type": "key", "action": "remove", "fingerprint": "SHA256:x"},
                commands.RemoveKey("SHA256:x"),
            ),
        ):
            self.assertEqual(self.parse(**fields), (expected,), fields)

    def test_slash_commands(self) -> None:
        """
        The same commands typed as text work as on telnet.
        """
        self.assertEqual(
            self.parse(type="message", message="/identify alice pw"),
            (commands.Login("alice", "pw"),),
        )

    def test_bad_requests(self) -> None:
        """
        A missing or mistyped field is named.
        """
        for fields, said in (
            ({"type": "register"}, "'password' is missing"),
            ({"type": "login", "name": "alice"}, "'password' is missing"),
            ({"type": "login", "password": 5}, "'password' must be a string"),
            ({"type": "password", "old": "x"}, "'new' is missing"),
            ({"type": "unregister"}, "'password' is missing"),
            ({"type": "unignore"}, "'name' is missing"),
            ({"type": "key"}, "'action' is missing"),
            ({"type": "key", "action": "show"}, "'action' must be add, list or remove"),
            ({"type": "key", "action": "remove"}, "'fingerprint' is missing"),
            ({"type": "key", "action": "add", "key": 5}, "'key' must be a string"),
            ({"type": "hello", "token": 7}, "'token' must be a string"),
            ({"type": "hello", "code": ["x"]}, "'code' must be a string"),
        ):
            with self.assertRaises(FrameError) as caught:
                self.parse(**fields)
            self.assertEqual(
                (caught.exception.code, caught.exception.message),
                ("bad-request", said),
                fields,
            )

    def test_hello(self) -> None:
        """
        A hello resumes the session of its code, then logs in with its
        token, then takes back the nick and resumes the rooms; blank parts
        are left out.
        """
        self.assertEqual(
            self.parse(
                type="hello",
                resume={"#a": 4},
                name="alice",
                token=" tok ",
                code=" ABCD-EFGH ",
            ),
            (
                commands.Resume("ABCD-EFGH"),
                commands.TokenLogin("tok"),
                commands.Nick("alice"),
                commands.Settle(),
                commands.ResumeRooms((("#a", 4, None),)),
            ),
        )
        self.assertEqual(
            self.parse(type="hello", code=" ", token="", name="alice"),
            (commands.Nick("alice"), commands.Settle()),
        )
        self.assertEqual(
            self.parse(type="hello", token="tok"),
            (commands.TokenLogin("tok"), commands.Settle()),
        )
        self.assertEqual(self.parse(type="hello"), (commands.Settle(),))

    def test_login(self) -> None:
        """
        A login frame carries the token to keep, and when it expires, only
        when one was issued; a registration says the nick is theirs.
        """
        self.assertEqual(
            to_json(events.LoggedIn("alice", "tok", 5.0, 1.0)),
            {
                "type": "system",
                "event": "login",
                "message": "You are logged in as alice.",
                "name": "alice",
                "registered": False,
                "last_login": 1.0,
                "token": "tok",
                "expires": 5.0,
            },
        )
        plain = to_json(events.LoggedIn("alice"))
        self.assertNotIn("token", plain)
        self.assertNotIn("expires", plain)
        self.assertIsNone(plain["last_login"])
        registered = to_json(events.LoggedIn("alice", registered=True))
        self.assertEqual(
            (registered["message"], registered["registered"]),
            ("alice is registered to you: nobody else can take it.", True),
        )

    def test_logout(self) -> None:
        """
        A logout frame says why, and the guest nick the user has now.
        """
        self.assertEqual(
            to_json(events.LoggedOut("guest-1", "you logged out")),
            {
                "type": "system",
                "event": "logout",
                "message": "You logged out; you are guest-1 now.",
                "name": "guest-1",
                "reason": "you logged out",
            },
        )

    def test_mentions(self) -> None:
        """
        Mentions are listed, readable and as data; none is said so.
        """
        found = to_json(
            events.Mentions(
                (
                    events.Mention(1.0, "#a", 3, "bo", "hi al"),
                    events.Mention(2.0, "#b", 4, "bo", "pokes al", True),
                ),
                fresh=True,
            )
        )
        self.assertEqual(
            (found["event"], found["fresh"], found["message"]),
            (
                "mentions",
                True,
                "While you were away you were mentioned:\n#a <bo> hi al\n"
                "#b * bo pokes al",
            ),
        )
        self.assertEqual(
            found["mentions"][1],
            {
                "ts": 2.0,
                "room": "#b",
                "id": 4,
                "name": "bo",
                "message": "pokes al",
                "action": True,
            },
        )
        kept = to_json(events.Mentions((events.Mention(1.0, "#a", 3, "bo", "al"),)))
        self.assertTrue(
            kept["message"].startswith("Mentions of you (the latest kept):")
        )
        none = to_json(events.Mentions(()))
        self.assertEqual(
            (none["message"], none["mentions"]), ("No mentions of you are kept", [])
        )

    def test_members(self) -> None:
        """
        C{/who} marks members logged in to their registered nick, and shows
        away messages.
        """
        who = to_json(
            events.Who(
                "#a",
                (
                    events.Member("al", "web", True),
                    events.Member("bo", "telnet", False, "lunch"),
                ),
            )
        )
        self.assertEqual(
            who["message"], "#a (2): al (web, registered), bo (telnet) (away: lunch)"
        )
        self.assertEqual(
            who["members"],
            [
                {"name": "al", "door": "web", "registered": True, "away": None},
                {"name": "bo", "door": "telnet", "registered": False, "away": "lunch"},
            ],
        )

    def test_private_offline(self) -> None:
        """
        A private message kept while its recipient was away says so.
        """
        kept = to_json(
            events.PrivateMessage(1.0, "bo", "web", RED, "al", "hi", False, True)
        )
        self.assertEqual((kept["offline"], kept["ts"]), (True, 1.0))
        live = to_json(events.PrivateMessage(1.0, "bo", "web", RED, "al", "hi", False))
        self.assertNotIn("offline", live)

    def test_presence_registered(self) -> None:
        """
        Presence frames say whether the user is logged in to their nick's
        account, and mark them; a rename marks the new nick only; a login
        has its own event.
        """
        cases: list[tuple[events.Presence, str, str]] = [
            (
                events.Presence(1.0, "join", "al", "web", "#a", registered=True),
                "join",
                "al (web, registered) joined #a",
            ),
            (
                events.Presence(1.0, "quit", "al", "web", reason="x", registered=True),
                "quit",
                "al (web, registered) quit (x)",
            ),
            (
                events.Presence(
                    1.0, "nick", "g-1", "web", new_nick="al", registered=True
                ),
                "nick",
                "g-1 (web) is now known as al (registered)",
            ),
            (
                events.Presence(1.0, "login", "al", "web", registered=True),
                "account_login",
                "al (web, registered) is logged in to the registered nick al",
            ),
        ]
        for event, name, message in cases:
            data = to_json(event)
            self.assertEqual(
                (data["event"], data["message"], data["registered"]),
                (name, message, True),
            )
        plain = to_json(events.Presence(1.0, "join", "al", "web", "#a"))
        self.assertEqual(
            (plain["message"], plain["registered"]), ("al (web) joined #a", False)
        )
