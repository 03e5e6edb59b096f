"""Entry point of the bench driver (bench/run calls it):

    python -m hivebench [--quick] [--only startup,ipc,...] [--results FILE] [--report FILE]

Paths come from the environment that bench/run sets: HIVE_BENCH_BIN_DIR,
HIVE_BENCH_HBENCH, HIVE_BENCH_GO_P2PD / _GO_SKIP, HIVE_BENCH_JS / _JS_SKIP,
HIVE_BENCH_PYLIBP2P / _PYLIBP2P_SKIP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import catchup, inbound, report, workloads
from .common import ROOT, Env, LoadMeter, cleanup, quiet_gate

ORDER = ["startup", "ipc", "pubsub", "recovery", "catchup", "inbound", "streams", "host", "scale"]


def env_from_os(quick: bool) -> Env:
    def path(var):
        v = os.environ.get(var, "")
        return Path(v) if v else None

    return Env(
        quick=quick,
        bin_dir=Path(os.environ.get("HIVE_BENCH_BIN_DIR", ROOT / "target-bench" / "release")),
        hbench=Path(os.environ.get("HIVE_BENCH_HBENCH", ROOT / "target-bench" / "hbench" / "release" / "hbench")),
        go_p2pd=path("HIVE_BENCH_GO_P2PD"),
        go_skip=os.environ.get("HIVE_BENCH_GO_SKIP", "the go daemon was not fetched"),
        js_start=path("HIVE_BENCH_JS"),
        js_skip=os.environ.get("HIVE_BENCH_JS_SKIP", "the js daemon was not installed"),
        pylibp2p_python=path("HIVE_BENCH_PYLIBP2P"),
        pylibp2p_skip=os.environ.get("HIVE_BENCH_PYLIBP2P_SKIP", "py-libp2p was not installed"),
    )


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        return f"unavailable ({e.__class__.__name__})"


def machine(env: Env) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    pylibp2p = "not installed"
    if env.pylibp2p_python:
        pylibp2p = sh([str(env.pylibp2p_python), "-c", "import importlib.metadata as m; print(m.version('libp2p'))"])
    js_versions = {}
    if env.js_start:
        for pkg in ("@libp2p/daemon-server", "libp2p", "@libp2p/gossipsub"):
            pj = env.js_start.parent / "node_modules" / pkg / "package.json"
            try:
                js_versions[pkg] = json.loads(pj.read_text())["version"]
            except OSError:
                pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory_gib": round(mem_kb / (1 << 20), 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        # Set by whoever built the binaries elsewhere (HIVE_BENCH_BIN_DIR).
        "source": os.environ.get("HIVE_BENCH_SOURCE", ""),
        "tree_dirty": bool(sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates"])),
        "bin_dir": str(env.bin_dir),
        "hive_p2pd": sh([str(env.p2pd), "--version"]),
        "rustc": sh(["rustc", "--version"]),
        "python": platform.python_version(),
        "node": sh(["node", "--version"]),
        "go_p2pd": "hivemind 1.1.12 wheel (go-libp2p-daemon fork v0.5.0.hivemind1, go-libp2p v0.32)"
        if env.go_p2pd
        else f"skipped: {env.go_skip}",
        "js": js_versions or f"skipped: {env.js_skip}",
        "py_libp2p": pylibp2p if env.pylibp2p_python else f"skipped: {env.pylibp2p_skip}",
    }


async def main_async(args) -> int:
    env = env_from_os(args.quick)
    results_path = Path(args.results)
    results = {"mode": "quick" if args.quick else "full", "machine": machine(env), "workloads": {}, "timing_s": {}, "load": {}, "when": {}, "invocations": []}
    if args.merge and results_path.exists():
        # Re-run some workloads (--only) into an earlier run's results.
        old = json.loads(results_path.read_text())
        for k in ("workloads", "timing_s", "load", "when", "invocations"):
            results[k] = old.get(k, {})
        results["timing_s"].pop("total", None)
    results.setdefault("invocations", []).append(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    wanted = [w for w in ORDER if not args.only or w in args.only.split(",")]
    funcs = {
        "startup": workloads.startup,
        "ipc": workloads.ipc_rtt,
        "streams": workloads.streams,
        "pubsub": workloads.pubsub,
        "host": workloads.host_e2e,
        "recovery": workloads.recovery,
        "catchup": catchup.catchup,
        "inbound": inbound.inbound,
        "scale": workloads.scale,
    }
    t_all = time.perf_counter()
    try:
        for name in wanted:
            if name == "scale" and args.quick:
                results["workloads"]["scale"] = {"skipped": "full mode only"}
                continue
            print(f"== {name}", flush=True)
            # Quick mode (CI) does not wait; a full run waits up to 10 minutes
            # for other processes (builds) to finish.
            waited, busy = await quiet_gate(0 if args.quick else float(os.environ.get("HIVE_BENCH_QUIET_WAIT", 600)))
            meter = LoadMeter()
            results["when"][name] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            t = time.perf_counter()
            results["workloads"][name] = await workloads.guarded(name, funcs[name](env))
            results["timing_s"][name] = round(time.perf_counter() - t, 1)
            results["load"][name] = {"busy_before_pct": busy, "waited_s": waited, "foreign_cpu_pct": meter.foreign_pct()}
            print(f"   (other processes used {results['load'][name]['foreign_cpu_pct']} % of the machine meanwhile)")
            results_path.write_text(json.dumps(results, indent=1))
    finally:
        cleanup(env)
    results["timing_s"]["total"] = round(
        sum(v for k, v in results["timing_s"].items() if k != "total") if args.merge else time.perf_counter() - t_all, 1
    )
    results_path.write_text(json.dumps(results, indent=1))
    if args.report:
        Path(args.report).write_text(report.render(results))
        print(f"== wrote {args.report}")
    print(f"== done in {results['timing_s']['total']} s; results in {results_path}")
    if workloads.FAILED:
        print(f"== {len(workloads.FAILED)} row(s) FAILED:", flush=True)
        for line in workloads.FAILED:
            print(f"   {line}", flush=True)
        return 1
    return 0


def main() -> int:
    # SIGTERM ends the run like Ctrl+C: the children are killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    p = argparse.ArgumentParser(prog="hivebench")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default="")
    p.add_argument("--results", default=str(ROOT / "target" / "bench-results.json"))
    p.add_argument("--report", default="")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only write --report from earlier results")
    p.add_argument("--merge", action="store_true", help="keep the other workloads of the existing --results file")
    args = p.parse_args()
    if args.render:
        Path(args.report).write_text(report.render(json.loads(Path(args.render).read_text())))
        print(f"== wrote {args.report} from {args.render}")
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
