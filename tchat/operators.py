# -*- test-case-name: tests.test_operators -*-
"""
Operator passwords: scrypt hashes in C{tap.ini}, checked in constant time.

A hash reads C{scrypt$LOG2N$R$P$SALT$KEY} (salt and key in unpadded
base64), so its cost travels with it and can be raised later without
breaking existing entries.  Make one with::

    python -m tchat.operators NAME

which asks for the password twice and prints the C{[operators]} line.
Checking a password costs tens of milliseconds of CPU on purpose: callers
run L{verify_password} in a thread, never on the reactor.
"""

import base64
import getpass
import hashlib
import hmac
import os
import sys

from tchat.text import is_simple_name

# About 50-100 ms and 32 MiB per check on a current CPU: slow for guessing,
# fine for an operator logging in.
DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 1
_KEY_BYTES = 32
_SALT_BYTES = 16

# Checked against when the name is unknown, so a wrong name costs the same
# time as a wrong password.
_DUMMY = (
    "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
        dklen=_KEY_BYTES,
    )


def hash_password(
    password: str,
    log2_n: int = DEFAULT_LOG2_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """
    Hash an operator password for C{[operators]}.

    @param log2_n: scrypt's CPU and memory cost, as a power of two; tests
        use small ones.
    @return: The encoded hash.
    """
    if salt is None:
        salt = os.urandom(_SALT_BYTES)
    key = _derive(password, salt, log2_n, r, p)
    return f"scrypt${log2_n}${r}${p}${_b64(salt)}${_b64(key)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(
            "is not a password hash; make one with: python -m tchat.operators NAME"
        )
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError(
            "is a damaged password hash; make a new one with: "
            "python -m tchat.operators NAME"
        ) from None
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError(
            "has scrypt costs out of range (N 2^1..2^20, r 1..32, p 1..16)"
        )
    if len(salt) < 8 or len(key) != _KEY_BYTES:
        raise ValueError("has a salt or key of the wrong length")
    return log2_n, r, p, salt, key


def check_hash(encoded: str) -> str:
    """
    Check that C{encoded} is a hash L{verify_password} can use.

    @return: C{encoded}.
    @raise ValueError: Saying what is wrong, for the configuration error.
    """
    _parse(encoded)
    return encoded


def verify_password(password: str, encoded: str | None) -> bool:
    """
    Whether C{password} matches C{encoded}, in constant time.

    Slow on purpose: call it from a thread.

    @param encoded: The stored hash; C{None} for an unknown operator name,
        which is checked against a dummy hash so it takes as long.
    """
    log2_n, r, p, salt, key = _parse(encoded or _DUMMY)
    derived = _derive(password, salt, log2_n, r, p)
    return hmac.compare_digest(derived, key) and encoded is not None


def main(argv: list[str] | None = None) -> int:
    """
    C{python -m tchat.operators NAME}: print a C{[operators]} line.

    The password is read without echo (twice), or from standard input when
    it is not a terminal (one line).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m tchat.operators NAME", file=sys.stderr)
        return 2
    name = args[0]
    if not is_simple_name(name):
        print(
            "tchat: an operator name is letters, digits, - and _, starting "
            "with a letter",
            file=sys.stderr,
        )
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for operator {name}: ")
        if getpass.getpass("again: ") != password:
            print("tchat: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("tchat: use a password of at least 8 characters", file=sys.stderr)
        return 1
    print(f"{name} = {hash_password(password)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
