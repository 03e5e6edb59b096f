"""Nothing lost, measured (issue 13's bench rows beside the catch-up):

- store rate against receive rate: a bare hive-p2pd P publishes a burst as
  fast as its IPC accepts (hbench, 1,000 in flight) to a topic that host B
  and a bare hive-p2pd S (hbench's receiver) subscribe to. From B's
  `/api/status`, sampled every 20 ms: `inbound.received`, the newest number
  B's daemon pushed to its host (what the daemon received and wrote to its
  history), and `inbound.position`, the newest the host stored in its
  inbox. Receive rate and store rate are the burst over each curve's span;
  the ratio store / receive must be at least 1 (the store keeps up with the
  daemon), and B must store every message exactly once: a run where it does
  not fails. S's rate over its IPC is reported beside it.
- one idle sync round: hosts A and B share topics that each holds messages
  of, nothing missing; over a window, the reconciles (one per peer and topic) the two ran, the
  bytes of `/hive/sync/1.0.0` frames both sent (`status.sync.sent_bytes`),
  and both daemons' CPU (everything they did while idle: an upper bound on
  what the rounds cost).

No anchor has either (go, js and py-libp2p keep no history), so these rows
are Hive's alone."""

from __future__ import annotations

import asyncio
import time

from .clients import Http, Ipc
from .common import CLK_TCK, TOKEN, Env, cpu_ticks, run_json, start_hive_daemon
from .workloads import _host_pair, guarded, sample_gate, say

TOPIC = "bench-inbound"
# hbench's warm-up (50) and latency run (LAT) come before the burst.
WARMUP, LAT = 50, 10


async def _inbound(http: Http) -> tuple[int, int]:
    """(received, position) of B's `inbound` status."""
    _, st = await http.json("GET", "/api/status")
    inbound = (st or {}).get("inbound") or {}
    return int(inbound.get("received") or 0), int(inbound.get("position") or 0)


async def _sample(http: Http, samples: list, stop: asyncio.Event):
    while not stop.is_set():
        samples.append((time.perf_counter(), *await _inbound(http)))
        await asyncio.sleep(0.02)


def _rate(curve: list, start: int, n: int) -> float | None:
    """The burst (numbers `start`+1 .. `start`+n) over the span of `curve`
    [(t, number)] from its first to its last one."""
    first = next((t for t, x in curve if x > start), None)
    done = next((t for t, x in curve if x >= start + n), None)
    if first is None or done is None or done <= first:
        return None
    return n / (done - first)


async def _count_stored(http: Http) -> tuple[int, int]:
    """(stored messages of TOPIC, distinct payloads)."""
    got, _ = await http.stored_after(TOPIC)
    return len(got), len({m.get("data") for m in got})


async def store_vs_receive(env: Env) -> dict:
    n = 5_000 if env.quick else 30_000
    p = s = b = None
    try:
        b, api_b, st_b, _, hb = await _host_pair(env, "inbound-b")
        p = await start_hive_daemon(env, name="inbound-pub")
        s = await start_hive_daemon(env, name="inbound-sub")
        status, _ = await hb.json("POST", f"/api/topics/{TOPIC}/subscribe")
        if status != 200:
            raise RuntimeError(f"subscribe answered {status}")
        addr_b = [x for x in st_b["listen_addrs"] if "/tcp/" in x][0]
        ipc = await Ipc.connect(p.ipc)
        await ipc.request("dial", {"addr": addr_b})
        await ipc.close()
        _, start = await _inbound(hb)
        samples, stop = [], asyncio.Event()
        sampler = asyncio.ensure_future(_sample(hb, samples, stop))
        try:
            r = await run_json(
                [env.hbench, "ipc-pubsub", "--pub-url", p.ipc, "--sub-url", s.ipc, "--token", TOKEN,
                 "--dial", s.addr, "--topic", TOPIC, "--size", 64, "--lat-count", LAT, "--lat-rate", 200,
                 "--rates", "", "--burst", n, "--grace", 5],
                timeout=600,
            )  # fmt: skip
            # The daemon refuses what its gossipsub queues cannot take (an
            # error to the publisher, nothing published): the burst is what
            # it acknowledged.
            burst = r.get("burst") or {}
            acked = int(burst.get("sent", 0)) - int(burst.get("errors", 0))
            before = start + WARMUP + LAT
            t = time.perf_counter()
            while samples[-1][2] < before + acked and time.perf_counter() - t < 60:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await sampler
        recv_rate = _rate([(t, x) for t, x, _ in samples], before, acked)
        store_rate = _rate([(t, x) for t, _, x in samples], before, acked)
        stored, distinct = await _count_stored(hb)
        _, st = await hb.json("GET", "/api/status")
        inbound = (st or {}).get("inbound") or {}
        expected = WARMUP + LAT + acked
        out = {
            "burst": n,
            "acked": acked,
            "refused": burst.get("errors"),
            "publish_rate": burst.get("achieved_rate"),
            "bare_daemon_received": burst.get("received"),
            "bare_daemon_receive_rate": burst.get("delivery_rate"),
            "daemon_receive_rate": round(recv_rate) if recv_rate else None,
            "store_rate": round(store_rate) if store_rate else None,
            "ratio": round(store_rate / recv_rate, 2) if store_rate and recv_rate else None,
            "stored": stored,
            "expected": expected,
            "lost": expected - distinct,
            "duplicates": stored - distinct,
            "gaps": inbound.get("gaps"),
            "repaired": inbound.get("repaired"),
        }
        say(
            f"burst of {n}: B's daemon received at {out['daemon_receive_rate']}/s, its host stored at "
            f"{out['store_rate']}/s (ratio {out['ratio']}), S received at {out['bare_daemon_receive_rate']}/s; "
            f"B stored {stored} of {expected}, lost {out['lost']}"
        )
        if out["lost"] or out["duplicates"] or stored != expected:
            raise RuntimeError(f"B did not store every acknowledged message exactly once: {out}")
        return out
    finally:
        for x in (p, s, b):
            if x:
                await x.stop()


