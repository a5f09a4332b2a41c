#!/usr/bin/env python3
"""Summarises a `bench/run.sh sidecar` run (stdlib only).

Reads <out>/runs.json (drive.py) and writes <out>/sidecar.json and
<out>/sidecar.md. Every ratio is taken within one round, against the
nginx + minimal Go authorizer route of the same round, then the median, min
and max over rounds. CPU per request is the whole sidecar: nginx's worker +
Caddy + the authorizer (the one a route does not use sits idle).

    python3 bench/sidecar_report.py --out bench/out/sidecar
"""

import argparse
import json
import os
import statistics

FLOOR = "nginx-authz"
LABELS = {
    "nginx-plain-a": "nginx, plain proxy (A)",
    "nginx-plain-b": "nginx, plain proxy (B)",
    "nginx-authz": "nginx + auth_request → minimal Go authorizer (TCP)",
    "nginx-verify": "nginx + auth_request → deplo_auth_sidecar (Unix socket)",
    "nginx-verify-tcp": "nginx + auth_request → deplo_auth_sidecar (loopback TCP)",
}


def spread(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)} if xs else None


def cpu(m):
    return m["nginx_cpu_us_per_req"] + m["caddy_cpu_us_per_req"] + m["authorizer_cpu_us_per_req"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.out, "runs.json")) as f:
        rounds = json.load(f)["rounds"]
    names = [m["route"] for m in rounds[0]["runs"]]
    per = {n: {"rps": [], "cpu": [], "r_rps": [], "r_cpu": [], "p50": [], "p99": []} for n in names}
    for rnd in rounds:
        by = {m["route"]: m for m in rnd["runs"]}
        floor = by[FLOOR]
        for n, m in by.items():
            d = per[n]
            d["rps"].append(m["rps"])
            d["cpu"].append(cpu(m))
            d["p50"].append(m["p50_us"])
            d["p99"].append(m["p99_us"])
            d["r_rps"].append(m["rps"] / floor["rps"])
            if cpu(floor) > 0:
                d["r_cpu"].append(cpu(m) / cpu(floor))
    order = ["nginx-plain-a", "nginx-plain-b", FLOOR, "nginx-verify", "nginx-verify-tcp"]
    summary = {n: {k: spread(v) for k, v in per[n].items()} for n in order if n in per}
    with open(os.path.join(args.out, "sidecar.json"), "w") as f:
        json.dump({"rounds": len(rounds), "floor": FLOOR, "routes": summary}, f, indent=1)
    lines = [
        f"| route | req/s (median) | req/s vs authorizer | CPU µs/req (nginx + Caddy + authorizer) | CPU vs authorizer | p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for n, s in summary.items():
        lines.append(
            f"| {LABELS.get(n, n)} | {s['rps']['median']:.0f} | {s['r_rps']['median']:.2f} "
            f"({s['r_rps']['min']:.2f}–{s['r_rps']['max']:.2f}) | {s['cpu']['median']:.1f} | "
            f"×{s['r_cpu']['median']:.2f} (×{s['r_cpu']['min']:.2f}–×{s['r_cpu']['max']:.2f}) | "
            f"{s['p50']['median'] / 1000:.2f} / {s['p99']['median'] / 1000:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "sidecar.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
