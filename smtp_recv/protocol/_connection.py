"""``ServerConnection``: the server side of one SMTP session, without I/O.

Feed it the bytes the client sent (``receive_data``; ``b""`` for EOF), pull
typed events (``next_event``), answer the events that need a decision
(``accept`` / ``reject``), and send whatever ``data_to_send`` returns.  The
core answers everything it can decide alone (syntax, sequence, EHLO, NOOP,
RSET, ...) itself, so the caller only ever decides what is policy: senders,
recipients, credentials and the fate of a message.

Pipelining (RFC 2920) falls out of the design: commands are read from the
buffer one at a time, their replies queue up in ``data_to_send``, and the
caller flushes when ``next_event`` says ``NEED_DATA``, i.e. once per group.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import NoReturn

from . import _replies as replies
from . import limits
from ._addresses import ascii_upper, parse_helo_name, parse_mail, parse_rcpt
from ._buffer import LINE_TOO_LONG, ReceiveBuffer
from ._data import ChunkChecker, DataReader
from ._errors import LocalProtocolError, ProtocolError, _Refusal
from ._events import (
    NEED_DATA,
    NO_MAIL_PARAMETERS,
    PAUSED,
    AnyEvent,
    AuthCredentials,
    CommandRejected,
    ConnectionClosed,
    DataStarted,
    Event,
    Hello,
    MailFrom,
    MailParameters,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptTo,
    Sentinel,
    StartTLS,
    TransactionReset,
)
from ._replies import Reply
from ._sasl import MECHANISMS, Credentials, SaslExchange
from ._state import Input, Milestone, State, Verb, next_state, refusal

_VERBS = {verb.value: verb for verb in Verb}
# Known SMTP commands we do not implement: 502 rather than 500 (RFC 5321 4.2.4).
_NOT_IMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "ATRN", "SAML", "SEND", "SOML", "BURL"})
# A web client talking to the SMTP port (cross-protocol attacks): close at once.
_HTTP_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH"})
_LINE_LIMITS = {
    Verb.MAIL: limits.MAIL_LINE,
    Verb.RCPT: limits.RCPT_LINE,
    Verb.AUTH: limits.SASL_LINE,
}
# The command word of a line we cannot decode or parse: ASCII letters up to
# a space, a line-ending byte, or the end of what we have.
_RAW_VERB = re.compile(rb"([A-Za-z]+)(?:[ \r\n]|\Z)")
# What a more lenient parser (a proxy or filter in front of us) may read as
# a BDAT command in a line we refuse: after leading white space, with any
# separator after it, and after a bare CR or LF, which such a parser may
# take for a line end (Postfix's tokenizer, for one, does all of these).
# (Matched with the NULs taken out, as a hop that deletes them would.)
_BDAT_WORD = rb"[ \t\x0b\x0c]*BDAT(?![A-Z])"
_BDAT_LIKE = re.compile(rb"(?:\A|[\r\n])" + _BDAT_WORD, re.IGNORECASE)
# The same after a bare CR or LF only: a SASL response, base64, may begin "BDAT".
_BDAT_AFTER_LINE_END = re.compile(rb"[\r\n]" + _BDAT_WORD, re.IGNORECASE)
_TRANSACTION_VERBS = frozenset({Verb.MAIL, Verb.RCPT, Verb.DATA, Verb.BDAT})
_NON_MAIL_VERBS = frozenset({Verb.NOOP, Verb.VRFY, Verb.HELP, Verb.RSET, Verb.HELO, Verb.EHLO})
_BETWEEN_TRANSACTIONS = frozenset({State.CONNECTED, State.GREETED})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """What one session offers and allows; the I/O layer builds one per stream."""

    #: Our name in the EHLO reply.
    hostname: str
    #: Largest message, advertised as ``SIZE`` and enforced while streaming.
    max_message_size: int = 32 << 20
    #: Recipients per message; past it ``452 4.5.3`` (RFC 5321 4.5.3.1.10).
    max_recipients: int = 1000
    #: Offer STARTTLS (when ``tls_active`` is false).
    offer_starttls: bool = False
    #: The stream is already encrypted (implicit TLS, or after STARTTLS).
    tls_active: bool = False
    #: Offer AUTH PLAIN and LOGIN; only ever on an encrypted stream.
    offer_auth: bool = False
    #: MAIL, RCPT, DATA and BDAT need a successful AUTH first (``530``).
    auth_required: bool = False
    #: Offer SMTPUTF8 (RFC 6531).
    smtputf8: bool = True
    #: Offer CHUNKING and BINARYMIME (RFC 3030).
    chunking: bool = True
    #: Offer DSN (RFC 3461) and take its parameters (RET, ENVID, NOTIFY,
    #: ORCPT) into the events.  Offering it promises the delivery status
    #: notifications they ask for, so only a server whose delivery sends them
    #: (or relays them to a next hop that offers DSN) turns it on; without it
    #: they are unknown parameters (``555 5.5.4``), as for any extension not
    #: offered (RFC 5321 4.1.1.11).
    dsn: bool = False
    #: Put RFC 3463 codes on replies and offer ENHANCEDSTATUSCODES (RFC 2034).
    enhanced_status_codes: bool = True
    #: Refuse messages with a bare CR or LF (``550 5.5.2``) or a NUL
    #: (``550 5.6.0``): text that only CRLF structures (RFC 5321 2.3.8, RFC
    #: 6152), sent with DATA or with BDAT (unless ``BODY=BINARYMIME``).
    #: ``False`` passes such bytes on verbatim; a bare CR or LF still never
    #: ends a line or the message.
    reject_bare_line_endings: bool = True
    #: Commands that carry no mail (NOOP, VRFY, HELP, RSET, HELO, EHLO) allowed
    #: since the last accepted MAIL; past it ``421 4.7.0``.  Without it a
    #: client could hold a connection slot with NOOPs until the session
    #: deadline (Postfix: ``smtpd_junk_command_limit``, 100).
    max_non_mail_commands: int = limits.NON_MAIL_COMMANDS

    def __post_init__(self) -> None:
        if self.max_recipients < limits.MIN_RECIPIENTS:
            raise ValueError("max_recipients must be at least 100 (RFC 5321 4.5.3.1.8)")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be positive")


class ServerConnection:
    """The server side of one SMTP session over one stream.

    Example, over a blocking socket, offering neither STARTTLS nor AUTH
    (the README has a whole session, with what else to handle)::

        conn = ServerConnection(SessionConfig(hostname="mx.example"))
        conn.send_greeting()
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    sock.sendall(conn.data_to_send())
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, (MailFrom, RcptTo, MessageComplete)):
                    conn.accept()  # a MessageComplete once its message is stored
                elif isinstance(event, ConnectionClosed) or event is PAUSED:
                    break
        except ProtocolError:
            pass  # its reply is queued
        sock.sendall(conn.data_to_send())
    """

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self._buffer = ReceiveBuffer()
        self._state = State.CONNECTED
        self._eof = False
        self._outgoing = bytearray()
        self._events: deque[AnyEvent] = deque()
        self._pending: MailFrom | RcptTo | AuthCredentials | MessageComplete | None = None
        self._extended = False
        #: The name from HELO/EHLO, once given.
        self.helo_name: str | None = None
        #: A successful AUTH has happened in this session.
        self.authenticated = False
        #: Commands refused since the session began or a message was last
        #: accepted (the I/O layer applies its error limits).
        self.error_count = 0
        self._non_mail_commands = 0
        #: After STARTTLS: the bytes that followed it, to be discarded.
        self.trailing_data = b""
        # The mail transaction.
        self._sender: str | None = None
        self._mail_parameters = NO_MAIL_PARAMETERS
        self._recipients: list[str] = []
        self._reader: DataReader | None = None
        self._message_size = 0
        self._chunk_remaining = 0
        self._chunk_last = False
        self._chunk_checker: ChunkChecker | None = None
        # A refused BDAT chunk being read and thrown away, then its reply.
        self._discard_remaining = 0
        self._discard_reply: Reply | None = None
        self._sasl: SaslExchange | None = None
        # Set by shut_down(): the reply that ends the session at its next
        # command between transactions.
        self._closing_reply: Reply | None = None

    # -- public interface ---------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def sender(self) -> str | None:
        """The accepted reverse-path of the transaction under way."""
        return self._sender

    @property
    def mail_parameters(self) -> MailParameters:
        """The ESMTP parameters of the accepted MAIL FROM."""
        return self._mail_parameters

    @property
    def recipients(self) -> tuple[str, ...]:
        """The accepted recipients of the transaction under way."""
        return tuple(self._recipients)

    @property
    def discarding(self) -> bool:
        """A refused BDAT chunk is being read and thrown away.

        For the I/O layer this is a message body like any other: it must
        arrive at the minimum data rate, or a client could hold the
        connection by trickling a chunk it knows will be refused.
        """
        return self._discard_remaining > 0

    @property
    def pending_bytes(self) -> int:
        """Bytes received and not yet parsed (part of a line, or a body piece).

        What the connection holds in memory for the client; see ``mid_line``
        for whether the client is half-way through a command line.
        """
        return len(self._buffer)

    @property
    def mid_line(self) -> bool:
        """Whether part of a command line has come and its end not yet.

        The I/O layer gives such a client the deadline of a line (slowloris),
        not that of a client between commands.  A line so long that the
        bytes that came so far were dropped unread counts too.
        """
        return bool(self._buffer) or self._buffer.skipping

    @property
    def extended(self) -> bool:
        """The client greeted with EHLO (not HELO)."""
        return self._extended

    def send_greeting(self) -> None:
        """Queue the 220 greeting (RFC 5321 4.3.1); not used after STARTTLS."""
        self._reply(replies.greeting(self.config.hostname))

    def receive_data(self, data: bytes | bytearray) -> None:
        """Add bytes from the client; ``b""`` means the client closed (EOF)."""
        if self._state in (State.TLS, State.CLOSED):
            return
        if not data:
            self._eof = True
        else:
            if self._eof:
                raise LocalProtocolError("data received after EOF")
            self._buffer.append(data)

    def data_to_send(self) -> bytes:
        """Return and forget the replies queued so far, as one block."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def next_event(self) -> AnyEvent | Sentinel:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``.

        Raises:
            ProtocolError: the client broke the protocol past recovery.  The
                error's reply is already queued: send ``data_to_send()`` and
                close.
        """
        while not self._events:
            if self._pending is not None or self._state in (State.TLS, State.CLOSED):
                return PAUSED
            if not self._step():
                if self._eof:
                    self._finish(None)
                    continue
                return NEED_DATA
        return self._events.popleft()

    def accept(self, reply: Reply | None = None) -> None:
        """Accept the pending decision, with ``reply`` or the usual success reply."""
        # Check before taking: a refused call must leave the decision pending,
        # or the client would never get a reply to its command.
        if reply is not None and not reply.is_positive:
            raise LocalProtocolError(f"accept() needs a 2xx or 3xx reply, not {reply.code}")
        event = self._take_pending()
        if reply is None:
            reply = _SUCCESS[type(event)]
        if isinstance(event, MailFrom):
            self._sender = event.sender
            self._mail_parameters = event.parameters
            self._move(Milestone.MAIL_ACCEPTED)
            self._non_mail_commands = 0
        elif isinstance(event, RcptTo):
            self._recipients.append(event.recipient)
            self._move(Milestone.RCPT_ACCEPTED)
        elif isinstance(event, AuthCredentials):
            self.authenticated = True
            self._sasl = None
            self._move(Milestone.AUTH_ENDED)
        else:
            self._end_transaction(Milestone.MESSAGE_ENDED)
            # A message received forgives the client's errors, as Postfix
            # does: a relay delivering its queue, one unknown recipient in
            # each message, must not be slowed and then cut off.  (A new
            # connection would start from nothing anyway.)
            self.error_count = 0
        self._reply(reply)

    def reject(self, reply: Reply, *, counted: bool = True) -> None:
        """Refuse the pending decision with a 4xx or 5xx ``reply``.

        The refusal counts in ``error_count`` unless ``counted`` is false:
        for the server's own failures (a lookup that failed or timed out),
        which must not bring a client nearer to being cut off.
        """
        if reply.is_positive:
            raise LocalProtocolError(f"reject() needs a 4xx or 5xx reply, not {reply.code}")
        event = self._take_pending()
        if isinstance(event, AuthCredentials):
            self._sasl = None
            self._move(Milestone.AUTH_ENDED)
        elif isinstance(event, MessageComplete):
            # The message is the server's concern now, not a client error.
            self._end_transaction(Milestone.MESSAGE_ENDED)
            self._reply(reply)
            return
        if counted:
            self.error_count += 1
        self._reply(reply)

    def abort(self, reply: Reply) -> None:
        """End the session from our side (timeout, shutdown, limits) with ``reply``."""
        self._pending = None
        self._events.clear()
        self._reply(reply)
        self._state = State.CLOSED

    def shut_down(self, reply: Reply) -> None:
        """The server is going away: end the session at its next transaction's end.

        A transaction under way goes on to its end (its message is
        accepted or refused as usual), and so does an AUTH exchange.  From
        then on, between transactions, a bare QUIT is answered as ever and
        any other line, however malformed, gets ``reply`` and ends the
        session with ``ConnectionClosed``: RFC 5321 3.8 lets a server that
        must shut down answer any command with 421 and close.  QUIT is the
        exception because a client that just had its message accepted says
        QUIT next, and a 421 to it would read as a failure (Python's
        ``smtplib`` raises).
        """
        if reply.code != 421:
            raise LocalProtocolError(f"shut_down() needs a 421 reply, not {reply.code}")
        self._closing_reply = reply

    # -- the machinery --------------------------------------------------------
    def _take_pending(self) -> MailFrom | RcptTo | AuthCredentials | MessageComplete:
        event = self._pending
        if event is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return event

    def _reply(self, reply: Reply) -> None:
        self._outgoing += reply.to_bytes(self.config.enhanced_status_codes)

    def _refuse(self, reply: Reply) -> None:
        # 452 "too many recipients" is flow control, not a client error.
        if reply is not replies.TOO_MANY_RECIPIENTS:
            self.error_count += 1
        self._reply(reply)
        self._events.append(CommandRejected(reply=reply, error_count=self.error_count))

    def _close(self, reply: Reply) -> None:
        """End the session after shut_down.

        A BDAT here owes a chunk, left unread: the session ends, so those
        bytes are never taken for commands.
        """
        self._reply(reply)
        self._state = State.CLOSED
        self._events.append(ConnectionClosed(reply=reply))

    def _move(self, event: Input) -> None:
        new = next_state(self._state, event)
        if new is None:  # pragma: no cover - a bug in the core, not the client
            raise LocalProtocolError(f"no transition from {self._state} on {event}")
        self._state = new

    def _finish(self, reply: Reply | None) -> None:
        self._move(Milestone.EOF)
        self._events.append(ConnectionClosed(reply=reply))

    def _step(self) -> bool:
        """Make progress on the buffer; return ``False`` when more data is needed."""
        if self._discard_remaining:
            if self._closing_reply is not None and self._state in _BETWEEN_TRANSACTIONS:
                # A refused chunk outside a transaction: no message to finish.
                self._close(self._closing_reply)
                return True
            return self._discard()
        if self._state is State.DATA:
            return self._read_data()
        if self._state is State.BDAT:
            return self._read_chunk()
        limit = limits.SASL_LINE if self._state is State.AUTH else limits.MAX_LINE
        line = self._buffer.next_line(limit)
        if line is None:
            return False
        closing = self._closing_reply
        if (
            closing is not None
            and self._state in _BETWEEN_TRANSACTIONS
            and (not isinstance(line, bytes) or line.rstrip(b" \t").upper() != b"QUIT")
        ):
            # Before any other check: a line refused (and answered) for its
            # form would leave the session open for another try.
            self._close(closing)
            return True
        if line is LINE_TOO_LONG:
            if self._state is State.AUTH:
                if self._buffer.skipped_bare_line_end:
                    # Where a lenient parser ended the response, a BDAT may follow.
                    self._bdat_unreadable()
                # RFC 4954 section 6: its own code for an over-long response.
                self._end_sasl()
                self._refuse(replies.AUTH_LINE_TOO_LONG)
            else:
                start = self._buffer.skipped_start
                if self._buffer.skipped_bare_line_end or not start:
                    # Where a lenient parser would have ended this line, or
                    # past the white space we kept, a BDAT may hide unseen.
                    self._bdat_unreadable()
                self._unless_bdat(start)
                # RFC 4954 section 4: an AUTH line too long (its initial
                # response) has the code of an over-long response.
                auth = _raw_verb(start) is Verb.AUTH
                self._refuse(replies.AUTH_LINE_TOO_LONG if auth else replies.LINE_TOO_LONG)
            return True
        assert isinstance(line, bytes)
        try:
            if self._state is State.AUTH:
                self._sasl_response(line)
            else:
                self._command(line)
        except _Refusal as refusal_:
            self._refuse(refusal_.reply)
        return True

    # -- commands -----------------------------------------------------------
    def _command(self, line: bytes) -> None:
        if b"\r" in line or b"\n" in line:
            # RFC 5321 2.3.8: only CRLF ends a line.  "NOOP\nNOOP" is one
            # malformed line, never two commands.
            self._unless_bdat(line)
            raise _Refusal(replies.BARE_LINE_ENDING_IN_COMMAND)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._unless_bdat(line)
            raise _Refusal(self._undecodable(line)) from None
        # RFC 5321 4.1.1: receivers SHOULD tolerate trailing white space.
        word, _, argument = text.rstrip(" \t").partition(" ")
        name = ascii_upper(word)
        verb = _VERBS.get(name)
        if verb is None:
            if name in _HTTP_METHODS:
                self.abort(replies.NOT_SMTP)
                raise ProtocolError(replies.NOT_SMTP)
            # "BDAT<TAB>6": no size we can trust, and a chunk may follow.
            self._unless_bdat(line)
            if len(line) + 2 > limits.COMMAND_LINE:
                raise _Refusal(replies.LINE_TOO_LONG)
            if name in _NOT_IMPLEMENTED:
                raise _Refusal(replies.NOT_IMPLEMENTED)
            raise _Refusal(replies.UNRECOGNISED)
        if len(line) + 2 > _LINE_LIMITS.get(verb, limits.COMMAND_LINE):
            if verb is Verb.BDAT:  # its chunk cannot be framed (see _unless_bdat)
                self.abort(replies.BDAT_SYNTAX)
                raise ProtocolError(replies.BDAT_SYNTAX)
            # (AUTH's limit is the longest kept: past it, the buffer refuses.)
            raise _Refusal(replies.LINE_TOO_LONG)
        if verb is Verb.BDAT:
            # BDAT sequences itself: a refused chunk must still be read.
            self._bdat(argument)
            return
        if (
            verb in _TRANSACTION_VERBS
            and self.config.auth_required
            and not self.authenticated
            and self._state is not State.CONNECTED
        ):
            raise _Refusal(replies.AUTH_REQUIRED)
        if verb in _NON_MAIL_VERBS:
            self._non_mail_commands += 1
            if self._non_mail_commands > self.config.max_non_mail_commands:
                self.abort(replies.TOO_MANY_COMMANDS)
                raise ProtocolError(replies.TOO_MANY_COMMANDS)
        new = next_state(self._state, verb)
        if new is None:
            raise _Refusal(refusal(self._state, verb))
        _HANDLERS[verb](self, argument, new)

    def _hello(self, argument: str, new: State, *, extended: bool) -> None:
        name = parse_helo_name(argument)
        self._reset_transaction()
        self._state = new
        self._extended = extended
        self.helo_name = name
        host = self.config.hostname
        if extended:
            self._reply(replies.ehlo(host, name, self._keywords()))
        else:
            self._reply(replies.helo(host, name))
        self._events.append(Hello(name=name, extended=extended))

    def _ehlo(self, argument: str, new: State) -> None:
        self._hello(argument, new, extended=True)

    def _helo(self, argument: str, new: State) -> None:
        self._hello(argument, new, extended=False)

    def _keywords(self) -> tuple[str, ...]:
        """The EHLO extension list, from the configuration and the session."""
        config = self.config
        keywords = ["PIPELINING", f"SIZE {config.max_message_size}", "8BITMIME"]
        if config.smtputf8:
            keywords.append("SMTPUTF8")
        if config.enhanced_status_codes:
            keywords.append("ENHANCEDSTATUSCODES")
        if config.chunking:
            keywords += ["CHUNKING", "BINARYMIME"]
        if config.dsn:
            keywords.append("DSN")
        if config.offer_starttls and not config.tls_active:
            keywords.append("STARTTLS")
        if config.offer_auth and config.tls_active:
            # RFC 4954 section 4 and RFC 8314: never offer AUTH in plaintext.
            keywords.append("AUTH " + " ".join(MECHANISMS))
        return tuple(keywords)

    def _mail(self, argument: str, new: State) -> None:
        sender, parameters = parse_mail(
            argument,
            smtputf8_offered=self.config.smtputf8,
            chunking_offered=self.config.chunking,
            dsn_offered=self.config.dsn,
            extended=self._extended,
        )
        if parameters.size is not None and parameters.size > self.config.max_message_size:
            # RFC 1870 section 6.1: refuse at once, before any data is sent.
            raise _Refusal(replies.MESSAGE_TOO_BIG)
        self._decide(MailFrom(sender=sender, parameters=parameters))

    def _rcpt(self, argument: str, new: State) -> None:
        if len(self._recipients) >= self.config.max_recipients:
            raise _Refusal(replies.TOO_MANY_RECIPIENTS)
        recipient, parameters = parse_rcpt(
            argument,
            smtputf8=self._mail_parameters.smtputf8,
            dsn_offered=self.config.dsn and self._extended,
        )
        self._decide(RcptTo(recipient=recipient, parameters=parameters))

    def _decide(self, event: MailFrom | RcptTo | AuthCredentials | MessageComplete) -> None:
        self._pending = event
        self._events.append(event)

    def _data(self, argument: str, new: State) -> None:
        if argument:
            raise _Refusal(replies.NO_ARGUMENTS_ALLOWED)
        if self._mail_parameters.body == "BINARYMIME":
            raise _Refusal(replies.BINARYMIME_NEEDS_BDAT)
        self._state = new
        self._reader = DataReader(
            self.config.max_message_size, self.config.reject_bare_line_endings
        )
        self._reply(replies.START_DATA)
        self._events.append(DataStarted(chunked=False))

    def _rset(self, argument: str, new: State) -> None:
        if argument:
            raise _Refusal(replies.NO_ARGUMENTS_ALLOWED)
        self._reset_transaction()
        self._state = new
        self._reply(replies.RESET_OK)

    def _noop(self, argument: str, new: State) -> None:
        # RFC 5321 4.1.1.9: NOOP may carry a string, which is ignored.
        self._reply(replies.NOOP_OK)

    def _help(self, argument: str, new: State) -> None:
        self._reply(replies.HELP)

    def _vrfy(self, argument: str, new: State) -> None:
        if not argument.strip():
            raise _Refusal(replies.VRFY_SYNTAX)
        # RFC 5321 3.5.3: 252 neither confirms nor denies (no address harvesting).
        self._reply(replies.CANNOT_VRFY)

    def _quit(self, argument: str, new: State) -> None:
        if argument:
            raise _Refusal(replies.NO_ARGUMENTS_ALLOWED)
        self._reset_transaction()
        self._state = new
        self._reply(replies.CLOSING)
        self._events.append(ConnectionClosed(reply=replies.CLOSING))

    def _starttls(self, argument: str, new: State) -> None:
        config = self.config
        if argument:
            raise _Refusal(replies.NO_ARGUMENTS_ALLOWED)
        if config.tls_active:
            raise _Refusal(replies.TLS_ALREADY_ACTIVE)
        if not config.offer_starttls:
            raise _Refusal(replies.STARTTLS_NOT_AVAILABLE)
        if not self._extended:
            raise _Refusal(replies.NEED_EHLO)
        self._state = new
        self._reply(replies.READY_FOR_TLS)
        # RFC 3207 section 4.2 / CVE-2011-0411: whatever came after STARTTLS
        # was sent in plaintext and must never be read as part of the TLS
        # session.  Hand it out for the caller to throw away.
        self.trailing_data = self._buffer.take_all()
        self._events.append(StartTLS())

    def _auth(self, argument: str, new: State) -> None:
        config = self.config
        if not config.offer_auth:
            raise _Refusal(replies.AUTH_NOT_AVAILABLE)
        if not self._extended:
            raise _Refusal(replies.NEED_EHLO)
        if not config.tls_active:
            raise _Refusal(replies.ENCRYPTION_REQUIRED)
        if self.authenticated:
            raise _Refusal(replies.ALREADY_AUTHENTICATED)
        words = argument.split(" ")
        if not argument or len(words) > 2:
            raise _Refusal(replies.AUTH_SYNTAX)
        mechanism = ascii_upper(words[0])
        if mechanism == "PLAIN":
            self._sasl = SaslExchange("PLAIN")
        elif mechanism == "LOGIN":
            self._sasl = SaslExchange("LOGIN")
        else:
            raise _Refusal(replies.UNKNOWN_MECHANISM)
        self._state = new
        if len(words) == 2:
            self._sasl_input(words[1], initial=True)
        else:
            self._reply(replies.auth_challenge(self._sasl.first_challenge()))

    def _sasl_response(self, line: bytes) -> None:
        if b"\r" in line or b"\n" in line or not line.isascii():
            if _BDAT_AFTER_LINE_END.search(line.replace(b"\0", b"")) is not None:
                self._bdat_unreadable()  # see _unless_bdat
            self._end_sasl()
            raise _Refusal(replies.AUTH_BAD_BASE64)
        # Trailing white space tolerated, as on a command line (RFC 5321 4.1.1).
        self._sasl_input(line.decode("ascii").rstrip(" \t"))

    def _sasl_input(self, text: str, *, initial: bool = False) -> None:
        assert self._sasl is not None
        try:
            result = self._sasl.step(text, initial=initial)
        except _Refusal:
            self._end_sasl()
            raise
        if isinstance(result, Credentials):
            self._decide(
                AuthCredentials(
                    mechanism=result.mechanism,
                    authorization_id=result.authorization_id,
                    username=result.username,
                    password=result.password,
                )
            )
        else:
            self._reply(replies.auth_challenge(result))

    def _end_sasl(self) -> None:
        self._sasl = None
        self._move(Milestone.AUTH_ENDED)

    # -- message bodies --------------------------------------------------------
    def _read_data(self) -> bool:
        reader = self._reader
        assert reader is not None
        buffered = len(self._buffer)
        piece, ended = reader.read(self._buffer)
        if piece:
            self._events.append(MessageData(data=piece))
        if ended:
            # One verdict from the whole message, whatever arrived first.
            if reader.oversized:
                self._abort_message(replies.MESSAGE_TOO_BIG)
                if reader.bare_line_ending or reader.nul:
                    # Refused for its size first, but a fake end all the same.
                    self._end_after_fake_end(replies.MESSAGE_TOO_BIG)
            elif reader.bare_line_ending:
                self._abort_message(replies.BARE_LINE_ENDING_IN_DATA)
                self._end_after_fake_end(replies.BARE_LINE_ENDING_IN_DATA)
            elif reader.nul:
                self._abort_message(replies.NUL_IN_DATA)
                self._end_after_fake_end(replies.NUL_IN_DATA)
            else:
                self._decide(self._complete(reader.size))
            return True
        # Progress is bytes consumed, not bytes passed on: a refused message
        # passes nothing on but must still be drained, so that the buffer
        # stays under DATA_FLUSH whenever more data is asked for.
        return len(self._buffer) < buffered

    def _undecodable(self, line: bytes) -> Reply:
        """The reply to a command line that is not UTF-8."""
        if _raw_verb(line) is None:
            return replies.INVALID_UTF8
        # RFC 5321 4.2.2: a known command with a bad argument is 501.
        return replies.INVALID_UTF8_ARGUMENT

    def _unless_bdat(self, line: bytes) -> None:
        """End the session if ``line``, which we refuse unread, may be a BDAT command.

        Its chunk follows it unannounced (RFC 3030 lets the client send it at
        once): with no size we trust, the chunk cannot be framed, and reading
        on would run the chunk's bytes, someone else's message, as commands.
        Nor may a parser in front of us have seen a BDAT where we see none
        (``_BDAT_LIKE``): it would frame a chunk that we read as commands.
        ``line`` may be only the start of an over-long line.
        """
        if _BDAT_LIKE.search(line.replace(b"\0", b"")) is not None:
            self._bdat_unreadable()

    def _bdat_unreadable(self) -> NoReturn:
        self.abort(replies.BDAT_SYNTAX)
        raise ProtocolError(replies.BDAT_SYNTAX)

    def _bdat(self, argument: str) -> None:
        words = argument.split(" ")
        if not 1 <= len(words) <= 2 or not words[0].isdigit() or not words[0].isascii():
            # Without a size we cannot tell where the chunk ends, so the
            # stream cannot be read safely any further.
            self.abort(replies.BDAT_SYNTAX)
            raise ProtocolError(replies.BDAT_SYNTAX)
        last = len(words) == 2
        if last and ascii_upper(words[1]) != "LAST":
            self.abort(replies.BDAT_SYNTAX)
            raise ProtocolError(replies.BDAT_SYNTAX)
        # Compare digit counts before converting: the count is the client's,
        # and nothing is allocated from it.
        digits = words[0].lstrip("0") or "0"
        if len(digits) > limits.BDAT_SIZE_DIGITS:
            # Not a size (RFC 3030 section 2): nothing frames the chunk any
            # more, so the stream cannot be read any further.  Refuse, close.
            self.abort(replies.MESSAGE_TOO_BIG)
            raise ProtocolError(replies.MESSAGE_TOO_BIG)
        # A chunk larger than the limit is read to its end and refused below,
        # as a DATA message too large is: the session goes on (RFC 5321 3.8
        # closes only with 421), and the minimum data rate bounds the read.
        size = int(digits)
        if not self.config.chunking or (self._state is not State.CONNECTED and not self._extended):
            # Not offered: by the configuration, or to a client that said
            # HELO (RFC 3030 section 2 needs EHLO).  Before HELO/EHLO the
            # sequence error comes first, as for any other command.
            self._discard_chunk(size, replies.BDAT_NOT_AVAILABLE)
            return
        if (
            self.config.auth_required
            and not self.authenticated
            and self._state is not State.CONNECTED
        ):
            # As for MAIL, RCPT and DATA: before HELO/EHLO the sequence error
            # (503) comes first, after it the missing AUTH (530).
            self._discard_chunk(size, replies.AUTH_REQUIRED)
            return
        new = next_state(self._state, Verb.BDAT)
        if new is None:
            self._discard_chunk(size, refusal(self._state, Verb.BDAT))
            return
        if self._message_size + size > self.config.max_message_size:
            # Read the chunk, then refuse the whole message (RFC 3030 section 2).
            self._end_transaction(Milestone.TRANSACTION_FAILED, moving_from=new)
            self._events.append(MessageAborted(reply=replies.MESSAGE_TOO_BIG))
            self._discard_chunk(size, replies.MESSAGE_TOO_BIG)
            return
        if self._state is State.RCPT:
            self._events.append(DataStarted(chunked=True))
            if self.config.reject_bare_line_endings and self._mail_parameters.body != "BINARYMIME":
                self._chunk_checker = ChunkChecker()
        self._state = new
        self._chunk_remaining = size
        self._chunk_last = last
        if size == 0:
            self._chunk_done()

    def _discard_chunk(self, size: int, reply: Reply) -> None:
        self._discard_remaining = size
        self._discard_reply = reply
        if size == 0:
            self._discard()

    def _discard(self) -> bool:
        """Read and drop a refused chunk; reply once it is all read."""
        taken = min(self._discard_remaining, len(self._buffer))
        self._buffer.consume(taken)
        self._discard_remaining -= taken
        if self._discard_remaining:
            return False
        reply, self._discard_reply = self._discard_reply, None
        assert reply is not None
        self._refuse(reply)
        return True

    def _read_chunk(self) -> bool:
        # RFC 3030: the chunk is opaque; nothing inside it is parsed.
        piece = self._buffer.take(self._chunk_remaining)
        if not piece:
            return False
        self._chunk_remaining -= len(piece)
        self._message_size += len(piece)
        checker = self._chunk_checker
        if checker is not None:
            # Every piece is looked at, as in DATA: the reply depends on the
            # whole message.  Nothing more is passed on once it is refused.
            checker.check(piece)
            if checker.refused:
                piece = b""
        if piece:
            self._events.append(MessageData(data=piece))
        if not self._chunk_remaining:
            self._chunk_done()
        return True

    def _chunk_done(self) -> None:
        if self._chunk_last:
            checker = self._chunk_checker
            if checker is not None:
                checker.end()
                if checker.bare_line_ending:
                    self._abort_message(replies.BARE_LINE_ENDING_IN_DATA)
                    return
                if checker.nul:
                    self._abort_message(replies.NUL_IN_DATA)
                    return
            self._decide(self._complete(self._message_size))
        else:
            self._move(Milestone.CHUNK_ENDED)
            self._reply(replies.chunk_received(self._message_size))

    def _complete(self, size: int) -> MessageComplete:
        return MessageComplete(
            sender=self._sender or "", recipients=tuple(self._recipients), size=size
        )

    def _end_after_fake_end(self, reply: Reply) -> None:
        """End the session after a DATA message refused for its bare CR, LF or NUL.

        A parser in front of us that ends DATA at ``<LF>.<LF>`` (or drops
        NULs, and so ends it at ``<CRLF>.<NUL><CRLF>``) took the message to
        end there and read what followed as commands: a BDAT, say, whose
        chunk holds our real end and a whole transaction after it, which we
        would run as commands that it never saw.  Nothing after
        such a message is read (Postfix's ``smtpd_forbid_bare_newline``
        also disconnects).
        """
        self._state = State.CLOSED
        self._events.append(ConnectionClosed(reply=reply))

    def _abort_message(self, reply: Reply) -> None:
        self._end_transaction(Milestone.MESSAGE_ENDED)
        self._refuse(reply)
        self._events.append(MessageAborted(reply=reply))

    # -- transactions ------------------------------------------------------------
    def _reset_transaction(self) -> None:
        if self._sender is not None:
            self._events.append(TransactionReset())
        self._clear_transaction()

    def _clear_transaction(self) -> None:
        self._sender = None
        self._mail_parameters = NO_MAIL_PARAMETERS
        self._recipients.clear()
        self._reader = None
        self._message_size = 0
        self._chunk_remaining = 0
        self._chunk_last = False
        self._chunk_checker = None

    def _end_transaction(self, milestone: Milestone, *, moving_from: State | None = None) -> None:
        if moving_from is not None:
            self._state = moving_from
        self._move(milestone)
        self._clear_transaction()


_SUCCESS: dict[type[Event], Reply] = {
    MailFrom: replies.SENDER_OK,
    RcptTo: replies.RECIPIENT_OK,
    AuthCredentials: replies.AUTH_OK,
    MessageComplete: replies.OK,
}


def _raw_verb(line: bytes) -> Verb | None:
    """The command a raw (maybe malformed, maybe partial) line names, if any."""
    match = _RAW_VERB.match(line)
    return None if match is None else _VERBS.get(match[1].upper().decode("ascii"))


_HANDLERS = {
    Verb.HELO: ServerConnection._helo,
    Verb.EHLO: ServerConnection._ehlo,
    Verb.MAIL: ServerConnection._mail,
    Verb.RCPT: ServerConnection._rcpt,
    Verb.DATA: ServerConnection._data,
    Verb.RSET: ServerConnection._rset,
    Verb.NOOP: ServerConnection._noop,
    Verb.HELP: ServerConnection._help,
    Verb.VRFY: ServerConnection._vrfy,
    Verb.QUIT: ServerConnection._quit,
    Verb.STARTTLS: ServerConnection._starttls,
    Verb.AUTH: ServerConnection._auth,
}
