"""SIGHUP held for a reload until the server can do one.

By default SIGHUP ends a process, and one sent while the built-in server
starts (a ``systemctl reload`` just after a start) or stops would kill it;
systemd does not restart a service that died of SIGHUP.  Blocking it would
not do: the mask is per thread, and the threads trio starts for file and
password work would take it.  A handler is for the whole process: it notes
the signal, and the server reloads once it can.  trio's signal receiver
replaces it while the server runs and puts it back as it closes, so it also
covers the way out.

This module imports nothing heavy, so that the command can hold SIGHUP
before it loads the rest (the ``smtp-recv`` entry point, ``_entry``).
"""

from __future__ import annotations

import os
import signal
from types import FrameType

#: The signal that reloads the config file's tables (see ``_reload``).
RELOAD_SIGNAL = signal.SIGHUP

# A SIGHUP that came while it was held.
_asked = False


def _ask(number: int, frame: FrameType | None) -> None:
    global _asked
    _asked = True


def hold_reload_signal() -> None:
    """Until a reload can be done, note SIGHUP rather than die of it."""
    signal.signal(RELOAD_SIGNAL, _ask)


def release_reload_signal() -> None:
    """SIGHUP means no reload here after all: back to its default action,
    and one that came while it was held is delivered now."""
    signal.signal(RELOAD_SIGNAL, signal.SIG_DFL)
    if take_reload_request():
        os.kill(os.getpid(), RELOAD_SIGNAL)


def take_reload_request() -> bool:
    """Whether a SIGHUP came while it was held; forgets it."""
    global _asked
    asked, _asked = _asked, False
    return asked
