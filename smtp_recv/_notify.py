"""sd_notify(3): tell systemd when the server is ready, reloading or stopping.

With ``Type=notify`` systemd counts the service as started only once it
says ``READY=1``: units ordered after it wait for the listeners, and a
``systemctl reload`` sent early waits too instead of finding a process
that cannot take SIGHUP yet.  ``RELOADING=1`` and ``STOPPING=1`` show in
``systemctl status`` (and ``Type=notify-reload``, systemd 253, waits for
the ``READY=1`` that ends a reload).  Without ``NOTIFY_SOCKET`` every call
does nothing, so the same code runs under any supervisor or none.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger("smtp_recv.cli")


class Notifier:
    """Sends state changes to systemd's notification socket, if there is one."""

    def __init__(self, address: str | None = None) -> None:
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self._address = address
        # Once stopping, nothing else is said: a READY=1 after STOPPING=1
        # could make systemd take a draining server for a running one.
        self._stopping = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str]) -> Notifier:
        """Take ``NOTIFY_SOCKET`` out of ``environ``, as sd_notify's
        ``unset_environment`` does: the workers and anything else we start
        must not speak for the service."""
        address = environ.pop("NOTIFY_SOCKET", None)
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%r is not a Unix socket; not notifying systemd", address)
            address = None
        return cls(address or None)

    def ready(self) -> None:
        """The listeners are bound (or a reload is over)."""
        if not self._stopping:
            self._send("READY=1")

    def reloading(self) -> None:
        if not self._stopping:
            self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self._address)
        except OSError as error:
            log.warning("could not notify systemd of %s: %s", message.split("\n")[0], error)
