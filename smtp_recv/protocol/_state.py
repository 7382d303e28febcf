"""The session state machine: every legal transition, in one table.

Theory of operation
-------------------
A session moves through the states of RFC 5321 4.1.4 and 3.3:

    CONNECTED --HELO/EHLO--> GREETED --MAIL ok--> MAIL --RCPT ok--> RCPT
        RCPT --DATA--> DATA --CRLF.CRLF--> GREETED
        RCPT --BDAT--> BDAT --chunk end--> CHUNKING --BDAT--> BDAT
        BDAT --LAST chunk end--> GREETED
        GREETED --AUTH--> AUTH --exchange done--> GREETED
        GREETED --STARTTLS--> TLS (the end: a fresh session starts on TLS)
        any --QUIT or EOF--> CLOSED

Inputs are the client's commands (``Verb``) and the core's own milestones
(``Milestone``): a decision accepted, a message ended.  ``TRANSITIONS`` maps
``(state, input)`` to the next state.  A command missing from the table is
out of sequence and gets the reply in ``OUT_OF_SEQUENCE`` (or the generic
``503 5.5.1``); a milestone missing from the table is a bug in the core.
Commands that are always harmless (NOOP, HELP, VRFY, QUIT) are in the table
for every state that reads commands, so the table is the whole truth; the
documentation diagram can be drawn from it.

Policy checks that depend on configuration rather than sequence (is AUTH
offered, is TLS active, must the client authenticate first) are not states:
they live beside the command handlers in ``_connection.py``.
"""

from __future__ import annotations

import enum

from . import _replies as replies
from ._replies import Reply


class State(enum.Enum):
    # Members are singletons: hash by identity, in C, not Enum's Python __hash__;
    # the transition table is looked up for every command.
    __hash__ = object.__hash__

    #: Greeting sent; waiting for HELO or EHLO.
    CONNECTED = "CONNECTED"
    #: HELO/EHLO done; no mail transaction.
    GREETED = "GREETED"
    #: MAIL accepted; no recipient yet.
    MAIL = "MAIL"
    #: At least one recipient accepted.
    RCPT = "RCPT"
    #: Reading a DATA body.
    DATA = "DATA"
    #: Reading the bytes of a BDAT chunk.
    BDAT = "BDAT"
    #: Between BDAT chunks: only BDAT, RSET, NOOP, QUIT and HELO/EHLO go on.
    CHUNKING = "CHUNKING"
    #: Inside an AUTH exchange: lines are SASL responses.
    AUTH = "AUTH"
    #: STARTTLS answered: this core is finished; a new one runs on TLS.
    TLS = "TLS"
    #: QUIT, EOF or a fatal error: nothing more is read.
    CLOSED = "CLOSED"


class Verb(enum.Enum):
    # Members are singletons: hash by identity, in C, not Enum's Python __hash__;
    # the transition table is looked up for every command.
    __hash__ = object.__hash__

    HELO = "HELO"
    EHLO = "EHLO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BDAT = "BDAT"
    RSET = "RSET"
    NOOP = "NOOP"
    QUIT = "QUIT"
    VRFY = "VRFY"
    HELP = "HELP"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"


class Milestone(enum.Enum):
    # Members are singletons: hash by identity, in C, not Enum's Python __hash__;
    # the transition table is looked up for every command.
    __hash__ = object.__hash__

    MAIL_ACCEPTED = "MAIL_ACCEPTED"
    RCPT_ACCEPTED = "RCPT_ACCEPTED"
    MESSAGE_ENDED = "MESSAGE_ENDED"
    CHUNK_ENDED = "CHUNK_ENDED"
    TRANSACTION_FAILED = "TRANSACTION_FAILED"
    AUTH_ENDED = "AUTH_ENDED"
    EOF = "EOF"


Input = Verb | Milestone

_S = State
_V = Verb
_M = Milestone

# Commands that never change the state, in every state that reads commands.
_HARMLESS = (_V.NOOP, _V.HELP, _V.VRFY)
_COMMAND_STATES = (_S.CONNECTED, _S.GREETED, _S.MAIL, _S.RCPT, _S.CHUNKING)

