"""The plaintext socket of a session, read and written without a detour.

``trio.SocketStream`` pays, on every receive and send, for a conflict
detector, a cancellation check and a trip through the scheduler before it
even tries the system call.  Between a client that answers in lock-step and
a server with many sessions, the data is almost always already there (or
the socket buffer has room), so a session tries the non-blocking call first
and waits, under its deadline, only when the kernel says it must.

The object here is a second ``socket.socket`` over the file descriptor that
the ``trio.SocketStream`` owns: the stream stays the owner (it closes the
descriptor, and TLS is layered on it after STARTTLS), and ``detach()`` drops
this view first so it never closes what it does not own.
"""

from __future__ import annotations

import socket

import trio


class PlainSocket:
    """Non-blocking calls on a stream's socket, and waits for readiness."""

    __slots__ = ("_sock",)

    def __init__(self, stream: trio.SocketStream) -> None:
        # With the default timeout (None) the view leaves the descriptor's
        # O_NONBLOCK flag, set by trio, as it is: calls never block.
        self._sock: socket.socket | None = socket.socket(fileno=stream.socket.fileno())

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """Bytes waiting in the kernel; ``b""`` at EOF, ``None`` when none yet."""
        sock = self._view()
        try:
            return sock.recv(max_bytes)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            raise trio.BrokenResourceError(error) from error

    def send_nowait(self, data: bytes | memoryview) -> int:
        """As much of ``data`` as the kernel takes now; the count sent."""
        sock = self._view()
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as error:
            raise trio.BrokenResourceError(error) from error

    def has_data(self) -> bool:
        """Whether the client has sent bytes (or closed), without reading them."""
        sock = self._view()
        try:
            return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._view())

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self._view())

    def detach(self) -> None:
        """Drop the view; the stream still owns (and will close) the socket."""
        if self._sock is not None:
            self._sock.detach()
            self._sock = None

    def _view(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise trio.ClosedResourceError("the plaintext view was detached")
        return sock
