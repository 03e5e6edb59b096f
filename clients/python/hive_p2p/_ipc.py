"""One WebSocket connection to a hive-p2pd IPC (docs/IPC.md).

Requests are pipelined: each gets an id and a future; a reader task resolves
futures as responses arrive, in any order, and hands events to a callback.
When the link closes, every pending call fails at once with `DaemonGone`:
a call never waits on a daemon that is no longer there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import itertools
from typing import Any, Callable, Dict, Optional

import websockets
from websockets.asyncio.client import ClientConnection, connect, unix_connect

from .errors import CallTimeout, DaemonError, DaemonGone, DaemonStartError

PROTOCOL_VERSION = 1
# Hard cap on one frame from the daemon: a 1 MiB payload in base64 plus room.
MAX_FRAME = 64 * 1024 * 1024

EventCallback = Callable[[Dict[str, Any]], None]


async def cancel(task: "Optional[asyncio.Task[Any]]") -> None:
    """Cancel `task` (if any) and wait until it has ended, whatever it raised."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class IpcConnection:
    """An authenticated, pipelined IPC link."""

    def __init__(self, ws: ClientConnection, peer_id: str, on_event: EventCallback) -> None:
        self._ws = ws
        self.peer_id = peer_id
        self._on_event = on_event
        self._ids = itertools.count(1)
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._closed: Optional[str] = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, token: str, on_event: EventCallback, timeout: float = 10.0) -> "IpcConnection":
        try:
            if url.startswith("unix:"):
                ws = await asyncio.wait_for(
                    unix_connect(url[len("unix:") :], "ws://localhost/", max_size=MAX_FRAME),
                    timeout,
                )
            else:
                ws = await asyncio.wait_for(connect(url, max_size=MAX_FRAME), timeout)
            await ws.send(json.dumps({"type": "hello", "version": PROTOCOL_VERSION, "token": token}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except websockets.exceptions.ConnectionClosed as e:
            raise DaemonStartError(f"the daemon refused the IPC hello: {e}") from e
        except (OSError, asyncio.TimeoutError) as e:
            raise DaemonStartError(f"cannot open the daemon IPC at {url}: {e!r}") from e
        if welcome.get("type") != "welcome":
            await ws.close()
            raise DaemonStartError(f"unexpected answer to the IPC hello: {welcome}")
        return cls(ws, str(welcome.get("peer_id", "")), on_event)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def _read(self) -> None:
        reason = "the IPC link closed"
        try:
            async for raw in self._ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "response":
                    fut = self._pending.pop(frame.get("id"), None)
                    if fut is None or fut.done():
                        continue
                    if frame.get("error") is not None:
                        err = frame["error"]
                        fut.set_exception(DaemonError(str(err.get("code")), str(err.get("message"))))
                    else:
                        fut.set_result(frame.get("result"))
                elif kind == "event":
                    self._on_event(frame)
        except websockets.exceptions.ConnectionClosed as e:
            reason = f"the IPC link closed ({e})"
        except Exception as e:  # a bug or garbage: fail loudly, not silently
            reason = f"the IPC reader failed: {e!r}"
        finally:
            self._fail_all(reason)

    def _fail_all(self, reason: str) -> None:
        self._closed = reason
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(DaemonGone(reason))

    async def call(self, op: str, args: Optional[Dict[str, Any]] = None, timeout: float = 30.0) -> Any:
        if self._closed is not None:
            raise DaemonGone(self._closed)
        request_id = next(self._ids)
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        frame: Dict[str, Any] = {"type": "request", "id": request_id, "op": op}
        if args is not None:
            frame["args"] = args
        try:
            await self._ws.send(json.dumps(frame))
        except websockets.exceptions.ConnectionClosed as e:
            self._pending.pop(request_id, None)
            raise DaemonGone(f"the IPC link closed ({e})") from e
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self._pending.pop(request_id, None)
            raise CallTimeout(f"{op} got no answer within {timeout} s") from None

    async def close(self) -> None:
        await self._ws.close()
        try:
            await self._reader
        except Exception:
            pass

