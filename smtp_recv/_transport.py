"""A session's socket, plaintext or TLS, read and written without a detour.

``trio.SocketStream`` and ``trio.SSLStream`` pay, on every receive and send,
for conflict detectors, a cancellation check and a trip through the
scheduler before they even try the system call; ``SSLStream`` also moves
every record through memory BIOs in Python.  Between a client that answers
in lock-step and a server with many sessions, the data is almost always
already there (or the socket buffer has room), so a session tries the
non-blocking call first and waits, under its deadline, only when the kernel
(or OpenSSL) says it must.

TLS is the standard library's ``SSLSocket`` in non-blocking mode: OpenSSL
reads and writes the descriptor itself, in C.  ``SSLWantReadError`` and
``SSLWantWriteError`` say which readiness to wait for, and a call is always
retried before any wait, so bytes OpenSSL has already decrypted are never
left waiting for a readiness event that will not come.

The transport owns the accepted socket's descriptor: first as the plain
socket ``accept`` gave, then as the ``SSLSocket`` that ``wrap_socket`` makes
of it, so exactly one object holds it at any time.  ``close()`` closes it.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import ssl

import trio


class _Want(enum.Enum):
    READ = "read"
    WRITE = "write"


class Transport:
    """Non-blocking calls on a session's socket, and the waits between them."""

    __slots__ = ("_receive_wants", "_send_wants", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        """Take over a connected socket (and close it when done)."""
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Replies are small and each answers the client's last words:
            # Nagle's algorithm would hold one back until the client's
            # delayed ACK of the one before.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Unlike trio.SocketStream, no TCP_NOTSENT_LOWAT: it keeps a
            # bulk sender's queue short, and a server that sends replies of
            # a few hundred bytes never builds a queue.
        self._sock: socket.socket | None = sock
        # Which readiness the last unfinished call needs (TLS may need to
        # write to read, and read to write).
        self._receive_wants = _Want.READ
        self._send_wants = _Want.WRITE

    # -- plaintext and TLS alike -------------------------------------------------
    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """Bytes from the client; ``b""`` at EOF, ``None`` when none yet."""
        sock = self._view()
        try:
            return sock.recv(max_bytes)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            self._receive_wants = _Want.READ
            return None
        except ssl.SSLWantWriteError:
            self._receive_wants = _Want.WRITE
            return None
        except ssl.SSLZeroReturnError:
            return b""
        except OSError as error:
            # ssl.SSLError is an OSError: a broken record is a broken stream.
            raise trio.BrokenResourceError(error) from error

    def send_nowait(self, data: bytes | memoryview) -> int:
        """As much of ``data`` as can be sent now; the count sent.

        After ``0`` (or a short count) under TLS, the next call must offer
        the same bytes again, as OpenSSL requires.
        """
        sock = self._view()
        try:
            return sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            self._send_wants = _Want.WRITE
            return 0
        except ssl.SSLWantReadError:
            self._send_wants = _Want.READ
            return 0
        except OSError as error:
            raise trio.BrokenResourceError(error) from error

    async def send_all(self, data: bytes | memoryview) -> None:
        """Send all of ``data``, waiting for room as needed; the caller bounds the time."""
        rest = memoryview(data)
        while True:
            rest = rest[self.send_nowait(rest) :]
            if not rest:
                return
            await self.wait_sendable()

    async def wait_receivable(self) -> None:
        """Wait until ``receive_nowait`` can make progress."""
        await self._wait(self._receive_wants)

    async def wait_sendable(self) -> None:
        """Wait until ``send_nowait`` can make progress."""
        await self._wait(self._send_wants)

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
        """Wait until the client has sent something (or closed)."""
        await self._wait(_Want.READ)

    # -- TLS -------------------------------------------------------------------
    async def start_tls(self, context: ssl.SSLContext) -> ssl.SSLSocket:
        """Run the server side of a TLS handshake; the caller bounds its time.

        Raises ``trio.BrokenResourceError`` when the handshake fails.
        """
        plain = self._view()
        try:
            # wrap_socket takes the descriptor over (and detaches ``plain``).
            tls = context.wrap_socket(plain, server_side=True, do_handshake_on_connect=False)
        except OSError as error:
            raise trio.BrokenResourceError(error) from error
        self._sock = tls
        # wrap_socket gives the new object the old one's timeout: 0.0, so
        # the descriptor stays non-blocking.
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._wait(_Want.READ)
            except ssl.SSLWantWriteError:
                await self._wait(_Want.WRITE)
            except OSError as error:
                raise trio.BrokenResourceError(error) from error
            else:
                return tls

    def close(self) -> None:
        """Close the connection; on TLS, after a close_notify alert (RFC 8446 6.1).

        The alert goes only if it can go at once, and the client's own
        close_notify is not awaited (6.1 allows that): closing never waits.
        Without the alert, a client that reads to the end sees a truncation
        attack, not an end (OpenSSL: "unexpected eof while reading").
        """
        sock = self._sock
        if sock is not None:
            self._sock = None
            if sock.fileno() >= 0:
                trio.lowlevel.notify_closing(sock)
                if isinstance(sock, ssl.SSLSocket):
                    # Handshake not done, peer gone, buffer full: no alert.
                    with contextlib.suppress(OSError, ValueError):
                        sock.unwrap()
            sock.close()

    # -- helpers ---------------------------------------------------------------
    def _view(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise trio.ClosedResourceError("the session's socket is closed")
        return sock

    async def _wait(self, want: _Want) -> None:
        if want is _Want.READ:
            await trio.lowlevel.wait_readable(self._view())
        else:
            await trio.lowlevel.wait_writable(self._view())
