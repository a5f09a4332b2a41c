#!/usr/bin/env python3
"""Load driver of bench/run.sh (stdlib only).

Runs wrk against every route in interleaved rounds (each round runs every
route once, the starting route rotated by one each round), and for each run
records wrk's figures and the CPU ticks of Caddy, the upstream and the
authorizer (utime + stime from /proc/<pid>/stat), of wrk (getrusage of
children) and of the whole machine (/proc/stat), so that a round during which
another process burned CPU can be told and redone.

Writes <out>/runs.json and wrk's raw output under <out>/raw/. Exits non-zero
on any non-2xx response or socket error.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name (field 2) may contain spaces: split after its ')'.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, total) ticks over all CPUs from /proc/stat: busy = user + nice + system.

    irq/softirq are left out of busy because per-process utime/stime do not
    include the softirq time of loopback networking either."""
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    vals = [int(v) for v in cpu[1:]]
    user, nice, system = vals[0], vals[1], vals[2]
    return user + nice + system, sum(vals[:8]), vals[7] if len(vals) > 7 else 0


def all_procs():
    """{(pid, starttime): (comm, ticks, kernel_thread)} for every process."""
    res = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        i, j = data.index("("), data.rindex(")")
        comm = data[i + 1:j]
        fields = data[j + 2:].split()
        ppid, flags = int(fields[1]), int(fields[6])
        kthread = int(d) == 2 or ppid == 2 or bool(flags & 0x00200000)  # PF_KTHREAD
        res[(int(d), fields[19])] = (comm, int(fields[11]) + int(fields[12]), kthread)
    return res


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def snapshot(pids):
    busy, total, steal = machine_ticks()
    return {
        "t": time.monotonic(),
        "procs": {name: proc_ticks(pid) for name, pid in pids.items()},
        "busy": busy,
        "total": total,
        "steal": steal,
        "children": children_cpu_seconds(),
        "all": all_procs(),
    }


def others(before, after, exclude):
    """CPU ticks of every other process during the run: (user-space ticks,
    kernel-thread ticks, top three as [comm, ticks])."""
    user = kern = 0
    per = []
    for key, (comm, t1, kthread) in after["all"].items():
        if key[0] in exclude:
            continue
        t0 = before["all"].get(key, (comm, 0, kthread))[1]
        d = t1 - t0
        if d <= 0:
            continue
        if kthread:
            kern += d
        else:
            user += d
        per.append((d, comm + (" [kernel]" if kthread else "")))
    per.sort(reverse=True)
    return user, kern, [[c, d] for d, c in per[:3]]


def parse_wrk(stdout):
    for line in stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return json.loads(line[len("WRK_RESULT "):])
    raise RuntimeError("wrk printed no WRK_RESULT line (is the Lua script in use?)")


def run_wrk(args, route, duration):
    env = dict(os.environ)
    env["BENCH_AUTH"] = route.get("authorization", "")
    cmd = [
        args.wrk, "-t", str(args.threads), "-c", str(args.connections),
        "-d", f"{duration}s", "--timeout", "2s", "--latency",
        "-s", args.lua, route.get("url") or args.base_url + route["path"],
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=duration + 20)
    if p.returncode != 0:
        raise RuntimeError(f"wrk exited {p.returncode} on {route['name']}: {p.stderr.strip()}")
    return p.stdout


