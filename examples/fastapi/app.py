"""A FastAPI app with a p2p node, in the app's own asyncio loop, no trio.

The lifespan starts a `hive_p2p.Daemon` (libp2p runs in that separate
process); REST endpoints publish, send and list peers; `/ws` relays the chat
topic to browsers; `/` serves a one-page chat.

Configuration (environment):
  HIVE_DATA_DIR   daemon data directory (identity kept there)   [temporary]
  HIVE_LISTEN     comma-separated listen multiaddrs              [/ip4/127.0.0.1/tcp/0]
  HIVE_BOOTSTRAP  comma-separated bootstrap multiaddrs           []
  HIVE_TOPIC      the chat topic                                 [chat]
  HIVE_MDNS       1 to discover peers on the LAN                 [0]
  HIVE_P2PD       path of hive-p2pd                              [installed with hive-p2p]
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, List, Set

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from hive_p2p import Daemon, DaemonError

TOPIC = os.environ.get("HIVE_TOPIC", "chat")


def _list(name: str, default: str = "") -> List[str]:
    return [s for s in os.environ.get(name, default).split(",") if s]


class Relay:
    """Fans the chat topic out to every connected browser."""

    def __init__(self) -> None:
        self.clients: Set["asyncio.Queue[dict]"] = set()

    async def pump(self, daemon: Daemon) -> None:
        sub = await daemon.subscribe(TOPIC)
        async for msg in sub:
            frame = {
                "topic": msg.topic,
                "from": msg.sender,
                "id": msg.id,
                "text": msg.data.decode("utf-8", "replace"),
            }
            for q in list(self.clients):
                if q.full():
                    continue  # a stalled browser misses messages, others don't wait
                q.put_nowait(frame)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    daemon = Daemon(
        data_dir=os.environ.get("HIVE_DATA_DIR"),
        listen=_list("HIVE_LISTEN", "/ip4/127.0.0.1/tcp/0"),
        bootstrap=_list("HIVE_BOOTSTRAP"),
        mdns=os.environ.get("HIVE_MDNS", "0") == "1",
    )
    async with daemon:
        relay = Relay()
        pump = asyncio.ensure_future(relay.pump(daemon))
        app.state.daemon = daemon
        app.state.relay = relay
        yield
        pump.cancel()


app = FastAPI(title="Hive chat", lifespan=lifespan)


def daemon_of(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


@app.get("/")
async def index() -> FileResponse:
    return FileResponse(Path(__file__).parent / "static" / "index.html")


@app.get("/api/me")
async def me(request: Request) -> dict:
    d = daemon_of(request)
    return {"peer_id": d.peer_id, "listen_addrs": d.listen_addrs, "topic": TOPIC}


@app.get("/api/peers")
async def peers(request: Request) -> list:
    return [p.__dict__ for p in await daemon_of(request).peers()]


@app.post("/api/publish")
async def publish(request: Request) -> dict:
    body = await request.body()
    try:
        return {"id": await daemon_of(request).publish(TOPIC, body)}
    except DaemonError as e:
        raise HTTPException(status_code=503, detail=f"{e.code}: {e.message}")


@app.post("/api/send/{peer_id}")
async def send(peer_id: str, request: Request) -> dict:
    try:
        return {"id": await daemon_of(request).send(peer_id, await request.body())}
    except DaemonError as e:
        raise HTTPException(status_code=502, detail=f"{e.code}: {e.message}")


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    relay: Relay = websocket.app.state.relay
    queue: "asyncio.Queue[dict]" = asyncio.Queue(1000)
    relay.clients.add(queue)

    async def forward() -> None:
        while True:
            await websocket.send_json(await queue.get())

    sender = asyncio.ensure_future(forward())
    try:
        # Reading is how a disconnect is noticed; the page sends nothing.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        relay.clients.discard(queue)
