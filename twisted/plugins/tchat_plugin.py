# -*- test-case-name: tests.test_tap -*-
"""
The twistd plugin that makes C{twistd tchat} start the chat hub.

This module is deliberately tiny: twistd imports every plugin module to list
them, so the real work is imported only when C{tchat} is chosen.
"""

from twisted.application.service import ServiceMaker

tchat = ServiceMaker(
    "tchat",
    "tchat.tap",
    "One chat hub shared by telnet, browser and Tor users.",
    "tchat",
)
