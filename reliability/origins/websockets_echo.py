#!/usr/bin/env python3
"""A WebSocket echo origin that is not ours: the Python `websockets` package
(pip install websockets), used by reliability/autobahn.sh to check that the
relay behaves like no relay in front of a third implementation.

Defaults are kept except three that would otherwise make Autobahn's cases
depend on the origin's policy rather than the protocol: messages up to
16 MiB (the relay's max-message-bytes in that run; the default is 1 MiB,
which group 9 exceeds), up to a million fragments per message (the
default, WEBSOCKETS_MAX_FRAGMENTS=4096, closes the 65,536-fragment messages
of 9.3.*/9.4.* with 1009 "too many fragments") and no keepalive pings of
its own.

Usage: reliability/origins/websockets_echo.py 127.0.0.1:PORT
"""
import asyncio
import os
import sys

# Read by websockets when it is imported.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", "1000000")

try:
    from websockets.asyncio.server import serve
except ImportError:
    sys.exit("websockets_echo.py: the Python package `websockets` (13 or newer) is missing: "
             "pip install websockets")


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main(address):
    host, _, port = address.rpartition(":")
    async with serve(echo, host, int(port), max_size=16 * 1024 * 1024, ping_interval=None) as server:
        print(f"websockets echo listening on {address}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9003"))
    except KeyboardInterrupt:
        pass
