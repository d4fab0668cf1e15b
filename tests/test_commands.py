"""
Tests for L{tchat.commands}: the command layer every door shares.
"""

from twisted.trial.unittest import SynchronousTestCase

from tchat import commands as c
from tchat.commands import (
    KEY_USAGE,
    MAX_NAME,
    MAX_PASSWORD,
    MAX_RESUME_ROOMS,
    MAX_TEXT,
    Color,
    Command,
    CommandError,
    Join,
    Kick,
    Me,
    Msg,
    Nick,
    Oper,
    Part,
    Quit,
    ResumeRooms,
    Rooms,
    Say,
    SetMotd,
    SetTopic,
    ShowHelp,
    ShowMotd,
    WhoIs,
    parse_line,
    too_long,
)
from tchat.sshkeys import MAX_KEY_LINE


class ParseLineTests(SynchronousTestCase):
    """
    L{parse_line} turns typed lines into commands or clear errors.
    """

    def assertError(self, line: str, code: str, fragment: str) -> None:
        with self.assertRaises(CommandError) as caught:
            parse_line(line)
        self.assertEqual(caught.exception.code, code)
        self.assertIn(fragment, caught.exception.text)

    def test_plain_line_is_say(self) -> None:
        """
        A line without a slash is a message, trimmed.
        """
        self.assertEqual(parse_line("  hello there  "), Say("hello there"))

    def test_blank_is_nothing(self) -> None:
        """
        Blank lines, and lines that are only control codes, say nothing.
        """
        self.assertIsNone(parse_line(""))
        self.assertIsNone(parse_line("   "))
        self.assertIsNone(parse_line("\x1b[2J\x07"))

    def test_double_slash_escapes(self) -> None:
        """
        C{//text} sends C{/text} as a message.
        """
        self.assertEqual(parse_line("//shrug"), Say("/shrug"))

    def test_text_is_cleaned(self) -> None:
        """
        Control sequences are stripped before anything else looks at it.
        """
        self.assertEqual(parse_line("hi\x1b[31m red"), Say("hi red"))

    def test_every_command(self) -> None:
        """
        Each command parses into its typed value.
        """
        cases = {
            "/nick bob": Nick("bob"),
            "/join #dev": Join("#dev"),
            "/part": Part(None),
            "/part #dev": Part("#dev"),
            "/rooms": Rooms(),
            "/who": WhoIs(None),
            "/who #dev": WhoIs("#dev"),
            "/topic": SetTopic(None),
            "/topic Release day!": SetTopic("Release day!"),
            "/me waves hello": Me("waves hello"),
            "/msg bob hi there": Msg("bob", "hi there"),
            "/motd": ShowMotd(),
            "/help": ShowHelp(),
            "/quit": Quit(None),
            "/quit gone fishing": Quit("gone fishing"),
            "/color red": Color("red"),
            "/color OFF": Color("off"),
            "/color": Color(None),
        }
        for line, expected in cases.items():
            self.assertEqual(parse_line(line), expected, line)

    def test_command_names_case_insensitive(self) -> None:
        """
        C{/NICK} works like C{/nick}.
        """
        self.assertEqual(parse_line("/NICK bob"), Nick("bob"))

    def test_aliases(self) -> None:
        """
        Habits from IRC work: C{/j}, C{/colour}, C{/names}, C{/list}.
        """
        self.assertEqual(parse_line("/j #dev"), Join("#dev"))
        self.assertEqual(parse_line("/colour blue"), Color("blue"))
        self.assertEqual(parse_line("/names"), WhoIs(None))
        self.assertEqual(parse_line("/list"), Rooms())

    def test_unknown_command(self) -> None:
        """
        An unknown command names itself and points to C{/help} and C{//}.
        """
        self.assertError("/frobnicate now", "unknown-command", "/frobnicate")
        self.assertError("/frobnicate now", "unknown-command", "/help")

    def test_wrong_arguments_show_usage(self) -> None:
        """
        Missing or extra arguments give the command's usage.
        """
        self.assertError("/nick", "bad-arguments", "usage: /nick NAME")
        self.assertError("/nick a b", "bad-arguments", "usage: /nick NAME")
        self.assertError("/join", "bad-arguments", "usage: /join #room")
        self.assertError("/msg bob", "bad-arguments", "usage: /msg NICK text")
        self.assertError("/me", "bad-arguments", "usage: /me action")
        self.assertError("/rooms x", "bad-arguments", "usage: /rooms")
        self.assertError("/part a b", "bad-arguments", "usage: /part")

    def test_text_length_capped(self) -> None:
        """
        Text over L{MAX_TEXT} characters is refused, saying the limit.
        """
        self.assertEqual(parse_line("x" * MAX_TEXT), Say("x" * MAX_TEXT))
        self.assertError("x" * (MAX_TEXT + 1), "bad-arguments", str(MAX_TEXT))


