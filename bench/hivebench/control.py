"""A small asyncio client of the go-libp2p-daemon control protocol, the one
client every daemon in the bench is driven with (hive-p2pd with go flags, the
go p2pd, the js daemon).

It opens a new control connection for each request, as p2pclient does and as
every daemon accepts (hive-p2pd serves one request per connection).
"""

from __future__ import annotations

import asyncio
import os

from . import pb


async def _read_varint(reader: asyncio.StreamReader) -> int:
    shift = result = 0
    while True:
        b = (await reader.readexactly(1))[0]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7


async def read_msg(reader: asyncio.StreamReader) -> bytes:
    n = await _read_varint(reader)
    return await reader.readexactly(n)


class ControlClient:
    def __init__(self, sock_path: str):
        self.sock = sock_path

    async def _open(self):
        return await asyncio.open_unix_connection(self.sock, limit=1 << 22)

    async def call(self, request: bytes) -> dict[int, list]:
        reader, writer = await self._open()
        try:
            writer.write(pb.frame(request))
            await writer.drain()
            return pb.check_response(await read_msg(reader))
        finally:
            writer.close()

    async def identify(self) -> tuple[bytes, list[bytes]]:
        r = await self.call(pb.identify_req())
        ident = pb.decode(r[4][0])
        return ident[1][0], ident.get(2, [])

    async def connect(self, peer: bytes, addrs: list[bytes]) -> None:
        await self.call(pb.connect_req(peer, addrs))

    async def list_peers(self) -> list[bytes]:
        r = await self.call(pb.list_peers_req())
        return [pb.decode(p)[1][0] for p in r.get(6, [])]

    async def stream_open(self, peer: bytes, proto: str):
        """Returns (reader, writer) of the control connection turned stream."""
        reader, writer = await self._open()
        writer.write(pb.frame(pb.stream_open_req(peer, proto)))
        await writer.drain()
        pb.check_response(await read_msg(reader))
        return reader, writer

    async def stream_handler(self, listen_path: str, proto: str, on_stream) -> asyncio.AbstractServer:
        """Listen on a unix socket; each inbound stream arrives as a connection
        that starts with a framed StreamInfo. `on_stream(reader, writer)`."""
        if os.path.exists(listen_path):
            os.unlink(listen_path)

        async def accepted(reader, writer):
            await read_msg(reader)  # StreamInfo
            await on_stream(reader, writer)

        server = await asyncio.start_unix_server(accepted, listen_path, limit=1 << 22)
        await self.call(pb.stream_handler_req(pb.maddr_bytes("/unix" + listen_path), proto))
        return server

    async def publish(self, topic: str, data: bytes) -> None:
        await self.call(pb.pubsub_req(pb.PS_PUBLISH, topic, data))

    async def topic_peers(self, topic: str) -> list[bytes]:
        r = await self.call(pb.pubsub_req(pb.PS_LIST_PEERS, topic))
        return pb.decode(r[7][0]).get(2, []) if 7 in r else []

    async def subscribe(self, topic: str):
        """Returns (reader, writer); each message is a framed PSMessage."""
        reader, writer = await self._open()
        writer.write(pb.frame(pb.pubsub_req(pb.PS_SUBSCRIBE, topic)))
        await writer.drain()
        pb.check_response(await read_msg(reader))
        return reader, writer


def ps_message_data(msg: bytes) -> bytes:
    return pb.decode(msg).get(2, [b""])[0]
