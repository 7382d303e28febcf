"""Every limit of the protocol core, named, with the source of its number.

The I/O layer may lower the configurable ones (``SessionConfig``); the line
limits are fixed by the RFCs and bound the receive buffer whatever the client
sends.
"""

from __future__ import annotations

#: RFC 5321 4.5.3.1.4: a command line, verb and CRLF included.
COMMAND_LINE = 512
#: RFC 1870 section 3: ``SIZE=`` adds up to 26 octets to MAIL FROM.
SIZE_ALLOWANCE = 26
#: RFC 4954 section 5: ``AUTH=`` adds up to 500 octets to MAIL FROM.
AUTH_PARAM_ALLOWANCE = 500
#: RFC 3461 section 4: ``RET`` and ``ENVID`` add up to 146 octets to MAIL FROM.
DSN_MAIL_ALLOWANCE = 146
#: RFC 3461 section 4: ``NOTIFY`` and ``ORCPT`` add up to 500 octets to RCPT TO.
DSN_RCPT_ALLOWANCE = 500
#: The longest MAIL FROM line, with every parameter we support.
MAIL_LINE = COMMAND_LINE + SIZE_ALLOWANCE + AUTH_PARAM_ALLOWANCE + DSN_MAIL_ALLOWANCE
#: The longest RCPT TO line, with every parameter we support.
RCPT_LINE = COMMAND_LINE + DSN_RCPT_ALLOWANCE
#: RFC 4954 section 4: an AUTH command or SASL response line, CRLF included.
SASL_LINE = 12288
#: The receive buffer never holds more than this of one unfinished line.
MAX_LINE = max(MAIL_LINE, RCPT_LINE, SASL_LINE)

#: RFC 5321 4.5.3.1.1: the local part of an address.
LOCAL_PART = 64
#: RFC 5321 4.5.3.1.2: a domain name or address literal.
DOMAIN = 255
#: RFC 5321 4.5.3.1.3: a path, angle brackets included.
PATH = 256

#: Commands without mail (NOOP, VRFY, HELP, RSET, HELO, EHLO) between two
#: accepted MAILs, by default: Postfix's ``smtpd_junk_command_limit``.
NON_MAIL_COMMANDS = 100
#: RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients.
MIN_RECIPIENTS = 100
#: RFC 1870 section 3: the SIZE value is 1 to 20 digits.
SIZE_DIGITS = 20
#: BDAT chunk sizes, like SIZE, are at most 20 digits (RFC 3030 section 2).
BDAT_SIZE_DIGITS = 20

#: A DATA line longer than this is passed on in pieces rather than kept
#: whole: RFC 5321 4.5.3.1.6 allows 1000 octets per line, but lines past that
#: are common in the wild and are streamed, never buffered.  At least 3
#: (``len(b".\r\n")``): a flush keeps one byte back, so a lone "." CRLF at the
#: start of a line is then never cut in two.
DATA_FLUSH = 64 * 1024
#: RFC 5321 4.1.1.1: a HELO/EHLO argument is a domain or address literal.
HELO_NAME = 255
