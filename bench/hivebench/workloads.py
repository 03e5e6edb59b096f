"""The workloads. Each returns a JSON-able dict; anchors that cannot run
are reported as {"skipped": reason} rows, never as failures."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import struct
import time

import websockets

from . import pb
from .clients import Http, Ipc
from .common import (
    CLK_TCK,
    TOKEN,
    Env,
    Skip,
    cpu_ticks,
    dist,
    quiet_gate,
    free_port,
    pct,
    rss_kb,
    rss_split_kb,
    run_json,
    spawn,
    start_control_daemon,
    start_hive_daemon,
)
from .control import ControlClient, ps_message_data, read_msg


def say(msg: str):
    print(f"   {msg}", flush=True)


async def sample_gate(env: Env):
    """Full mode: before each repeated sample, wait until nobody else uses the CPU."""
    if not env.quick:
        await quiet_gate(120)


# Rows that failed in this run, with their reasons: any of them fails the run.
FAILED: list[str] = []


async def guarded(name: str, coro):
    """Run one row. Only an anchor that cannot be installed or started
    (`Skip`) becomes a skipped row; any other exception is a failed row,
    and the run then ends non-zero (after the other rows have run)."""
    try:
        return await coro
    except Skip as e:
        say(f"{name}: skipped: {e}")
        return {"skipped": str(e)}
    except Exception as e:
        return failed_row(name, e)


def failed_row(name: str, e: Exception) -> dict:
    """The row of a workload (or of one daemon in it) that raised: recorded
    in FAILED, so the run ends non-zero, and shown as FAILED in the report."""
    reason = f"{type(e).__name__}: {e}"[:300]
    say(f"{name}: FAILED: {reason}")
    FAILED.append(f"{name}: {reason}")
    return {"skipped": f"FAILED: {reason}", "failed": True}


# ---------------------------------------------------------------------------
# 1. start-up and idle memory
# ---------------------------------------------------------------------------


async def _start_once(env: Env, kind: str) -> dict:
    if kind == "hive":
        d = await start_hive_daemon(env)
        ipc = await Ipc.connect(d.ipc)
        await ipc.request("status")
        first_ms = (time.perf_counter() - d.proc.started) * 1000
        await ipc.close()
        pid, ready_ms, stop = d.proc.pid, d.ready_ms, d.stop
    else:
        d = await start_control_daemon(env, {"hive-go-flags": "hive"}.get(kind, kind))
        first_ms = d.first_answer_ms
        pid, ready_ms, stop = d.proc.pid, d.ready_ms, d.stop
    await asyncio.sleep(2.0)
    rss = rss_kb(pid) / 1024
    split = rss_split_kb(pid)
    await stop()
    return {
        "ready_ms": ready_ms,
        "first_answer_ms": first_ms,
        "rss_mb": rss,
        "anon_mb": split.get("RssAnon", 0) / 1024,
        "file_mb": split.get("RssFile", 0) / 1024,
    }


async def startup(env: Env) -> dict:
    reps = 3 if env.quick else 10
    kinds = {
        "hive": "hive-p2pd (JSON ready line, IPC `status`)",
        "hive-go-flags": "hive-p2pd with go flags (`Peer ID:` line, IDENTIFY)",
        "go": "go p2pd, hivemind 1.1.12 (`Peer ID:` line, IDENTIFY)",
        "js": "js daemon, @libp2p/daemon-server (`Peer ID:` line, IDENTIFY)",
    }
    samples: dict[str, list] = {k: [] for k in kinds}
    skipped: dict[str, str] = {}
    # Round robin, so that drifts of the machine hit every daemon alike.
    for i in range(reps):
        for kind in kinds:
            if kind in skipped:
                continue
            await sample_gate(env)
            try:
                samples[kind].append(await _start_once(env, kind))
            except Skip as e:
                skipped[kind] = str(e)
            except Exception as e:
                skipped[kind] = failed_row(f"startup {kind}", e)["skipped"]
    rows = {}
    for kind, label in kinds.items():
        if kind in skipped and not samples[kind]:
            rows[kind] = {"label": label, "skipped": skipped[kind]}
            continue
        s = samples[kind]
        rows[kind] = {
            "label": label,
            "ready_ms": dist([x["ready_ms"] for x in s]),
            "first_answer_ms": dist([x["first_answer_ms"] for x in s]),
            "rss_mb": dist([x["rss_mb"] for x in s]),
            "anon_mb": dist([x["anon_mb"] for x in s]),
            "file_mb": dist([x["file_mb"] for x in s]),
        }
        say(
            f"{kind}: ready median {rows[kind]['ready_ms']['median']} ms, "
            f"RSS median {rows[kind]['rss_mb']['median']} MB (n={len(s)})"
        )
    return {"reps": reps, "rows": rows}


# ---------------------------------------------------------------------------
# 2. IPC round trips
# ---------------------------------------------------------------------------


async def _control_rtt(client: ControlClient, count: int, inflight: int) -> dict:
    lat = []
    sem = asyncio.Semaphore(inflight)

    async def one():
        async with sem:
            t = time.perf_counter()
            await client.identify()
            lat.append((time.perf_counter() - t) * 1e6)

    for _ in range(50):  # warm-up
        await client.identify()
    t0 = time.perf_counter()
    if inflight == 1:
        for _ in range(count):
            await one()
    else:
        await asyncio.gather(*(one() for _ in range(count)))
    secs = time.perf_counter() - t0
    return {
        "n": len(lat),
        "p50_us": round(pct(lat, 0.5), 1),
        "p99_us": round(pct(lat, 0.99), 1),
        "max_us": round(max(lat), 1),
        "rps": round(count / secs),
        "inflight": inflight,
    }


async def ipc_rtt(env: Env) -> dict:
    count = 3000 if env.quick else 20000
    reps = 1 if env.quick else 5
    out: dict = {"count": count, "reps": reps, "ws": {}, "control": {}}

    async def hive_ws(inflight, op="status"):
        d = await start_hive_daemon(env)
        try:
            return await run_json(
                [env.hbench, "ipc-rtt", "--url", d.ipc, "--token", TOKEN, "--inflight", inflight, "--count", count,
                 "--op", op],
                timeout=120,
            )  # fmt: skip
        finally:
            await d.stop()

    async def hive_ws_noop(inflight):
        # An unknown op is answered by the IPC connection itself, without the
        # node: the IPC layer's own cost, for comparison with `status`.
        return await hive_ws(inflight, op="no_such_op")

    async def echo_ws(inflight):
        p = await spawn("echo", [env.hbench, "echo-server"])
        try:
            url = await p.readline(10)
            return await run_json(
                [env.hbench, "ipc-rtt", "--url", url, "--inflight", inflight, "--count", count], timeout=120
            )
        finally:
            await p.stop()

    # One in flight: hbench alternates request by request between Hive and the
    # echo server (paired), so both see the same machine; on this VM a lone
    # round trip is dominated by vCPU wake-ups that swing from run to run.
    async def paired(op):
        d = await start_hive_daemon(env)
        p = await spawn("echo", [env.hbench, "echo-server"])
        try:
            url = await p.readline(10)
            return await run_json(
                [env.hbench, "ipc-rtt", "--url", d.ipc, "--url2", url, "--token", TOKEN, "--count", count,
                 "--op", op],
                timeout=300,
            )  # fmt: skip
        finally:
            await p.stop()
            await d.stop()

    for name, op in (("hive", "status"), ("hive-noop", "no_such_op")):
        rounds = []
        for _ in range(reps):
            await sample_gate(env)
            r = await guarded(f"ws {name} paired", paired(op))
            if "skipped" in r:
                rounds = r
                break
            rounds.append(r)
        if isinstance(rounds, dict):
            out["ws"][f"{name}@1"] = rounds
            continue
        for r in rounds:  # per-pair figures, as the separate runs report them
            for side in ("a", "b"):
                r[side]["rps"] = round(1e6 / r[side]["p50_us"]) if r[side].get("p50_us") else 0
        out["ws"][f"{name}@1"] = _merge_runs([r["a"] for r in rounds])
        echo = _merge_runs([r["b"] for r in rounds])
        if name == "hive" or "echo@1" not in out["ws"]:
            out["ws"]["echo@1"] = echo
        ratios = sorted(r["a"]["p50_us"] / r["b"]["p50_us"] for r in rounds)
        r99 = sorted(r["a"]["p99_us"] / r["b"]["p99_us"] for r in rounds)
        out["ws"][f"{name}-ratio@1"] = {
            "median": round(ratios[len(ratios) // 2], 2),
            "min": round(ratios[0], 2),
            "max": round(ratios[-1], 2),
            "p99_median": round(r99[len(r99) // 2], 2),
        }
        m = out["ws"][f"{name}@1"]
        say(
            f"WebSocket {name} vs echo, paired, 1 in flight: p50 {m['p50_us']} µs vs {echo['p50_us']} µs, "
            f"ratio {out['ws'][f'{name}-ratio@1']['median']}× (rounds {ratios[0]:.2f}–{ratios[-1]:.2f})"
        )
    out["ws"]["ratio@1"] = out["ws"].get("hive-ratio@1")

    # 64 in flight: separate runs, Hive, the no-op and the echo interleaved.
    for inflight in (64,):
        names = (("hive", hive_ws), ("hive-noop", hive_ws_noop), ("echo", echo_ws))
        runs: dict = {name: [] for name, _ in names}
        for _ in range(reps):
            for name, fn in names:
                if isinstance(runs[name], dict):
                    continue
                await sample_gate(env)
                r = await guarded(f"ws {name} x{inflight}", fn(inflight))
                if "skipped" in r:
                    runs[name] = r
                else:
                    runs[name].append(r)
        for name, _ in names:
            out["ws"][f"{name}@{inflight}"] = _merge_runs(runs[name])
            if isinstance(runs[name], list):
                m = out["ws"][f"{name}@{inflight}"]
                say(f"WebSocket {name}, {inflight} in flight: p50 {m['p50_us']} µs, p99 {m['p99_us']} µs, {m['rps']} req/s")
        if isinstance(runs["hive"], list) and isinstance(runs["echo"], list):
            ratios = sorted(h["p50_us"] / e["p50_us"] for h, e in zip(runs["hive"], runs["echo"]))
            out["ws"][f"ratio@{inflight}"] = {
                "median": round(ratios[len(ratios) // 2], 2),
                "min": round(ratios[0], 2),
                "max": round(ratios[-1], 2),
            }

    ccount = 300 if env.quick else 3000

    async def control_rtt(kind, inflight):
        d = await start_control_daemon(env, kind)
        try:
            return await _control_rtt(d.client, ccount, inflight)
        finally:
            await d.stop()

    for inflight in (1, 64):
        for kind in ("hive", "go"):
            runs = []
            for _ in range(reps):
                await sample_gate(env)
                r = await guarded(f"control {kind}", control_rtt(kind, inflight))
                if "skipped" in r:
                    runs = r
                    break
                runs.append(r)
            out["control"][f"{kind}@{inflight}"] = _merge_runs(runs)
            if isinstance(runs, list):
                m = out["control"][f"{kind}@{inflight}"]
                say(f"control IDENTIFY {kind}, {inflight} in flight: p50 {m['p50_us']} µs, p99 {m['p99_us']} µs, {m['rps']} req/s")
    out["control_count"] = ccount
    return out


def _merge_runs(runs) -> dict:
    """Median over repeated runs of each figure, with the spread of p50 and rps."""
    if isinstance(runs, dict):
        return runs
    keys = ("p50_us", "p99_us", "max_us", "rps")
    m = {k: round(sorted(r[k] for r in runs)[len(runs) // 2], 1) for k in keys}
    m["reps"] = len(runs)
    m["p50_spread"] = [min(r["p50_us"] for r in runs), max(r["p50_us"] for r in runs)]
    m["rps_spread"] = [min(r["rps"] for r in runs), max(r["rps"] for r in runs)]
    m["errors"] = sum(r.get("errors", 0) for r in runs)
    return m


# ---------------------------------------------------------------------------
# 3. streams through two daemons (control protocol)
# ---------------------------------------------------------------------------

ECHO = "/bench/echo/1.0.0"
SINK = "/bench/sink/1.0.0"


async def _echo_handler(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _sink_handler(reader, writer):
    try:
        total = struct.unpack(">Q", await reader.readexactly(8))[0]
        got = 0
        while got < total:
            chunk = await reader.read(min(1 << 20, total - got))
            if not chunk:
                break
            got += len(chunk)
        writer.write(b"k")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _connected_pair(env: Env, kind: str):
    a = await start_control_daemon(env, kind)
    try:
        b = await start_control_daemon(env, kind)
    except BaseException:
        await a.stop()
        raise
    try:
        t = time.perf_counter()
        await a.client.connect(b.peer_bytes, [pb.maddr_bytes(x) for x in b.addrs])
        connect_ms = (time.perf_counter() - t) * 1000
    except BaseException:
        await a.stop()
        await b.stop()
        raise
    return a, b, connect_ms


async def _bulk(a, b, bulk_bytes: int) -> tuple[float, list]:
    """One stream, one way, until the receiver has every byte: (MiB/s, CPU s per GiB of A and B)."""
    chunk = os.urandom(1 << 20)
    reader, writer = await a.client.stream_open(b.peer_bytes, SINK)
    ta, tb = cpu_ticks(a.proc.pid), cpu_ticks(b.proc.pid)
    t = time.perf_counter()
    writer.write(struct.pack(">Q", bulk_bytes))
    sent = 0
    while sent < bulk_bytes:
        n = min(len(chunk), bulk_bytes - sent)
        writer.write(chunk[:n] if n < len(chunk) else chunk)
        await writer.drain()
        sent += n
    ack = await asyncio.wait_for(reader.readexactly(1), 120)
    secs = time.perf_counter() - t
    gib = bulk_bytes / (1 << 30)
    cpu = [
        round((cpu_ticks(a.proc.pid) - ta) / CLK_TCK / gib, 2),
        round((cpu_ticks(b.proc.pid) - tb) / CLK_TCK / gib, 2),
    ]
    assert ack == b"k"
    writer.close()
    return bulk_bytes / secs / (1 << 20), cpu


async def _streams_round(env: Env, kinds, echo_n: int, bulk_bytes: int) -> dict:
    """One round: a pair of each kind; the 1 KiB echo alternates message by
    message between the pairs (so both see the same machine), then the bulk
    transfers run one after the other."""
    pairs, out = {}, {}
    try:
        for kind in kinds:
            try:
                a, b, connect_ms = await _connected_pair(env, kind)
            except Skip as e:
                out[kind] = {"skipped": str(e)}
                continue
            except Exception as e:
                out[kind] = failed_row(f"streams {kind}", e)
                continue
            servers = [
                await b.client.stream_handler(str(b.dir / "echo.sock"), ECHO, _echo_handler),
                await b.client.stream_handler(str(b.dir / "sink.sock"), SINK, _sink_handler),
            ]
            pairs[kind] = (a, b, connect_ms, servers)
        streams = {k: await a.client.stream_open(b.peer_bytes, ECHO) for k, (a, b, _, _) in pairs.items()}
        msg = os.urandom(1024)
        lat: dict[str, list] = {k: [] for k in pairs}
        for i in range(echo_n + 100):
            for k, (reader, writer) in streams.items():
                t = time.perf_counter()
                writer.write(msg)
                await writer.drain()
                await reader.readexactly(1024)
                if i >= 100:
                    lat[k].append((time.perf_counter() - t) * 1e6)
        for _, writer in streams.values():
            writer.close()
        for k, (a, b, connect_ms, _) in pairs.items():
            await sample_gate(env)
            rate, cpu = await _bulk(a, b, bulk_bytes)
            out[k] = {
                "connect_ms": round(connect_ms, 1),
                "echo": {
                    "n": len(lat[k]),
                    "p50_us": round(pct(lat[k], 0.5), 1),
                    "p99_us": round(pct(lat[k], 0.99), 1),
                    "max_us": round(max(lat[k]), 1),
                },
                "bulk": rate,
                "cpu_s_per_gib": cpu,
            }
            say(
                f"{k}: echo p50 {out[k]['echo']['p50_us']} µs p99 {out[k]['echo']['p99_us']} µs; "
                f"bulk {rate:.0f} MiB/s ({bulk_bytes >> 20} MiB), CPU s/GiB {cpu}"
            )
        return out
    finally:
        for a, b, _, servers in pairs.values():
            for srv in servers:
                srv.close()
            await a.stop()
            await b.stop()


async def streams(env: Env) -> dict:
    """Rounds with fresh pairs of daemons; echo paired, bulk one after the other."""
    echo_n = 1000 if env.quick else 5000
    bulk = (256 if env.quick else 1024) << 20
    reps = 1 if env.quick else 5
    runs: dict[str, list] = {"hive": [], "go": []}
    out: dict = {}
    for _ in range(reps):
        await sample_gate(env)
        r = await guarded("streams", _streams_round(env, [k for k in runs if k not in out], echo_n, bulk))
        if "skipped" in r and isinstance(r["skipped"], str):
            return r
        for k, v in r.items():
            if "skipped" in v:
                out[k] = v
            else:
                runs[k].append(v)
    mid = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    for kind, rs in runs.items():
        if kind in out or not rs:
            continue
        out[kind] = {
            "reps": len(rs),
            "connect_ms": mid([r["connect_ms"] for r in rs]),
            "echo": {
                "n": rs[0]["echo"]["n"],
                "p50_us": mid([r["echo"]["p50_us"] for r in rs]),
                "p99_us": mid([r["echo"]["p99_us"] for r in rs]),
                "max_us": max(r["echo"]["max_us"] for r in rs),
                "p50_spread": [min(r["echo"]["p50_us"] for r in rs), max(r["echo"]["p50_us"] for r in rs)],
            },
            "bulk_mib_s": dist([r["bulk"] for r in rs]),
            "bulk_mib": bulk >> 20,
            "cpu_s_per_gib": [mid([r["cpu_s_per_gib"][0] for r in rs]), mid([r["cpu_s_per_gib"][1] for r in rs])],
        }
    if runs["hive"] and runs["go"] and len(runs["hive"]) == len(runs["go"]):
        er = sorted(h["echo"]["p50_us"] / g["echo"]["p50_us"] for h, g in zip(runs["hive"], runs["go"]))
        br = sorted(h["bulk"] / g["bulk"] for h, g in zip(runs["hive"], runs["go"]))
        out["ratios"] = {
            "echo_p50": {"median": round(mid(er), 2), "min": round(er[0], 2), "max": round(er[-1], 2)},
            "bulk": {"median": round(mid(br), 2), "min": round(br[0], 2), "max": round(br[-1], 2)},
        }
    return out


# ---------------------------------------------------------------------------
# 4. pubsub
# ---------------------------------------------------------------------------


def judge(out: dict, n: int, receivers: int, count: int, start: float, send_secs: float, last_at: float) -> dict:
    """The same verdict as hbench's: no loss, the publisher kept its pace, and
    delivery kept up (the last message arrived within 10 % of the sending
    time, plus 50 ms, of the end of sending)."""
    achieved = n / send_secs
    in_time = False
    if count:
        secs = last_at - start
        out["delivery_rate"] = round(count / receivers / secs)
        in_time = secs <= send_secs * 1.1 + 0.05
    out.update(
        sent=n, received=count, receivers=receivers, achieved_rate=round(achieved),
        no_loss=count == n * receivers and not out.get("errors"),
        delivered_in_time=in_time, kept_pace=achieved >= 0.95 * out["rate"],
    )  # fmt: skip
    return out


async def sweep_rates(paced, rates, secs) -> dict:
    sweep, best, bound = [], 0, False
    for i, rate in enumerate(rates):
        r = await paced(2 + i, max(1, round(rate * secs)), rate)
        say(
            f"  rate {rate}/s: sent {r['sent']}, received {r['received']}, errors {r['errors']}, "
            f"achieved {r['achieved_rate']}/s, delivered in time: {str(r['delivered_in_time']).lower()}"
        )
        sweep.append(r)
        delivered = r["no_loss"] and r["delivered_in_time"]
        if delivered and r["kept_pace"]:
            best = rate
            continue
        if delivered:
            bound = True
            best = max(best, r["achieved_rate"])
        break
    return {"sweep": sweep, "max_no_loss_rate": best, "publisher_bound": bound}


def _sweep_args(env: Env, nodes: int = 2) -> dict:
    if env.quick:
        rates = [500, 1000, 2000, 4000, 8000, 16000]
        return {"lat_count": 300, "lat_rate": 200, "rates": rates, "secs": 1.5, "grace": 2.0}
    rates = [250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000]
    return {"lat_count": 2000 if nodes == 2 else 500, "lat_rate": 200, "rates": rates, "secs": 3.0, "grace": 3.0}


async def _with_cpu(pids: list[int], coro) -> dict:
    """Run a sweep and add the daemons' CPU per delivered message."""
    t0 = sum(cpu_ticks(p) for p in pids)
    r = await coro
    ticks = sum(cpu_ticks(p) for p in pids) - t0
    steps = [r.get("latency", {})] + r.get("sweep", []) + ([r["burst"]] if r.get("burst") else [])
    delivered = sum(x.get("received", 0) for x in steps)
    if delivered:
        r["daemon_cpu_us_per_delivery"] = round(ticks / CLK_TCK * 1e6 / delivered, 1)
    return r


