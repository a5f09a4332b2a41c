#!/usr/bin/env python3
"""Summaries of bench/flood.sh and bench/soak.sh (stdlib only).

  flood_report.py flood --out DIR --phases PHASES.json --cmd CMD
  flood_report.py soak  --out DIR --m0 M0 --m1 M1 --start EPOCH --cmd CMD

Metric files are the admin endpoint's /metrics text (and <file>.status.json,
the /deplo-auth/status JSON, when present).
"""
import argparse
import json
import os
import platform
import re
import subprocess
import time

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(path):
    """{name: [(labels dict, value)]}"""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            m = LINE.match(line)
            if not m:
                continue
            labels = dict(LABEL.findall(m.group(2) or ""))
            try:
                v = float(m.group(3))
            except ValueError:
                continue
            out.setdefault(m.group(1), []).append((labels, v))
    return out


def total(ms, name, **want):
    return sum(v for lab, v in ms.get(name, []) if all(lab.get(k) == w for k, w in want.items()))


def by(ms, name, key):
    d = {}
    for lab, v in ms.get(name, []):
        d[lab.get(key, "")] = d.get(lab.get(key, ""), 0) + v
    return d


def delta(m0, m1, name, **want):
    return total(m1, name, **want) - total(m0, name, **want)


def delta_by(m0, m1, name, key):
    a, b = by(m0, name, key), by(m1, name, key)
    return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}


def delta_reasons(m0, m1):
    def rs(ms):
        d = {}
        for lab, v in ms.get("deplo_auth_requests_total", []):
            k = f'{lab.get("method")}/{lab.get("outcome")}/{lab.get("reason")}'
            d[k] = d.get(k, 0) + v
        return d
    a, b = rs(m0), rs(m1)
    return {k: int(b.get(k, 0) - a.get(k, 0)) for k in sorted(set(a) | set(b)) if b.get(k, 0) - a.get(k, 0)}


def status_json(path):
    try:
        with open(path + ".status.json") as f:
            return json.load(f)
    except Exception:
        return None


def samples(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) >= 3:
                rows.append({"epoch": float(p[0]), "rss_kb": int(float(p[1] or 0)), "goroutines": int(float(p[2] or 0)),
                             "heap_inuse_bytes": int(float(p[3])) if len(p) > 3 else 0})
    return rows


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    def run(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg_end": open("/proc/loadavg").read().split()[:3],
            "go_version": run("go", "version"), "git_commit": run("git", "rev-parse", "--short", "HEAD"),
            "git_dirty": bool(run("git", "status", "--porcelain")), "kernel": platform.release()}


def mb(kb):
    return f"{kb / 1024:.1f} MiB"


# ---- flood ----------------------------------------------------------------------

