"""The ``smtp-recv`` command (and ``python -m smtp_recv``).

With a config file SIGHUP means reload, so it is held (``_hangup``) before
the rest of the program is imported: that takes a fifth of a second, long
enough for a SIGHUP sent just after the start to kill a process that had
no handler yet.
"""

from __future__ import annotations

import sys

from ._hangup import hold_reload_signal


def main() -> int:
    """Run the command line in ``sys.argv``; return the exit status."""
    arguments = sys.argv[1:]
    if "serve" in arguments and any(
        argument == "--config" or argument.startswith("--config=") for argument in arguments
    ):
        hold_reload_signal()  # serve_command lets it go if there is no file after all
    from ._cli import main as run_command  # the heavy part: trio, the protocol, ...

    return run_command()
