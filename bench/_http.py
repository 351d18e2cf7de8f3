"""A minimal keep-alive HTTP/1.1 client on asyncio streams.

The load generator shares two cores with the server and Postgres; a general-purpose client
(httpx, requests) would spend more CPU than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Conn:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.base_headers = f"Host: {host}:{port}\r\n{extra}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer:
            self.writer.close()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.reader and self.writer
        if body is not None:
            data = json.dumps(body).encode()
            head = (f"{method} {path} HTTP/1.1\r\n{self.base_headers}Content-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            self.writer.write(head + data)
        else:
            self.writer.write(f"{method} {path} HTTP/1.1\r\n{self.base_headers}\r\n".encode())
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:
            raw = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                raw += await self.reader.readexactly(size)
                await self.reader.readline()
        else:
            raw = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(raw) if raw else None)
