"""Render the results of one bench run as docs/BENCHMARKS.md."""

from __future__ import annotations

import math
from pathlib import Path

FINDINGS = Path(__file__).resolve().parents[1] / "FINDINGS.md"


def f(x, nd=1, unit=""):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, float)):
        if abs(x) >= 1000:
            s = f"{x:,.0f}"
        elif nd == 0:
            s = f"{x:.0f}"
        else:
            s = f"{x:.{nd}f}"
        return s + unit
    return str(x)


def us(x):
    """µs, shown as ms above 10 ms."""
    if x is None:
        return "–"
    if x >= 10_000:
        return f"{x / 1000:,.1f} ms"
    return f"{x:,.0f} µs" if x >= 100 else f"{x:.1f} µs"


def ratio(hive, anchor, lower_is_better=True):
    """'0.42× (Hive ahead)' style; ratio is Hive/anchor."""
    if not hive or not anchor or any(isinstance(v, float) and math.isnan(v) for v in (hive, anchor)):
        return "–", "–"
    r = hive / anchor
    if abs(r - 1) < 0.03:
        ahead = "even"
    elif (r < 1) == lower_is_better:
        ahead = "**Hive**"
    else:
        ahead = "anchor"
    return f"{r:.2f}×", ahead


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _not_run(s) -> str:
    return f"skipped: {s['skipped']}\n" if s else "not run (`--only`).\n"


def skipped(row):
    return isinstance(row, dict) and "skipped" in row


