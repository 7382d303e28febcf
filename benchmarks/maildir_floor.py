"""What one Maildir delivery costs the kernel on a disk, before any server runs.

Scenario M measures a whole server storing each message.  This measures
only the file system work that any Maildir writer must do per message, in a
tight loop with no SMTP at all: create a file in ``tmp/``, write 1 KiB,
close it and rename it into ``new/``; with ``fsync`` also ``fsync`` the file
and the directory, as the built-in Mailer does.  Its CPU time is a floor
under any server's CPU per message in M on that disk.

    python benchmarks/maildir_floor.py [--dir /tmp] [--count 5000]

Prints CPU and wall milliseconds per delivery, without and with fsync.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

BODY = b"x" * 1100


def deliveries(directory: str, count: int, fsync: bool) -> tuple[float, float]:
    """CPU and wall seconds per delivery of ``count`` messages into a new Maildir."""
    root = tempfile.mkdtemp(prefix="maildir-floor-", dir=directory)
    try:
        tmp, new = os.path.join(root, "tmp"), os.path.join(root, "new")
        os.mkdir(tmp)
        os.mkdir(new)
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(count):
            name = f"{i}.floor"
            temporary = os.path.join(tmp, name)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(descriptor, BODY)
                if fsync:
                    os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.rename(temporary, os.path.join(new, name))
            if fsync:
                directory_descriptor = os.open(new, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(directory_descriptor)
                finally:
                    os.close(directory_descriptor)
        return (time.process_time() - cpu) / count, (time.perf_counter() - wall) / count
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (a disk)")
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    for fsync in (False, True):
        cpu, wall = deliveries(args.dir, args.count, fsync)
        print(
            f"{args.dir}: fsync {'on ' if fsync else 'off'}: "
            f"{cpu * 1e3:.3f} ms CPU, {wall * 1e3:.3f} ms wall per delivery"
        )


if __name__ == "__main__":
    main()
