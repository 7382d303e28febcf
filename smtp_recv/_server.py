"""``serve``: both listeners, their accept loops, and graceful shutdown.

The listening sockets are plain non-blocking sockets, accepted from
directly: ``trio.SocketListener`` would wrap each connection in a trio socket
and a ``SocketStream`` only for the session's transport to take the
descriptor back out of them, and ask the kernel for the peer's address that
``accept`` has already given.  With a connection per message (most MX
traffic), that was a tenth of the server's time.

Shutdown works like hypercorn's.  Sessions run in a nursery inside a
*shielded* cancel scope, so cancelling ``serve`` closes the listeners at
once but does not cut sessions off.  Instead ``serve`` tells every session to
say ``421`` and go at its next command between transactions (QUIT excepted;
one that has waited a second already goes at once), lets sessions with a
transaction under way finish it, and
puts a deadline (``shutdown_grace``) on the shielded scope: whatever still
runs then is cancelled, and only then does the cancellation leave ``serve``.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

import trio

from ._config import ListenerConfig, ListenError, ServerConfig
from ._hooks import Auth, CertByHost, Forward, Mailer, SenderIsLogin, SenderPolicy
from ._mail import Role
from ._session import ServerContext, Session
from ._tls import TLSContexts, sni_errors_logged

log = logging.getLogger("smtp_recv.server")

# accept() errors that mean "out of resources right now", not "broken":
# wait a moment and accept again (as trio.serve_listeners does).
_ACCEPT_CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_BACKOFF = 0.1
# accept() errors that concern one connection only (a firewall's denial, a
# client that reset or timed out before we took its connection): go on to
# the next.  The names trio.SocketListener skips, where the system has them.
_ACCEPT_IGNORED_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "ECONNRESET",
        "ETIMEDOUT",
        "EPROTO",
        "ENETDOWN",
        "ENETUNREACH",
        "ENONET",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENOPROTOOPT",
        "EOPNOTSUPP",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
    )
    if hasattr(errno, name)
)
# Connections accepted in a row before the accept loop lets other tasks run,
# so that a flood of connections cannot starve the sessions.
_ACCEPT_BATCH = 16
# Connections past max_connections still get a 421 greeting; past this many
# more, they are closed without a word, so a flood cannot make us spend a
# task (and, on 465, a TLS handshake) on each.
_REFUSAL_HEADROOM = 100


@dataclass(frozen=True, slots=True)
class Listening:
    """Where ``serve`` listens, reported through ``task_status.started``."""

    #: ``(host, port)`` of each MX socket (one per address family), or empty.
    mx: tuple[tuple[str, int], ...]
    #: ``(host, port)`` of each submission socket, or empty.
    submission: tuple[tuple[str, int], ...]


async def serve(
    forward: Forward,
    auth: Auth,
    mailer: Mailer,
    certs: CertByHost,
    *,
    config: ServerConfig | None = None,
    sender_policy: SenderPolicy | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the MX and submission listeners until cancelled.

    Args:
        forward: recipients on the MX listener, checked at RCPT time.
        auth: credentials on the submission listener.
        mailer: takes every accepted message before the client sees ``250``.
        certs: the certificate for each SNI name (and the default).
        config: listeners, limits and timeouts; ``ServerConfig()`` by default.
        sender_policy: which senders an authenticated user may use; by
            default the sender must be the login name.
        task_status: ``started`` with a :class:`Listening` once both
            listeners are bound, for ``nursery.start``.

    Raises:
        ListenError: a listener could not be bound (an ``OSError`` that
            names it).
        ValueError: ``certs.get(None)`` gave no default certificate.

    Example::

        async def main():
            async with trio.open_nursery() as nursery:
                listening = await nursery.start(
                    functools.partial(smtp_recv.serve, forward, auth, mailer, certs)
                )
                print("MX on", listening.mx)
                ...
                nursery.cancel_scope.cancel()   # graceful shutdown
    """
    config = config or ServerConfig()
    # Sockets given are ours from the start: closed however serve ends,
    # even when it fails before it binds anything.
    opened: list[socket.socket] = [
        sock
        for listener in (config.mx, config.submission)
        if listener.enabled
        for sock in listener.sockets
    ]
    try:
        context = ServerContext(
            config=config,
            forward=forward,
            auth=auth,
            mailer=mailer,
            sender_policy=sender_policy or SenderIsLogin(),
            tls=TLSContexts(certs),
        )
        # Bind before any task starts: a bind error then leaves serve as a
        # plain ListenError (not inside a nursery's ExceptionGroup), and the
        # finally closes whatever was bound before it.
        mx = await _open_listeners("mx", config.mx)
        opened += mx
        submission = await _open_listeners("submission", config.submission)
        opened += submission
        with sni_errors_logged():
            async with trio.open_nursery() as root:
                host: _SessionHost = await root.start(_host_sessions)
                try:
                    async with trio.open_nursery() as accepting:
                        for role, listeners in ((Role.MX, mx), (Role.SUBMISSION, submission)):
                            for listener in listeners:
                                accepting.start_soon(_accept, listener, role, context, host.nursery)
                        listening = Listening(mx=_addresses(mx), submission=_addresses(submission))
                        log.info(
                            "listening: mx %s, submission %s", listening.mx, listening.submission
                        )
                        task_status.started(listening)
                finally:
                    log.info("shutting down; %d sessions open", context.connections.here)
                    context.begin_shutdown()
                    host.finish(config.shutdown_grace)
    finally:
        for sock in opened:
            # Idempotent: the accept loops have closed theirs already.
            sock.close()