def met(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def render(res: dict) -> str:
    m = res["machine"]
    w = res["workloads"]
    out = []
    out.append("# Benchmarks\n")
    when = res.get("when") or {}
    inv = res.get("invocations") or [m["date"]]
    at = ", ".join(f"{k} {v[11:16]}" for k, v in when.items())
    if len(inv) > 1:
        runs = f"in {len(inv)} invocations merged with `--merge` ({', '.join(inv)}); workloads started at: {at}"
    else:
        runs = f"in one invocation started {inv[0]}" + (f" (workloads started at: {at} UTC)" if at else "")
    out.append(
        f"Produced by `bench/run` (mode: **{res['mode']}**) {runs}. Within a workload, Hive and each anchor were "
        "measured on the same machine one after another (or paired, where said), one workload at a time. "
        "Regenerate with `bench/run` (full, about 25 minutes after the build, plus any wait for an idle machine) "
        "or `bench/run --quick` (CI, under 5 minutes, writes target/BENCHMARKS-quick.md).\n"
    )
    out.append("## Machine and versions\n")
    js = m["js"] if isinstance(m["js"], str) else ", ".join(f"{k} {v}" for k, v in m["js"].items())
    out.append(
        table(
            ["", ""],
            [
                ["CPU", f"{m['cpu']}, {m['nproc']} cores (nproc), {m['memory_gib']} GiB"],
                ["kernel", m["kernel"]],
                ["Hive", f"{m['hive_p2pd']}, commit {m.get('source') or m['commit']}, release build ({m['rustc']})"],
                ["go anchor", m["go_p2pd"]],
                ["js anchor", f"{js} on Node {m['node']}"],
                ["py-libp2p anchor", f"libp2p {m['py_libp2p']} (PyPI) on Python {m['python']}"],
                ["clients", "hbench (bench/rust, tokio-tungstenite, one thread); bench/hivebench (Python asyncio, "
                 "one hand-written client of the go-daemon control protocol for every daemon)"],
            ],
        )
    )
    load = res.get("load") or {}
    if load:
        out.append(
            "\nOther processes' share of the machine (2 cores = 100 %) while each workload ran, measured from "
            "/proc/stat minus the bench's own processes; a full run first waits for the machine to be idle: "
            + ", ".join(f"{k} {v['foreign_cpu_pct']:.1f} %" for k, v in load.items())
            + ". Figures from workloads with more than a few % are noisier than the rest.\n"
        )
    out.append("")
    out.append(targets(w))
    out.append(startup(w.get("startup")))
    out.append(ipc(w.get("ipc")))
    out.append(streams(w.get("streams")))
    out.append(pubsub(w.get("pubsub")))
    out.append(host(w.get("host")))
    out.append(scale(w.get("scale")))
    out.append(recovery(w.get("recovery")))
    out.append(catchup(w.get("catchup")))
    out.append(inbound(w.get("inbound")))
    out.append(skips(w))
    out.append(method())
    if FINDINGS.exists():
        out.append(FINDINGS.read_text().strip() + "\n")
    t = res.get("timing_s", {})
    out.append(
        "_Run time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in t.items())
        + "._\n"
    )
    return "\n".join(out)


# --- targets ----------------------------------------------------------------


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def targets(w) -> str:
    rows = []
    su = _get(w, "startup", "rows", "hive")
    if su and not skipped(su):
        r = su["ready_ms"]["median"]
        rows.append(["hive-p2pd ready ≤ 30 ms", f"median {f(r)} ms, max {f(su['ready_ms']['max'])} ms", met(r <= 30)])
        mem = su["rss_mb"]["median"]
        rows.append(["hive-p2pd idle ≤ 15 MB RSS", f"median {f(mem)} MB (2 s after ready)", met(mem <= 15)])
    ipc_ = _get(w, "ipc", "ws")
    if ipc_ and not skipped(ipc_.get("hive@1", {})) and not skipped(ipc_.get("echo@1", {})):
        h, e = ipc_["hive@1"], ipc_["echo@1"]
        r50, r99 = h["p50_us"] / e["p50_us"], h["p99_us"] / e["p99_us"]
        rr = ipc_.get("ratio@1")
        if rr:  # the median of per-round ratios (rounds interleave both servers)
            r50, r99 = rr["median"], rr["p99_median"]
        spread = f" (rounds {rr['min']:.2f}–{rr['max']:.2f}×)" if rr else ""
        r64 = ipc_.get("ratio@64")
        more = f"; 64 in flight p50 {r64['median']:.2f}×" if r64 else ""
        rows.append(
            [
                "IPC round trip within 1.5× a bare WebSocket echo",
                f"1 in flight: p50 {us(h['p50_us'])} vs {us(e['p50_us'])}, {r50:.2f}×{spread}, p99 {r99:.2f}×{more}",
                met(r50 <= 1.5 and r99 <= 1.5),
            ]
        )
    st = w.get("streams") or {}
    if st.get("hive") and st.get("go") and not skipped(st["hive"]) and not skipped(st["go"]):
        h, g = st["hive"]["bulk_mib_s"]["median"], st["go"]["bulk_mib_s"]["median"]
        rows.append(["stream throughput ≥ 1.5× go", f"{f(h, 0)} vs {f(g, 0)} MiB/s = {h / g:.2f}×", met(h >= 1.5 * g)])
        he, ge = st["hive"]["echo"], st["go"]["echo"]
        rows.append(
            [
                "1 KiB echo latency ≤ go",
                f"p50 {us(he['p50_us'])} vs {us(ge['p50_us'])}; p99 {us(he['p99_us'])} vs {us(ge['p99_us'])}",
                met(he["p50_us"] <= ge["p50_us"] and he["p99_us"] <= ge["p99_us"]),
            ]
        )
    two = _get(w, "pubsub", "two") or {}
    hc, gc, hi, py = (two.get(k) for k in ("hive-control", "go-control", "hive-ipc", "py-libp2p"))
    if hc and gc and not skipped(hc) and not skipped(gc):
        a, b = hc["max_no_loss_rate"], gc["max_no_loss_rate"]
        note = " (Hive: publishing could go no faster, nothing lost)" if hc.get("publisher_bound") else ""
        rows.append(
            [
                "pubsub rate ≥ 2× go (same client, control protocol)",
                f"{f(a, 0)}/s vs {f(b, 0)}/s = {a / b:.1f}×{note}" if b else f"{a}/s vs {b}/s",
                met(b and a >= 2 * b),
            ]
        )
    if hi and py and not skipped(hi) and not skipped(py):
        a, b = hi["max_no_loss_rate"], py["max_no_loss_rate"]
        p_h, p_p = hi["latency"].get("p99_us"), py["latency"].get("p99_us")
        rows.append(
            [
                "pubsub rate ≥ 10× py-libp2p, lower p99 (Hive via its IPC)",
                f"{f(a, 0)}/s vs {f(b, 0)}/s = {a / b:.1f}×; p99 {us(p_h)} vs {us(p_p)}" if b else "–",
                met(b and a >= 10 * b and p_h < p_p),
            ]
        )
    rec = w.get("recovery")
    if rec and not skipped(rec):
        s = rec["serving_ms"]
        rows.append(
            [
                "recovery (kill -9 → serving) ≤ 500 ms",
                f"median {f(s['median'], 0)} ms, max {f(s['max'], 0)} ms; first message after it: median "
                f"{f(rec['first_ab_ms'].get('median'), 0)} ms",
                met(s["max"] <= 500),
            ]
        )
    sr = _get(w, "inbound", "store_vs_receive")
    if sr and not skipped(sr) and sr.get("ratio") is not None:
        rows.append(
            [
                "inbound store rate ≥ daemon receive rate",
                f"{f(sr['store_rate'], 0)}/s stored vs {f(sr['daemon_receive_rate'], 0)}/s received = {sr['ratio']:.2f}×; "
                f"lost {sr['lost']}",
                met(sr["ratio"] >= 1 and sr["lost"] == 0),
            ]
        )
    return "## Targets\n\n" + table(["target", "measured", "verdict"], rows) + "\n"


# --- sections -------------------------------------------------------------------


def startup(s) -> str:
    head = "## 1. Start-up and idle memory\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    rows = []
    h = s["rows"].get("hive")
    for kind, r in s["rows"].items():
        if skipped(r):
            rows.append([r["label"], f"skipped: {r['skipped']}", "", "", "", "", "", ""])
            continue
        if kind.startswith("hive") or not h or skipped(h):
            rr = ("", "")
        else:
            rr = ratio(h["ready_ms"]["median"], r["ready_ms"]["median"])
        mr = ("", "") if kind.startswith("hive") or not h or skipped(h) else ratio(h["rss_mb"]["median"], r["rss_mb"]["median"])
        rows.append(
            [
                r["label"],
                f"{f(r['ready_ms']['median'])} / {f(r['ready_ms']['max'])}",
                f(r["first_answer_ms"]["median"]),
                f"{f(r['rss_mb']['median'])} / {f(r['rss_mb']['max'])}",
                f"{f(_get(r, 'anon_mb', 'median'))} / {f(_get(r, 'file_mb', 'median'))}",
                f"{rr[0]} {rr[1]}".strip(),
                f"{mr[0]} {mr[1]}".strip(),
            ]
        )
    return (
        head
        + f"Process start to ready, {s['reps']} starts each (interleaved), fresh data directory each time. "
        "Ready = the daemon's ready line on stdout; first answer = the first `status` (IPC) or IDENTIFY "
        "(control socket) answered. RSS = VmRSS 2 s after ready, pubsub on, no peers. "
        "With 10 samples the p99 is the maximum.\n\n"
        + table(
            ["daemon", "ready ms, median / max", "first answer ms, median", "idle RSS MB, median / max",
             "of which anon / file-backed MB", "ready, Hive/anchor", "RSS, Hive/anchor"],
            rows,
        )  # fmt: skip
        + "\n"
    )


def ipc(s) -> str:
    head = "## 2. IPC round trip\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    rows = []
    for inflight in (1, 64):
        e = s["ws"].get(f"echo@{inflight}")
        for name, label in (
            ("hive", "Hive IPC, `status` (hbench)"),
            ("hive-noop", "Hive IPC, unknown op: answered without the node"),
            ("echo", "bare tokio-tungstenite echo (hbench)"),
        ):
            r = s["ws"].get(f"{name}@{inflight}")
            if not r or skipped(r):
                rows.append([label, inflight, f"skipped: {r and r.get('skipped')}", "", "", "", ""])
                continue
            rr = ratio(r["p50_us"], e["p50_us"]) if name != "echo" and e and not skipped(e) else ("", "")
            paired = s["ws"].get(f"{name}-ratio@{inflight}")
            if paired:
                rr = ratio(paired["median"], 1.0)
            rows.append(
                [
                    label, inflight, us(r["p50_us"]), us(r["p99_us"]), f(r["rps"], 0),
                    f"p50 {us(r['p50_spread'][0])}–{us(r['p50_spread'][1])}, {f(r['rps_spread'][0], 0)}–{f(r['rps_spread'][1], 0)}/s",
                    f"{rr[0]} {rr[1]}".strip(),
                ]
            )  # fmt: skip
    for inflight in (1, 64):
        g = s["control"].get(f"go@{inflight}")
        for kind, label in (("hive", "hive-p2pd control socket, IDENTIFY (Python)"), ("go", "go p2pd control socket, IDENTIFY (Python)")):
            r = s["control"].get(f"{kind}@{inflight}")
            if not r or skipped(r):
                rows.append([label, inflight, f"skipped: {r and r.get('skipped')}", "", "", "", ""])
                continue
            rr = ratio(r["p50_us"], g["p50_us"]) if kind == "hive" and g and not skipped(g) else ("", "")
            rows.append(
                [
                    label, inflight, us(r["p50_us"]), us(r["p99_us"]), f(r["rps"], 0),
                    f"p50 {us(r['p50_spread'][0])}–{us(r['p50_spread'][1])}, {f(r['rps_spread'][0], 0)}–{f(r['rps_spread'][1], 0)}/s",
                    f"{rr[0]} {rr[1]}".strip(),
                ]
            )  # fmt: skip
    return (
        head
        + f"WebSocket: {f(s['count'], 0)} requests per run after 500 of warm-up, on one connection, over loopback TCP; "
        f"control socket: {f(s['control_count'], 0)} IDENTIFY requests per run, a new Unix-socket connection each "
        f"(as p2pclient does; hive-p2pd serves one request per connection). Medians of {s['reps']} run(s), each "
        "against freshly started servers. One in flight: one request at a time, and on this virtual machine the "
        "wake-up of an idle vCPU costs tens of µs, so the p50 of every server, the echo included, moves between "
        "about 11 and 75 µs from run to run with how idle the machine is; hbench therefore alternates request by "
        "request between Hive and the echo server (paired), req/s there is 1/p50, and the ratio is the median of "
        "the rounds' ratios (range in the targets table). 64 in flight: separate runs, interleaved. Spread = "
        "min–max of the runs' p50 and req/s. Ratio = Hive/reference on p50 (reference: the echo server for the "
        "WebSocket, the go daemon for the control socket).\n\n"
        + table(["path", "in flight", "p50", "p99", "req/s", "spread over runs", "p50, Hive/ref"], rows)
        + "\n"
    )


def streams(s) -> str:
    head = "## 3. Streams through two daemons\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    g = s.get("go") if s.get("go") and not skipped(s.get("go")) else None
    rows = []
    ratios = s.get("ratios") or {}
    for kind, label in (("hive", "hive-p2pd ↔ hive-p2pd"), ("go", "go p2pd ↔ go p2pd")):
        r = s.get(kind)
        if not r or skipped(r):
            rows.append([label, f"skipped: {r and r.get('skipped')}", "", "", "", "", "", ""])
            continue
        b = r["bulk_mib_s"]
        e1 = ratio(r["echo"]["p50_us"], g["echo"]["p50_us"]) if kind == "hive" and g else ("", "")
        b1 = ratio(b["median"], g["bulk_mib_s"]["median"], lower_is_better=False) if kind == "hive" and g else ("", "")
        if kind == "hive" and ratios:
            e1 = ratio(ratios["echo_p50"]["median"], 1.0)
            e1 = (f"{e1[0]} ({ratios['echo_p50']['min']:.2f}–{ratios['echo_p50']['max']:.2f})", e1[1])
            b1 = ratio(ratios["bulk"]["median"], 1.0, lower_is_better=False)
            b1 = (f"{b1[0]} ({ratios['bulk']['min']:.2f}–{ratios['bulk']['max']:.2f})", b1[1])
        rows.append(
            [
                label, f(r["connect_ms"]),
                us(r["echo"]["p50_us"]) + (f" ({us(r['echo']['p50_spread'][0])}–{us(r['echo']['p50_spread'][1])})" if r.get("reps", 1) > 1 else ""),
                us(r["echo"]["p99_us"]),
                f"{f(b['median'], 0)} ({f(b['min'], 0)}–{f(b['max'], 0)}, n={b['n']})",
                " / ".join(f(x, 2) for x in r.get("cpu_s_per_gib", [])) or "–",
                f"{e1[0]} {e1[1]}".strip(), f"{b1[0]} {b1[1]}".strip(),
            ]
        )  # fmt: skip
    bulk = next((s[k]["bulk_mib"] for k in ("hive", "go") if s.get(k) and not skipped(s[k])), "?")
    n = next((s[k]["echo"]["n"] for k in ("hive", "go") if s.get(k) and not skipped(s[k])), "?")
    return (
        head
        + "Two daemons of the same kind on loopback (TCP, Noise, Yamux), driven by the same Python client; "
        f"{next((s[k].get('reps', 1) for k in ('hive', 'go') if s.get(k) and not skipped(s[k])), 1)} round(s), each "
        "with a fresh pair of each kind; the echo alternates message by message between the Hive pair and the go "
        "pair (on this VM a lone round trip swings with vCPU wake-ups, pairing cancels that out of the ratio), "
        "then the bulk transfers run one after the other. Medians over the rounds (range of the p50, and of the "
        "per-round Hive/go ratios, in brackets). "
        f"STREAM_HANDLER on B (an echo and a sink handler in Python), STREAM_OPEN from A. Echo: {n} round trips "
        f"of 1 KiB on one open stream. Bulk: {bulk} MiB one way in one stream, timed until the sink has every byte "
        "(median, min–max of the runs). The client, the handler and both daemons share the 2 cores.\n\n"
        + table(
            ["pair", "CONNECT ms", "echo p50", "echo p99", "bulk MiB/s", "daemon CPU s per GiB, sender / receiver",
             "echo p50, Hive/go", "bulk, Hive/go"],
            rows,
        )
        + "\n"
    )


def _fail_reason(r) -> str:
    sw = r.get("sweep") or []
    if not sw:
        return "–"
    last = sw[-1]
    if r.get("publisher_bound"):
        return (
            f"at {f(last['rate'], 0)}/s publishing reached only {f(last['achieved_rate'], 0)}/s "
            "(all delivered in time)"
        )
    if last.get("no_loss") and last.get("delivered_in_time") and last.get("kept_pace"):
        return "none up to the top step"
    why = []
    lost = last["sent"] * (last.get("receivers") or 1) - last["received"]
    if last.get("errors"):
        err = (r.get("first_error") or last.get("first_error") or "")[:80]
        why.append(f"{f(last['errors'], 0)} publish errors" + (f" (`{err}`)" if err else ""))
    if not last.get("no_loss") and lost > 0:
        why.append(f"{f(lost, 0)} lost")
    if last.get("no_loss") and not last.get("delivered_in_time"):
        why.append("backlog (delivery fell behind)")
    if not last.get("kept_pace"):
        why.append(f"publisher reached {f(last['achieved_rate'], 0)}/s")
    return f"at {f(last['rate'], 0)}/s: " + ", ".join(why or ["?"])


def _pubsub_table(rows_in: dict, refs: dict) -> str:
    rows = []
    for key, r in rows_in.items():
        label = r.get("label", key)
        if skipped(r):
            rows.append([label, f"skipped: {r['skipped']}", "", "", "", "", "", ""])
            continue
        lat = r["latency"]
        cmp = []
        for ref_key, ref_name in refs.items():
            ref = rows_in.get(ref_key)
            if key == ref_key or key.split("-")[0] != "hive" or not ref or skipped(ref):
                continue
            a = ratio(r["max_no_loss_rate"], ref["max_no_loss_rate"], lower_is_better=False)
            b = ratio(lat.get("p99_us"), ref["latency"].get("p99_us"))
            cmp.append(f"vs {ref_name}: rate {a[0]} {a[1]}, p99 {b[0]} {b[1]}")
        rows.append(
            [
                label, us(lat.get("p50_us")), us(lat.get("p99_us")),
                f"{f(r['max_no_loss_rate'], 0)}" + ("+" if r.get("publisher_bound") else ""),
                _fail_reason(r), f(r.get("daemon_cpu_us_per_delivery"), 0), "; ".join(cmp) or "",
            ]
        )  # fmt: skip
    return table(
        ["path", "latency p50", "latency p99", "max rate, no loss (msg/s)", "first failing step",
         "daemons' CPU µs per delivered message", "Hive/anchor"],
        rows,
    )  # fmt: skip


def pubsub(s) -> str:
    head = "## 4. Pubsub\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    two = s.get("two", {})
    lat_note = ""
    sample = next((r for r in two.values() if not skipped(r)), None)
    if sample:
        lat_note = f"{f(sample['latency'].get('sent'), 0)} messages at {f(sample['latency'].get('rate'), 0)}/s"
    steps = next((r["sweep"] for r in two.values() if not skipped(r) and r.get("sweep")), [])
    secs = steps[0]["sent"] / steps[0]["rate"] if steps else 0
    text = (
        head
        + "256 B messages, publisher and subscriber on different nodes, loopback. Latency: publish call to "
        f"delivery to the receiving client, {lat_note} (py-libp2p: 100/s). Rate: a ladder of steps of "
        f"{secs:.1f} s each at a fixed rate; a step passes when every message arrives, no publish fails, the "
        "publisher kept the pace and delivery kept up (the last message arrived within 10 % of the sending "
        "time after the end). The figure is the highest passing step; `+` marks a run that ended because "
        "publishing could not go faster (the client or the daemon's answers to PUBLISH) while everything still "
        "arrived in time: the achieved rate is shown. Hive's host row goes through "
        "`hive up` on both sides (POST on A with 16 keep-alive connections, `/api/events` on B). "
        "Ratios are Hive/anchor (rate: higher is better; p99: lower is better). CPU per delivered message: "
        "CPU time of all daemons of the row over the whole sweep, divided by the messages delivered to "
        "subscribers (hbench rows only).\n\n"
        "Two nodes:\n\n"
        + _pubsub_table(two, {"go-control": "go", "py-libp2p": "py-libp2p"})
        + "\n"
    )
    ten = s.get("ten") or {}
    if ten:
        text += (
            "\nTen nodes (node i connected to i−1 and i/2, one publisher, nine subscribers that must each get "
            "every message):\n\n" + _pubsub_table(ten, {"go-control": "go"}) + "\n"
        )
    return text


def host(s) -> str:
    head = "## 5. Host end to end\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    lat, b = s["latency"], s.get("burst", {})
    rows = [
        ["latency at 200 msg/s (POST on A → event on B's WebSocket)", f"p50 {us(lat.get('p50_us'))}, p90 {us(lat.get('p90_us'))}, p99 {us(lat.get('p99_us'))}, max {us(lat.get('max_us'))} (n={lat.get('n')})"],
        [f"burst of {f(b.get('sent'), 0)} POSTs, 16 connections", f"accepted at {f(b.get('achieved_rate'), 0)}/s; delivered {f(b.get('received'), 0)} at {f(b.get('delivery_rate'), 0)} msg/s"],
        ["burst latency (publish to event)", f"p50 {us(b.get('p50_us'))}, p99 {us(b.get('p99_us'))}"],
        ["`hive up` start to daemon running (host A)", f"{f(s.get('host_ready_ms'))} ms"],
    ]  # fmt: skip
    for mode, a in (s.get("accept") or {}).items():
        label = f"POSTs accepted, `--durability {mode}`, {a.get('conns', 64)} in flight (host A, B subscribed)"
        if skipped(a):
            rows.append([label, a["skipped"]])
        elif "rate" not in a:
            rows.append([label, f"FAILED: {a.get('error', a)}"])
        else:
            lat = a["latency"]
            rows.append([label, f"{f(a['rate'], 0)}/s; POST latency p50 {us(lat.get('p50_us'))}, p99 {us(lat.get('p99_us'))} (n={lat.get('n')})"])
    return head + table(["what", "measured"], rows) + "\n"


def scale(s) -> str:
    head = "## 6. Scale: many hive-p2pd in one gossipsub network\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    rows = []
    for n, r in s.items():
        if skipped(r):
            rows.append([n, f"skipped: {r['skipped']}", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                n, f(r["start_all_s"], 1), f"{f(r['rss_total_mb'], 0)} ({f(r['rss_per_node_mb'])} each)",
                f(r["idle_cpu_pct_of_one_core"], 1), f(r["avg_connected_peers"]),
                f"{r['delivery_ratio'] * 100:.1f} %",
                f"{f(r['latency_ms'].get('median'), 2)} / {f(r['latency_ms'].get('p99'), 2)}",
                f"{f(r['to_all_ms'].get('median'), 2)} / {f(r['to_all_ms'].get('max'), 2)}",
            ]
        )  # fmt: skip
    return (
        head
        + "Daemons started one after another, each bootstrapped to the first and to one earlier daemon; all "
        "subscribe to one topic over the IPC. Idle CPU over 10 s with every connection open, as % of one core "
        "for all daemons together. Then 5 messages of 256 B from the first daemon, 1 s apart. For comparison, "
        "ANCHORS.md records the go daemon on this kind of machine at 2.9 GB for 50 and 6.2 GB for 100 (61 MB "
        "each), idle 5 % of one core for 100 (not measured in this run).\n\n"
        + table(
            ["daemons", "all started, s", "RSS total MB", "idle CPU %", "peers each", "delivered",
             "latency ms p50 / p99", "to all ms p50 / max"],
            rows,
        )  # fmt: skip
        + "\n"
    )


def recovery(s) -> str:
    head = "## 7. Recovery\n\n"
    if not s or skipped(s):
        return head + _not_run(s)

    def row(label, d):
        return [label, f(d.get("median"), 0), f(d.get("max"), 0), d.get("n")]

    return (
        head
        + f"`kill -9` of the daemon under `hive up` (host A), {s['reps']} times, each with a fresh host A "
        "bootstrapped to a running host B; both publish every 10 ms to a topic both subscribe. Times from the "
        "kill. The host's restart backoff starts at 250 ms.\n\n"
        + table(
            ["event", "median ms", "max ms", "n"],
            [
                row("GET /api/status shows a new daemon running", s["serving_ms"]),
                row("GET /healthz answers 200", s["health_ms"]),
                row("first message published by A after the kill arrives at B", s["first_ab_ms"]),
                row("first message published by B after the kill arrives at A", s["first_ba_ms"]),
            ],
        )
        + "\n"
    )


def catchup(s) -> str:
    head = "## 8. Catch-up after being away\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    return (
        head
        + f"Hosts A, B and C share a topic; B (the node the others were bootstrapped from) is stopped with SIGTERM; "
        f"A publishes {s['missed']:,} messages through its API, which C stores; B starts again on its data directory "
        "with its first command line (no dial by the bench). Gossip never repeats a message, so only "
        "`/hive/sync/1.0.0` brings them back. No anchor catches up (go, js and py-libp2p keep what a node missed "
        "nowhere), so this row is Hive's alone.\n\n"
        + table(
            ["missed", "B ready → all stored ms", "messages/s", "B's daemon CPU s", "stored", "fetched (status.sync)"],
            [[f"{s['missed']:,}", f(s.get("caught_up_ms"), 0), s.get("rate_per_s"), s.get("daemon_cpu_s"),
              s.get("stored"), s.get("sync_fetched")]],
        )  # fmt: skip
        + "\n"
    )


