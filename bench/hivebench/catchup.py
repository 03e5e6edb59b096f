"""Catching up after being away (issue 13's bench rows): hosts A, B and C
share a topic; B, the node the others were bootstrapped from, is stopped
(SIGTERM); A publishes N messages, which C stores; B starts again on its
data directory. Measured: the time from B's start to B's history holding
all N (nothing but `/hive/sync/1.0.0` can bring them: gossip never repeats a
message), the messages/s that makes, and B's daemon's CPU meanwhile.

No anchor has a catch-up (go, js and py-libp2p lose what a node missed), so
the row is Hive's alone. A run where B does not end with all N fails."""

from __future__ import annotations

import asyncio
import time

from .clients import Http
from .common import CLK_TCK, Env, cpu_ticks
from .workloads import _host_pair, say

TOPIC = "bench-away"


async def _count(http: Http, state: dict) -> int:
    """Messages of TOPIC stored so far, reading only what came since the
    last call."""
    got, state["cursor"] = await http.stored_after(TOPIC, state["cursor"])
    state["n"] += len(got)
    return state["n"]


async def _wait_topic(http: Http, peers: int, timeout: float = 30):
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        _, topics = await http.json("GET", "/api/topics")
        if any(x["topic"] == TOPIC and x["peers"] >= peers for x in topics or []):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the topic did not reach {peers} peers")


async def _publish(api: str, n: int, conns: int = 8):
    """N messages through A's API on `conns` connections; each must be accepted."""
    next_i = iter(range(n))

    async def worker():
        http = Http.for_api(api)
        try:
            for i in next_i:
                status, _ = await http.json("POST", f"/api/topics/{TOPIC}/publish", f"missed {i:06d}".encode())
                if status not in (200, 202):
                    raise RuntimeError(f"publish {i} answered {status}")
        finally:
            http.close()

    await asyncio.gather(*(worker() for _ in range(conns)))


async def _wait_count(http: Http, state: dict, n: int, timeout: float) -> float:
    t = time.perf_counter()
    while await _count(http, state) < n:
        if time.perf_counter() - t > timeout:
            raise RuntimeError(f"only {state['n']} of {n} stored after {timeout:.0f} s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - t


async def catchup(env: Env) -> dict:
    n = 1000 if env.quick else 10_000
    procs = []
    try:
        b_dir = env.scratch("away-b")
        b, api_b, st_b, _, hb = await _host_pair(env, "away-b", data_dir=b_dir)
        procs.append(b)
        addr_b = [x for x in st_b["listen_addrs"] if "/tcp/" in x][0]
        a, api_a, st_a, _, ha = await _host_pair(env, "away-a", bootstrap_to=addr_b)
        procs.append(a)
        addr_a = [x for x in st_a["listen_addrs"] if "/tcp/" in x][0]
        c, api_c, _, _, hc = await _host_pair(env, "away-c", bootstrap_to=addr_b, extra=("--bootstrap", addr_a))
        procs.append(c)
        for h in (ha, hb, hc):
            await h.json("POST", f"/api/topics/{TOPIC}/subscribe")
        await _wait_topic(ha, 2)
        # One message B stores first: a topic B never had a message in is not
        # caught up (a newcomer is not handed the backlog).
        await ha.json("POST", f"/api/topics/{TOPIC}/publish", b"before")
        await _wait_count(hb, {"cursor": 0, "n": 0}, 1, 30)
        await b.stop()
        await _wait_topic(ha, 1)
        t = time.perf_counter()
        await _publish(api_a, n)
        publish_s = time.perf_counter() - t
        c_state = {"cursor": 0, "n": 0}
        await _wait_count(hc, c_state, n + 1, 120)
        say(f"A published {n} while B was away ({n / publish_s:.0f}/s); C stored them")
        b2, api_b2, st_b2, ready_ms, hb2 = await _host_pair(env, "away-b", data_dir=b_dir)
        procs.append(b2)
        # Started as before (no bootstrap: the others were bootstrapped from
        # B); its daemon dials the peers it remembers.
        t_ready = time.perf_counter()
        pid = (st_b2.get("daemon") or {}).get("pid")
        cpu0 = cpu_ticks(pid) if pid else 0
        b_state = {"cursor": 0, "n": 0}
        caught_s = await _wait_count(hb2, b_state, n + 1, 300)
        cpu_s = (cpu_ticks(pid) - cpu0) / CLK_TCK if pid else None
        _, st = await hb2.json("GET", "/api/status")
        sync = (st or {}).get("sync") or {}
        say(f"B back: all {n} stored {caught_s * 1000:.0f} ms after it was ready ({n / caught_s:.0f}/s)")
        return {
            "missed": n,
            "caught_up_ms": round(caught_s * 1000, 1),
            "rate_per_s": round(n / caught_s),
            "daemon_cpu_s": round(cpu_s, 2) if cpu_s is not None else None,
            "host_ready_ms": round(ready_ms, 1),
            "stored": b_state["n"] - 1,
            "sync_fetched": sync.get("fetched"),
            "since_ready_s": round(time.perf_counter() - t_ready, 1),
        }
    finally:
        for p in procs:
            await p.stop()
