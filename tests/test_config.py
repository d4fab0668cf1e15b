"""
Tests for L{tchat.config}: reading C{tap.ini} and every way it can be wrong.
"""

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tchat.config import (
    Config,
    ConfigError,
    ServerConfig,
    TelnetConfig,
    config_from_string,
    known_keys,
    load_config,
    with_overrides,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "tap.ini"


class ConfigFromStringTests(SynchronousTestCase):
    """
    L{config_from_string} accepts what is documented and names every mistake.
    """

    def assertConfigError(self, text: str, *fragments: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            config_from_string(text, source="test.ini")
        message = str(caught.exception)
        self.assertTrue(message.startswith("test.ini: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_empty_is_defaults(self) -> None:
        """
        An empty file gives the built-in defaults.
        """
        config = config_from_string("")
        self.assertEqual(config.server, ServerConfig())
        self.assertEqual(config.telnet, TelnetConfig())
        self.assertEqual(config.telnet.listen, ("tcp:4444:interface=127.0.0.1",))

    def test_values_read(self) -> None:
        """
        Every key is read into the frozen config, multi-line values included.
        """
        config = config_from_string(
            "[server]\nname = Hub\nmotd = one\n  two\ndefault_room = main\n"
            "[telnet]\nlisten = tcp:1:interface=127.0.0.1\n"
            "    unix:/tmp/t.sock\n[limits]\nmax_line = 100\nexempt = ::1, 10.0.0.0/8\n"
        )
        self.assertEqual(config.server, ServerConfig("Hub", ("one", "two"), "#main"))
        self.assertEqual(
            config.telnet,
            TelnetConfig(("tcp:1:interface=127.0.0.1", "unix:/tmp/t.sock")),
        )
        self.assertEqual(config.limits.max_line, 100)
        self.assertEqual(config.limits.exempt, ("::1", "10.0.0.0/8"))

    def test_no_interpolation(self) -> None:
        """
        A C{%} in a value is taken literally.
        """
        config = config_from_string("[server]\nmotd = 100% uptime, %(x)s\n")
        self.assertEqual(config.server.motd, ("100% uptime, %(x)s",))

    def test_allowed_hosts(self) -> None:
        """
        C{[web] allowed_hosts}: names, C{*.} domains, addresses (IPv6 with
        or without brackets) and C{*}, separated by spaces, in a canonical
        form; none by default.
        """
        self.assertEqual(config_from_string("").web.allowed_hosts, ())
        config = config_from_string(
            "[web]\nallowed_hosts = Chat.Example.org. *.example.net\n"
            "    [2001:DB8::7] 192.0.2.7 *\n"
        )
        self.assertEqual(
            config.web.allowed_hosts,
            ("chat.example.org", "*.example.net", "2001:db8::7", "192.0.2.7", "*"),
        )

    def test_bad_allowed_hosts(self) -> None:
        """
        What is not a host is refused, saying what is expected; a port is
        pointed out, since any port is allowed.
        """
        self.assertConfigError(
            "[web]\nallowed_hosts = chat.example.org:8443\n",
            "[web] allowed_hosts: 'chat.example.org:8443' is not a host name",
            "give it without the port (chat.example.org): any port is allowed",
        )
        for value in ("http://chat.example.org", "a..b", "*.", "ex*ample.org"):
            self.assertConfigError(
                f"[web]\nallowed_hosts = {value}\n",
                f"[web] allowed_hosts: {value!r} is not a host name or an IP address",
                "such as chat.example.org or *.example.org",
            )

    def test_empty_listen_allowed(self) -> None:
        """
        C{listen =} with nothing means no listener from the file.
        """
        self.assertEqual(config_from_string("[telnet]\nlisten =\n").telnet.listen, ())

    def test_unknown_section(self) -> None:
        """
        An unknown section is named, with the known ones.
        """
        self.assertConfigError("[srever]\nname = x\n", "[srever]", "[server]")

    def test_default_section_refused(self) -> None:
        """
        C{[DEFAULT]} is not special here: it is an unknown section.
        """
        self.assertConfigError("[DEFAULT]\nname = x\n", "[DEFAULT]")

    def test_unknown_key(self) -> None:
        """
        An unknown key names section and key, and lists the known keys.
        """
        self.assertConfigError(
            "[server]\nmtod = hi\n", "[server] mtod", "not a known key", "motd"
        )

    def test_key_case_matters(self) -> None:
        """
        C{Name} is not C{name}: keys are documented in lower case.
        """
        self.assertConfigError("[server]\nName = x\n", "[server] Name")

    def test_bad_number(self) -> None:
        """
        A non-number is named as such.
        """
        self.assertConfigError(
            "[limits]\nmax_line = lots\n", "[limits] max_line", "'lots'", "whole number"
        )

    def test_number_out_of_range(self) -> None:
        """
        A number outside the allowed range says the range.
        """
        self.assertConfigError(
            "[limits]\nmax_line = 10\n", "[limits] max_line", "between 64 and"
        )

    def test_moved_key(self) -> None:
        """
        A key that moved to C{[limits]} says where it went, rather than
        only that it is unknown.
        """
        self.assertConfigError(
            "[telnet]\nmax_line = 4096\n", "[telnet] max_line", "[limits] max_line"
        )
        self.assertConfigError(
            "[web]\nmax_message = 4096\n", "[web] max_message", "[limits] max_frame"
        )

    def test_bad_limits(self) -> None:
        """
        Limits that make no sense are refused with what is allowed.
        """
        self.assertConfigError(
            "[limits]\nexempt = 127.0.0.1 localhost\n", "[limits] exempt", "'localhost'"
        )
        self.assertConfigError(
            "[limits]\nidle_timeout = 60\n", "[limits] idle_timeout", "at least 600"
        )
        self.assertConfigError(
            "[limits]\nmessages_per_second = nan\n",
            "[limits] messages_per_second",
            "between 0 and",
        )

    def test_bad_room(self) -> None:
        """
        An invalid default room says why.
        """
        self.assertConfigError(
            "[server]\ndefault_room = #a b\n", "[server] default_room", "'#a b'"
        )

    def test_empty_name(self) -> None:
        """
        The server needs a name.
        """
        self.assertConfigError("[server]\nname =\n", "[server] name", "empty")

    def test_name_with_control_characters(self) -> None:
        """
        A name with an escape sequence is refused rather than silently changed.
        """
        self.assertConfigError(
            "[server]\nname = a\x1b[2Jb\n", "[server] name", "control characters"
        )

    def test_motd_is_cleaned(self) -> None:
        """
        Control characters in the MOTD never reach users.
        """
        config = config_from_string("[server]\nmotd = hi\x1b[2J there\x07\n")
        self.assertEqual(config.server.motd, ("hi there",))

    def test_bad_endpoint(self) -> None:
        """
        A listen value that is not TYPE:ARGS is refused with an example.
        """
        self.assertConfigError(
            "[telnet]\nlisten = 4444\n", "[telnet] listen", "'4444'", "tcp:4444"
        )

    def test_duplicate_section(self) -> None:
        """
        A section given twice is named with the line.
        """
        self.assertConfigError("[server]\n[server]\n", "[server] appears twice")

    def test_duplicate_key(self) -> None:
        """
        A key given twice is named with the line.
        """
        self.assertConfigError(
            "[server]\nname = a\nname = b\n", "[server] name", "set twice", "line 3"
        )

    def test_setting_outside_section(self) -> None:
        """
        A setting before any section header is named with its line.
        """
        self.assertConfigError("name = a\n", "line 1", "outside any [section]")

    def test_garbage(self) -> None:
        """
        A line that is neither section nor setting is a parse error.
        """
        self.assertConfigError("[server]\nthis is not ini\n", "cannot be parsed")


class LoadConfigTests(SynchronousTestCase):
    """
    L{load_config} reads files and explains what it cannot read.
    """

    def test_missing_file(self) -> None:
        """
        A missing file is named, with the system's reason.
        """
        path = Path(self.mktemp())
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertIn(str(path), str(caught.exception))
        self.assertIn("cannot be read", str(caught.exception))

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 is refused as such.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"[server]\nname = caf\xe9\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertIn("not UTF-8", str(caught.exception))

    def test_error_names_file(self) -> None:
        """
        Errors in a file start with the file's path.
        """
        path = Path(self.mktemp())
        path.write_text("[server]\nbogus = 1\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertTrue(str(caught.exception).startswith(f"{path}: [server] bogus"))


class ShippedConfigTests(SynchronousTestCase):
    """
    The C{tap.ini} in the repository documents every key and changes nothing.
    """

    def test_equals_defaults(self) -> None:
        """
        The shipped values are the built-in defaults.
        """
        shipped = load_config(SHIPPED)
        self.assertEqual(shipped.server, Config().server)
        self.assertEqual(shipped.telnet, Config().telnet)
        self.assertEqual(shipped.web, Config().web)
        self.assertEqual(shipped.history, Config().history)
        self.assertEqual(shipped.onion, Config().onion)
        self.assertEqual(shipped.admin, Config().admin)
        self.assertEqual(shipped.log, Config().log)
        self.assertEqual(shipped.operators, Config().operators)

    def test_every_key_documented(self) -> None:
        """
        Every section and key appears in the shipped file, each key right
        after a comment.
        """
        lines = SHIPPED.read_text().splitlines()
        for section, keys in known_keys().items():
            self.assertIn(f"[{section}]", lines)
            for key in keys:
                index = next(
                    (i for i, ln in enumerate(lines) if re.match(rf"{key}\s*=", ln)),
                    None,
                )
                self.assertIsNotNone(index, f"[{section}] {key} is not in tap.ini")
                assert index is not None
                self.assertTrue(
                    lines[index - 1].startswith("#"), f"{key} has no comment above"
                )


class OverrideTests(SynchronousTestCase):
    """
    Command-line values replace file values.
    """

    def test_telnet_listen_replaced(self) -> None:
        """
        C{--telnet} endpoints replace the whole C{[telnet] listen} list.
        """
        config = with_overrides(Config(), telnet_listen=("tcp:0",))
        self.assertEqual(config.telnet.listen, ("tcp:0",))
        self.assertEqual(config.limits, Config().limits)

    def test_none_keeps(self) -> None:
        """
        No override keeps the file's value.
        """
        self.assertEqual(with_overrides(Config(), telnet_listen=None), Config())


class OperationsConfigTests(SynchronousTestCase):
    """
    C{[server] shutdown_grace} and C{[log] format}.
    """

    def test_values(self) -> None:
        """
        Both are read, with their defaults otherwise.
        """
        config = config_from_string(
            "[server]\nshutdown_grace = 1.5\n[log]\nformat = JSON\n"
        )
        self.assertEqual(config.server.shutdown_grace, 1.5)
        self.assertEqual(config.log.format, "json")
        self.assertEqual(Config().server.shutdown_grace, 5.0)
        self.assertEqual(Config().log.format, "text")

    def test_errors(self) -> None:
        """
        Out-of-range or unknown values name the key.
        """
        for text, fragment in (
            (
                "[server]\nshutdown_grace = 301\n",
                "[server] shutdown_grace: must be between 0 and 300",
            ),
            ("[log]\nformat = xml\n", "[log] format: 'xml' is not text or json"),
        ):
            with self.assertRaises(ConfigError) as caught:
                config_from_string(text, "t.ini")
            self.assertIn(fragment, str(caught.exception))

    def test_shipped_operators_section(self) -> None:
        """
        The shipped C{tap.ini} documents C{[operators]} with the command
        that makes a hash, and has no account in it.
        """
        text = SHIPPED.read_text()
        self.assertIn("[operators]", text)
        self.assertIn("python -m tchat.operators NAME", text)
        self.assertEqual(load_config(SHIPPED).operators.accounts, ())