class DocumentedTests(SynchronousTestCase):
    """
    The README's command table keeps up with the command layer.
    """

    def test_readme_lists_every_command(self) -> None:
        """
        Every command's usage appears in README.md.
        """
        from pathlib import Path

        from tchat.commands import COMMANDS

        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        for spec in COMMANDS:
            # Markdown tables escape "|" as "\|".
            usage = spec.usage.replace("|", "\\|")
            self.assertIn(f"`{usage}`", readme, spec.name)


class OperatorCommandTests(SynchronousTestCase):
    """
    The operator commands parse from typed lines, with clear errors.
    """

    def test_parsed(self) -> None:
        """
        Each operator command, with durations (s, m, h, d, w) told apart
        from the reason that may follow them.
        """
        from tchat import commands as c

        for line, expected in (
            ("/oper alice pass with spaces", c.Oper("alice", "pass with spaces")),
            ("/kick bob", c.Kick("bob", None)),
            ("/kick bob go away", c.Kick("bob", "go away")),
            ("/ban bob", c.Ban("bob", None, None)),
            ("/ban bob 2h", c.Ban("bob", 7200, None)),
            ("/ban bob 7D spam links", c.Ban("bob", 7 * 86400, "spam links")),
            ("/ban 192.0.2.0/24 spam", c.Ban("192.0.2.0/24", None, "spam")),
            ("/unban #3", c.Unban("#3")),
            ("/bans", c.ListBans()),
            ("/mute bob 30s", c.Mute("bob", 30)),
            ("/mute bob", c.Mute("bob", None)),
            ("/unmute bob", c.Unmute("bob")),
            ("/announce back at noon", c.Announce("back at noon")),
            ("/motd set Be kind | Really", c.SetMotd(("Be kind", "Really"))),
            ("/motd", ShowMotd()),
            ("/rehash", c.Rehash()),
            ("/stats", c.ShowStats()),
        ):
            self.assertEqual(parse_line(line), expected, line)

    def test_errors(self) -> None:
        """
        Wrong arguments say the usage.
        """
        for line, fragment in (
            ("/oper alice", "usage: /oper NAME PASSWORD"),
            ("/kick", "usage: /kick NICK [reason]"),
            ("/ban", "usage: /ban NICK|MASK"),
            ("/ban bob 0m", "more than 0"),
            ("/ban bob 400d", "at most 366d"),
            ("/mute bob 10m and more", "usage: /mute NICK [DURATION]"),
            ("/unban", "usage: /unban"),
            ("/announce", "usage: /announce text"),
            ("/motd reset", "/motd set text"),
            ("/stats now", "usage: /stats"),
        ):
            with self.assertRaises(CommandError) as caught:
                parse_line(line)
            self.assertIn(fragment, caught.exception.text, line)


