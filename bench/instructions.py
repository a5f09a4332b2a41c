#!/usr/bin/env python3
"""Instruction counts per request, per route (stdlib only): `bench/run.sh instructions`.

Caddy runs under valgrind's callgrind, which counts the instructions Caddy
executes in user space, the same for the same binary and requests whatever
else the machine is doing. For each route, in interleaved rounds: zero the
counters (callgrind_control -z), drive the route with wrk for a fixed time,
dump the counters (callgrind_control -d) and divide the instructions by the
requests served. Ratios are taken per round against the mean of the two
plain routes, then the median over rounds; as in report.py, the control route
separates the decision from the cost of forwarding an identity.

What it does not count: the kernel (system calls, loopback TCP), cache misses
and waiting. Under callgrind Caddy serves a few hundred requests/s, so work
that runs on a timer (cache cleanup tickers, the key-file watcher) would
weigh far more per request than at full speed: each round first measures
Caddy idle for the same time, and that rate is taken off every run
("instructions" is the raw count, "per_request" the corrected one). Read it
beside CPU time per request from the wrk run, not instead of it.

Writes <out>/instructions.json and <out>/instructions.md, prints the table.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from drive import parse_wrk  # noqa: E402
from report import CONTROL, PLAIN, label, spread  # noqa: E402


def callgrind_control(flag, pid):
    p = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag} {pid}: {p.stderr.strip() or p.stdout.strip()}")


def dump_total(prefix, known):
    """Instructions in the newest dump file not seen before."""
    files = [f for f in glob.glob(prefix + "*") if f not in known]
    if not files:
        raise RuntimeError(f"no new callgrind dump at {prefix}*")
    newest = max(files, key=os.path.getmtime)
    known.add(newest)
    with open(newest) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{newest}: no summary line")


def idle_rate(args, known):
    """Instructions per second Caddy executes with no requests."""
    callgrind_control("-z", args.caddy_pid)
    t0 = time.monotonic()
    time.sleep(args.duration)
    callgrind_control("-d", args.caddy_pid)
    return dump_total(args.dump_prefix, known) / (time.monotonic() - t0)


def run_route(args, route, known, idle):
    env = dict(os.environ)
    env["BENCH_AUTH"] = route.get("authorization", "")
    callgrind_control("-z", args.caddy_pid)
    t0 = time.monotonic()
    cmd = [args.wrk, "-t", "1", "-c", str(args.connections), "-d", f"{args.duration}s",
           "--timeout", "10s", "-s", args.lua, args.base_url + route["path"]]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited {p.returncode} on {route['name']}: {p.stderr.strip()}")
    callgrind_control("-d", args.caddy_pid)
    wall = time.monotonic() - t0
    total = dump_total(args.dump_prefix, known)
    w = parse_wrk(p.stdout)
    errors = {k: w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")}
    if any(errors.values()) or w["requests"] == 0:
        if not os.path.exists(f"/proc/{args.caddy_pid}"):
            raise RuntimeError(
                f"route {route['name']}: Caddy under callgrind died (see logs/caddy.log): callgrind "
                "3.19 sometimes asserts on a signal delivered while it handles another "
                "(vgCallgrind_post_signal); run again")
        raise RuntimeError(f"route {route['name']}: {w['requests']} requests, errors {errors}")
    return {"route": route["name"], "requests": w["requests"], "instructions": total,
            "wall_s": wall, "idle_instructions": idle * wall,
            "raw_per_request": total / w["requests"],
            "per_request": max(0.0, total - idle * wall) / w["requests"]}


def summarise(rounds, names):
    per = {n: {"ir": [], "ratio": [], "vs_control": []} for n in names}
    for runs in rounds:
        by = {m["route"]: m for m in runs}
        base = (by[PLAIN[0]]["per_request"] + by[PLAIN[1]]["per_request"]) / 2
        for n, m in by.items():
            per[n]["ir"].append(m["per_request"])
            per[n]["ratio"].append(m["per_request"] / base)
            if CONTROL in by:
                per[n]["vs_control"].append(m["per_request"] / by[CONTROL]["per_request"])
    return [{"route": n, "label": label(n), "instructions_per_request": spread(per[n]["ir"]),
             "ratio_vs_plain": spread(per[n]["ratio"]), "ratio_vs_control": spread(per[n]["vs_control"])}
            for n in names]


def git_commit():
    p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "unknown"


def table(summary):
    head = ["route", "instructions/request (median)", "vs plain (min–max)", "vs control (min–max)"]
    rows = []
    for r in summary:
        ir, rp, rc = r["instructions_per_request"], r["ratio_vs_plain"], r["ratio_vs_control"]
        rows.append([r["label"], f"{ir['median']:,.0f}",
                     f"×{rp['median']:.3f} ({rp['min']:.3f}–{rp['max']:.3f})",
                     f"×{rc['median']:.3f} ({rc['min']:.3f}–{rc['max']:.3f})" if rc else "—"])
    return head, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routes", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lua", required=True)
    ap.add_argument("--caddy-pid", type=int, required=True)
    ap.add_argument("--dump-prefix", required=True, help="callgrind's --callgrind-out-file")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--caddyfile", default="bench/Caddyfile")
    args = ap.parse_args()

    with open(args.routes) as f:
        routes = json.load(f)
    names = [r["name"] for r in routes]
    known = set(glob.glob(args.dump_prefix + "*"))
    rounds = []
    for i in range(args.rounds):
        k = i % len(routes)
        runs = []
        idle = idle_rate(args, known)
        print(f"  round {i + 1} idle     {idle:>14,.0f} instructions/s", flush=True)
        for route in routes[k:] + routes[:k]:
            m = run_route(args, route, known, idle)
            print(f"  round {i + 1} {m['route']:<8} {m['requests']:>6} requests  "
                  f"{m['per_request']:>10,.0f} instructions/request ({m['raw_per_request']:,.0f} before idle)",
                  flush=True)
            runs.append(m)
        rounds.append(runs)
    summary = summarise(rounds, names)
    with open(os.path.join(args.out, "instructions.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": git_commit(),
                   "caddyfile": args.caddyfile, "rounds": rounds, "summary": summary,
                   "duration_s": args.duration, "connections": args.connections}, f, indent=1)
    head, rows = table(summary)
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    with open(os.path.join(args.out, "instructions.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print()
    print("\n".join(md))


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"instructions.py: {e}", file=sys.stderr)
        sys.exit(1)
