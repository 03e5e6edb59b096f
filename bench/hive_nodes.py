"""`hive up --nodes N`: a whole hive on this machine, through the host.

Starts one host that grows to N nodes (the first and N-1 children, each a
supervised hive-p2pd), and measures: time from start to every node running,
connected peers per node once settled (every node between the connection
manager's watermarks, or after 120 s: then settled_within_s is null),
resident and proportional memory (PSS) of the
host and all its daemons, the daemons' and the host's CPU and the daemons'
context switches over consecutive idle windows of 10 s (the median and every
window) once the hive sat quiet for --quiet-for seconds (and one window just
after it settled), and the
delivery of one message published on the first node to every other node
(read back from each node's stored history, /api/nodes/{id}/messages; the
time is the latest `received_ms` there, on this machine's clock, as polling
a thousand nodes takes seconds itself).
Exits non-zero when the message does not reach every node. Standard
library only.

    python3 bench/hive_nodes.py --hive target-bench/release/hive --nodes 100

Prints one JSON object.
"""

import argparse
import glob
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor


# Seconds after the publish before the first sweep of reads (see below).
POLL_AFTER_S = 3


def call(api, method, path, body=None, timeout=120):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(api + path, data=data, method=method)
    if isinstance(body, dict):
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def switches(pid):
    """Context switches of all the process's threads: each is a wake-up
    (voluntary) or a preemption (involuntary)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def idle_windows(pids, host_pid, seconds, windows):
    """The daemons' and the host's CPU, and the daemons' context switches
    per daemon per second, over consecutive idle windows (the spread is
    part of the result: idle cost varies between windows)."""
    per_s = os.sysconf("SC_CLK_TCK") * seconds
    cpu, host_cpu, wakeups = [], [], []
    for _ in range(windows):
        ticks = sum(cpu_ticks(pid) for pid in pids)
        host_ticks = cpu_ticks(host_pid)
        sw = sum(switches(pid) for pid in pids)
        time.sleep(seconds)
        cpu.append(round(100.0 * (sum(cpu_ticks(pid) for pid in pids) - ticks) / per_s, 1))
        host_cpu.append(round(100.0 * (cpu_ticks(host_pid) - host_ticks) / per_s, 1))
        wakeups.append(round((sum(switches(pid) for pid in pids) - sw) / seconds / max(1, len(pids)), 1))
    return cpu, host_cpu, wakeups


def peers_settled(api, low, high, timeout):
    """Wait until every node is between the watermarks (as the scale test
    does); the peers per node then, and the wait (None: not settled)."""
    t = time.monotonic()
    while True:
        peers = sorted(node["peers"] for node in call(api, "GET", "/api/nodes"))
        if low <= peers[0] and peers[-1] <= high:
            return peers, round(time.monotonic() - t, 1)
        if time.monotonic() - t > timeout:
            return peers, None
        time.sleep(1)


def daemon_received_s(data, sent_ms):
    """Seconds from the publish to each daemon's history row of the bench
    topic, sorted (the author's own row included)."""
    times = []
    for path in glob.glob(os.path.join(data, "**", "history.db"), recursive=True):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            rows = db.execute("SELECT received_ms FROM history WHERE topic = 'hive-bench'").fetchall()
            db.close()
        except sqlite3.Error:
            continue
        times += [(r[0] - sent_ms) / 1000 for r in rows]
    return sorted(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hive", required=True)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--low", type=int, default=8, help="the daemons' low watermark")
    p.add_argument("--high", type=int, default=16, help="the daemons' high watermark")
    p.add_argument("--idle-windows", type=int, default=3, help="idle windows of 10 s measured")
    p.add_argument("--quiet-for", type=float, default=150,
                   help="seconds the settled hive sits quiet before the idle windows")
    args = p.parse_args()
    data = tempfile.mkdtemp(prefix="hive-nodes-bench-")
    t0 = time.monotonic()
    host = subprocess.Popen(
        [args.hive, "up", "--http", "127.0.0.1:0", "--data-dir", data, "--no-mdns",
         "--listen", "/ip4/127.0.0.1/tcp/0", "--nodes", str(args.nodes),
         "--max-nodes", str(max(args.nodes, 4))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    result = {"nodes": args.nodes}
    try:
        api = json.loads(host.stdout.readline())["http"]
        while True:
            nodes = call(api, "GET", "/api/nodes")
            running = [n for n in nodes if n["state"] == "running"]
            if len(running) >= args.nodes:
                break
            if time.monotonic() - t0 > args.timeout:
                raise SystemExit(f"only {len(running)} of {args.nodes} nodes running after {args.timeout} s")
            time.sleep(0.2)
        result["all_running_s"] = round(time.monotonic() - t0, 2)
        pids = [host.pid] + [n["pid"] for n in nodes if n["pid"]]
        # Where the start's CPU went: the host, and the daemons together
        # (each daemon's own time since it started; restarted ones undercount).
        hz = os.sysconf("SC_CLK_TCK")
        result["start_cpu_s"] = {
            "host": round(cpu_ticks(host.pid) / hz, 1),
            "daemons": round(sum(cpu_ticks(pid) for pid in pids[1:]) / hz, 1),
        }
        ids = [n["id"] for n in nodes]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: call(api, "POST", f"/api/nodes/{i}/topics/hive-bench/subscribe", b""), ids))
        peers, settle_s = peers_settled(api, args.low, args.high, 120)
        result["peers_per_node"] = {"min": peers[0], "median": peers[len(peers) // 2], "max": peers[-1]}
        result["settled_within_s"] = settle_s
        result["rss_total_mb"] = round(sum(rss_kib(pid) for pid in pids) / 1024, 1)
        result["rss_per_daemon_mb"] = round(sum(rss_kib(pid) for pid in pids[1:]) / 1024 / max(1, len(pids) - 1), 1)
        result["pss_daemons_mb"] = round(sum(pss_kib(pid) for pid in pids[1:]) / 1024, 1)
        result["rss_host_mb"] = round(rss_kib(host.pid) / 1024, 1)
        # Just settled, then after the hive sat quiet (reconcile rounds of
        # pairs that find nothing back off over about 2 minutes).
        result["settled_idle_cpu_pct_of_one_core"] = idle_windows(pids[1:], host.pid, 10, 1)[0][0]
        time.sleep(args.quiet_for)
        cpu, host_cpu, wakeups = idle_windows(pids[1:], host.pid, 10, args.idle_windows)
        # The median window is the figure; every window is kept.
        result["idle_cpu_pct_of_one_core"] = sorted(cpu)[len(cpu) // 2]
        result["idle_cpu_windows"] = cpu
        result["host_idle_cpu_pct_of_one_core"] = sorted(host_cpu)[len(host_cpu) // 2]
        result["idle_switches_per_daemon_s"] = sorted(wakeups)[len(wakeups) // 2]
        sent = time.monotonic()
        sent_ms = time.time() * 1000
        msg = call(api, "POST", "/api/topics/hive-bench/publish", f"to all {args.nodes}".encode())
        pending = set(ids[1:])
        arrival, stored = {}, {}
        # The times come from `received_ms`, not from the polls: the first
        # sweep waits, so that a thousand reads through the host do not
        # compete with the writes being timed.
        time.sleep(POLL_AFTER_S)
        while pending and time.monotonic() - sent < 60:
            def has(i):
                page = call(api, "GET", f"/api/nodes/{i}/messages?topic=hive-bench&limit=10")
                return i, [m for m in page["messages"] if m.get("id") == msg["id"]]
            with ThreadPoolExecutor(16) as pool:
                for i, found in pool.map(has, list(pending)):
                    if found:
                        pending.discard(i)
                        arrival[i] = time.monotonic() - sent
                        # When the node's host stored it (same clock):
                        # a sweep over a thousand nodes takes seconds.
                        stored[i] = (found[0]["received_ms"] - sent_ms) / 1000
            time.sleep(0.1)
        result["delivered"] = f"{len(arrival)}/{len(ids) - 1}"
        result["all_delivered_within_s"] = round(max(stored.values()), 2) if stored else None
        if stored:
            ordered = sorted(stored.values())
            result["delivered_p50_s"] = round(ordered[len(ordered) // 2], 2)
        # Polled, so an upper bound on the time above.
        result["all_seen_by_polling_within_s"] = round(max(arrival.values()), 2) if arrival else None
        # When each daemon stored it in its own history, before the host
        # did: splits the delivery time into gossip (and the daemon's write)
        # and the host's path.
        in_daemons = daemon_received_s(data, sent_ms)
        if in_daemons:
            result["in_daemon_histories"] = len(in_daemons)
            result["daemons_stored_p50_s"] = round(in_daemons[len(in_daemons) // 2], 2)
            result["daemons_stored_all_within_s"] = round(in_daemons[-1], 2)
    finally:
        host.terminate()
        try:
            host.wait(30)
        except subprocess.TimeoutExpired:
            host.kill()
    print(json.dumps(result))
    if result.get("delivered") != f"{args.nodes - 1}/{args.nodes - 1}":
        print(f"hive_nodes: the message reached {result.get('delivered')} nodes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