def _hb_sweep_flags(s: dict) -> list:
    return [
        "--lat-count", s["lat_count"], "--lat-rate", s["lat_rate"],
        "--rates", ",".join(str(r) for r in s["rates"]), "--secs", s["secs"], "--grace", s["grace"],
    ]  # fmt: skip


async def _pubsub_hive_ipc(env: Env, nodes: int) -> dict:
    s = _sweep_args(env, nodes)
    daemons = []
    try:
        for _ in range(nodes):
            daemons.append(await start_hive_daemon(env))
        pids = [d.proc.pid for d in daemons]
        if nodes == 2:
            return await _with_cpu(pids, run_json(
                [env.hbench, "ipc-pubsub", "--pub-url", daemons[0].ipc, "--sub-url", daemons[1].ipc,
                 "--token", TOKEN, "--dial", daemons[1].addr, *_hb_sweep_flags(s)],
                timeout=600,
            ))  # fmt: skip
        # Many nodes: node i dials i-1 and i//2, everyone subscribes; one publisher.
        ipcs = [await Ipc.connect(d.ipc) for d in daemons]
        for i in range(1, nodes):
            for j in {i - 1, i // 2}:
                await ipcs[i].request("dial", {"addr": daemons[j].addr})
        for c in ipcs:
            await c.close()
        return await _with_cpu(pids, run_json(
            [env.hbench, "ipc-pubsub", "--pub-url", daemons[0].ipc,
             "--sub-url", ",".join(d.ipc for d in daemons[1:]), "--token", TOKEN, *_hb_sweep_flags(s)],
            timeout=900,
        ))  # fmt: skip
    finally:
        for d in daemons:
            await d.stop()


async def _control_daemons(env: Env, kind: str, nodes: int):
    """Start `nodes` daemons of one kind; node i connects to i-1 and i//2."""
    daemons = []
    try:
        for _ in range(nodes):
            daemons.append(await start_control_daemon(env, kind))
        for i in range(1, nodes):
            for j in sorted({i - 1, i // 2}):
                await daemons[i].client.connect(daemons[j].peer_bytes, [pb.maddr_bytes(x) for x in daemons[j].addrs])
    except BaseException:
        for d in daemons:
            await d.stop()
        raise
    return daemons


async def _control_pubsub_hbench(env: Env, kind: str, nodes: int) -> dict:
    """PUBLISH/SUBSCRIBE through the control protocol, driven by hbench (the
    Python client cannot publish fast enough to find any daemon's limit)."""
    s = _sweep_args(env, nodes)
    daemons = await _control_daemons(env, kind, nodes)
    try:
        return await _with_cpu([d.proc.pid for d in daemons], run_json(
            [env.hbench, "control-pubsub", "--pub-sock", daemons[0].sock,
             "--sub-socks", ",".join(d.sock for d in daemons[1:]), *_hb_sweep_flags(s)],
            timeout=900,
        ))  # fmt: skip
    finally:
        for d in daemons:
            await d.stop()


async def _control_pubsub_sweep(env: Env, kind: str, nodes: int) -> dict:
    """The same sweep as hbench's, driven through the control protocol by the
    Python client: PUBLISH on node 0 (a new control connection per message,
    up to 64 at once), SUBSCRIBE streams on the others."""
    s = _sweep_args(env, nodes)
    daemons = await _control_daemons(env, kind, nodes)
    subs = []
    try:
        topic = "bench"
        for d in daemons[1:]:
            subs.append(await d.client.subscribe(topic))
        pub_sub = await daemons[0].client.subscribe(topic)  # the publisher joins the topic too
        t = time.perf_counter()
        for d in daemons:
            while not await d.client.topic_peers(topic):
                if time.perf_counter() - t > 30:
                    raise RuntimeError("the topic mesh did not form in 30 s")
                await asyncio.sleep(0.05)
        mesh_ms = (time.perf_counter() - t) * 1000
        await asyncio.sleep(1.5)
        T0 = time.perf_counter_ns()
        received: dict[int, list] = {}

        async def reader_task(reader, into):
            try:
                while True:
                    data = ps_message_data(await read_msg(reader))
                    if len(data) < 16:
                        continue
                    run, _seq, sent = struct.unpack(">IIQ", data[:16])
                    e = into.setdefault(run, [0, [], 0.0])
                    e[0] += 1
                    e[1].append((time.perf_counter_ns() - T0 - sent) / 1000)
                    e[2] = time.perf_counter()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass

        readers = [asyncio.ensure_future(reader_task(r, received)) for r, _ in subs]
        # The publisher's own subscription stays open (closing it would leave
        # the topic on some daemons) and is drained, not counted.
        own: dict = {}
        readers.append(asyncio.ensure_future(reader_task(pub_sub[0], own)))
        subs.append(pub_sub)
        client = daemons[0].client
        receivers = nodes - 1

        async def paced(run, n, rate):
            errors = [0, None]
            sem = asyncio.Semaphore(64)
            tasks = set()

            async def one(data):
                try:
                    await client.publish(topic, data)
                except Exception as e:
                    errors[0] += 1
                    errors[1] = errors[1] or str(e)
                finally:
                    sem.release()

            start = time.perf_counter()
            for seq in range(n):
                due = start + seq / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await sem.acquire()
                data = struct.pack(">IIQ", run, seq, time.perf_counter_ns() - T0).ljust(256, b"x")
                task = asyncio.ensure_future(one(data))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
            send_secs = time.perf_counter() - start
            last, last_t = -1, time.perf_counter()
            while True:
                count = received.get(run, [0, []])[0]
                if count >= n * receivers:
                    break
                if count != last:
                    last, last_t = count, time.perf_counter()
                elif time.perf_counter() - last_t > s["grace"]:
                    break
                await asyncio.sleep(0.01)
            count, lat, last_at = received.pop(run, [0, [], 0.0])
            own.clear()
            out = {"n": len(lat)}
            if lat:
                out.update(
                    p50_us=round(pct(lat, 0.5), 1),
                    p90_us=round(pct(lat, 0.9), 1),
                    p99_us=round(pct(lat, 0.99), 1),
                    max_us=round(max(lat), 1),
                )
            out.update(rate=rate, errors=errors[0], first_error=errors[1])
            return judge(out, n, receivers, count, start, send_secs, last_at)

        await paced(0, 50, 100.0)
        latency = await paced(1, s["lat_count"], s["lat_rate"])
        result = await sweep_rates(paced, s["rates"], s["secs"])
        for t in readers:
            t.cancel()
        return {"latency": latency, **result, "mesh_ms": round(mesh_ms)}
    finally:
        for _, w in subs:
            w.close()
        for d in daemons:
            await d.stop()


async def _host_pair(env: Env, name: str, bootstrap_to=None, extra=(), data_dir=None):
    """Start a `hive up` host (on `data_dir`, else a fresh one); returns
    (proc, api_url, status, ready_ms, http)."""
    d = data_dir or env.scratch(name)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    argv = [
        env.hive, "up", "--data-dir", d, "--http", f"127.0.0.1:{port}", "--listen", "/ip4/127.0.0.1/tcp/0",
        "--no-mdns", "--daemon-bin", env.p2pd, *extra,
    ]  # fmt: skip
    if bootstrap_to:
        argv += ["--bootstrap", bootstrap_to]
    p = await spawn(name, argv, stderr_path=d / "stderr.log")
    asyncio.ensure_future(p.drain_stdout())
    http = Http.for_api(api)
    t = time.perf_counter()
    while True:
        try:
            status, st = await http.json("GET", "/api/status", timeout=2)
            if status == 200 and st and st.get("daemon", {}).get("state") == "running" and st.get("listen_addrs"):
                break
        except Exception:
            pass
        if p.proc.returncode is not None or time.perf_counter() - t > 60:
            await p.stop()
            raise RuntimeError("hive up did not become ready: " + (d / "stderr.log").read_text(errors="replace")[-1500:])
        await asyncio.sleep(0.02)
    ready_ms = (time.perf_counter() - p.started) * 1000
    return p, api, st, ready_ms, http


async def _pubsub_host(env: Env, burst: int) -> dict:
    s = _sweep_args(env)
    a, api_a, st_a, ready_a, ha = await _host_pair(env, "host-a")
    b = None
    try:
        addr = [x for x in st_a["listen_addrs"] if "/tcp/" in x][0]
        b, api_b, _, _, hb = await _host_pair(env, "host-b", bootstrap_to=addr)
        r = await run_json(
            [env.hbench, "host-pubsub", "--pub-api", api_a, "--sub-api", api_b, "--conns", 16,
             "--burst", burst, *_hb_sweep_flags(s)],
            timeout=900,
        )  # fmt: skip
        r["host_ready_ms"] = round(ready_a, 1)
        return r
    finally:
        for p in (a, b):
            if p:
                await p.stop()


async def _pubsub_py(env: Env) -> dict:
    if not env.pylibp2p_python:
        raise Skip(env.pylibp2p_skip)
    s = _sweep_args(env)
    rates = [r for r in [100, 150, 250, 375, 500, 750, 1000, 1500, 2000, 3000] if r <= max(s["rates"])]
    if env.quick:
        rates = [125, 250, 500, 1000, 2000]
    script = os.path.join(os.path.dirname(__file__), "py_libp2p_pubsub.py")
    return await run_json(
        [env.pylibp2p_python, script, "--lat-count", min(s["lat_count"], 1000), "--lat-rate", 100,
         "--rates", ",".join(map(str, rates)), "--secs", s["secs"], "--grace", s["grace"]],
        timeout=600,
    )  # fmt: skip


async def pubsub(env: Env) -> dict:
    out = {"two": {}, "ten": {}}
    rows = [
        ("hive-ipc", "Hive, daemon IPC (hbench)", lambda: _pubsub_hive_ipc(env, 2)),
        ("hive-control", "Hive, control protocol (hbench)", lambda: _control_pubsub_hbench(env, "hive", 2)),
        ("go-control", "go p2pd, control protocol (hbench)", lambda: _control_pubsub_hbench(env, "go", 2)),
        ("js-control", "js daemon, control protocol (hbench)", lambda: _control_pubsub_hbench(env, "js", 2)),
        ("hive-host", "Hive, host HTTP API → /api/events (hbench)", lambda: _pubsub_host(env, 0)),
        ("py-libp2p", "py-libp2p 0.8.1, one trio process", lambda: _pubsub_py(env)),
    ]
    if not env.quick:
        rows[4:4] = [
            ("hive-control-py", "Hive, control protocol (Python client)", lambda: _control_pubsub_sweep(env, "hive", 2)),
            ("go-control-py", "go p2pd, control protocol (Python client)", lambda: _control_pubsub_sweep(env, "go", 2)),
        ]
    for key, label, fn in rows:
        say(f"-- {label}")
        await sample_gate(env)
        r = await guarded(key, fn())
        r["label"] = label
        out["two"][key] = r
        _say_pubsub(r)
    if not env.quick:
        for key, label, fn in (
            ("hive-ipc", "Hive, daemon IPC, 10 nodes", lambda: _pubsub_hive_ipc(env, 10)),
            ("hive-control", "Hive, control protocol, 10 nodes (hbench)", lambda: _control_pubsub_hbench(env, "hive", 10)),
            ("go-control", "go p2pd, control protocol, 10 nodes (hbench)", lambda: _control_pubsub_hbench(env, "go", 10)),
        ):
            say(f"-- {label}")
            await sample_gate(env)
            r = await guarded(key, fn())
            r["label"] = label
            out["ten"][key] = r
            _say_pubsub(r)
    return out


def _say_pubsub(r):
    if "latency" in r:
        lat = r["latency"]
        say(
            f"latency p50 {lat.get('p50_us')} µs p99 {lat.get('p99_us')} µs; "
            f"max rate with no loss {r['max_no_loss_rate']}/s"
        )


# ---------------------------------------------------------------------------
# 5. host end to end
# ---------------------------------------------------------------------------


async def host_e2e(env: Env) -> dict:
    """POST on host A → WebSocket event on host B: latency at a steady 200/s,
    then a burst as fast as 16 keep-alive connections can POST."""
    s = _sweep_args(env)
    a, api_a, st_a, ready_a, _ = await _host_pair(env, "e2e-a")
    b = None
    try:
        addr = [x for x in st_a["listen_addrs"] if "/tcp/" in x][0]
        b, api_b, _, _, _ = await _host_pair(env, "e2e-b", bootstrap_to=addr)
        burst = 2000 if env.quick else 20000
        r = await run_json(
            [env.hbench, "host-pubsub", "--pub-api", api_a, "--sub-api", api_b, "--conns", 16,
             "--lat-count", s["lat_count"], "--lat-rate", 200, "--rates", "", "--burst", burst,
             "--grace", 5],
            timeout=600,
        )  # fmt: skip
        r["host_ready_ms"] = round(ready_a, 1)
        say(
            f"latency p50 {r['latency'].get('p50_us')} µs p99 {r['latency'].get('p99_us')} µs; "
            f"burst of {burst}: POSTed at {r['burst']['achieved_rate']}/s, delivered {r['burst']['received']} "
            f"at {r['burst'].get('delivery_rate')}/s"
        )
    finally:
        for p in (a, b):
            if p:
                await p.stop()
    r["accept"] = {}
    for mode in ("normal", "fsync"):
        await sample_gate(env)
        r["accept"][mode] = await guarded(f"host-accept-{mode}", _accept_rate(env, mode))
    return r


ACCEPT_CONNS = 64


async def _accept_rate(env: Env, mode: str) -> dict:
    """`hive up --durability MODE` on host A, a subscriber on host B: how many
    publishes A's API accepts per second with 64 POSTs in flight (each answered
    only once its outbox row is stored: in the WAL, or with `fsync` on disk),
    while A's outbox drains to B as usual."""
    a, api_a, st_a, _, ha = await _host_pair(env, f"accept-{mode}-a", extra=["--durability", mode])
    b = None
    try:
        addr = [x for x in st_a["listen_addrs"] if "/tcp/" in x][0]
        b, api_b, _, _, hb = await _host_pair(env, f"accept-{mode}-b", bootstrap_to=addr)
        for h in (ha, hb):
            status, _ = await h.json("POST", "/api/topics/accept/subscribe")
            if status != 200:
                raise RuntimeError(f"subscribe answered {status}")
        t = time.perf_counter()
        while True:
            _, topics = await ha.json("GET", "/api/topics")
            if any(x.get("topic") == "accept" and x.get("peers", 0) > 0 for x in topics or []):
                break
            if time.perf_counter() - t > 30:
                raise RuntimeError("host B never joined the topic on host A")
            await asyncio.sleep(0.05)
        r = await run_json(
            [env.hbench, "host-accept", "--api", api_a, "--topic", "accept", "--conns", ACCEPT_CONNS,
             "--secs", 3 if env.quick else 10],
            timeout=120,
        )  # fmt: skip
        r["mode"] = mode
        say(
            f"--durability {mode}: {r['rate']:.0f} POSTs/s accepted with {ACCEPT_CONNS} in flight; "
            f"p50 {r['latency'].get('p50_us')} µs p99 {r['latency'].get('p99_us')} µs"
        )
        return r
    finally:
        for p in (a, b):
            if p:
                await p.stop()


# ---------------------------------------------------------------------------
# 6. scale
# ---------------------------------------------------------------------------


async def scale(env: Env, sizes=(10, 50, 100), budget_s: float = 600) -> dict:
    out = {}
    t_all = time.perf_counter()
    for n in sizes:
        if time.perf_counter() - t_all > budget_s:
            out[str(n)] = {"skipped": f"time budget of {budget_s:.0f} s for the scale workload used up"}
            continue
        say(f"-- {n} daemons")
        await sample_gate(env)
        out[str(n)] = await guarded(f"scale {n}", _scale_one(env, n))
    return out


async def _scale_one(env: Env, n: int) -> dict:
    daemons = []
    ipcs = []
    topic = "scale"
    arrivals: dict[int, dict[str, float]] = {}
    t0 = time.perf_counter()
    try:
        for i in range(n):
            extra = []
            if i:
                # Bootstrapped to the first daemon and to one earlier at random.
                extra = ["--bootstrap", daemons[0].addr]
                j = random.Random(i).randrange(i)
                if j:
                    extra += ["--bootstrap", daemons[j].addr]
            daemons.append(await start_hive_daemon(env, extra, name=f"scale{i}"))
        start_all_s = time.perf_counter() - t0

        def on_event_for(i):
            def on_event(frame):
                if frame.get("event") == "message" and frame.get("topic") == topic:
                    data = base64.b64decode(frame["data"])
                    k = struct.unpack(">I", data[:4])[0]
                    arrivals.setdefault(k, {})[i] = time.perf_counter()

            return on_event

        for i, d in enumerate(daemons):
            ipcs.append(await Ipc.connect(d.ipc, on_event_for(i)))
        await asyncio.gather(*(c.request("subscribe", {"topic": topic}) for c in ipcs))
        # Wait until every daemon sees at least one peer in the topic.
        t = time.perf_counter()
        while True:
            counts = await asyncio.gather(*(c.request("topic_peers", {"topic": topic}) for c in ipcs))
            if all(c["peers"] for c in counts) or time.perf_counter() - t > 60:
                break
            await asyncio.sleep(0.5)
        mesh_s = time.perf_counter() - t
        lonely = sum(1 for c in counts if not c["peers"])
        await asyncio.sleep(3)  # a few heartbeats
        peers = await asyncio.gather(*(c.request("status") for c in ipcs))
        avg_peers = sum(p["peers"] for p in peers) / n
        # Idle: resident memory and CPU over 10 s with every connection open.
        rss_mb = sum(rss_kb(d.proc.pid) for d in daemons) / 1024
        ticks0 = sum(cpu_ticks(d.proc.pid) for d in daemons)
        idle_s = 10
        await asyncio.sleep(idle_s)
        ticks = sum(cpu_ticks(d.proc.pid) for d in daemons) - ticks0
        idle_cpu_pct = 100.0 * ticks / CLK_TCK / idle_s
        # One message to all, five times, one second apart.
        msgs = 5
        sent_at = {}
        for k in range(msgs):
            data = struct.pack(">I", k).ljust(256, b"x")
            sent_at[k] = time.perf_counter()
            await ipcs[0].publish(topic, data)
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        lat_ms = [(t - sent_at[k]) * 1000 for k, got in arrivals.items() for i, t in got.items() if i != 0]
        delivered = len(lat_ms)
        expected = msgs * (n - 1)
        if delivered < expected:
            raise RuntimeError(f"{n} daemons: delivered {delivered} of {expected} messages")
        all_ms = [max(got[i] for i in got if i != 0) - sent_at[k] for k, got in arrivals.items() if len(got) >= n - 1]
        res = {
            "nodes": n,
            "start_all_s": round(start_all_s, 2),
            "mesh_s": round(mesh_s, 2),
            "nodes_without_topic_peer": lonely,
            "avg_connected_peers": round(avg_peers, 1),
            "rss_total_mb": round(rss_mb, 1),
            "rss_per_node_mb": round(rss_mb / n, 1),
            "idle_cpu_pct_of_one_core": round(idle_cpu_pct, 2),
            "delivery_ratio": round(delivered / expected, 4),
            "latency_ms": dist(lat_ms, 2),
            "to_all_ms": dist([x * 1000 for x in all_ms], 2),
        }
        say(
            f"{n} daemons: started in {res['start_all_s']} s, RSS {res['rss_total_mb']} MB, idle CPU "
            f"{res['idle_cpu_pct_of_one_core']}%, delivered {delivered}/{expected}, p50 {res['latency_ms'].get('median')} ms"
        )
        return res
    finally:
        for c in ipcs:
            try:
                await c.close()
            except Exception:
                pass
        await asyncio.gather(*(d.stop() for d in daemons))


# ---------------------------------------------------------------------------
# 7. recovery
# ---------------------------------------------------------------------------


async def recovery(env: Env) -> dict:
    reps = 2 if env.quick else 5
    b, api_b, st_b, _, hb = await _host_pair(env, "rec-b")
    samples = []
    try:
        addr_b = [x for x in st_b["listen_addrs"] if "/tcp/" in x][0]
        await hb.json("POST", "/api/topics/rec/subscribe")
        for i in range(reps):
            await sample_gate(env)
            r = await guarded(f"recovery {i}", _recover_once(env, api_b, addr_b, i))
            if "skipped" in r:
                return r
            samples.append(r)
            say(
                f"kill -9 → serving {r['serving_ms']:.0f} ms, → first A→B message {r['first_ab_ms']:.0f} ms, "
                f"→ first B→A message {r['first_ba_ms']:.0f} ms"
            )
    finally:
        await b.stop()
    keys = ("serving_ms", "first_ab_ms", "first_ba_ms", "health_ms")
    return {"reps": reps, **{k: dist([s[k] for s in samples if s.get(k) is not None]) for k in keys}}


async def _recover_once(env: Env, api_b: str, addr_b: str, i: int) -> dict:
    a, api_a, st_a, _, ha = await _host_pair(env, f"rec-a{i}", bootstrap_to=addr_b)
    stop = asyncio.Event()
    got_b: list[tuple[int, float]] = []  # (seq published by A, arrival at B)
    got_a: list[tuple[int, float]] = []  # (seq published by B, arrival at A)
    pub_times_a: dict[int, float] = {}
    pub_times_b: dict[int, float] = {}
    tasks = []
    try:
        await ha.json("POST", "/api/topics/rec/subscribe")
        # A must see B in the topic before the kill.
        t = time.perf_counter()
        while time.perf_counter() - t < 20:
            _, topics = await ha.json("GET", "/api/topics")
            if any(x["topic"] == "rec" and x["peers"] > 0 for x in topics or []):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)

        async def listen(api, sink, origin):
            url = api.replace("http://", "ws://") + "/api/events"
            async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
                async for raw in ws:
                    f = json.loads(raw)
                    if f.get("type") == "message" and f.get("topic") == "rec":
                        data = base64.b64decode(f["data"])
                        if data[:1] == origin:
                            sink.append((struct.unpack(">I", data[1:5])[0], time.perf_counter()))

        async def publisher(api, origin, times):
            http = Http.for_api(api)
            seq = 0
            while not stop.is_set():
                times[seq] = time.perf_counter()
                try:
                    await http.call("POST", "/api/topics/rec/publish", origin + struct.pack(">I", seq), timeout=2)
                except Exception:
                    pass
                seq += 1
                await asyncio.sleep(0.01)
            http.close()

        tasks = [
            asyncio.ensure_future(listen(api_b, got_b, b"A")),
            asyncio.ensure_future(listen(api_a, got_a, b"B")),
        ]
        await asyncio.sleep(0.3)
        tasks += [
            asyncio.ensure_future(publisher(api_a, b"A", pub_times_a)),
            asyncio.ensure_future(publisher(api_b, b"B", pub_times_b)),
        ]
        await asyncio.sleep(1.0)
        if not got_b or not got_a:
            raise RuntimeError("messages did not flow both ways before the kill")
        old_pid = st_a["daemon"]["pid"]
        killed = time.perf_counter()
        os.kill(old_pid, 9)
        serving = health = None
        probe = Http.for_api(api_a)
        while time.perf_counter() - killed < 30 and (serving is None or health is None):
            try:
                if serving is None:
                    _, st = await probe.json("GET", "/api/status", timeout=1)
                    d = st.get("daemon", {})
                    if d.get("state") == "running" and d.get("pid") not in (None, old_pid):
                        serving = time.perf_counter()
                if serving is not None and health is None:
                    status, _ = await probe.call("GET", "/healthz", timeout=1)
                    if status == 200:
                        health = time.perf_counter()
            except Exception:
                pass
            await asyncio.sleep(0.002)
        # The first message published after the kill, A→B (queued in A's
        # outbox meanwhile) and B→A (lost by gossipsub while A is away).
        deadline = time.perf_counter() + 15
        first_ab = first_ba = None
        while time.perf_counter() < deadline and (first_ab is None or first_ba is None):
            if first_ab is None:
                after = [t for s, t in got_b if pub_times_a.get(s, 0) > killed]
                first_ab = min(after) if after else None
            if first_ba is None:
                after = [t for s, t in got_a if pub_times_b.get(s, 0) > killed]
                first_ba = min(after) if after else None
            await asyncio.sleep(0.01)
        if serving is None:
            raise RuntimeError("the host did not report a running daemon within 30 s of the kill")
        ms = lambda t: None if t is None else (t - killed) * 1000  # noqa: E731
        return {
            "serving_ms": ms(serving),
            "health_ms": ms(health),
            "first_ab_ms": ms(first_ab) if first_ab else float("nan"),
            "first_ba_ms": ms(first_ba) if first_ba else float("nan"),
        }
    finally:
        stop.set()
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        await a.stop()