class MaximaTests(SynchronousTestCase):
    """
    L{too_long}: every string a command carries has a maximum, whatever
    door built the command.
    """

    def test_each_field(self) -> None:
        """
        Texts and reasons are refused past C{MAX_TEXT}, names past
        C{MAX_NAME}, passwords past C{MAX_PASSWORD}, a message of the day
        past C{MAX_TEXT} in all, and the sentence names the field.
        """
        over, name = "x" * (MAX_TEXT + 1), "n" * (MAX_NAME + 1)
        cases: list[tuple[Command, str]] = [
            (Me(over), "the text is longer than 4096 characters"),
            (SetTopic(over), "the text is longer than 4096 characters"),
            (Msg("bob", over), "the text is longer than 4096 characters"),
            (Msg(name, "hi"), "the nick is longer than 64 characters"),
            (Quit(over), "the reason is longer than 4096 characters"),
            (Kick("bob", over), "the reason is longer than 4096 characters"),
            (Say("hi", name), "the room name is longer than 64 characters"),
            (Say("hi", None, name), "the client_id is longer than 64 characters"),
            (Join(name), "the room name is longer than 64 characters"),
            (
                Oper("root", "p" * (MAX_PASSWORD + 1)),
                "the password is longer than 1024 characters",
            ),
            (
                SetMotd(("x" * 3000, "y" * 1100)),
                "the message of the day is longer than 4096 characters",
            ),
            (
                ResumeRooms(
                    tuple(("#r", 0, None) for _ in range(MAX_RESUME_ROOMS + 1))
                ),
                "at most 100 rooms at once",
            ),
            (
                ResumeRooms(((name, 0, None),)),
                "a room name is longer than 64 characters",
            ),
        ]
        self.assertEqual(
            [too_long(command) for command, _ in cases], [t for _, t in cases]
        )

    def test_within(self) -> None:
        """Commands within every maximum pass, their maxima included."""
        for command in (
            Say("x" * MAX_TEXT, "#r", "c" * MAX_NAME),
            Me("waves"),
            Nick("n" * MAX_NAME),
            Rooms(),
            SetMotd(("x" * 2048, "y" * 2048)),
            ResumeRooms(tuple(("#r", 0, None) for _ in range(MAX_RESUME_ROOMS))),
        ):
            self.assertIsNone(too_long(command), command)


