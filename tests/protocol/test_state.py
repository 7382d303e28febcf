"""The state machine: the table itself, every state against every command, and
random command sequences against a model built from the same table.

The model knows only what ``_state.TRANSITIONS`` / ``OUT_OF_SEQUENCE`` say and
the policy checks that ``_state``'s theory of operation puts beside the
handlers (AUTH and STARTTLS offered, TLS active, EHLO rather than HELO,
AUTH required).  Any disagreement between the core and the model is a bug in
one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_harness import MX, Dialogue, config, parse_replies, plain

from smtp_recv.protocol import (
    AuthCredentials,
    CommandRejected,
    Event,
    MailFrom,
    MessageComplete,
    MessageData,
    RcptTo,
    Reply,
    SessionConfig,
    State,
    Verb,
    replies,
)
from smtp_recv.protocol._state import (
    OUT_OF_SEQUENCE,
    TRANSITIONS,
    Milestone,
    next_state,
    refusal,
)

# -- the table ---------------------------------------------------------------------
COMMAND_STATES = (State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.CHUNKING)


def test_harmless_commands_are_allowed_in_every_command_state() -> None:
    for state in COMMAND_STATES:
        for verb in (Verb.NOOP, Verb.HELP, Verb.VRFY):
            assert next_state(state, verb) is state
        assert next_state(state, Verb.QUIT) is State.CLOSED
        assert next_state(state, Verb.EHLO) is State.GREETED
        assert next_state(state, Verb.HELO) is State.GREETED


def test_states_that_do_not_read_commands_have_no_command_transitions() -> None:
    for state in (State.DATA, State.BDAT, State.AUTH, State.TLS, State.CLOSED):
        for verb in Verb:
            assert next_state(state, verb) is None


def test_eof_ends_every_state() -> None:
    for state in State:
        assert next_state(state, Milestone.EOF) is State.CLOSED


def test_tls_and_closed_are_final() -> None:
    assert {new for (state, event), new in TRANSITIONS.items() if state is State.TLS} == {
        State.CLOSED
    }
    assert {new for (state, event), new in TRANSITIONS.items() if state is State.CLOSED} == {
        State.CLOSED
    }


def test_out_of_sequence_replies_are_only_for_moves_the_table_lacks() -> None:
    for (state, verb), reply in OUT_OF_SEQUENCE.items():
        assert (state, verb) not in TRANSITIONS
        assert reply.code == 503
        assert reply.enhanced == "5.5.1"
    assert refusal(State.MAIL, Verb.STARTTLS) is replies.BAD_SEQUENCE
    assert refusal(State.GREETED, Verb.DATA) is replies.NEED_MAIL


def test_rfc5321_3_3_the_transaction_order() -> None:
    assert next_state(State.GREETED, Verb.MAIL) is State.GREETED
    assert next_state(State.GREETED, Milestone.MAIL_ACCEPTED) is State.MAIL
    assert next_state(State.MAIL, Milestone.RCPT_ACCEPTED) is State.RCPT
    assert next_state(State.RCPT, Verb.DATA) is State.DATA
    assert next_state(State.DATA, Milestone.MESSAGE_ENDED) is State.GREETED
    assert next_state(State.MAIL, Verb.DATA) is None


# -- a model of the session, from the table ------------------------------------------
TYPICAL: dict[Verb, bytes] = {
    Verb.HELO: b"HELO client.example\r\n",
    Verb.EHLO: b"EHLO client.example\r\n",
    Verb.MAIL: b"MAIL FROM:<sender@client.example>\r\n",
    Verb.RCPT: b"RCPT TO:<rcpt@our.example>\r\n",
    # DATA comes with its message, BDAT with its chunk: each step ends between commands.
    Verb.DATA: b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n",
    Verb.BDAT: b"BDAT 4\r\nabcd",
    Verb.RSET: b"RSET\r\n",
    Verb.NOOP: b"NOOP\r\n",
    Verb.QUIT: b"QUIT\r\n",
    Verb.VRFY: b"VRFY postmaster\r\n",
    Verb.HELP: b"HELP\r\n",
    Verb.STARTTLS: b"STARTTLS\r\n",
    Verb.AUTH: f"AUTH PLAIN {plain('alice', 'pw')}\r\n".encode(),
}
#: What the application says when it refuses each decision.
REFUSALS: dict[type[Event], Reply] = {
    MailFrom: replies.SENDER_NOT_OWNED,
    RcptTo: replies.NO_SUCH_USER,
    AuthCredentials: replies.AUTH_FAILED,
    MessageComplete: replies.TEMPORARY_FAILURE,
}
_TRANSACTION = (Verb.MAIL, Verb.RCPT, Verb.DATA, Verb.BDAT)
_HELLO = (250, None)

Expected = tuple[int, str | None]


def _r(reply: Reply) -> Expected:
    return (reply.code, reply.enhanced)


@dataclass
class Model:
    session: SessionConfig
    state: State = State.CONNECTED
    extended: bool = False
    authenticated: bool = False
    chunked: int = 0
    log: list[str] = field(default_factory=list)

    def step(self, verb: Verb, accept: bool) -> list[Expected]:
        """The replies ``TYPICAL[verb]`` must get; moves the model on."""
        self.log.append(f"{self.state.value} {verb.value} {'accept' if accept else 'refuse'}")
        state, session = self.state, self.session
        if verb is Verb.BDAT and (
            not session.chunking or (state is not State.CONNECTED and not self.extended)
        ):
            # Not offered, by the configuration or after HELO (RFC 3030 2).
            return [_r(replies.BDAT_NOT_AVAILABLE)]
        if (
            verb in _TRANSACTION
            and session.auth_required
            and not self.authenticated
            and state is not State.CONNECTED
        ):
            return [_r(replies.AUTH_REQUIRED)]
        new = TRANSITIONS.get((state, verb))
        if new is None:
            return [_r(refusal(state, verb))]
        if verb is Verb.STARTTLS:
            if session.tls_active:
                return [_r(replies.TLS_ALREADY_ACTIVE)]
            if not session.offer_starttls:
                return [_r(replies.STARTTLS_NOT_AVAILABLE)]
            if not self.extended:
                return [_r(replies.NEED_EHLO)]
            self.state = new
            return [_r(replies.READY_FOR_TLS)]
        if verb is Verb.AUTH:
            if not session.offer_auth:
                return [_r(replies.AUTH_NOT_AVAILABLE)]
            if not self.extended:
                return [_r(replies.NEED_EHLO)]
            if not session.tls_active:
                return [_r(replies.ENCRYPTION_REQUIRED)]
            if self.authenticated:
                return [_r(replies.ALREADY_AUTHENTICATED)]
            self.state = self._milestone(new, Milestone.AUTH_ENDED)
            self.authenticated = accept
            return [_r(replies.AUTH_OK if accept else replies.AUTH_FAILED)]
        if verb in (Verb.HELO, Verb.EHLO):
            self.state, self.extended, self.chunked = new, verb is Verb.EHLO, 0
            return [_HELLO]
        if verb is Verb.MAIL:
            if accept:
                self.state = self._milestone(new, Milestone.MAIL_ACCEPTED)
            return [_r(replies.SENDER_OK if accept else REFUSALS[MailFrom])]
        if verb is Verb.RCPT:
            if accept:
                self.state = self._milestone(new, Milestone.RCPT_ACCEPTED)
            return [_r(replies.RECIPIENT_OK if accept else REFUSALS[RcptTo])]
        if verb is Verb.DATA:
            self.state = self._milestone(new, Milestone.MESSAGE_ENDED)
            return [_r(replies.START_DATA), _r(replies.OK if accept else REFUSALS[MessageComplete])]
        if verb is Verb.BDAT:
            self.state = self._milestone(new, Milestone.CHUNK_ENDED)
            self.chunked += 4
            return [_r(replies.chunk_received(self.chunked))]
        self.state = new
        if verb is Verb.RSET:
            self.chunked = 0
        return [
            _r(
                {
                    Verb.RSET: replies.RESET_OK,
                    Verb.NOOP: replies.NOOP_OK,
                    Verb.HELP: replies.HELP,
                    Verb.VRFY: replies.CANNOT_VRFY,
                    Verb.QUIT: replies.CLOSING,
                }[verb]
            )
        ]

    @staticmethod
    def _milestone(state: State, milestone: Milestone) -> State:
        new = TRANSITIONS.get((state, milestone))
        assert new is not None, (state, milestone)
        return new


class Driver:
    """The core and the model side by side."""

    def __init__(self, session: SessionConfig) -> None:
        self.accept = True
        self.dialogue = Dialogue(session, decide=self._decide)
        self.model = Model(session)

    def _decide(self, event: Event) -> Reply | None:
        return None if self.accept else REFUSALS[type(event)]

    def step(self, verb: Verb, accept: bool = True) -> None:
        self.accept = accept
        expected = self.model.step(verb, accept)
        data = TYPICAL[verb]
        if verb is Verb.DATA and expected[0] != _r(replies.START_DATA):
            # A client sends the message only after 354 (RFC 2920 3.1); were
            # it sent anyway, its lines would be (bad) commands.
            data = b"DATA\r\n"
        out = self.dialogue.send(data)
        if not self.model.session.enhanced_status_codes:
            expected = [(code, None) for code, _ in expected]
        got = [(answer.code, answer.enhanced) for answer in parse_replies(out)]
        assert got == expected, self.model.log
        conn = self.dialogue.conn
        assert conn.state is self.model.state, self.model.log
        assert conn.authenticated is self.model.authenticated
        if conn.state not in (State.TLS, State.CLOSED):
            assert conn.extended is self.model.extended
        assert self.dialogue.error is None


#: Port 25, port 465 with AUTH required, and a session that offers AUTH
#: without requiring it (so that AUTH's own transition is visible).
SESSIONS = {
    "mx": MX,
    "submission": config(tls_active=True, offer_auth=True, auth_required=True),
    "auth-offered": config(tls_active=True, offer_auth=True),
    "bare": config(chunking=False, smtputf8=False, enhanced_status_codes=False),
}

#: A known way into each command state.
PREFIXES: dict[State, list[Verb]] = {
    State.CONNECTED: [],
    State.GREETED: [Verb.EHLO],
    State.MAIL: [Verb.EHLO, Verb.AUTH, Verb.MAIL],
    State.RCPT: [Verb.EHLO, Verb.AUTH, Verb.MAIL, Verb.RCPT],
    State.CHUNKING: [Verb.EHLO, Verb.AUTH, Verb.MAIL, Verb.RCPT, Verb.BDAT],
}


def reach(session: SessionConfig, state: State) -> Driver | None:
    driver = Driver(session)
    for verb in PREFIXES[state]:
        driver.step(verb)
    return driver if driver.dialogue.state is state else None


@pytest.mark.parametrize("verb", list(Verb), ids=[verb.value for verb in Verb])
@pytest.mark.parametrize("state", COMMAND_STATES, ids=[state.value for state in COMMAND_STATES])
@pytest.mark.parametrize("session", SESSIONS.values(), ids=SESSIONS.keys())
def test_property_every_command_state_against_every_verb(
    session: SessionConfig, state: State, verb: Verb
) -> None:
    """Each (state, verb): the table's transition or its documented reply.

    AUTH is in every prefix but only succeeds where it is offered; a session
    without CHUNKING has no CHUNKING state to reach.
    """
    for accept in (True, False):
        driver = reach(session, state)
        if driver is None:
            assert state is State.CHUNKING
            assert not session.chunking
            return
        driver.step(verb, accept)


def _content_state(state: State) -> Dialogue:
    """A dialogue in a state that does not read commands."""
    if state is State.AUTH:
        dialogue = Dialogue(SESSIONS["auth-offered"])
        dialogue.say("EHLO client.example", "AUTH PLAIN")
    else:
        dialogue = Dialogue(MX)
        dialogue.say("EHLO client.example", "MAIL FROM:<>", "RCPT TO:<r@our.example>")
        dialogue.send(
            {
                State.DATA: b"DATA\r\n",
                State.BDAT: b"BDAT 1000\r\n",
                State.TLS: b"RSET\r\nSTARTTLS\r\n",
                State.CLOSED: b"QUIT\r\n",
            }[state]
        )
    assert dialogue.state is state
    dialogue.events.clear()
    return dialogue


CONTENT_STATES = (State.DATA, State.BDAT, State.AUTH, State.TLS, State.CLOSED)


@pytest.mark.parametrize("verb", list(Verb), ids=[verb.value for verb in Verb])
@pytest.mark.parametrize("state", CONTENT_STATES, ids=[state.value for state in CONTENT_STATES])
def test_property_every_other_state_against_every_verb(state: State, verb: Verb) -> None:
    """Where the table has no command moves, a command line is not a command."""
    dialogue = _content_state(state)
    line = TYPICAL[verb].split(b"\r\n")[0] + b"\r\n"
    out = dialogue.send(line)
    if state is State.DATA:
        # Message content: no reply until the end of data.
        assert out == b""
        assert all(isinstance(event, MessageData) for event in dialogue.events)
        assert dialogue.body() == line
    elif state is State.BDAT:
        # Chunk content, byte for byte.
        assert out == b""
        assert dialogue.body() == line
    elif state is State.AUTH:
        # A SASL response that is not valid base64 PLAIN: 501 5.5.2, exchange over.
        assert [(a.code, a.enhanced) for a in parse_replies(out)] == [(501, "5.5.2")]
        assert [type(event) for event in dialogue.events] == [CommandRejected]
        assert not dialogue.conn.authenticated
    else:
        assert out == b""
        assert dialogue.events == []
    expected = State.GREETED if state is State.AUTH else state
    assert dialogue.state is expected


@given(
    session=st.sampled_from(list(SESSIONS.values())),
    steps=st.lists(st.tuples(st.sampled_from(list(Verb)), st.booleans()), max_size=40),
)
def test_property_command_sequences_follow_the_transition_table(
    session: SessionConfig, steps: list[tuple[Verb, bool]]
) -> None:
    driver = Driver(session)
    for verb, accept in steps:
        if driver.dialogue.state in (State.TLS, State.CLOSED):
            break
        driver.step(verb, accept)
