"""py-libp2p anchor for the pubsub workload: two py-libp2p hosts in one trio
process (the stack Hive replaces), gossipsub between them on loopback, 256 B
messages published on A and received on B. Run with the py-libp2p venv:

    python py_libp2p_pubsub.py --lat-count 1000 --lat-rate 200 --rates 250,500,1000 --secs 3

Prints one JSON object, shaped like `hbench ipc-pubsub`'s.
py-libp2p's own spam protection (10 messages/s per topic by default) is
turned off: the bench measures the stack, not that setting.
"""

import argparse
import json
import struct
import sys
import time

import multiaddr
import trio

from libp2p import new_host
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

GOSSIPSUB = "/meshsub/1.1.0"
T0 = time.perf_counter_ns()


def now_ns() -> int:
    return time.perf_counter_ns() - T0


def summary(lat):
    if not lat:
        return {"n": 0}
    lat = sorted(lat)

    def pick(q):
        return round(lat[round((len(lat) - 1) * q)], 1)

    return {
        "n": len(lat),
        "p50_us": pick(0.5),
        "p90_us": pick(0.9),
        "p99_us": pick(0.99),
        "max_us": pick(1.0),
        "min_us": pick(0.0),
    }


def make_node():
    host = new_host()
    gs = GossipSub(
        protocols=[GOSSIPSUB],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=1,
        spam_protection_enabled=False,
    )
    return host, gs, Pubsub(host, gs)


async def main(args):
    (ha, ga, pa), (hb, gb, pb_) = make_node(), make_node()
    received: dict[int, list] = {}
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with ha.run(listen_addrs=listen), hb.run(listen_addrs=listen):
        async with background_trio_service(pa), background_trio_service(ga):
            async with background_trio_service(pb_), background_trio_service(gb):
                await pa.wait_until_ready()
                await pb_.wait_until_ready()
                sub_b = await pb_.subscribe(args.topic)
                await pa.subscribe(args.topic)
                t = time.perf_counter()
                addr = f"{hb.get_addrs()[0]}"
                if "/p2p/" not in addr:
                    addr += f"/p2p/{hb.get_id()}"
                await ha.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
                connect_ms = (time.perf_counter() - t) * 1000
                # Wait until B is in A's view of the topic, then a heartbeat.
                for _ in range(400):
                    if hb.get_id() in pa.peer_topics.get(args.topic, set()):
                        break
                    await trio.sleep(0.05)
                await trio.sleep(1.5)

                async def receiver():
                    while True:
                        msg = await sub_b.get()
                        data = msg.data
                        if len(data) < 16:
                            continue
                        run, _seq, sent = struct.unpack(">IIQ", data[:16])
                        e = received.setdefault(run, [0, [], 0.0])
                        e[0] += 1
                        e[1].append((now_ns() - sent) / 1000)
                        e[2] = time.perf_counter()

                async def paced(run, n, rate):
                    errors = 0
                    start = time.perf_counter()
                    for seq in range(n):
                        due = start + seq / rate
                        delay = due - time.perf_counter()
                        if delay > 0:
                            await trio.sleep(delay)
                        data = struct.pack(">IIQ", run, seq, now_ns()).ljust(args.size, b"x")
                        try:
                            await pa.publish(args.topic, data)
                        except Exception:
                            errors += 1
                    send_secs = time.perf_counter() - start
                    last, last_t = -1, time.perf_counter()
                    while True:
                        count = received.get(run, [0, []])[0]
                        if count >= n:
                            break
                        if count != last:
                            last, last_t = count, time.perf_counter()
                        elif time.perf_counter() - last_t > args.grace:
                            break
                        await trio.sleep(0.01)
                    count, lat, last_at = received.pop(run, [0, [], 0.0])
                    out = summary(lat)
                    achieved = n / send_secs
                    in_time = False
                    if count:
                        secs = last_at - start
                        out["delivery_rate"] = round(count / secs)
                        in_time = secs <= send_secs * 1.1 + 0.05
                    out.update(
                        rate=rate,
                        sent=n,
                        received=count,
                        errors=errors,
                        achieved_rate=round(achieved),
                        no_loss=count == n and errors == 0,
                        delivered_in_time=in_time,
                        kept_pace=achieved >= 0.95 * rate,
                    )
                    return out

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receiver)
                    await paced(0, 50, 100.0)
                    latency = await paced(1, args.lat_count, args.lat_rate)
                    sweep, best, bound = [], 0.0, False
                    for i, rate in enumerate(args.rates):
                        r = await paced(2 + i, max(1, round(rate * args.secs)), rate)
                        print(
                            f"  rate {rate}/s: sent {r['sent']}, received {r['received']}, "
                            f"errors {r['errors']}, achieved {r['achieved_rate']}/s, "
                            f"delivered in time: {str(r['delivered_in_time']).lower()}",
                            file=sys.stderr,
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
                    nursery.cancel_scope.cancel()
    print(
        json.dumps(
            {
                "latency": latency,
                "sweep": sweep,
                "max_no_loss_rate": best,
                "publisher_bound": bound,
                "connect_ms": round(connect_ms, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--topic", default="bench")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--lat-count", type=int, default=1000)
    p.add_argument("--lat-rate", type=float, default=200.0)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[250, 500, 1000, 2000])
    p.add_argument("--secs", type=float, default=3.0)
    p.add_argument("--grace", type=float, default=3.0)
    args = p.parse_args()
    trio.run(main, args)
    # py-libp2p may leave non-daemon threads behind; do not wait for them.
    sys.stdout.flush()
    import os

    os._exit(0)
