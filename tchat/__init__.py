"""
tchat: one Twisted chat hub shared by telnet, browser and Tor users.
"""

__version__ = "0.1.0"