class AccountCommandTests(SynchronousTestCase):
    """
    The account commands parse from typed lines; passwords are taken as
    typed and never shown.
    """

    def test_parsed(self) -> None:
        """
        Each account command parses into its typed value; a password to
        C{/register}, C{/unregister} and C{/login} is the rest of the line,
        spaces and all.
        """
        for line, expected in (
            ("/register my pass  phrase", c.Register("my pass  phrase")),
            ("/unregister my pass  phrase", c.Unregister("my pass  phrase")),
            ("/login alice two  spaces", c.Login("alice", "two  spaces")),
            ("/LOGIN alice   hunter22", c.Login("alice", "hunter22")),
            ("/logout", c.Logout()),
            ("/password old-one new-one", c.Password("old-one", "new-one")),
            ("/account", c.ShowAccount()),
            ("/mentions", c.ShowMentions()),
            ("/away", c.Away(None)),
            ("/away gone  fishing", c.Away("gone  fishing")),
            ("/back", c.Back()),
            ("/ignore", c.Ignore(None)),
            ("/ignore bob", c.Ignore("bob")),
            ("/unignore bob", c.Unignore("bob")),
            ("/key add", c.AddKey(None)),
            ("/key add ssh-ed25519 AAAA a  b", c.AddKey("ssh-ed25519 AAAA a  b")),
            ("/KEY LIST", c.ListKeys()),
            ("/key remove SHA256:abc", c.RemoveKey("SHA256:abc")),
        ):
            self.assertEqual(parse_line(line), expected, line)

    def test_identify(self) -> None:
        """
        C{/identify} is C{/login}: with one word, that word is the password
        of the current nick's account; with two, a nick and its password.
        """
        self.assertEqual(parse_line("/identify hunter22"), c.Login(None, "hunter22"))
        self.assertEqual(
            parse_line("/identify alice hunter22"), c.Login("alice", "hunter22")
        )
        self.assertEqual(parse_line("/login hunter22"), c.Login(None, "hunter22"))

    def test_errors(self) -> None:
        """
        Missing or extra arguments give the command's usage; C{/password}
        says its passwords cannot hold spaces.
        """
        for line, usage in (
            ("/register", "usage: /register PASSWORD"),
            ("/unregister", "usage: /unregister PASSWORD"),
            ("/login", "usage: /login NICK PASSWORD"),
            ("/identify", "usage: /login NICK PASSWORD"),
            ("/logout now", "usage: /logout"),
            ("/account me", "usage: /account"),
            ("/mentions all", "usage: /mentions"),
            ("/back now", "usage: /back"),
            ("/key", KEY_USAGE),
            ("/key list all", KEY_USAGE),
            ("/key remove", KEY_USAGE),
            ("/key remove a b", KEY_USAGE),
            ("/key drop x", KEY_USAGE),
            ("/ignore bob carol", "usage: /ignore [NICK]"),
            ("/unignore", "usage: /unignore NICK"),
            ("/unignore bob carol", "usage: /unignore NICK"),
            (
                "/password only-one",
                "usage: /password OLD NEW (passwords without spaces here; "
                "the page's account panel takes any)",
            ),
            (
                "/password one two three",
                "usage: /password OLD NEW (passwords without spaces here; "
                "the page's account panel takes any)",
            ),
        ):
            with self.assertRaises(CommandError) as caught:
                parse_line(line)
            self.assertEqual(
                (caught.exception.code, caught.exception.text),
                ("bad-arguments", usage),
                line,
            )

    def test_passwords_hidden(self) -> None:
        """
        No command that carries a password or a login token shows it in
        its C{repr} or C{str} (which logs and tracebacks use); the nick is
        shown.
        """
        secret = "hunter22-secret"
        for command in (
            c.Register(secret),
            c.Unregister(secret),
            c.Login("alice", secret),
            c.Login(None, secret),
            c.Password(secret, secret + "2"),
            c.Password("old", secret),
            c.TokenLogin(secret),
            c.Oper("root", secret),
            parse_line(f"/identify alice {secret}"),
            parse_line(f"/password {secret} {secret}"),
        ):
            for shown in (repr(command), str(command), f"{command!r}"):
                self.assertNotIn(secret, shown)
        self.assertIn("alice", repr(c.Login("alice", secret)))

    def test_maxima(self) -> None:
        """
        Passwords are refused past C{MAX_PASSWORD}, each named as the user
        calls it; a login token past twice C{MAX_NAME}; a nick past
        C{MAX_NAME}.
        """
        long = "p" * (MAX_PASSWORD + 1)
        name = "n" * (MAX_NAME + 1)
        for command, said in (
            (c.Register(long), "the password is longer than 1024 characters"),
            (c.Unregister(long), "the password is longer than 1024 characters"),
            (c.Login("alice", long), "the password is longer than 1024 characters"),
            (c.Login(name, "pw"), "the name is longer than 64 characters"),
            (
                c.Password(long, "new"),
                "the old password is longer than 1024 characters",
            ),
            (
                c.Password("old", long),
                "the new password is longer than 1024 characters",
            ),
            (c.TokenLogin("t" * 129), "the login token is longer than 128 characters"),
            (c.Ignore(name), "the nick is longer than 64 characters"),
            (c.Unignore(name), "the nick is longer than 64 characters"),
            (
                c.AddKey("k" * (MAX_KEY_LINE + 1)),
                "the key is longer than 8192 characters",
            ),
            (c.RemoveKey(name), "the fingerprint is longer than 64 characters"),
            (c.KeyLogin(name), "the fingerprint is longer than 64 characters"),
            (c.Away("x" * (MAX_TEXT + 1)), "the text is longer than 4096 characters"),
        ):
            self.assertEqual(too_long(command), said, command)
        for command in (
            c.Register("p" * MAX_PASSWORD),
            c.TokenLogin("t" * 128),
            c.Login(None, "pw"),
            c.Away(None),
            c.Ignore(None),
            c.AddKey(None),
            c.AddKey("k" * MAX_KEY_LINE),
        ):
            self.assertIsNone(too_long(command), command)
