"""The test servers are typed by their Mailer (checked by mypy: ``nox -s typecheck``).

``server.mailer`` is a :class:`MemoryMailer` unless a Mailer is given, and
then that Mailer's own type, so a test's use of it is type-checked.
"""

from __future__ import annotations

from typing import assert_type

from smtp_recv import Mail, UserMail
from smtp_recv.testing import MemoryMailer, TestServer, ThreadedTestServer, serve_for_tests


class ListMailer:
    def __init__(self) -> None:
        self.seen: list[Mail] = []

    async def forward(self, mail: Mail) -> None:
        self.seen.append(mail)

    async def send(self, mail: UserMail) -> None:
        self.seen.append(mail)


async def test_serve_for_tests_is_typed_by_its_mailer() -> None:
    async with serve_for_tests() as server:
        assert_type(server.mailer, MemoryMailer)
        assert isinstance(server.mailer, MemoryMailer)
    async with serve_for_tests(mailer=ListMailer()) as mine:
        assert_type(mine.mailer, ListMailer)
        assert mine.mailer.seen == []


def test_threaded_test_server_is_typed_by_its_mailer() -> None:
    with ThreadedTestServer() as server:
        assert_type(server.mailer, MemoryMailer)
        assert isinstance(server.mailer, MemoryMailer)
    with ThreadedTestServer(mailer=ListMailer(), domains=["example.org"]) as mine:
        assert_type(mine.mailer, ListMailer)
        assert mine.mailer.seen == []


def check_a_bare_annotation(server: TestServer) -> None:
    """``TestServer`` without a type argument means ``TestServer[MemoryMailer]``.

    Not a test to run: mypy --strict checks it (no "missing type parameters").
    """
    assert_type(server.mailer, MemoryMailer)