async def _sync_totals(hosts: list[Http]) -> tuple[int, int]:
    """(reconcile rounds, sync bytes sent) summed over the hosts' daemons."""
    rounds = sent = 0
    for h in hosts:
        _, st = await h.json("GET", "/api/status")
        sync = (st or {}).get("sync") or {}
        rounds += int(sync.get("reconciles") or 0)
        sent += int(sync.get("sent_bytes") or 0)
    return rounds, sent


async def idle_sync(env: Env) -> dict:
    topics, per_topic = (2, 100) if env.quick else (10, 1000)
    window = 35 if env.quick else 125
    procs = []
    try:
        a, api_a, st_a, _, ha = await _host_pair(env, "idle-a")
        procs.append(a)
        addr_a = [x for x in st_a["listen_addrs"] if "/tcp/" in x][0]
        b, api_b, st_b, _, hb = await _host_pair(env, "idle-b", bootstrap_to=addr_a)
        procs.append(b)
        names = [f"idle-{i}" for i in range(topics)]
        for h in (ha, hb):
            for t in names:
                await h.json("POST", f"/api/topics/{t}/subscribe")
        for t in names:
            for i in range(per_topic):
                host = ha if i % 2 else hb
                status, _ = await host.json("POST", f"/api/topics/{t}/publish", f"{t} {i}".encode())
                if status not in (200, 202):
                    raise RuntimeError(f"publish answered {status}")
        # Until the first rounds (10 s after a pair starts) are over, and then
        # a full interval (30 s): rounds come sooner while they find ids or
        # list ones too recent to judge (the last 5 s), so the window starts
        # once the published ids were listed and the rounds are idle ones.
        t0 = time.perf_counter()
        while True:
            rounds, _ = await _sync_totals([ha, hb])
            if rounds >= 2:
                break
            if time.perf_counter() - t0 > 90:
                raise RuntimeError("no reconcile round within 90 s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(35)
        pids = [(st.get("daemon") or {}).get("pid") for st in (st_a, st_b)]
        rounds0, sent0 = await _sync_totals([ha, hb])
        cpu0 = sum(cpu_ticks(pid) for pid in pids if pid)
        await asyncio.sleep(window)
        rounds1, sent1 = await _sync_totals([ha, hb])
        cpu_s = (sum(cpu_ticks(pid) for pid in pids if pid) - cpu0) / CLK_TCK
        rounds = rounds1 - rounds0
        if rounds < 1:
            raise RuntimeError(f"no reconcile round in {window} s")
        out = {
            "topics": topics,
            "messages_per_topic": per_topic,
            "window_s": window,
            "rounds": rounds,
            "bytes_per_round": round((sent1 - sent0) / rounds),
            "daemons_cpu_ms": round(cpu_s * 1000, 1),
            "daemons_cpu_ms_per_round": round(cpu_s * 1000 / rounds, 1),
        }
        say(
            f"{rounds} idle (peer, topic) rounds over {topics} topics in {window} s: {out['bytes_per_round']} B each, "
            f"both daemons {out['daemons_cpu_ms']} ms CPU in all"
        )
        return out
    finally:
        for x in procs:
            await x.stop()


async def inbound(env: Env) -> dict:
    out = {"store_vs_receive": await guarded("inbound-store", store_vs_receive(env))}
    await sample_gate(env)
    out["idle_sync"] = await guarded("inbound-idle-sync", idle_sync(env))
    return out