def measure(args, pids, route, duration, raw_name):
    before = snapshot(pids)
    out = run_wrk(args, route, duration)
    after = snapshot(pids)
    if raw_name:
        with open(os.path.join(args.out, "raw", raw_name), "w") as f:
            f.write(out)
    w = parse_wrk(out)
    errors = {k: w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")}
    if any(errors.values()) or w["requests"] == 0:
        raise RuntimeError(
            f"route {route['name']}: {w['requests']} requests, non-2xx/3xx or socket errors {errors}\n{out}")
    wall = after["t"] - before["t"]
    ticks = {n: after["procs"][n] - before["procs"][n] for n in pids}
    wrk_ticks = (after["children"] - before["children"]) * CLK_TCK
    busy = after["busy"] - before["busy"]
    ours = sum(ticks.values()) + wrk_ticks
    other = max(0.0, busy - ours)
    o_user, o_kern, o_top = others(before, after, set(pids.values()) | {os.getpid()})
    reqs = w["requests"]
    dur_s = w["duration_us"] / 1e6
    return {
        "route": route["name"],
        "requests": reqs,
        "duration_s": dur_s,
        "rps": reqs / dur_s,
        "p50_us": w["lat_p50_us"],
        "p90_us": w["lat_p90_us"],
        "p99_us": w["lat_p99_us"],
        "p999_us": w["lat_p999_us"],
        "mean_us": w["lat_mean_us"],
        "max_us": w["lat_max_us"],
        "caddy_ticks": ticks["caddy"],
        "upstream_ticks": ticks.get("upstream", 0),
        "authorizer_ticks": ticks.get("authorizer", 0),
        "wrk_ticks": round(wrk_ticks, 1),
        "machine_busy_ticks": busy,
        "steal_ticks": after["steal"] - before["steal"],
        "wall_s": wall,
        # CPU time per request in µs (ticks are 1/CLK_TCK s).
        "caddy_cpu_us_per_req": ticks["caddy"] / CLK_TCK / reqs * 1e6,
        "authorizer_cpu_us_per_req": ticks.get("authorizer", 0) / CLK_TCK / reqs * 1e6,
        "upstream_cpu_us_per_req": ticks.get("upstream", 0) / CLK_TCK / reqs * 1e6,
        # Further processes (--pid name=pid: nginx's worker in sidecar mode).
        **{f"{n}_ticks": ticks[n] for n in pids if n not in ("caddy", "upstream", "authorizer")},
        **{f"{n}_cpu_us_per_req": ticks[n] / CLK_TCK / reqs * 1e6
           for n in pids if n not in ("caddy", "upstream", "authorizer")},
        # Cores' worth of CPU used by processes other than ours during the run:
        # user-space processes (the noise criterion), kernel threads (mostly
        # loopback networking), and all the machine's busy time not ours.
        "other_cores": o_user / CLK_TCK / wall if wall > 0 else 0.0,
        "kernel_thread_cores": o_kern / CLK_TCK / wall if wall > 0 else 0.0,
        "other_total_cores": other / CLK_TCK / wall if wall > 0 else 0.0,
        "other_top": o_top,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", required=True,
                    help="JSON file: [{name, path, authorization}]; a route's url, when set, replaces base-url + path")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lua", required=True)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--caddy-pid", type=int, required=True)
    ap.add_argument("--upstream-pid", type=int, required=True)
    ap.add_argument("--authorizer-pid", type=int, required=True)
    ap.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                    help="another process whose CPU is counted per run (repeatable)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--redo", type=int, default=1, help="redo a noisy round at most this many times")
    ap.add_argument("--other-cpu-max", type=float, default=0.25,
                    help="a run is noisy when other processes used more than this many cores")
    args = ap.parse_args()

    with open(args.routes) as f:
        routes = json.load(f)
    pids = {"caddy": args.caddy_pid, "upstream": args.upstream_pid, "authorizer": args.authorizer_pid}
    for spec in args.pid:
        name, _, pid = spec.partition("=")
        pids[name] = int(pid)
    os.makedirs(os.path.join(args.out, "raw"), exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    # Machine CPU while our processes sit idle, for the record (another
    # process burning CPU before the run shows up here).
    b0, t0 = snapshot(pids), time.monotonic()
    time.sleep(1.0)
    b1 = snapshot(pids)
    wall = time.monotonic() - t0
    o_user, _, o_top = others(b0, b1, set(pids.values()) | {os.getpid()})
    idle_check = {
        "busy_cores": (b1["busy"] - b0["busy"]) / CLK_TCK / wall,
        "ours_cores": sum(b1["procs"][n] - b0["procs"][n] for n in pids) / CLK_TCK / wall,
        "other_cores": o_user / CLK_TCK / wall,
        "other_top": o_top,
    }
    log(f"before the run: machine busy {idle_check['busy_cores']:.2f} cores over 1 s "
        f"(our processes {idle_check['ours_cores']:.2f}; others {idle_check['other_cores']:.2f}: "
        + ", ".join(f"{c} {t / CLK_TCK / wall:.2f}" for c, t in o_top) + ")")

    if args.warmup > 0:
        log(f"warm-up: {args.warmup}s per route")
        for r in routes:
            measure(args, pids, r, args.warmup, None)

    rounds, discarded = [], []
    for rnd in range(args.rounds):
        k = rnd % len(routes)
        order = routes[k:] + routes[:k]
        attempt = 0
        while True:
            runs = []
            for r in order:
                m = measure(args, pids, r, args.duration, f"round{rnd + 1}-try{attempt + 1}-{r['name']}.txt")
                m["round"] = rnd + 1
                m["attempt"] = attempt + 1
                runs.append(m)
                log(f"  round {rnd + 1} try {attempt + 1} {r['name']:<8} {m['rps']:9.0f} req/s  "
                    f"p50 {m['p50_us'] / 1000:6.2f} ms  p99 {m['p99_us'] / 1000:6.2f} ms  "
                    f"caddy {m['caddy_cpu_us_per_req']:6.1f} µs CPU/req  other {m['other_cores']:.2f} cores"
                    + (f" ({m['other_top'][0][0]})" if m["other_top"] and m["other_cores"] > args.other_cpu_max else ""))
            noisy = [m["route"] for m in runs if m["other_cores"] > args.other_cpu_max]
            if noisy and attempt < args.redo:
                log(f"  round {rnd + 1}: other processes used > {args.other_cpu_max} cores during "
                    f"{', '.join(noisy)}: redoing the round")
                discarded.append({"round": rnd + 1, "attempt": attempt + 1, "noisy": noisy, "runs": runs})
                attempt += 1
                continue
            rounds.append({"round": rnd + 1, "attempt": attempt + 1, "order": [r["name"] for r in order],
                           "noisy": noisy, "runs": runs})
            break

    with open(os.path.join(args.out, "runs.json"), "w") as f:
        json.dump({"clk_tck": CLK_TCK, "idle_check": idle_check, "rounds": rounds, "discarded_rounds": discarded}, f, indent=1)


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"drive.py: FAIL: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("drive.py: interrupted", file=sys.stderr)
        sys.exit(130)
