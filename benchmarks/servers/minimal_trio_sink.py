"""The ceiling: a minimal trio sink that speaks just enough SMTP for loadgen.py.

    python benchmarks/servers/minimal_trio_sink.py [CERTFILE KEYFILE]

Not a mail server: it finds line ends and the end of DATA, answers 250 to
everything, and checks, unstuffs, stores and limits nothing.  It shows what
trio itself costs per message on this machine (see README.md, "What the
profiles showed").  Prints ``{"plain": [host, port], "tls": [host, port]}``
(``tls`` repeats the plain address: there is no TLS).
"""

from __future__ import annotations

import functools
import json

import trio


async def handle(stream: trio.SocketStream) -> None:
    await stream.send_all(b"220 sink ESMTP\r\n")
    buffer = b""
    in_data = False
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buffer += chunk
        out = []
        while True:
            if in_data:
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                buffer, in_data = buffer[end + 5 :], False
                out.append(b"250 ok\r\n")
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            verb, buffer = buffer[:4].upper(), buffer[end + 2 :]
            if verb == b"DATA":
                in_data = True
                out.append(b"354 go\r\n")
            elif verb == b"QUIT":
                await stream.send_all(b"221 bye\r\n")
                return
            elif verb == b"EHLO":
                out.append(b"250-sink\r\n250 PIPELINING\r\n")
            else:
                out.append(b"250 ok\r\n")
        if out:
            await stream.send_all(b"".join(out))


async def main() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1")
        )
        address = ["127.0.0.1", listeners[0].socket.getsockname()[1]]
        print(json.dumps({"plain": address, "tls": address}), flush=True)


if __name__ == "__main__":
    trio.run(main)
