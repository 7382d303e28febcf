"""smtp_recv: an SMTP receiving server on trio.

Two listeners on one sans-IO protocol core (``smtp_recv.protocol``): the MX
listener (port 25, plaintext with STARTTLS, recipients checked by a
:class:`Forward` hook) and the submission listener (port 465, implicit TLS,
AUTH through an :class:`Auth` hook).  Every accepted message goes to a
:class:`Mailer`; the client's 250 means the Mailer has it.

The public names are imported on first use (PEP 562), so that
``import smtp_recv.protocol`` loads the sans-IO core alone: no trio, socket
or ssl for code that drives the core from asyncio or a blocking socket.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives.
_EXPORTS = {
    "ListenError": "._config",
    "ListenerConfig": "._config",
    "ServerConfig": "._config",
    "Auth": "._hooks",
    "CertByHost": "._hooks",
    "Certificate": "._hooks",
    "Forward": "._hooks",
    "Mailer": "._hooks",
    "Reject": "._hooks",
    "SenderIsLogin": "._hooks",
    "SenderPolicy": "._hooks",
    "Mail": "._mail",
    "MessageContent": "._mail",
    "Recipient": "._mail",
    "Role": "._mail",
    "TLSInfo": "._mail",
    "UserMail": "._mail",
    "Listening": "._server",
    "serve": "._server",
}

__all__ = [
    "Auth",
    "CertByHost",
    "Certificate",
    "Forward",
    "ListenError",
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

if TYPE_CHECKING:
    from ._config import ListenerConfig, ListenError, ServerConfig
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