def inbound(s) -> str:
    head = "### Store rate against receive rate, and an idle sync round\n\n"
    if not s or skipped(s):
        return head + _not_run(s)
    out = head
    sr = s.get("store_vs_receive") or {}
    if skipped(sr):
        out += "Store rate: " + _not_run(sr)
    else:
        out += (
            f"A bare hive-p2pd publishes a burst of {sr['burst']:,} 64-byte messages as fast as its IPC accepts "
            f"({sr.get('acked', 0):,} acknowledged; it refuses what its gossipsub queues cannot take) "
            "(hbench, 1,000 in flight) to a topic that host B and a bare hive-p2pd S (hbench's receiver) "
            "subscribe to. From B's `/api/status`, sampled every 20 ms: `inbound.received`, the newest number B's "
            "daemon pushed to its host (received and written to its history), and `inbound.position`, the newest "
            "the host stored in its inbox; each rate is the burst over that curve's span. B must store every "
            "acknowledged message exactly once.\n\n"
            + table(
                ["published/s", "B's daemon received/s", "B's host stored/s", "store / receive", "S received/s",
                 "stored / expected", "lost", "gaps seen", "repaired"],
                [[f(sr.get("publish_rate"), 0), f(sr.get("daemon_receive_rate"), 0), f(sr.get("store_rate"), 0),
                  sr.get("ratio"), f(sr.get("bare_daemon_receive_rate"), 0),
                  f"{sr.get('stored')} / {sr.get('expected')}", sr.get("lost"), sr.get("gaps"),
                  sr.get("repaired")]],
            )  # fmt: skip
            + "\n\n"
        )
    idle = s.get("idle_sync") or {}
    if skipped(idle):
        out += "Idle sync round: " + _not_run(idle)
    else:
        out += (
            f"Hosts A and B share {idle['topics']} topics with {idle['messages_per_topic']:,} messages each, "
            f"nothing missing; over {idle['window_s']} s both ran {idle['rounds']} reconciles, one per (peer, topic) "
            "(every 30 s per peer, all its topics on one stream). Bytes: the `/hive/sync/1.0.0` frames both sent "
            "(`status.sync.sent_bytes`). CPU: both daemons over the whole window, heartbeats and pings "
            "included, so an upper bound on what the rounds cost.\n\n"
            + table(
                ["topics", "(peer, topic) reconciles", "bytes each", "daemons' CPU ms in the window",
                 "CPU ms per reconcile (≤)"],
                [[idle["topics"], idle["rounds"], idle["bytes_per_round"], idle["daemons_cpu_ms"],
                  idle["daemons_cpu_ms_per_round"]]],
            )  # fmt: skip
            + "\n"
        )
    return out


