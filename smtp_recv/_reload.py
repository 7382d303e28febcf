"""SIGHUP: the built-in server reads its config file again, without a restart.

What the file says about *who* is replaced whole: the recipient map, the
users file and the list of certificates.  Adding an alias, a user or a
domain's certificate then costs no restart, and so no refused connections
and no idle sessions told to go.  What the file says about *how* (the
listeners, limits, timeouts, protocol options, the hostname and the Maildir
root) takes a restart: a reload that changes any of it says so in the log
and leaves it as it runs.  A file that does not load changes nothing.

A session sees the old tables or the new for each question it asks, never a
mix within one answer.  A user removed by a reload can no longer send, even
on a connection that logged in before: the sender check asks the new table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ._hooks import Certificate
from ._settings import Settings, load_settings


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did."""

    #: Settings the file changed that take a restart (left as they run).
    restart_needed: tuple[str, ...]
    #: Problems that do not stop the server (an expired certificate).
    warnings: tuple[str, ...]


class ConfigTables:
    """The config file's tables as the server's Forward, Auth, SenderPolicy and CertByHost.

    Each call asks the tables loaded last; :meth:`reload` replaces them.
    ``overridden`` names the settings the command line sets whatever the
    file says (``--mx-port``): a change in the file to those needs no
    restart, as a restart would not apply it either.
    """

    def __init__(self, settings: Settings, *, overridden: Collection[str] = ()) -> None:
        self._settings = settings
        self._overridden = frozenset(overridden)

    @property
    def settings(self) -> Settings:
        """The settings loaded last (with what takes a restart as it runs)."""
        return self._settings

    async def lookup(self, recipient: str) -> Sequence[str]:
        return await self._settings.recipients.lookup(recipient)

    async def verify(self, host: str | None, username: str, password: str) -> str | None:
        return await self._settings.users.verify(host, username, password)

    async def may_send_as(self, user_id: str, username: str, sender: str) -> bool:
        return await self._settings.users.may_send_as(user_id, username, sender)

    def get(self, host: str | None) -> Certificate:
        return self._settings.certificates.get(host)

    def reload(self) -> Reloaded:
        """Read the config file again and take its tables.

        Blocking (it reads files and hashes a password, see ``Users``): run
        it in a thread.

        Raises:
            ConfigError: the file does not load; nothing was changed.
        """
        running = self._settings
        new = load_settings(running.source)
        changed = [
            field.name
            for field in dataclasses.fields(running.config)
            if field.name not in self._overridden
            and getattr(running.config, field.name) != getattr(new.config, field.name)
        ]
        if not (running.hostname_in_file or new.hostname_in_file) and "hostname" in changed:
            # Both the system's name, looked up again: a resolver's hiccup
            # is no change of the file.
            changed.remove("hostname")
        if new.maildir_root != running.maildir_root:
            changed.append("maildir_root")
        # What takes a restart stays as it runs, so that the next reload is
        # compared with what runs, not with a file that was never applied.
        self._settings = dataclasses.replace(
            new, config=running.config, maildir_root=running.maildir_root
        )
        return Reloaded(restart_needed=tuple(changed), warnings=new.warnings)
