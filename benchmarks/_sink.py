"""A fast webhook sink for benchmarks: an asyncio HTTP/1.1 server (keep-alive)
answering every POST 204 and counting them, in a process of its own.

``python -m benchmarks._sink PORT`` prints ``ready`` once listening; each line
written to its stdin asks for the count so far (answered on stdout).
"""

from __future__ import annotations

import asyncio
import sys

RECEIVED = 0


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global RECEIVED
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            RECEIVED += 1
            writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    async with server:
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(RECEIVED, flush=True)


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