def skips(w) -> str:
    items = []

    def walk(prefix, d):
        if isinstance(d, dict):
            if "skipped" in d and isinstance(d["skipped"], str):
                items.append(f"- {prefix}: {d['skipped']}")
                return
            for k, v in d.items():
                walk(f"{prefix} / {k}" if prefix else k, v)

    walk("", w)
    if not items:
        return "## Skipped\n\nNothing was skipped in this run.\n"
    return "## Skipped\n\n" + "\n".join(items) + "\n"


def method() -> str:
    return """## Method

- Everything runs on loopback; bootstrap and mDNS are off (hive-p2pd `--no-mdns`, go `-b=false`); workloads run
  one after another, never in parallel (2 cores).
- The go and js daemons and hive-p2pd with go-style flags are driven by one Python client
  (`bench/hivebench/control.py`, protobuf hand-encoded, `balanced=false` sent so that hivemind's fork accepts
  STREAM_HANDLER), so their rows differ only by the daemon. The Python client is slower than the daemons: its
  figures are upper bounds on latency and lower bounds on rate, and the same for every daemon.
- Hive's own WebSocket IPC and host API are driven by `hbench` (bench/rust), one tokio thread, TCP_NODELAY.
- Percentiles are nearest-rank; with fewer than 100 samples the p99 is the maximum.
"""
