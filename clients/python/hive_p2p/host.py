"""`HostClient`: the same verbs against a running `hive` host's HTTP API, for
apps that let `hive up` supervise the daemon."""

from __future__ import annotations

import base64
import json
from typing import Any, AsyncIterator, Dict, List, Optional
from urllib.parse import quote

import httpx
import websockets
from websockets.asyncio.client import connect

from .errors import HostError
from .types import DirectMessage, Message, PeerInfo


class HostClient:
    def __init__(self, api_url: str = "http://127.0.0.1:7700", token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> "HostClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        r = await self._http.request(method, path, **kw)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", r.text
            raise HostError(r.status_code, code, message)
        return r.json()

    async def status(self) -> Dict[str, Any]:
        result: Dict[str, Any] = await self._request("GET", "/api/status")
        return result

    async def peer_id(self) -> str:
        return str((await self.status())["peer_id"])

    async def peers(self) -> List[PeerInfo]:
        return [
            PeerInfo(peer_id=p["peer_id"], addrs=list(p.get("addrs", [])), rtt_ms=p.get("rtt_ms"))
            for p in await self._request("GET", "/api/peers")
        ]

    async def dial(self, addr: str) -> str:
        return str((await self._request("POST", "/api/dial", json={"addr": addr}))["peer_id"])

    async def subscribe(self, topic: str) -> None:
        await self._request("POST", f"/api/topics/{quote(topic, safe='')}/subscribe")

    async def unsubscribe(self, topic: str) -> None:
        await self._request("POST", f"/api/topics/{quote(topic, safe='')}/unsubscribe")

    async def publish(self, topic: str, data: bytes, id: Optional[str] = None) -> str:
        headers = {"Idempotency-Key": id} if id else {}
        r = await self._request("POST", f"/api/topics/{quote(topic, safe='')}/publish", content=data, headers=headers)
        return str(r["id"])

    async def send(self, peer_id: str, data: bytes, id: Optional[str] = None) -> str:
        headers = {"Idempotency-Key": id} if id else {}
        r = await self._request("POST", f"/api/peers/{quote(peer_id, safe='')}/send", content=data, headers=headers)
        return str(r["id"])

    async def outbox(self, limit: int = 100) -> Dict[str, Any]:
        """What the host still has to send: `{"depth": N, "pending": [...]}`."""
        result: Dict[str, Any] = await self._request("GET", "/api/outbox", params={"limit": limit})
        return result

    async def history(self, topic: Optional[str] = None, after: int = 0, limit: int = 100) -> List[Message]:
        """One page of received messages kept by the host (`/api/messages`)."""
        params: Dict[str, Any] = {"kind": "message", "after": after, "limit": limit}
        if topic is not None:
            params["topic"] = topic
        page = await self._request("GET", "/api/messages", params=params)
        return [
            Message(topic=ev["topic"], sender=ev["from"], id=ev["id"], data=base64.b64decode(ev["data"]))
            for ev in page["messages"]
        ]

    async def events(self, after: Optional[int] = None) -> AsyncIterator[Dict[str, Any]]:
        """Every event of the host (`/api/events`), resuming after `after`."""
        url = self.api_url.replace("http", "ws", 1) + "/api/events"
        params = []
        if after is not None:
            params.append(f"after={after}")
        if self._token:
            params.append(f"token={quote(self._token)}")
        if params:
            url += "?" + "&".join(params)
        async with connect(url, max_size=64 * 1024 * 1024) as ws:
            try:
                async for raw in ws:
                    yield json.loads(raw)
            except websockets.exceptions.ConnectionClosed:
                return

    async def messages(self, topic: str, after: Optional[int] = None) -> AsyncIterator[Message]:
        """Messages of one topic (subscribe first)."""
        async for ev in self.events(after):
            if ev.get("type") == "message" and ev.get("topic") == topic:
                yield Message(topic=topic, sender=ev["from"], id=ev["id"], data=base64.b64decode(ev["data"]))

    async def direct_messages(self, after: Optional[int] = None) -> AsyncIterator[DirectMessage]:
        async for ev in self.events(after):
            if ev.get("type") == "direct":
                yield DirectMessage(sender=ev["from"], id=ev["id"], data=base64.b64decode(ev["data"]))
