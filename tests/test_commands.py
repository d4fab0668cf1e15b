"""
Tests for L{tchat.commands}: the command layer every door shares.
"""

from twisted.trial.unittest import SynchronousTestCase

from tchat.commands import (
    MAX_TEXT,
    Color,
    CommandError,
    Join,
    Me,
    Msg,
    Nick,
    Part,
    Quit,
    Rooms,
    Say,
    SetTopic,
    ShowHelp,
    ShowMotd,
    WhoIs,
    parse_line,
)


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
