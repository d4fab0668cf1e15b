# -*- test-case-name: tests.test_config -*-
"""
The C{[operators]} section: operator names and their password hashes.

Unlike the other sections its keys are names the operator chooses, so it
has no table of known keys: L{_operators} reads the whole section.
"""

from dataclasses import dataclass

from tchat.config._base import ConfigError
from tchat.text import is_simple_name

ACCOUNT = "account"
"""The value of an C{[operators]} entry that names a registered account."""


@dataclass(frozen=True)
class OperatorsConfig:
    """
    The C{[operators]} section: operator names and their password hashes
    (see L{tchat.operators.hash_password}).

    An entry whose value is C{account} names a registered account: its
    owner becomes that operator on logging in to it.

    @ivar accounts: (name, hash or C{account}) pairs, in file order.
    """

    accounts: tuple[tuple[str, str], ...] = ()

    def hash_for(self, name: str) -> str | None:
        """
        @return: The hash of operator C{name}, or C{None} if there is none
            (or it is an account's, which has no password here).
        """
        found = dict(self.accounts).get(name)
        return None if found == ACCOUNT else found

    def by_account(self, key: str) -> str | None:
        """
        @param key: An account's key (L{tchat.text.nick_key} of its name).
        @return: The operator name the account's owner becomes, if any.
        """
        from tchat.text import nick_key

        for name, value in self.accounts:
            if value == ACCOUNT and nick_key(name) == key:
                return name
        return None


def _operators(items: list[tuple[str, str]]) -> OperatorsConfig:
    """
    The C{[operators]} section: any names, each with a password hash.
    """
    from tchat.operators import check_hash

    accounts: list[tuple[str, str]] = []
    for name, raw in items:
        if not is_simple_name(name):
            raise ConfigError(
                f"[operators] {name}: not an operator name: letters, digits, "
                "- and _, at most 32, starting with a letter"
            )
        if raw.strip() == ACCOUNT:
            accounts.append((name, ACCOUNT))
            continue
        try:
            accounts.append((name, check_hash(raw.strip())))
        except ValueError as e:
            raise ConfigError(f"[operators] {name}: {e}") from None
    return OperatorsConfig(tuple(accounts))
