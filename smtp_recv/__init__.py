"""smtp_recv: an SMTP receiving server on trio.

Two listeners on one sans-IO protocol core (``smtp_recv.protocol``): the MX
listener (port 25, plaintext with STARTTLS, recipients checked by a
:class:`Forward` hook) and the submission listener (port 465, implicit TLS,
AUTH through an :class:`Auth` hook).  Every accepted message goes to a
:class:`Mailer`; the client's 250 means the Mailer has it.
"""

from ._config import ListenerConfig, ServerConfig
from ._hooks import (
    Auth,
    CertByHost,
    Certificate,
    Forward,
    Mailer,
    Reject,
    SenderIsLogin,
    SenderPolicy,
)
from ._mail import Mail, MessageContent, Recipient, Role, TLSInfo, UserMail
from ._server import Listening, serve

__version__ = "0.1.0"

__all__ = [
    "Auth",
    "CertByHost",
    "Certificate",
    "Forward",
    "ListenerConfig",
    "Listening",
    "Mail",
    "Mailer",
    "MessageContent",
    "Recipient",
    "Reject",
    "Role",
    "SenderIsLogin",
    "SenderPolicy",
    "ServerConfig",
    "TLSInfo",
    "UserMail",
    "serve",
]