TRANSITIONS: dict[tuple[State, Input], State] = {
    **{(state, verb): state for state in _COMMAND_STATES for verb in _HARMLESS},
    **{(state, _V.QUIT): _S.CLOSED for state in _COMMAND_STATES},
    # HELO/EHLO start over (RFC 5321 4.1.4); so does RSET, keeping the greeting.
    **{(state, verb): _S.GREETED for state in _COMMAND_STATES for verb in (_V.HELO, _V.EHLO)},
    (_S.CONNECTED, _V.RSET): _S.CONNECTED,
    **{(state, _V.RSET): _S.GREETED for state in _COMMAND_STATES if state is not _S.CONNECTED},
    # The transaction (RFC 5321 3.3).  MAIL and RCPT wait for a decision in
    # place; the milestone moves on when the application accepts.
    (_S.GREETED, _V.MAIL): _S.GREETED,
    (_S.GREETED, _M.MAIL_ACCEPTED): _S.MAIL,
    (_S.MAIL, _V.RCPT): _S.MAIL,
    (_S.RCPT, _V.RCPT): _S.RCPT,
    (_S.MAIL, _M.RCPT_ACCEPTED): _S.RCPT,
    (_S.RCPT, _M.RCPT_ACCEPTED): _S.RCPT,
    (_S.RCPT, _V.DATA): _S.DATA,
    (_S.DATA, _M.MESSAGE_ENDED): _S.GREETED,
    # CHUNKING (RFC 3030 section 2).
    (_S.RCPT, _V.BDAT): _S.BDAT,
    (_S.CHUNKING, _V.BDAT): _S.BDAT,
    (_S.BDAT, _M.CHUNK_ENDED): _S.CHUNKING,
    (_S.BDAT, _M.MESSAGE_ENDED): _S.GREETED,
    (_S.BDAT, _M.TRANSACTION_FAILED): _S.GREETED,
    # AUTH (RFC 4954 section 4): only outside a transaction.
    (_S.GREETED, _V.AUTH): _S.AUTH,
    (_S.AUTH, _M.AUTH_ENDED): _S.GREETED,
    # STARTTLS (RFC 3207 section 4): only outside a transaction.
    (_S.GREETED, _V.STARTTLS): _S.TLS,
    # EOF ends every state.
    **{(state, _M.EOF): _S.CLOSED for state in State},
}

#: The reply for a command that is not in ``TRANSITIONS`` for its state;
#: anything else out of sequence gets ``BAD_SEQUENCE``.
OUT_OF_SEQUENCE: dict[tuple[State, Verb], Reply] = {
    **{
        (_S.CONNECTED, verb): replies.NEED_HELO
        for verb in (_V.MAIL, _V.RCPT, _V.DATA, _V.BDAT, _V.AUTH, _V.STARTTLS)
    },
    (_S.GREETED, _V.RCPT): replies.NEED_MAIL,
    (_S.GREETED, _V.DATA): replies.NEED_MAIL,
    (_S.GREETED, _V.BDAT): replies.NEED_MAIL,
    (_S.MAIL, _V.DATA): replies.NEED_RCPT,
    (_S.MAIL, _V.BDAT): replies.NEED_RCPT,
    **{(state, _V.MAIL): replies.NESTED_MAIL for state in (_S.MAIL, _S.RCPT, _S.CHUNKING)},
    **{(state, _V.AUTH): replies.AUTH_IN_TRANSACTION for state in (_S.MAIL, _S.RCPT, _S.CHUNKING)},
    (_S.CHUNKING, _V.DATA): replies.DATA_AFTER_BDAT,
}


def next_state(state: State, event: Input) -> State | None:
    """The state after ``event``, or ``None`` when the table has no such move."""
    return TRANSITIONS.get((state, event))


def refusal(state: State, verb: Verb) -> Reply:
    """The reply for ``verb`` out of sequence in ``state``."""
    return OUT_OF_SEQUENCE.get((state, verb), replies.BAD_SEQUENCE)