def flood(a):
    with open(a.phases) as f:
        ph = json.load(f)
    res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": a.cmd, "machine": machine(),
           "config": ph["config"]}

    # (a) stampede
    st = ph["stampede"]
    m0, m1 = parse(st["m0"]), parse(st["m1"])
    with open(st["result"]) as f:
        sr = json.load(f)
    res["stampede"] = {"loadgen": sr,
                       "store_lookups": int(delta(m0, m1, "deplo_auth_store_requests_total")),
                       "store_lookups_by_result": delta_by(m0, m1, "deplo_auth_store_requests_total", "result"),
                       "cache_lookups": delta_by(m0, m1, "deplo_auth_cache_lookups_total", "result"),
                       "decisions": delta_reasons(m0, m1)}
    res["stampede"]["pass"] = res["stampede"]["store_lookups"] == 1 and sr["status"].get("200", 0) == sr["goroutines"]

    # calibration
    if "calibration" in ph:
        with open(ph["calibration"]["result"]) as f:
            res["calibration"] = json.load(f)
        res["calibration"]["n_chosen"] = ph["calibration"]["n_chosen"]
        res["calibration"]["reason"] = ph["calibration"]["reason"]

    # (b) flood
    fl = ph["flood"]
    m0, m1 = parse(fl["m0"]), parse(fl["m1"])
    with open(fl["result"]) as f:
        fr = json.load(f)
    smp = [s for s in samples(fl["samples"])]
    hits = delta(m0, m1, "deplo_auth_cache_lookups_total", result="hit")
    real_n = fr["real_requests"]
    store = delta(m0, m1, "deplo_auth_store_requests_total")
    peak = max(smp, key=lambda s: s["rss_kb"]) if smp else None
    res["flood"] = {
        "loadgen": fr,
        "store_requests": int(store),
        "store_requests_by_result": delta_by(m0, m1, "deplo_auth_store_requests_total", "result"),
        "cache_lookups": delta_by(m0, m1, "deplo_auth_cache_lookups_total", "result"),
        "decisions": delta_reasons(m0, m1),
        "real_cache_hits": int(hits),
        "real_requests": real_n,
        "real_hit_ratio": hits / real_n if real_n else None,
        "real_all_200": set(fr["real_status"]) <= {"200"},
        "rss_kb": {"before": smp[0]["rss_kb"] if smp else None, "peak": peak["rss_kb"] if peak else None,
                   "end": smp[-1]["rss_kb"] if smp else None},
        "goroutines": {"before": smp[0]["goroutines"] if smp else None,
                       "max": max(s["goroutines"] for s in smp) if smp else None,
                       "end": smp[-1]["goroutines"] if smp else None},
        "heap_inuse_bytes": {"max": max(s["heap_inuse_bytes"] for s in smp) if smp else None,
                             "end": smp[-1]["heap_inuse_bytes"] if smp else None},
        "samples": smp,
        "status_endpoint": status_json(fl["m1"]),
    }

    # (c) throttled phase
    if "throttled" in ph:
        tp = ph["throttled"]
        m0, m1 = parse(tp["m0"]), parse(tp["m1"])
        with open(tp["result"]) as f:
            tr = json.load(f)
        res["throttled"] = {"loadgen": tr,
                            "store_requests": int(delta(m0, m1, "deplo_auth_store_requests_total")),
                            "decisions": delta_reasons(m0, m1)}

    with open(os.path.join(a.out, "flood.json"), "w") as f:
        json.dump(res, f, indent=1)

    c = res["config"]
    s = res["stampede"]
    F = res["flood"]
    L = F["loadgen"]
    md = [f"# deplo_auth under a flood of unknown tokens\n",
          f"`{a.cmd}` — {res['date']}, {res['machine']['nproc']} cores ({res['machine']['cpu_model']}), "
          f"{res['machine']['go_version']}, commit {res['machine']['git_commit']}"
          f"{' (dirty)' if res['machine']['git_dirty'] else ''}. Loopback only; load generator, Caddy and upstream "
          f"share the cores (with niced background work). Caddy log level {c['log_level']} "
          f"(at INFO every refusal is one log line). Cache `max_entries {c['max_entries']}` (each of the positive "
          f"and negative caches), throttle off unless stated.\n",
          "## (a) Stampede: one never-used token, cold cache\n",
          f"- {s['loadgen']['goroutines']} goroutines, each on its own warmed keep-alive connection "
          f"({s['loadgen']['warmed_connections']} warmed), released together; statuses {s['loadgen']['status']}; "
          f"wall {s['loadgen']['wall_ms']:.0f} ms (p50 {s['loadgen']['p50_ms']:.1f} ms, p99 {s['loadgen']['p99_ms']:.1f} ms).",
          f"- **store lookups: {s['store_lookups']}** (delta of `deplo_auth_store_requests_total`, {s['store_lookups_by_result']}); "
          f"cache lookups {s['cache_lookups']}. {'PASS (exactly 1)' if s['pass'] else 'FAIL (want exactly 1 and all 200)'}\n"]
    if "calibration" in res:
        cal = res["calibration"]
        md.append(f"## Rate calibration\n\n- {cal['n_sent']} flood requests in {cal['duration_seconds']:.1f} s = "
                  f"{cal['flood_rps']:.0f} req/s → N = {cal['n_chosen']} ({cal['reason']}).\n")
    md += ["## (b) Flood: distinct unknown well-formed tokens, throttle off\n",
           "| figure | value |", "|---|---|",
           f"| flood requests sent / asked | {L['n_sent']} / {L['n_requested']} (stopped by {L['stopped_by']}) |",
           f"| duration | {L['duration_seconds']:.1f} s ({L['flood_rps']:.0f} req/s over {L['connections']} connections) |",
           f"| flood statuses | {L['flood_status']} |",
           f"| store calls (`deplo_auth_store_requests_total` delta) | {F['store_requests']} {F['store_requests_by_result']} |",
           f"| cache lookups delta | {F['cache_lookups']} |",
           f"| Caddy RSS: just started → flood start (after the stampede's {s['loadgen']['goroutines']} connections and the calibration) → peak → end | "
           f"{mb(c['rss_kb_at_start'])} → {mb(F['rss_kb']['before'])} → **{mb(F['rss_kb']['peak'])}** → {mb(F['rss_kb']['end'])} |",
           f"| heap in use max / end | {F['heap_inuse_bytes']['max'] / 2**20:.1f} / {F['heap_inuse_bytes']['end'] / 2**20:.1f} MiB |",
           f"| goroutines before / max / end | {F['goroutines']['before']} / {F['goroutines']['max']} / {F['goroutines']['end']} |",
           f"| real clients ({L['real_connections']} connections, {L['real_tokens']} tokens) | {L['real_requests']} requests, statuses {L['real_status']} |",
           f"| real latency p50 / p99 / p99.9 / max | {L['real_p50_ms']:.2f} / {L['real_p99_ms']:.2f} / {L['real_p999_ms']:.2f} / {L['real_max_ms']:.1f} ms |",
           f"| real-token cache hit ratio (hits / real requests) | {F['real_cache_hits']} / {F['real_requests']} = **{F['real_hit_ratio']:.4f}** |",
           "",
           f"Decisions (method/outcome/reason): {F['decisions']}\n",
           f"RSS samples every {c['sample_every']} s (MiB): " + ", ".join(f"{x['rss_kb'] / 1024:.0f}" for x in F["samples"]) + "\n",
           f"Goroutines: " + ", ".join(str(x["goroutines"]) for x in F["samples"]) + "\n"]
    if "throttled" in res:
        T = res["throttled"]
        TL = T["loadgen"]
        md += ["## (c) Same flood, default throttle (60 failures / 1m per client IP)\n",
               f"- {TL['n_sent']} flood requests in {TL['duration_seconds']:.1f} s: statuses {TL['flood_status']}; "
               f"store calls {T['store_requests']}.",
               f"- Real clients (same IP, 127.0.0.1 — on loopback they cannot be told apart from the flood): "
               f"{TL['real_requests']} requests, statuses {TL['real_status']}, p50 {TL['real_p50_ms']:.2f} ms, p99 {TL['real_p99_ms']:.2f} ms.",
               f"- Decisions: {T['decisions']}\n"]
    with open(os.path.join(a.out, "flood.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


# ---- soak -----------------------------------------------------------------------

def soak(a):
    lines = open(os.path.join(a.out, "soak-loadgen.jsonl")).read()
    # Interval lines first (compact), then the indented summary.
    idx = lines.find("\n{\n")
    summary = json.loads(lines[idx + 1:] if idx >= 0 else lines[lines.find("{\n"):])
    m0, m1 = parse(a.m0), parse(a.m1)
    smp = samples(os.path.join(a.out, "soak-samples.tsv"))
    for s in smp:
        s["t_s"] = round(s["epoch"] - a.start, 1)
    res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": a.cmd, "machine": machine(),
           "log_level": a.log_level, "loadgen": summary,
           "store_requests": int(delta(m0, m1, "deplo_auth_store_requests_total")),
           "store_requests_by_result": delta_by(m0, m1, "deplo_auth_store_requests_total", "result"),
           "cache_lookups": delta_by(m0, m1, "deplo_auth_cache_lookups_total", "result"),
           "decisions": delta_reasons(m0, m1), "samples": smp, "status_endpoint": status_json(a.m1)}
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump(res, f, indent=1)
    L = summary
    types = list(L["mix_percent"])
    md = ["# deplo_auth soak\n",
          f"`{a.cmd}` — {res['date']}, {res['machine']['nproc']} cores, {res['machine']['go_version']}, commit "
          f"{res['machine']['git_commit']}{' (dirty)' if res['machine']['git_dirty'] else ''}; loopback; throttle off; "
          f"cache max_entries 10000; Caddy log level {a.log_level}.\n",
          f"- {L['requests']} requests in {L['duration_seconds']:.0f} s (target {L['rate_target']:.0f} req/s, "
          f"{L['connections']} connections); **unexpected statuses: {L['unexpected']}**.",
          "- Mix / expected status: " + ", ".join(f"{t} {L['mix_percent'][t]}% → {L['expected_status'][t]}" for t in types),
          f"- Store calls: {res['store_requests']} {res['store_requests_by_result']}; cache lookups {res['cache_lookups']}.\n",
          "## Statuses per interval\n",
          "| # | t end (s) | req/s | " + " | ".join(types) + " | unexpected | allowed p50/p99 ms |",
          "|---|---|---|" + "---|" * len(types) + "---|---|"]
    for iv in L["intervals"]:
        md.append(f"| {iv['interval']} | {iv['t_end_s']:.0f} | {iv['rps']:.0f} | " +
                  " | ".join(" ".join(f"{k}:{v}" for k, v in sorted(iv["by_type"][t].items())) for t in types) +
                  f" | {iv['unexpected']} | {iv['latency_ms'].get('allowed_p50', 0):.2f}/{iv['latency_ms'].get('allowed_p99', 0):.2f} |")
    md += ["", "## Caddy RSS and goroutines\n", "| t (s) | RSS | heap in use | goroutines |", "|---|---|---|---|"]
    for s in smp:
        md.append(f"| {s['t_s']:.0f} | {mb(s['rss_kb'])} | {s['heap_inuse_bytes'] / 2**20:.1f} MiB | {s['goroutines']} |")
    if len(smp) >= 3:
        w = smp[1] if len(smp) > 2 else smp[0]
        md.append(f"\nAfter warm-up (t={w['t_s']:.0f} s) → end: RSS {mb(w['rss_kb'])} → {mb(smp[-1]['rss_kb'])}, "
                  f"goroutines {w['goroutines']} → {smp[-1]['goroutines']}.")
    with open(os.path.join(a.out, "soak.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["flood", "soak"])
    p.add_argument("--out", required=True)
    p.add_argument("--cmd", default="")
    p.add_argument("--phases")
    p.add_argument("--m0")
    p.add_argument("--m1")
    p.add_argument("--start", type=float, default=0)
    p.add_argument("--log-level", default="WARN")
    a = p.parse_args()
    (flood if a.mode == "flood" else soak)(a)


if __name__ == "__main__":
    main()
