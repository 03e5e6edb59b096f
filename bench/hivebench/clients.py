"""Small asyncio clients for Hive's WebSocket IPC and the host's HTTP API,
used where Python's speed is enough (set-up, scale, recovery). The timing
loops that need more live in bench/rust (hbench)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json

import websockets

from .common import TOKEN


class Ipc:
    """An authenticated IPC connection; events go to `on_event`."""

    def __init__(self, ws, on_event=None):
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.on_event = on_event
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, on_event=None) -> "Ipc":
        ws = await websockets.connect(url, max_size=None, ping_interval=None, compression=None)
        await ws.send(json.dumps({"type": "hello", "version": 1, "token": TOKEN}))
        welcome = json.loads(await ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"IPC refused the hello: {welcome}")
        return cls(ws, on_event)

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "response":
                    fut = self.pending.pop(frame.get("id"), None)
                    if fut and not fut.done():
                        fut.set_result(frame)
                elif frame.get("type") == "event" and self.on_event:
                    self.on_event(frame)
        except websockets.ConnectionClosed:
            pass
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("IPC closed"))

    async def request(self, op: str, args: dict | None = None, timeout: float = 30.0):
        rid = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        frame = {"type": "request", "id": rid, "op": op}
        if args is not None:
            frame["args"] = args
        await self.ws.send(json.dumps(frame))
        resp = await asyncio.wait_for(fut, timeout)
        if "error" in resp:
            raise RuntimeError(f"{op}: {resp['error']}")
        return resp.get("result")

    async def publish(self, topic: str, data: bytes):
        return await self.request("publish", {"topic": topic, "data": base64.b64encode(data).decode()})

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


class Http:
    """A keep-alive HTTP/1.1 connection to the host API (JSON, Content-Length)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    @classmethod
    def for_api(cls, api: str) -> "Http":
        hostport = api.removeprefix("http://").rstrip("/")
        host, port = hostport.rsplit(":", 1)
        return cls(host, int(port))

    async def call(self, method: str, path: str, body: bytes = b"", timeout: float = 10.0):
        for attempt in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), timeout
                    )
                return await asyncio.wait_for(self._call(method, path, body), timeout)
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt:
                    raise
            except asyncio.TimeoutError:
                self.close()
                raise

    async def _call(self, method, path, body):
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    async def json(self, method: str, path: str, body: bytes = b"", timeout: float = 10.0):
        status, data = await self.call(method, path, body, timeout)
        return status, (json.loads(data) if data else None)

    async def stored_after(self, topic: str, cursor: int = 0, page: int = 1000) -> tuple[list, int]:
        """The host's stored messages of `topic` after `cursor`, every page
        of them, and the cursor to pass next time."""
        out = []
        while True:
            status, body = await self.json("GET", f"/api/messages?topic={topic}&after={cursor}&limit={page}")
            if status != 200 or not body:
                raise RuntimeError(f"GET /api/messages answered {status}")
            got = body.get("messages") or []
            cursor = body.get("cursor", cursor)
            out.extend(got)
            if len(got) < page:
                return out, cursor

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