@dataclass(frozen=True, slots=True)
class _SessionHost:
    nursery: trio.Nursery
    shield: trio.CancelScope
    idle: trio.CancelScope

    def finish(self, grace: float) -> None:
        """Let the sessions end by themselves, for ``grace`` seconds at most."""
        self.idle.cancel()
        self.shield.deadline = trio.current_time() + grace


async def _host_sessions(*, task_status: trio.TaskStatus[_SessionHost]) -> None:
    # If serve is cancelled before this runs, ``started`` below does nothing
    # (trio leaves the task where it is) and no one would ever end the
    # shielded wait: be cancelled here instead.  Nothing can cancel it between
    # this and ``started``, which has no checkpoint before it.
    await trio.lowlevel.checkpoint_if_cancelled()
    with trio.CancelScope(shield=True) as shield:
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as idle:
                task_status.started(_SessionHost(nursery, shield, idle))
                await trio.sleep_forever()


async def _open_listeners(name: str, listener: ListenerConfig) -> list[socket.socket]:
    """The listener's sockets, bound (unless given) and non-blocking.

    Raises:
        ListenError: it could not be bound.
    """
    if not listener.enabled:
        return []
    if listener.sockets:
        opened = list(listener.sockets)
    else:
        try:
            listeners = await trio.open_tcp_listeners(listener.port, host=listener.host)
        except OSError as error:
            raise ListenError.of(name, listener, error) from error
        # trio binds each address family as it should (dual stack,
        # SO_REUSEADDR, IPV6_V6ONLY); we take the descriptors over.
        opened = [
            socket.socket(
                bound.socket.family,
                bound.socket.type,
                bound.socket.proto,
                fileno=bound.socket.detach(),
            )
            for bound in listeners
        ]
    for listening in opened:
        listening.setblocking(False)
    return opened


def _addresses(opened: list[socket.socket]) -> tuple[tuple[str, int], ...]:
    addresses = []
    for listening in opened:
        name = listening.getsockname()
        addresses.append((str(name[0]), int(name[1])))
    return tuple(addresses)


async def _accept(
    listening: socket.socket, role: Role, context: ServerContext, nursery: trio.Nursery
) -> None:
    """Accept connections until cancelled, then close the listening socket.

    Tries ``accept`` first and waits for readiness only when there is no
    connection to take, as trio's own socket methods do.
    """
    ceiling = context.config.max_connections + _REFUSAL_HEADROOM
    in_a_row = 0
    try:
        while True:
            if in_a_row >= _ACCEPT_BATCH:
                in_a_row = 0
                await trio.lowlevel.checkpoint()
            try:
                sock, peer = listening.accept()
            except BlockingIOError:
                in_a_row = 0
                await trio.lowlevel.wait_readable(listening)
                continue
            except OSError as error:
                in_a_row += 1
                if error.errno in _ACCEPT_IGNORED_ERRORS:
                    continue
                if error.errno not in _ACCEPT_CAPACITY_ERRORS:
                    raise
                log.warning("accept failed (%s); retrying", errno.errorcode[error.errno])
                await trio.sleep(_ACCEPT_BACKOFF)
                continue
            in_a_row += 1
            if context.connections.total >= ceiling:
                sock.close()
                continue
            address = (str(peer[0]), int(peer[1]))
            count = context.connections.opened(address[0])
            try:
                nursery.start_soon(_run_session, context, sock, role, address, count)
            except BaseException:
                # Only if the session nursery is already closed.
                context.connections.closed(address[0])
                sock.close()
                raise
    finally:
        if listening.fileno() >= 0:
            trio.lowlevel.notify_closing(listening)
        listening.close()


async def _run_session(
    context: ServerContext,
    sock: socket.socket,
    role: Role,
    peer: tuple[str, int],
    connections_from_peer: int,
) -> None:
    try:
        await Session(context, sock, role, peer).run(connections_from_peer)
    finally:
        context.connections.closed(peer[0])
