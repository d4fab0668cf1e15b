# -*- test-case-name: tests.integration.test_packaging -*-
"""
What users install and run: the wheel's contents, the installed plugin,
C{twistd tchat --check}, and a clean refusal when the port is taken.

These run real subprocesses (pip, twistd) from fresh temporary directories
with C{PYTHONPATH} removed, so the checkout cannot stand in for what a user
would really get.
"""

import json
import os
import re
import shutil
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from twisted.internet.protocol import ServerFactory
from twisted.trial.unittest import TestCase

from tests.integration.server import (
    LOOPBACK,
    TAP_INI,
    TWISTD,
    async_test,
    global_reactor,
    make_directory,
    run_process,
)
from tests.support import require

REPO = Path(__file__).resolve().parents[2]
"""The checkout these tests were loaded from."""

_NOT_COPIED = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "_trial_temp*",
    ".venv*",
    ".mypy_cache",
    ".ruff_cache",
    "__pycache__",
)


def _clean_env() -> dict[str, str]:
    """
    Our environment without C{PYTHONPATH}, so a child sees only what is
    installed.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def _setuptools_version() -> tuple[int, ...]:
    try:
        text = version("setuptools")
    except PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


class WheelTests(TestCase):
    """
    The wheel built from the checkout.
    """

    @async_test
    async def test_wheel_contents(self) -> None:
        """
        The wheel holds the plugin module and every tchat module, but no
        twisted/__init__.py or twisted/plugins/__init__.py (which would
        hide Twisted's own plugins), no dropin.cache and no tests.
        """
        require(
            _setuptools_version() >= (77,),
            "setuptools>=77 is needed to build the wheel offline: "
            "pip install 'setuptools>=77' (it is in tchat[test])",
        )
        work = make_directory(self)
        # Build from a copy: an in-tree build would write build/ and
        # *.egg-info into the checkout, and a stale build/ can leak old
        # files into the wheel.
        source = os.path.join(work, "src")
        shutil.copytree(REPO, source, ignore=_NOT_COPIED)
        # twistd leaves this cache next to the plugin in a dev checkout; it
        # must never be shipped.
        Path(source, "twisted", "plugins", "dropin.cache").write_bytes(b"stale")
        out = os.path.join(work, "wheels")
        args = [sys.executable, "-m", "pip", "wheel", "--no-deps"]
        args += ["--no-build-isolation", "--no-index", "--disable-pip-version-check"]
        args += ["-w", out, source]
        result = await run_process(
            self, sys.executable, args, path=work, env=_clean_env(), timeout=120
        )
        self.assertEqual(result.exit_code, 0, result.output)
        wheels = sorted(Path(out).glob("tchat-*.whl"))
        self.assertEqual(len(wheels), 1, f"{wheels!r}\n{result.output}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            names = set(wheel.namelist())

        self.assertIn("twisted/plugins/tchat_plugin.py", names)
        # Every module, those of tchat's own packages (tchat.config, ...)
        # included: setuptools takes only the packages it is told of.
        modules = sorted(
            p.relative_to(REPO / "tchat").as_posix()
            for p in (REPO / "tchat").rglob("*.py")
        )
        self.assertIn("__init__.py", modules)
        self.assertIn("config/__init__.py", modules)
        for module in [*modules, "py.typed"]:
            self.assertIn(f"tchat/{module}", names)
        for unwanted in ("twisted/__init__.py", "twisted/plugins/__init__.py"):
            self.assertNotIn(unwanted, names)
        self.assertEqual([n for n in names if n.endswith("dropin.cache")], [])
        self.assertEqual([n for n in names if n.startswith("tests/")], [])


_FIND_PLUGIN = """
import json, sys
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
names = sorted(p.tapname for p in getPlugins(IServiceMaker))
import tchat
plugin = sys.modules.get("twisted.plugins.tchat_plugin")
print(json.dumps({
    "tapnames": names,
    "tchat": tchat.__file__,
    "plugin": plugin.__file__ if plugin else None,
}))
"""


_CHECKOUT_SOURCES = frozenset(
    {REPO / "tchat" / "__init__.py", REPO / "twisted" / "plugins" / "tchat_plugin.py"}
)
"""The checkout's own files, which an editable or PYTHONPATH setup imports.
A virtualenv inside the checkout (the README's .venv) is an installation."""


def _from_checkout(path: str) -> bool:
    return Path(path).resolve() in _CHECKOUT_SOURCES


class InstalledPluginTests(TestCase):
    """
    The installed package, seen from outside the checkout.
    """

    @async_test
    async def test_installed_package_provides_the_plugin(self) -> None:
        """
        From a directory outside the checkout and without PYTHONPATH,
        getPlugins(IServiceMaker) finds "tchat", and both the tchat package
        and the plugin module come from the installation, not the checkout.
        """
        result = await run_process(
            self,
            sys.executable,
            [sys.executable, "-c", _FIND_PLUGIN],
            path=make_directory(self),
            env=_clean_env(),
        )
        self.assertEqual(result.exit_code, 0, result.output)
        found = json.loads(result.stdout)
        self.assertIn("tchat", found["tapnames"])
        self.assertIsNotNone(found["plugin"], "tchat's plugin module was loaded")
        from_checkout = [
            path for path in (found["tchat"], found["plugin"]) if _from_checkout(path)
        ]
        require(
            not from_checkout,
            f"tchat is not installed from a wheel: pip install . "
            f"({', '.join(from_checkout)} is the checkout's source)",
        )
        self.assertTrue(found["plugin"].endswith("twisted/plugins/tchat_plugin.py"))
        self.assertTrue(found["tchat"].endswith("tchat/__init__.py"))

    @async_test
    async def test_twistd_help(self) -> None:
        """
        "twistd tchat --help" run outside the checkout, without PYTHONPATH,
        exits 0 and documents --telnet.
        """
        result = await run_process(
            self,
            TWISTD,
            [TWISTD, "tchat", "--help"],
            path=make_directory(self),
            env=_clean_env(),
        )
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("--telnet", result.stdout.decode())
        self.assertIn("--check", result.stdout.decode())


class CheckTests(TestCase):
    """
    C{twistd -n tchat --check}: the operator's way to test a tap.ini.
    """

    @async_test
    async def test_bad_config(self) -> None:
        """
        An unknown key in ./tap.ini makes --check exit 1 with one line on
        stderr naming "[server] bogus", and no traceback.
        """
        directory = make_directory(self)
        Path(directory, "tap.ini").write_text("[server]\nbogus = 1\n")
        result = await run_process(
            self, TWISTD, [TWISTD, "-n", "tchat", "--check"], path=directory
        )
        self.assertEqual(result.exit_code, 1, result.output)
        self.assertEqual(result.stdout, b"")
        lines = result.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, result.output)
        self.assertTrue(
            lines[0].startswith(
                "tchat: configuration error: tap.ini: [server] bogus: not a known key"
            ),
            lines[0],
        )

    @async_test
    async def test_good_config(self) -> None:
        """
        A valid config makes --check exit 0 and print where it was read from
        and each listener; --telnet replaces tap.ini's listeners.
        """
        directory = make_directory(self)
        config = os.path.join(directory, "good.ini")
        Path(config).write_text(TAP_INI)
        check = [TWISTD, "-n", "tchat", "--config", config, "--check"]
        result = await run_process(self, TWISTD, check, path=directory)
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(
            result.stdout.decode(),
            f"tchat: configuration OK ({config})\n"
            "telnet: tcp:4444:interface=127.0.0.1\n"
            "admin: tcp:9100:interface=127.0.0.1\n",
        )
        self.assertEqual(result.stderr, b"")

        override = [*check, "--telnet", "tcp:0:interface=127.0.0.1"]
        override += ["--telnet", "unix:tchat.sock"]
        result = await run_process(self, TWISTD, override, path=directory)
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertEqual(
            result.stdout.decode(),
            f"tchat: configuration OK ({config})\n"
            "telnet: tcp:0:interface=127.0.0.1\n"
            "telnet: unix:tchat.sock\n"
            "admin: tcp:9100:interface=127.0.0.1\n",
        )
        self.assertFalse(
            os.path.exists(os.path.join(directory, "tchat.sock")),
            "--check listens on nothing",
        )


class ListenFailureTests(TestCase):
    """
    A listener that cannot listen.
    """

    @async_test
    async def test_port_taken(self) -> None:
        """
        With its port already taken, the server exits non-zero with one
        line saying it cannot listen there (and why), and no traceback.
        """
        taken = global_reactor().listenTCP(0, ServerFactory(), interface=LOOPBACK)
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        directory = make_directory(self)
        Path(directory, "tap.ini").write_text(TAP_INI)
        endpoint = f"tcp:{port}:interface={LOOPBACK}"
        args = [TWISTD, "-n", "--pidfile=", "tchat", "--telnet", endpoint]
        result = await run_process(self, TWISTD, args, path=directory, timeout=20)
        self.assertNotEqual(result.exit_code, 0, result.output)
        self.assertNotIn("Traceback", result.output)
        said = [line for line in result.output.splitlines() if "cannot listen" in line]
        self.assertEqual(len(said), 1, result.output)
        self.assertRegex(
            said[0],
            rf"tchat: the telnet door cannot listen on {re.escape(endpoint)}: "
            r".*Address already in use$",
        )
