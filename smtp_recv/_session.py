"""One client connection on trio: the I/O around a ``ServerConnection``.

The protocol core decides what the client may say; this module supplies what
the core cannot: the stream, TLS, every deadline (as cancel scopes), the
hooks, the spool, the limits that span connections, and the rule that no
exception of one connection ever reaches the server.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import socket
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn, TypeVar

import trio

from ._clients import AuthFailures, ConnectionCounter
from ._config import ServerConfig
from ._hooks import Auth, Forward, Mailer, Reject, SenderPolicy
from ._mail import Mail, MessageContent, Recipient, Role, TLSInfo, UserMail
from ._mailboxes import same_mailbox
from ._spool import Spool
from ._tls import TLSContexts, server_name
from ._trace import ReceivedHeaders, loggable, new_id, with_protocol
from ._transport import Transport
from .protocol import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    CommandRejected,
    ConnectionClosed,
    DataStarted,
    Hello,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    ProtocolError,
    RcptTo,
    Reply,
    ServerConnection,
    SessionConfig,
    StartTLS,
    State,
    TransactionReset,
    replies,
)

log = logging.getLogger("smtp_recv.session")

T = TypeVar("T")

#: Bytes asked of the stream per receive: large enough that a big DATA
#: body costs few trips through the loop, small enough that an idle
#: connection holds no large buffer.
RECEIVE_SIZE = 64 * 1024
#: Longest wait for the last reply (421, 554) of a connection we are closing.
FINAL_REPLY_TIMEOUT = 5.0
#: Once shutdown has begun, how long a session between transactions waits
#: for its client's next command, counted from the end of its last reply.
#: Long enough for the QUIT that follows a 250 (one round trip), which gets
#: its 221; any other command gets 421.  A session idle for longer when
#: shutdown begins is told at once.
SHUTDOWN_QUIT_WAIT = 1.0
#: The longest delay before answering a failed AUTH or a repeated error.
MAX_PENALTY_DELAY = 30.0
_IDLE_STATES = frozenset({State.CONNECTED, State.GREETED})
# Where shutdown need not wait for the client: between transactions, and in
# an AUTH exchange (its result is of no use: the next command gets 421).
_SHUTDOWN_WAITS = _IDLE_STATES | {State.AUTH}
_BODY_STATES = frozenset({State.DATA, State.BDAT})
# Core refusals that are failed AUTH attempts, counted like a wrong password.
_AUTH_FAILURE_REPLIES = frozenset({replies.AUTH_FAILED, replies.AUTH_CANCELLED})


#: Seconds between looks for a place under max_auth_failures_per_ip.
AUTH_PLACE_RECHECK = 1.0


class _Waiting(enum.Enum):
    """What a session waits for when its wait scope fires."""

    NOTHING = "nothing"
    #: The client, where shutdown need not wait for it (it shortens the
    #: wait): the next command between transactions, a SASL response, a
    #: refused BDAT chunk outside a transaction.
    IDLE = "idle"
    #: More of a command or of a message body.
    RECEIVE = "receive"
    #: The client to read our replies.
    SEND = "send"
    #: A hook (or the Mailer) to answer.
    HOOK = "hook"
    #: Nothing: a hook answered as its deadline passed, and its answer was
    #: used; the scope is cancelled all the same and must be replaced.
    SPENT = "spent"


class _Closed(Exception):
    """Internal: the session is over (timeout, shutdown or a client gone)."""


class _AuthLine:
    """The sessions from one address waiting for a place to check an AUTH, in arrival order.

    First come, first served: a session that just arrived, or a waiter that
    happens to wake first, must not take the place of one that has waited
    longer, or a client that keeps trying could starve the others.
    """

    __slots__ = ("_changed", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[Session] = deque()
        self._changed = trio.Event()

    async def wait(self) -> None:
        """Until ``wake``: a place may have come free, or the server is shutting down."""
        await self._changed.wait()

    def wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@dataclass(eq=False, kw_only=True)
class ServerContext:
    """What all sessions of one ``serve`` share."""

    config: ServerConfig
    forward: Forward
    auth: Auth
    mailer: Mailer
    sender_policy: SenderPolicy
    tls: TLSContexts
    connections: ConnectionCounter = field(default_factory=ConnectionCounter)
    auth_failures: AuthFailures = field(init=False)
    shutting_down: bool = False
    #: Per address, the sessions waiting for a place under
    #: ``max_auth_failures_per_ip`` to check an AUTH.
    auth_lines: dict[str, _AuthLine] = field(default_factory=dict)
    #: The sessions under way, for shutdown to tell.
    sessions: set[Session] = field(default_factory=set)
    _session_configs: dict[tuple[Role, bool], SessionConfig] = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.auth_failures = AuthFailures(
            config.max_auth_failures_per_ip, config.auth_failure_window
        )
        self._session_configs = {
            (role, tls_active): SessionConfig(
                hostname=config.hostname,
                max_message_size=config.max_message_size,
                max_recipients=config.max_recipients,
                offer_starttls=role is Role.MX,
                tls_active=tls_active,
                offer_auth=role is Role.SUBMISSION,
                auth_required=role is Role.SUBMISSION,
                smtputf8=config.smtputf8,
                chunking=config.chunking,
                dsn=config.dsn,
                reject_bare_line_endings=config.reject_bare_line_endings,
                max_non_mail_commands=config.max_non_mail_commands,
            )
            for role in Role
            for tls_active in (False, True)
        }

    def session_config(self, role: Role, tls_active: bool) -> SessionConfig:
        return self._session_configs[role, tls_active]

    def begin_shutdown(self) -> None:
        """Close idle sessions soon; the others finish their transaction first."""
        self.shutting_down = True
        # AUTH checks waiting for a place are refused now, not started.
        for line in self.auth_lines.values():
            line.wake()
        for session in self.sessions:
            session.shut_down()


class _HookTimedOut(BaseException):
    """A hook's deadline cut it off; raised past the event handlers to ``_converse``.

    A ``BaseException``, so that the handlers' ``except Exception`` (a hook
    that failed) does not take it for the hook's own failure.
    """


class _HookCrashed(Exception):
    """A hook raised a ``BaseException`` that is its own bug, not ours to pass on.

    E.g. ``asyncio.CancelledError`` from a library bridged to asyncio, a
    ``BaseException`` subclass of its own, or a ``Cancelled`` the hook caught
    in a scope of its own and raised again later.  Unwinding the session with
    it would end every other session of the server; as an ``Exception`` it is
    the hook's failure (``451``/``454``), like any other.
    """


def _raised_for(error: BaseException, name: str) -> BaseException:
    """What the session raises for the ``error`` a hook raised.

    An ``Exception`` is the hook's failure, for the event's handler.
    ``KeyboardInterrupt`` and ``SystemExit`` ask the process to stop: they
    go on up, as does any group holding one.  (So does the GeneratorExit
    that closes the session's own coroutine, which ``_hook`` tells apart
    before it gets here: any other is the hook's.)  A ``Cancelled`` while a
    scope around the session is cancelled is that cancellation: it goes on
    up, alone, and the rest of a group that held it (a task of the hook
    that failed as it was cancelled) is logged as the hook's failure.
    Anything else that is not an ``Exception`` is a bug of the hook: it
    becomes ``_HookCrashed``.
    """
    if isinstance(error, Exception):
        return error
    stops = (KeyboardInterrupt, SystemExit)
    if isinstance(error, BaseExceptionGroup):
        if error.subgroup(stops) is not None:
            return error
    elif isinstance(error, stops):
        return error
    if _holds_cancelled(error) and trio.current_effective_deadline() == -math.inf:
        if not isinstance(error, BaseExceptionGroup):
            return error
        cancelled, rest = error.split(trio.Cancelled)
        if rest is not None:
            log.error("%s failed as it was cancelled", name, exc_info=rest)
        assert cancelled is not None
        # One Cancelled is as good as a group of them, and the session's
        # own handlers (a 421 at the grace period's end) see it as such.
        return _first_leaf(cancelled)
    return _HookCrashed(f"{name} raised {type(error).__name__}")


def _reraise(error: BaseException, name: str) -> NoReturn:
    """Raise, in the hook's ``except`` clause, what the session raises for ``error``."""
    raised = _raised_for(error, name)
    if raised is error:
        raise error
    raise raised from (error if isinstance(raised, _HookCrashed) else None)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _holds_cancelled(error: BaseException) -> bool:
    """Whether ``error`` is, or a group of it holds, ``trio.Cancelled``."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(trio.Cancelled) is not None
    return isinstance(error, trio.Cancelled)


@types.coroutine
def _resume(
    steps: Generator[Any, Any, T], trap: object, closed: list[bool]
) -> Generator[Any, Any, T]:
    """Go on running an awaitable that has yielded ``trap``, as ``await`` would.

    trio answers each trap by sending a value back (it never throws into a
    task), so relaying what is yielded and sent is all that ``await`` does
    here.  Should this frame be closed, the awaitable is closed with it, and
    ``closed`` says so: the GeneratorExit that then reaches the caller is
    the close, not the hook's.
    """
    try:
        while True:
            try:
                sent = yield trap
            except GeneratorExit:
                closed.append(True)
                raise
            try:
                trap = steps.send(sent)
            except StopIteration as done:
                result: T = done.value
                return result
    finally:
        steps.close()


def _path(address: str) -> str:
    """An address for a log line between ``<>``: the null path stays empty.

    ``loggable`` shows empty text as ``?``, and ``from=<?>`` would hide the
    bounces (``MAIL FROM:<>``) from whoever greps the log for them.
    """
    return loggable(address) if address else ""


def _reply_from(reject: Reject, unusable: Reply = replies.TEMPORARY_FAILURE) -> Reply:
    """The reply a hook's Reject asks for, or the hook's failure reply if it cannot be sent."""
    try:
        return Reply.make(reject.code, reject.enhanced, reject.text)
    except ValueError:
        log.warning("hook raised Reject with an unusable reply: %r", reject.args)
        return unusable


def _checked_user_id(found: object) -> str | None:
    """The Auth hook's answer, or ``TypeError`` (a hook bug: ``454``).

    Only a user id (a non-empty ``str``) logs the client in.  ``False``
    from ``return password == stored``, ``""`` or a coroutine not awaited
    must never count as one.
    """
    if found is None or (isinstance(found, str) and found):
        return found
    raise TypeError(f"Auth.verify must return a user id (str) or None, not {found!r}")


def _checked_permission(found: object) -> bool:
    """The SenderPolicy hook's answer, or ``TypeError`` (a hook bug: ``451``)."""
    if isinstance(found, bool):
        return found
    raise TypeError(f"SenderPolicy.may_send_as must return a bool, not {found!r}")


def _checked_targets(found: object) -> tuple[str, ...]:
    """The Forward hook's answer, or ``TypeError`` (a hook bug: ``451``).

    A ``str`` is itself a ``Sequence[str]``: returned by mistake, it would
    forward the mail to each of its letters.
    """
    if isinstance(found, str | bytes) or not isinstance(found, Iterable):
        raise TypeError(f"Forward.lookup must return a sequence of addresses, not {found!r}")
    targets = tuple(found)
    if not all(isinstance(target, str) and target for target in targets):
        raise TypeError(f"Forward.lookup returned something that is not an address: {targets!r}")
    return targets


class Session:
    """Serves one accepted connection from greeting to close."""

    __slots__ = (
        "_auth_failures",
        "_body_bytes",
        "_body_since",
        "_client_name",
        "_client_name_looked_up",
        "_closing",
        "_config",
        "_conn",
        "_context",
        "_cut_off",
        "_handshake",
        "_hook_name",
        "_hook_timeout_reply",
        "_idle_penalty",
        "_idle_since",
        "_idle_waiting",
        "_line_started",
        "_message_id",
        "_received_headers",
        "_recipients",
        "_replies_possible",
        "_role",
        "_spool",
        "_transport",
        "_user_id",
        "_username",
        "_wait",
        "_waiting",
        "id",
        "peer",
        "tls",
    )

    def __init__(
        self, context: ServerContext, sock: socket.socket, role: Role, peer: tuple[str, int]
    ) -> None:
        self._context = context
        self._config = context.config
        self._role = role
        self.peer = peer
        self.id = new_id()
        self.tls: TLSInfo | None = None
        self._user_id: str | None = None
        self._username: str | None = None
        self._auth_failures = 0
        self._closing = False
        # False while the client expects TLS records, not SMTP replies: on
        # the submission port before the handshake, and during a STARTTLS
        # handshake.  A last reply then would be plaintext inside TLS.
        self._replies_possible = role is Role.MX
        # When the client began the command line that is buffered in part;
        # each reply (a whole line taken) clears it.
        self._line_started: float | None = None
        self._wait = trio.CancelScope()
        self._waiting = _Waiting.NOTHING
        # When the client's turn last began (our replies sent, or a TLS
        # handshake done), and whether the session is blocked waiting for it
        # where shutdown need not wait (shutdown shortens that wait)...
        self._idle_since = 0.0
        self._idle_waiting = False
        # ...or in a penalty delay between transactions (shutdown ends it),
        # or in a TLS handshake (shutdown shortens it).
        self._idle_penalty: trio.CancelScope | None = None
        self._handshake: trio.CancelScope | None = None
        # The protocol session under way (a new one after STARTTLS).
        self._conn: ServerConnection | None = None
        # What a hook that runs out of time is called in the log, and the
        # reply its decision then gets.
        self._hook_name = ""
        self._hook_timeout_reply = replies.TEMPORARY_FAILURE
        self._client_name: str | None = None
        self._client_name_looked_up = False
        # The transaction under way, as far as the I/O layer is concerned.
        self._recipients: list[Recipient] = []
        self._spool: Spool | None = None
        # A message whose Mailer a cancellation cut off, for run() to log
        # with the reply it gives: (sender, recipients, size).
        self._cut_off: tuple[str, int, int] | None = None
        self._message_id = ""
        self._received_headers = ReceivedHeaders(self._config.hostname, peer[0])
        # Since when, and how many bytes, the client has been sending a body
        # (DATA, BDAT chunks, or a refused chunk being drained): the minimum
        # rate applies to the whole body, not to each receive.
        self._body_since: float | None = None
        self._body_bytes = 0
        # Last: from here on the transport owns the connection's descriptor.
        self._transport = Transport(sock)

    # -- the whole connection ----------------------------------------------------
    async def run(self, connections_from_peer: int) -> None:
        """Serve the connection; never raises anything but ``Cancelled``."""
        config = self._config
        log.info("%s connect %s [%s]:%d", self.id, self._role.value, *self.peer)
        sessions = self._context.sessions
        sessions.add(self)
        try:
            with trio.move_on_after(config.session_timeout) as session_scope:
                await self._serve(connections_from_peer)
            if session_scope.cancelled_caught:
                log.info("%s session time limit reached", self.id)
                self._log_cut_off(replies.TIMEOUT, "(session time limit)")
                await self._final_reply(replies.TIMEOUT)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except trio.Cancelled:
            # Shutdown's grace period is over: say so, briefly, and go.
            self._log_cut_off(replies.SHUTTING_DOWN, "(shutdown)")
            await self._final_reply(replies.SHUTTING_DOWN)
            raise
        except Exception:
            log.exception("%s internal error", self.id)
            await self._final_reply(replies.LOCAL_ERROR)
        finally:
            sessions.discard(self)
            if self._spool is not None:
                log.info(
                    "%s message %s dropped: the session ended before it did",
                    self.id,
                    self._message_id,
                )
            self._drop_message()
            self._transport.close()
            log.info("%s disconnect", self.id)

    async def _serve(self, connections_from_peer: int) -> None:
        context, config = self._context, self._config
        if self._role is Role.SUBMISSION:
            if connections_from_peer > config.max_connections_per_ip:
                # No word is possible before TLS, and one address must not
                # make us run a handshake for each of its surplus connections.
                log.info("%s refused before TLS: too many connections from the address", self.id)
                return
            # RFC 8314 3.3: TLS from the first byte; no plaintext SMTP at all.
            if not await self._start_tls():
                return
        elif await self._talks_before_greeting():
            log.info("%s client talked before the greeting", self.id)
            await self._final_reply(replies.EARLY_TALKER)
            return
        refusal = None
        if context.shutting_down:
            refusal = replies.SHUTTING_DOWN
        elif context.connections.total > config.max_connections:
            refusal = replies.TOO_MANY_CONNECTIONS
        elif connections_from_peer > config.max_connections_per_ip:
            refusal = replies.TOO_MANY_CONNECTIONS_FROM_IP
        if refusal is not None:
            log.info("%s refused at greeting: %s", self.id, refusal)
            await self._final_reply(refusal)
            return
        conn = self._new_connection()
        conn.send_greeting()
        if await self._converse(conn):
            # STARTTLS (RFC 3207 4.2): a fresh session on the TLS stream;
            # nothing from before survives, and no greeting is sent.
            if conn.trailing_data:
                log.warning(
                    "%s discarded %d bytes pipelined after STARTTLS",
                    self.id,
                    len(conn.trailing_data),
                )
            if not await self._start_tls():
                return
            secure = self._new_connection()
            # The session starts over, but not the client's record of errors:
            # otherwise STARTTLS would reset the error limits.
            secure.error_count = conn.error_count
            await self._converse(secure)

    def _new_connection(self) -> ServerConnection:
        context = self._context
        conn = ServerConnection(context.session_config(self._role, self.tls is not None))
        if context.shutting_down:
            conn.shut_down(replies.SHUTTING_DOWN)
        self._conn = conn
        return conn

    def shut_down(self) -> None:
        """Shutdown has begun: end the session once its transaction is over.

        The protocol session answers the next command between transactions
        with 421 (a QUIT with 221).  Where the session waits on a client
        whose next word can only get that (between transactions, in an AUTH
        exchange, in a TLS handshake), it waits no longer than
        ``SHUTDOWN_QUIT_WAIT`` from our last reply; a penalty delay there
        ends at once.
        """
        if self._conn is not None:
            self._conn.shut_down(replies.SHUTTING_DOWN)
        if self._idle_waiting:
            wait = self._wait
            wait.deadline = min(wait.deadline, self._idle_since + SHUTDOWN_QUIT_WAIT)
        elif self._idle_penalty is not None:
            self._idle_penalty.cancel()
        elif self._handshake is not None:
            # Whatever it would start gets 421 at once: no need to wait long.
            handshake = self._handshake
            handshake.deadline = min(handshake.deadline, trio.current_time() + SHUTDOWN_QUIT_WAIT)

    async def _talks_before_greeting(self) -> bool:
        """RFC 5321 4.3.1: the client must wait for the greeting."""
        delay = self._config.greeting_delay
        transport = self._transport
        if delay <= 0:
            return transport.has_data()
        with trio.move_on_after(delay):
            await transport.wait_readable()
            return True
        return False

    async def _start_tls(self) -> bool:
        """Run the TLS handshake on the connection; ``False`` when it failed."""
        self._replies_possible = False
        timeout = self._config.tls_handshake_timeout
        if self._context.shutting_down:
            timeout = min(timeout, SHUTDOWN_QUIT_WAIT)
        with trio.move_on_after(timeout) as scope:
            self._handshake = scope
            try:
                tls = await self._transport.start_tls(self._context.tls.current())
            except trio.BrokenResourceError as error:
                log.info("%s TLS handshake failed: %s", self.id, error.__cause__ or error)
                return False
            finally:
                self._handshake = None
        if scope.cancelled_caught:
            log.info("%s TLS handshake timed out", self.id)
            return False
        self._replies_possible = True
        self._idle_since = trio.current_time()
        cipher = tls.cipher()
        self.tls = TLSInfo(
            version=tls.version() or "",
            cipher=cipher[0] if cipher else "",
            server_name=server_name(tls),
        )
        log.info(
            "%s TLS %s %s sni=%s", self.id, self.tls.version, self.tls.cipher, self.tls.server_name
        )
        return True

    # -- the command loop --------------------------------------------------------
    async def _converse(self, conn: ServerConnection) -> bool:
        """Run one protocol session; ``True`` when it ended in STARTTLS.

        Every wait on the client (a receive, or a send the client must read)
        runs under one cancel scope per session whose deadline is set before
        the wait and lifted after it: one scope instead of one per receive,
        which is most of the per-command cost of trio's timeouts.
        """
        while True:
            with trio.CancelScope() as wait:
                self._wait = wait
                if self._closing:  # decided just before a spent scope was replaced
                    await self._flush(conn)
                    return False
                with contextlib.suppress(_HookTimedOut):  # _waiting says so, below
                    return await self._converse_until_closed(conn)
            if self._waiting is _Waiting.SPENT:
                # A late hook's answer was used: go on in a fresh scope.
                self._waiting = _Waiting.NOTHING
                continue
            if self._waiting is not _Waiting.HOOK:
                break
            # A hook ran out of time: its decision fails temporarily and the
            # session goes on, in a fresh wait scope.
            log.error("%s %s timed out", self.id, self._hook_name)
            conn.reject(self._hook_timeout_reply, counted=False)
            self._waiting = _Waiting.NOTHING
        # Otherwise only reached when a wait's deadline passed: its own, or
        # the shorter one shutdown gave a session waiting on a client whose
        # next word can only get 421 (see shut_down).
        if self._waiting is _Waiting.SEND:
            raise _Closed
        if self._waiting is _Waiting.IDLE and self._context.shutting_down:
            conn.abort(replies.SHUTTING_DOWN)
        else:
            log.info("%s timeout waiting for the client in %s", self.id, conn.state.value)
            conn.abort(replies.TIMEOUT)
        await self._final_data(conn.data_to_send())
        raise _Closed

    async def _converse_until_closed(self, conn: ServerConnection) -> bool:
        handlers = self._handlers
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as error:
                log.info("%s protocol error: %s", self.id, error.reply)
                await self._flush(conn)
                return False
            if event is NEED_DATA:
                await self._flush(conn)
                await self._receive(conn)
            elif event is PAUSED:
                await self._flush(conn)
                return False
            elif isinstance(event, StartTLS):
                await self._flush(conn)
                return True
            elif isinstance(event, ConnectionClosed):
                await self._flush(conn)
                return False
            else:
                kind = type(event)
                if kind is not MessageData and (
                    kind is not CommandRejected or conn.state is not State.CHUNKING
                ):
                    # A body's minimum-rate clock goes on over all the BDAT
                    # chunks of a transaction, and over commands refused
                    # between them; any other event ends that body (a
                    # refused chunk drained is one), or begins the next.
                    self._body_since = None
                await handlers[kind](self, conn, event)
                if self._waiting is _Waiting.SPENT:
                    # Leave the cancelled scope (see _converse) before any
                    # other wait would end at once.
                    await trio.lowlevel.checkpoint()
                if self._closing:
                    await self._flush(conn)
                    return False

    async def _flush(self, conn: ServerConnection) -> None:
        data = conn.data_to_send()
        if not data:
            return
        # A reply means the core took a whole line (or chunk): bytes still
        # buffered begin a new line, with a deadline of its own.
        self._line_started = None
        transport = self._transport
        sent = transport.send_nowait(data)
        if sent < len(data):
            # A client that stops reading must not hold us forever.
            wait = self._wait
            self._waiting = _Waiting.SEND
            wait.deadline = trio.current_time() + self._config.command_timeout
            await transport.send_all(memoryview(data)[sent:])
            await self._lift_deadline(wait)
        # The client's turn: shutdown's wait for its next command counts
        # from here.
        self._idle_since = trio.current_time()

    async def _receive(self, conn: ServerConnection) -> None:
        """Wait for bytes under the deadline that fits the state."""
        config = self._config
        now = trio.current_time()
        state = conn.state
        idle = False
        body = state in _BODY_STATES or conn.discarding
        if body:
            if self._body_since is None:
                self._body_since, self._body_bytes = now, 0
            # A deadline per block (RFC 5321 4.5.3.2.5) and a minimum rate.
            deadline = min(now + config.data_block_timeout, self._rate_deadline())
            # A refused chunk drained between transactions is no message.
            idle = conn.discarding and state in _IDLE_STATES
        else:
            if conn.mid_line:
                # Part of a command line is here: the rest must follow soon.
                if self._line_started is None:
                    self._line_started = now
                deadline = min(
                    now + config.command_timeout, self._line_started + config.command_line_timeout
                )
            else:
                self._line_started = None
                deadline = now + config.command_timeout
            # Between transactions, even half-way through a command line:
            # shutdown need not wait for it.
            idle = state in _SHUTDOWN_WAITS
            if state is State.CHUNKING and self._body_since is not None:
                # Between the BDAT chunks of a message its rate goes on, or
                # a byte per chunk, each sent with its command, would dodge it.
                deadline = min(deadline, self._rate_deadline())
        wait = self._wait
        self._waiting = _Waiting.IDLE if idle else _Waiting.RECEIVE
        # A scheduling point first: fair to the other sessions, it is where
        # cancellation reaches a session that never has to wait, and by the
        # time it returns the client has usually answered.
        await trio.lowlevel.checkpoint()
        transport = self._transport
        data = transport.receive_nowait(RECEIVE_SIZE)
        if data is None:
            data = await self._wait_and_receive(transport, wait, deadline, idle)
        if self._body_since is not None:
            self._body_bytes += len(data)
        conn.receive_data(data)

    def _rate_deadline(self) -> float:
        """When the body under way falls below the minimum data rate."""
        assert self._body_since is not None
        config = self._config
        return self._body_since + config.data_rate_grace + self._body_bytes / config.min_data_rate

    async def _wait_and_receive(
        self, transport: Transport, wait: trio.CancelScope, deadline: float, idle: bool
    ) -> bytes:
        """Wait for the client's bytes under ``deadline``."""
        if idle and self._context.shutting_down:
            # (Also when shutdown began during _receive's checkpoint: then
            # shut_down shortened a deadline that is set here anew.)
            deadline = min(deadline, self._idle_since + SHUTDOWN_QUIT_WAIT)
        wait.deadline = deadline
        # Only while blocked here: once bytes came, the session may go on
        # into a transaction, which shutdown lets finish.
        self._idle_waiting = idle
        try:
            while True:
                await transport.wait_receivable()
                data = transport.receive_nowait(RECEIVE_SIZE)
                if data is not None:
                    break
        finally:
            self._idle_waiting = False
        await self._lift_deadline(wait)
        return data

    @staticmethod
    async def _lift_deadline(wait: trio.CancelScope) -> None:
        """End a wait's deadline, or time out now if it passed as the wait ended.

        The bytes (or the room to send) and the deadline can come in the same
        pass of trio's loop: the wait then returns, but the scope is already
        cancelled, and lifting the deadline does not undo that.  Left so, the
        cancellation would end whatever waits next, a hook deciding about a
        message included.  So the wait times out here, where ``_waiting``
        still says what it was for.
        """
        if wait.cancel_called:
            await trio.lowlevel.checkpoint()
        wait.deadline = math.inf

    async def _final_reply(self, reply: Reply) -> None:
        """Best effort: send a last reply on a stream that may be broken."""
        await self._final_data(reply.to_bytes())

    async def _final_data(self, data: bytes) -> None:
        transport = self._transport
        if not self._replies_possible or not data:
            return
        deadline = trio.current_time() + FINAL_REPLY_TIMEOUT
        with (
            trio.CancelScope(shield=True, deadline=deadline),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await transport.send_all(data)

    async def _hook(
        self,
        name: str,
        limit: float,
        on_timeout: Reply,
        call: Callable[..., Awaitable[T]],
        *args: object,
    ) -> T:
        """``await call(*args)``, bounded by ``limit`` seconds without a scope of its own.

        Most hooks (a dict lookup, an in-memory queue) answer without ever
        suspending, and a deadline never waited under cannot fire; a cancel
        scope per call would cost more than such a hook.  So the hook's first
        step runs directly.  Only if it suspends does the session's wait scope
        (entered outside every scope the hook may open) get the deadline, and
        the hook then runs on exactly as ``await`` would run it.  If the
        deadline passes, ``_converse`` rejects the pending decision with
        ``on_timeout`` and the session goes on.
        """
        try:
            steps = call(*args).__await__()
            trap = steps.send(None)
        except StopIteration as done:
            result: T = done.value
            return result
        except BaseException as error:
            _reraise(error, name)
        wait = self._wait
        self._waiting = _Waiting.HOOK
        self._hook_name, self._hook_timeout_reply = name, on_timeout
        wait.deadline = trio.current_time() + limit
        closed: list[bool] = []
        try:
            result = await _resume(steps, trap, closed)
        except BaseException as error:
            if closed:
                raise
            if wait.cancel_called and _holds_cancelled(error):
                # The deadline cut the hook off.  Its Cancelled may come
                # wrapped in the groups of nurseries it opened, along with
                # errors its tasks raised as they were cancelled: all of it
                # is the timeout, for _converse (which reads _waiting).
                raise _HookTimedOut from error
            # The hook failed: that is its answer, even past the deadline.
            # (Or the server is cancelling every session.)
            self._end_hook_wait(wait)
            if wait.cancel_called:
                self._waiting = _Waiting.SPENT
            _reraise(error, name)
        # The hook answered, maybe as its deadline passed (a thread that
        # cannot be abandoned finishes its work): the answer stands.  A
        # Mailer that has stored the message must not be reported as failed,
        # or every retry would store it again.
        self._end_hook_wait(wait)
        if wait.cancel_called:
            self._waiting = _Waiting.SPENT
        return result

    def _end_hook_wait(self, wait: trio.CancelScope) -> None:
        wait.deadline = math.inf
        self._waiting = _Waiting.NOTHING

    # -- events ------------------------------------------------------------------
    async def _on_hello(self, conn: ServerConnection, event: Hello) -> None:
        if log.isEnabledFor(logging.DEBUG):
            kind = "EHLO" if event.extended else "HELO"
            log.debug("%s %s %s", self.id, kind, loggable(event.name))

    async def _on_mail(self, conn: ServerConnection, event: MailFrom) -> None:
        # (After shutdown began the core ends the session at the next MAIL.)
        if self._role is Role.MX:
            conn.accept()
            return
        assert self._user_id is not None
        assert self._username is not None
        try:
            allowed = _checked_permission(
                await self._hook(
                    "SenderPolicy hook",
                    self._config.hook_timeout,
                    replies.TEMPORARY_FAILURE,
                    self._context.sender_policy.may_send_as,
                    self._user_id,
                    self._username,
                    event.sender,
                )
            )
        except Reject as reject:
            await self._refuse(conn, _reply_from(reject))
            return
        except Exception:
            log.exception("%s sender policy failed", self.id)
            await self._refuse(conn, replies.TEMPORARY_FAILURE, client_error=False)
            return
        if allowed:
            conn.accept()
        else:
            log.info(
                "%s user %s may not send as <%s>",
                self.id,
                loggable(self._username),
                _path(event.sender),
            )
            await self._refuse(conn, replies.SENDER_NOT_OWNED)

    async def _on_rcpt(self, conn: ServerConnection, event: RcptTo) -> None:
        if self._role is Role.SUBMISSION:
            # An authenticated user may write to anyone; the Mailer relays.
            self._recipients.append(Recipient(address=event.recipient, parameters=event.parameters))
            conn.accept()
            return
        try:
            targets = _checked_targets(
                await self._hook(
                    "Forward hook",
                    self._config.hook_timeout,
                    replies.TEMPORARY_FAILURE,
                    self._context.forward.lookup,
                    event.recipient,
                )
            )
        except Reject as reject:
            await self._refuse(conn, _reply_from(reject))
            return
        except Exception:
            log.exception("%s Forward hook failed", self.id)
            await self._refuse(conn, replies.TEMPORARY_FAILURE, client_error=False)
            return
        if not targets and event.recipient.lower() == "postmaster":
            # RFC 5321 4.5.1: <Postmaster> must always be accepted.
            targets = (f"postmaster@{self._config.hostname}",)
        if not targets:
            # Counted like any other error, so that guessing addresses
            # (directory harvesting) meets the same growing delays and limit.
            await self._refuse(conn, replies.NO_SUCH_USER)
            return
        self._recipients.append(
            Recipient(address=event.recipient, targets=targets, parameters=event.parameters)
        )
        conn.accept()

    async def _on_auth(self, conn: ServerConnection, event: AuthCredentials) -> None:
        address = self.peer[0]
        refusal = await self._begin_auth_check(address)
        if refusal is not None:
            # The address's failures are the client's errors; a wait too
            # long or our shutdown are not.
            conn.reject(refusal, counted=refusal is replies.TOO_MANY_AUTH_FAILURES)
            self._closing = refusal.closes
            return
        if event.authorization_id and not same_mailbox(event.authorization_id, event.username):
            # RFC 4616 section 2: acting as another identity is not allowed
            # here, so the attempt fails like a wrong password.
            log.info(
                "%s AUTH refused: %s may not act as another identity",
                self.id,
                loggable(event.username),
            )
            self._end_auth_check(address)
            await self._auth_failed(conn)
            conn.reject(replies.AUTH_FAILED)
            self._check_auth_failures(conn)
            return
        host = self.tls.server_name if self.tls else None
        try:
            try:
                user_id = _checked_user_id(
                    await self._hook(
                        "Auth hook",
                        self._config.hook_timeout,
                        replies.AUTH_TEMPORARY_FAILURE,
                        self._context.auth.verify,
                        host,
                        event.username,
                        event.password,
                    )
                )
            finally:
                # Before a failure is recorded below, with no checkpoint between.
                self._end_auth_check(address)
        except Reject as reject:
            # The hook's decision, counted like any hook's Reject; a
            # permanent one is also a failed attempt, met with the same
            # delays and limits as a wrong password.
            reply = _reply_from(reject, replies.AUTH_TEMPORARY_FAILURE)
            log.info("%s AUTH refused by the Auth hook: %s", self.id, reply)
            permanent = not reply.is_transient
            if permanent:
                await self._auth_failed(conn)
            conn.reject(reply)
            if reply.closes:
                self._closing = True
                return
            if permanent:
                self._check_auth_failures(conn)
            if not self._closing:
                # Counted like a refused MAIL or RCPT, and so limited alike.
                await self._error_limits(conn, conn.error_count, delay=not permanent)
            return
        except Exception:
            log.exception("%s Auth hook failed", self.id)
            conn.reject(replies.AUTH_TEMPORARY_FAILURE, counted=False)
            return
        if user_id is None:
            log.info("%s AUTH %s failed for %s", self.id, event.mechanism, loggable(event.username))
            await self._auth_failed(conn)
            conn.reject(replies.AUTH_FAILED)
            self._check_auth_failures(conn)
            return
        self._user_id, self._username = user_id, event.username
        log.info("%s AUTH %s as %s", self.id, event.mechanism, loggable(event.username))
        conn.accept()

    async def _begin_auth_check(self, address: str) -> Reply | None:
        """Take a place for one check under the address's failure limit.

        Checks under way hold a place each, as failures do, so that
        connections that each try at once get no more checks than the
        limit.  When only such checks fill the address's places, this waits
        for one to end (at most ``hook_timeout``) rather than refuse: many
        good users behind one NAT, or an application's pool of connections,
        log in at once.  Waiters take places in arrival order.  Once the
        server is shutting down, no waiter starts its check.  Returns None
        once the check may start, else the refusal.
        """
        context = self._context
        failures = context.auth_failures
        line = context.auth_lines.get(address)
        if line is None:
            started = failures.begin(address, trio.current_time())
            if started is False:
                return self._too_many_auth_failures(address)
            if started:
                return None
            line = context.auth_lines[address] = _AuthLine()
        line.waiting.append(self)
        try:
            with trio.move_on_after(self._config.hook_timeout):
                # Looked at after each wake-up: the shutdown may come in
                # the same pass as a check's end.
                while not context.shutting_down:
                    first = line.waiting[0] is self
                    started = failures.begin(address, trio.current_time(), take=first)
                    if started is False:
                        return self._too_many_auth_failures(address)
                    if started:
                        if first:
                            return None
                        line.wake()  # a place the first in line has not seen yet
                    # A check ending frees a place, and so does a failure
                    # leaving the window (here or on another worker), which
                    # wakes nobody: look again at least once a second.
                    with trio.move_on_after(AUTH_PLACE_RECHECK):
                        await line.wait()
                log.info("%s AUTH refused: the server is shutting down", self.id)
                return replies.SHUTTING_DOWN
            log.warning("%s AUTH not checked: other checks from %s take too long", self.id, address)
            return replies.AUTH_TEMPORARY_FAILURE
        finally:
            first = line.waiting[0] is self
            line.waiting.remove(self)
            if not line.waiting:
                del context.auth_lines[address]
            elif first:
                line.wake()  # the next in line may find a place

    def _too_many_auth_failures(self, address: str) -> Reply:
        log.warning("%s AUTH refused: too many failures from %s", self.id, address)
        return replies.TOO_MANY_AUTH_FAILURES

    def _end_auth_check(self, address: str) -> None:
        context = self._context
        context.auth_failures.end(address)
        line = context.auth_lines.get(address)
        if line is not None:
            line.wake()

    async def _auth_failed(self, conn: ServerConnection) -> None:
        """Count a failure and wait, longer each time, before answering."""
        self._auth_failures += 1
        from_address = self._context.auth_failures.failed(self.peer[0], trio.current_time())
        failures = max(self._auth_failures, from_address)
        delay = self._config.auth_failure_delay * 2 ** min(failures - 1, 32)
        await self._penalty(min(delay, MAX_PENALTY_DELAY))

    def _check_auth_failures(self, conn: ServerConnection) -> None:
        if self._auth_failures >= self._config.max_auth_failures:
            conn.abort(replies.TOO_MANY_AUTH_FAILURES)
            self._closing = True

    async def _on_data_started(self, conn: ServerConnection, event: DataStarted) -> None:
        self._message_id = new_id()
        if not self._client_name_looked_up:
            self._client_name = await self._reverse_lookup()
        recipients = conn.recipients
        header = self._received_headers.header(
            helo=conn.helo_name or "",
            client_name=self._client_name,
            protocol=with_protocol(
                extended=conn.extended,
                tls=self.tls is not None,
                authenticated=self._user_id is not None,
                smtputf8=conn.mail_parameters.smtputf8,
            ),
            tls=(self.tls.version, self.tls.cipher) if self.tls else None,
            message_id=self._message_id,
            recipient=recipients[0] if len(recipients) == 1 else None,
        )
        self._spool = Spool(header, self._config.spool_threshold)
        # The minimum data rate runs from here, over every chunk of a BDAT
        # message, including those that arrive with their command.
        self._body_since, self._body_bytes = trio.current_time(), 0

    async def _reverse_lookup(self) -> str | None:
        """The client's name from reverse DNS, for the trace header, or None."""
        self._client_name_looked_up = True
        if not self._config.reverse_dns:
            return None
        with trio.move_on_after(self._config.reverse_dns_timeout):
            try:
                name, _ = await trio.socket.getnameinfo((self.peer[0], 0), socket.NI_NAMEREQD)
            except OSError:
                return None
            return name
        return None

    async def _on_message_data(self, conn: ServerConnection, event: MessageData) -> None:
        assert self._spool is not None
        await self._spool.append(event.data)

    async def _on_message_complete(self, conn: ServerConnection, event: MessageComplete) -> None:
        spool = self._spool
        assert spool is not None
        # Still ours until finish() returns: cancelled in it, the session's
        # cleanup discards the spool and closes its file.
        try:
            content = await spool.finish()
        except OSError as error:
            # The disk of the temporary files is full, say: no fault of the
            # client's, which keeps the message and tries again later.
            self._spool = None
            log.warning(
                "%s message %s not kept: the spool file failed: %s",
                self.id,
                self._message_id,
                error,
            )
            reply = replies.INSUFFICIENT_STORAGE
            conn.reject(reply)
            self._log_message(event.sender, len(self._recipients), spool.size, reply)
            self._recipients = []
            return
        self._spool = None
        recipients, self._recipients = tuple(self._recipients), []
        try:
            reply = await self._deliver(conn, event, content, recipients)
        except _HookTimedOut:
            self._log_message(
                event.sender, len(recipients), content.size, self._hook_timeout_reply, "(timeout)"
            )
            raise
        except BaseException as error:
            if _holds_cancelled(error):
                # The shutdown's grace period, or the session's time limit,
                # ended in the Mailer: run() knows which, and says so.
                self._cut_off = (event.sender, len(recipients), content.size)
            raise
        finally:
            content.close()
        if reply.is_positive:
            conn.accept(reply)
        else:
            conn.reject(reply)
            self._closing = reply.closes
        self._log_message(event.sender, len(recipients), content.size, reply)

    def _log_cut_off(self, reply: Reply, why: str) -> None:
        if self._cut_off is not None:
            self._log_message(*self._cut_off, reply, why)

    def _log_message(
        self, sender: str, recipients: int, size: int, reply: Reply, why: str = ""
    ) -> None:
        """The message's log line, with the code of the reply the client gets."""
        if log.isEnabledFor(logging.INFO):
            # (Escaping costs as much as the rest of the line: skip both
            # when nobody reads them.)
            log.info(
                "%s message %s from=<%s> rcpts=%d size=%d result=%d%s",
                self.id,
                self._message_id,
                _path(sender),
                recipients,
                size,
                reply.code,
                f" {why}" if why else "",
            )

    async def _deliver(
        self,
        conn: ServerConnection,
        event: MessageComplete,
        content: MessageContent,
        recipients: tuple[Recipient, ...],
    ) -> Reply:
        """Hand the message to the Mailer; the reply says whether it has it."""
        mailer = self._context.mailer
        common = {
            "sender": event.sender,
            "recipients": recipients,
            "parameters": conn.mail_parameters,
            "content": content,
            "peer": self.peer,
            "helo": conn.helo_name or "",
            "tls": self.tls,
            "role": self._role,
            "session_id": self.id,
            "message_id": self._message_id,
            "received_at": datetime.now(UTC),
        }
        name = f"Mailer (message {self._message_id})"
        limit, on_timeout = self._config.mailer_timeout, replies.TEMPORARY_FAILURE
        try:
            if self._role is Role.SUBMISSION:
                assert self._user_id is not None
                assert self._username is not None
                mail = UserMail(**common, user_id=self._user_id, username=self._username)  # type: ignore[arg-type]
                await self._hook(name, limit, on_timeout, mailer.send, mail)
            else:
                await self._hook(name, limit, on_timeout, mailer.forward, Mail(**common))  # type: ignore[arg-type]
        except Reject as reject:
            return _reply_from(reject)
        except Exception:
            # The client keeps the message and retries: nothing is lost.
            log.exception("%s Mailer failed for message %s", self.id, self._message_id)
            return replies.TEMPORARY_FAILURE
        return replies.message_accepted(self._message_id)

    async def _on_message_aborted(self, conn: ServerConnection, event: MessageAborted) -> None:
        log.info("%s message refused: %s", self.id, event.reply)
        self._drop_message()

    async def _on_transaction_reset(self, conn: ServerConnection, event: TransactionReset) -> None:
        self._drop_message()

    def _drop_message(self) -> None:
        self._recipients = []
        if self._spool is not None:
            self._spool.discard()
            self._spool = None

    async def _on_command_rejected(self, conn: ServerConnection, event: CommandRejected) -> None:
        log.debug("%s refused: %s", self.id, event.reply)
        auth_failure = event.reply in _AUTH_FAILURE_REPLIES
        if auth_failure:
            # AUTH failures have their own, steeper, penalty; no second one below.
            await self._auth_failed(conn)
            self._check_auth_failures(conn)
            if self._closing:
                return
        # No delay for a refusal that ends the session (a message with a fake
        # end): it would only hold the reply back, and the connection.
        delay = not auth_failure and conn.state is not State.CLOSED
        await self._error_limits(conn, event.error_count, delay=delay)

    async def _refuse(
        self, conn: ServerConnection, reply: Reply, *, client_error: bool = True
    ) -> None:
        """Refuse a MAIL or RCPT decision; the client's errors meet the limits.

        ``client_error=False`` is for our own failures (a hook that raised):
        those neither count as the client's errors nor make it wait.
        """
        conn.reject(reply, counted=client_error)
        if reply.closes:
            # 421 (a hook may raise Reject(421, ...)): the server closes.
            self._closing = True
        elif client_error:
            await self._error_limits(conn, conn.error_count, delay=True)

    async def _error_limits(self, conn: ServerConnection, errors: int, *, delay: bool) -> None:
        config = self._config
        if errors >= config.hard_error_limit:
            # Postfix's smtpd_hard_error_limit: a client this confused, or
            # this hostile, gets no more of our time.
            log.info("%s too many errors", self.id)
            conn.abort(replies.TOO_MANY_ERRORS)
            self._closing = True
        elif errors > config.soft_error_limit and delay:
            # Postfix's soft limit: each further error costs the client time.
            excess = errors - config.soft_error_limit
            await self._penalty(min(config.error_delay * excess, MAX_PENALTY_DELAY))

    async def _penalty(self, seconds: float) -> None:
        """Make the client wait; not in a spent scope, where it would end at once.

        Between transactions, shutdown ends the wait: the reply goes out,
        and the client's next command gets 421.
        """
        if self._waiting is _Waiting.SPENT:
            return
        assert self._conn is not None
        if self._conn.state not in _SHUTDOWN_WAITS:
            await trio.sleep(seconds)  # in a transaction, which shutdown lets finish
            return
        if self._context.shutting_down:
            return
        with trio.CancelScope() as scope:
            self._idle_penalty = scope
            try:
                await trio.sleep(seconds)
            finally:
                self._idle_penalty = None

    _handlers: ClassVar[dict[type, Callable[..., Awaitable[None]]]] = {
        Hello: _on_hello,
        MailFrom: _on_mail,
        RcptTo: _on_rcpt,
        AuthCredentials: _on_auth,
        DataStarted: _on_data_started,
        MessageData: _on_message_data,
        MessageComplete: _on_message_complete,
        MessageAborted: _on_message_aborted,
        TransactionReset: _on_transaction_reset,
        CommandRejected: _on_command_rejected,
    }
