#!/usr/bin/env python3
"""Summarises a bench/run.sh run (stdlib only).

Reads <out>/runs.json (drive.py) and <out>/meta.json (run.sh), writes
<out>/results.json, <out>/results.md and <out>/throughput.svg, and prints the
table. Every ratio is taken within one round (route vs the mean of the two
plain routes of the same round), then the median, min and max over rounds.

    python3 bench/report.py --out bench/out
"""

import argparse
import html
import json
import os
import statistics
import sys

PLAIN = ("plain-a", "plain-b")

LABELS = {
    "plain-a": "plain reverse_proxy (A)",
    "plain-b": "plain reverse_proxy (B)",
    "ident": "identity headers only (control)",
    "apikey": "deplo_auth, API token",
    "jwt": "deplo_auth, ES256 JWT",
    "basic": "basic_auth, bcrypt",
    "forward": "forward_auth + Go authorizer",
}


def label(name):
    return LABELS.get(name, name)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return {"median": med(xs), "min": min(xs), "max": max(xs)} if xs else None


def summarise(runs_doc):
    rounds = runs_doc["rounds"]
    names = []
    for rnd in rounds:
        for m in rnd["runs"]:
            if m["route"] not in names:
                names.append(m["route"])
    # Route order: as in routes.json (the first round starts at route 0).
    names = [m["route"] for m in rounds[0]["runs"]] if rounds else names

    per = {n: {"rps": [], "p50": [], "p99": [], "cpu": [], "cpu_authz": [],
               "r_rps": [], "r_cpu": [], "r_cpu_authz": [], "d_p50": [], "d_p99": [],
               "other": []} for n in names}
    aa_rps, aa_cpu = [], []
    for rnd in rounds:
        by = {m["route"]: m for m in rnd["runs"]}
        pa, pb = by["plain-a"], by["plain-b"]
        base_rps = (pa["rps"] + pb["rps"]) / 2
        base_cpu = (pa["caddy_cpu_us_per_req"] + pb["caddy_cpu_us_per_req"]) / 2
        base_cpu_authz = base_cpu + (pa["authorizer_cpu_us_per_req"] + pb["authorizer_cpu_us_per_req"]) / 2
        base_p50 = (pa["p50_us"] + pb["p50_us"]) / 2
        base_p99 = (pa["p99_us"] + pb["p99_us"]) / 2
        aa_rps.append(pb["rps"] / pa["rps"])
        if pa["caddy_cpu_us_per_req"] > 0:
            aa_cpu.append(pb["caddy_cpu_us_per_req"] / pa["caddy_cpu_us_per_req"])
        for n, m in by.items():
            d = per[n]
            cpu_authz = m["caddy_cpu_us_per_req"] + m["authorizer_cpu_us_per_req"]
            d["rps"].append(m["rps"])
            d["p50"].append(m["p50_us"])
            d["p99"].append(m["p99_us"])
            d["cpu"].append(m["caddy_cpu_us_per_req"])
            d["cpu_authz"].append(cpu_authz)
            d["other"].append(m["other_cores"])
            d["r_rps"].append(m["rps"] / base_rps)
            if base_cpu > 0:
                d["r_cpu"].append(m["caddy_cpu_us_per_req"] / base_cpu)
                d["r_cpu_authz"].append(cpu_authz / base_cpu_authz)
            d["d_p50"].append(m["p50_us"] - base_p50)
            d["d_p99"].append(m["p99_us"] - base_p99)

    routes = []
    for n in names:
        d = per[n]
        routes.append({
            "route": n,
            "label": label(n),
            "rounds": len(d["rps"]),
            "rps": spread(d["rps"]),
            "p50_ms": med(d["p50"]) / 1000,
            "p99_ms": med(d["p99"]) / 1000,
            "caddy_cpu_us_per_req": med(d["cpu"]),
            "caddy_plus_authorizer_cpu_us_per_req": med(d["cpu_authz"]),
            "ratio_rps_vs_plain": spread(d["r_rps"]),
            "ratio_caddy_cpu_vs_plain": spread(d["r_cpu"]),
            "ratio_caddy_plus_authorizer_cpu_vs_plain": spread(d["r_cpu_authz"]),
            "added_p50_ms_vs_plain": med(d["d_p50"]) / 1000,
            "added_p99_ms_vs_plain": med(d["d_p99"]) / 1000,
            "max_other_cores": max(d["other"]) if d["other"] else 0.0,
        })
    others = [m["other_cores"] for rnd in rounds for m in rnd["runs"]]
    names = {}
    for rnd in rounds:
        for m in rnd["runs"]:
            for comm, ticks in m.get("other_top", []):
                if not comm.endswith("[kernel]"):
                    names[comm] = names.get(comm, 0) + ticks
    return {
        "vs_control": vs_control(rounds),
        "other_cpu": {"median_cores": med(others), "max_cores": max(others) if others else 0.0,
                      "top": sorted(names, key=names.get, reverse=True)[:4]},
        "routes": routes,
        "aa_noise": {"ratio_rps_plain_b_over_a": spread(aa_rps),
                     "ratio_caddy_cpu_plain_b_over_a": spread(aa_cpu)},
        "noisy_rounds_kept": [r["round"] for r in rounds if r.get("noisy")],
        "discarded_rounds": [{"round": r["round"], "attempt": r["attempt"], "noisy": r["noisy"]}
                             for r in runs_doc.get("discarded_rounds", [])],
    }


# CONTROL forwards the same upstream request as a deplo_auth route
# (Authorization removed, the identity headers of the API token added) with
# no decision: route ÷ CONTROL is what the decision itself costs, CONTROL ÷
# plain what forwarding an identity costs in Caddy whoever sets it.
CONTROL = "ident"


def vs_control(rounds):
    out = {}
    for n in ("apikey", "jwt"):
        rps, cpu = [], []
        for rnd in rounds:
            by = {m["route"]: m for m in rnd["runs"]}
            if n not in by or CONTROL not in by:
                continue
            c, m = by[CONTROL], by[n]
            rps.append(m["rps"] / c["rps"])
            if c["caddy_cpu_us_per_req"] > 0:
                cpu.append(m["caddy_cpu_us_per_req"] / c["caddy_cpu_us_per_req"])
        if rps:
            out[n] = {"ratio_rps": spread(rps), "ratio_caddy_cpu": spread(cpu)}
    return out


def control_lines(summary):
    lines = []
    ctl = {r["route"]: r for r in summary["routes"]}.get(CONTROL)
    if ctl:
        lines.append(f"Forwarding the identity (control ÷ plain): req/s {fr(ctl['ratio_rps_vs_plain'])}, "
                     f"Caddy CPU/req ×{fr(ctl['ratio_caddy_cpu_vs_plain'])}.")
    for n, v in summary.get("vs_control", {}).items():
        lines.append(f"The decision alone ({label(n)} ÷ control): req/s {fr(v['ratio_rps'])}"
                     + (f", Caddy CPU/req ×{fr(v['ratio_caddy_cpu'])}" if v["ratio_caddy_cpu"] else "") + ".")
    return lines


def fr(s, nd=2):
    return f"{s['median']:.{nd}f} ({s['min']:.{nd}f}–{s['max']:.{nd}f})"


def table_rows(summary):
    head = ["route", "req/s (median)", "req/s vs plain (min–max)", "p50 ms", "p99 ms",
            "+p50 ms", "+p99 ms", "Caddy CPU µs/req", "Caddy CPU/req vs plain (min–max)",
            "incl. authorizer vs plain"]
    rows = []
    for r in summary["routes"]:
        rows.append([
            r["label"],
            f"{r['rps']['median']:.0f}",
            fr(r["ratio_rps_vs_plain"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['added_p50_ms_vs_plain']:+.2f}",
            f"{r['added_p99_ms_vs_plain']:+.2f}",
            f"{r['caddy_cpu_us_per_req']:.1f}",
            "×" + fr(r["ratio_caddy_cpu_vs_plain"]),
            f"×{r['ratio_caddy_plus_authorizer_cpu_vs_plain']['median']:.2f}",
        ])
    return head, rows


def print_table(summary):
    head, rows = table_rows(summary)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(widths[i]) for i, h in enumerate(head))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
    aa = summary["aa_noise"]
    print(f"\nA/A noise: plain B / plain A  req/s {fr(aa['ratio_rps_plain_b_over_a'], 3)}"
          + (f",  Caddy CPU/req ×{fr(aa['ratio_caddy_cpu_plain_b_over_a'], 3)}"
             if aa["ratio_caddy_cpu_plain_b_over_a"] else ""))
    for line in control_lines(summary):
        print(line)


def write_md(path, summary, meta):
    head, rows = table_rows(summary)
    p = meta.get("params", {})
    aa = summary["aa_noise"]
    out = []
    out.append(f"# End-to-end benchmark, {meta.get('date', '')}\n")
    out.append(f"Command: `{meta.get('command', 'bench/run.sh')}`  ")
    out.append(f"{p.get('rounds')} round{'s' if p.get('rounds') != 1 else ''} × {p.get('duration')} s per route, interleaved (start rotated each round), "
               f"wrk `-t{p.get('threads')} -c{p.get('connections')}` keep-alive, {p.get('warmup')} s warm-up per route; "
               f"one Caddy ({meta.get('caddy_version', '?')}), loopback, no access log; "
               f"upstream and authorizer are separate Go processes.  ")
    out.append(f"Machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu_model', '?')}); "
               f"load average before: {meta.get('loadavg_before', '?')}; after: {meta.get('loadavg_after', '?')}.  ")
    out.append(f"Git: {meta.get('git_commit', '?')}{' (dirty tree)' if meta.get('git_dirty') else ''}; "
               f"{meta.get('go_version', '')}; {meta.get('wrk_version', '')}.\n")
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    out.append("")
    out.append(f"A/A noise floor (plain B / plain A, same round): req/s {fr(aa['ratio_rps_plain_b_over_a'], 3)}"
               + (f"; Caddy CPU/req ×{fr(aa['ratio_caddy_cpu_plain_b_over_a'], 3)}"
                  if aa["ratio_caddy_cpu_plain_b_over_a"] else "") + ".\n")
    cl = control_lines(summary)
    if cl:
        out.append("  \n".join(cl) + "\n")
    out.append("Ratios are per round (route ÷ mean of the two plain routes in the same round), then median "
               "(min–max) over rounds. `+p50`/`+p99` are added latency vs that mean. Caddy CPU is utime+stime "
               "from `/proc/<pid>/stat` (10 ms ticks) divided by requests served; it excludes the upstream and wrk. "
               "The last column adds the external authorizer's CPU (only `forward_auth` uses it). "
               "wrk, the upstream and Caddy share the cores, so req/s ratios understate the cost inside Caddy.\n")
    notes = meta.get("notes", [])
    if summary["discarded_rounds"]:
        notes.append("Rounds redone because other processes used CPU: "
                     + ", ".join(f"round {d['round']} try {d['attempt']} ({', '.join(d['noisy'])})"
                                 for d in summary["discarded_rounds"]) + ".")
    if summary["noisy_rounds_kept"]:
        oc = summary["other_cpu"]
        notes.append("Rounds kept although still noisy after the redo: "
                     + ", ".join(str(r) for r in summary["noisy_rounds_kept"])
                     + f". Other processes used {oc['median_cores']:.2f} cores (median over runs; max "
                     f"{oc['max_cores']:.2f}) of the machine's {meta.get('nproc', '?')}, mostly "
                     + ", ".join(oc["top"]) + ": treat the spreads as this run's noise, not the method's.")
    if notes:
        out.append("Notes:\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    out.append("![throughput and CPU per request vs plain](throughput.svg)\n")
    with open(path, "w") as f:
        f.write("\n".join(out))


def svg_panel(y0, title, items, key, ref_label, fmt, extra_key=None):
    """One horizontal-bar panel: bar = median, whisker = min–max, line at 1.0.
    extra_key: a second median drawn as a lighter extension of the bar where
    it exceeds the first (the external authorizer's CPU)."""
    left, width, row_h, bar_h = 230, 430, 26, 14
    hi = max([1.0] + [it[key]["max"] for it in items]
             + ([it[extra_key]["median"] for it in items] if extra_key else []))
    step = 0.2 if hi <= 1.6 else 0.5 if hi <= 4 else 1.0
    xmax = step * (int(hi / step) + 1)

    def X(v):
        return left + width * v / xmax

    parts = [f'<text x="12" y="{y0 + 16}" class="t">{html.escape(title)}</text>']
    top = y0 + 44
    bottom = top + row_h * len(items)
    t = 0.0
    while t <= xmax + 1e-9:
        x = X(t)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" class="ax" text-anchor="middle">{t:g}</text>')
        t += step
    x = X(1.0)
    parts.append(f'<line x1="{x:.1f}" y1="{top - 8}" x2="{x:.1f}" y2="{bottom + 2}" class="ref"/>')
    parts.append(f'<text x="{x:.1f}" y="{top - 11}" class="ax" text-anchor="middle">{html.escape(ref_label)}</text>')
    for i, it in enumerate(items):
        s = it[key]
        cy = top + row_h * i + row_h / 2
        plain = it["route"] in PLAIN
        cls = "barp" if plain else "bar"
        parts.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" class="lb" text-anchor="end">{html.escape(it["label"])}</text>')
        parts.append(f'<rect x="{left}" y="{cy - bar_h / 2:.1f}" width="{X(s["median"]) - left:.1f}" height="{bar_h}" class="{cls}"/>')
        extra = it[extra_key]["median"] if extra_key else None
        if extra is not None and extra > s["median"] * 1.02:
            parts.append(f'<rect x="{X(s["median"]):.1f}" y="{cy - bar_h / 2:.1f}" width="{X(extra) - X(s["median"]):.1f}" '
                         f'height="{bar_h}" class="barx"/>')
        else:
            extra = None
        x1, x2 = X(s["min"]), X(s["max"])
        parts.append(f'<line x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" class="wh"/>')
        for x in (x1, x2):
            parts.append(f'<line x1="{x:.1f}" y1="{cy - 5:.1f}" x2="{x:.1f}" y2="{cy + 5:.1f}" class="wh"/>')
        txt = fmt(s) + (f", with authorizer ×{extra:.2f}" if extra else "")
        parts.append(f'<text x="{max(x2, X(extra or 0), X(s["median"])) + 6:.1f}" y="{cy + 4:.1f}" class="v">'
                     f'{html.escape(txt)}</text>')
    return parts, bottom + 24


def write_svg(path, summary, meta, instructions=None):
    items = summary["routes"]
    p = meta.get("params", {})
    parts = []
    y = 34
    a, y = svg_panel(y, "Throughput vs plain reverse_proxy (req/s ratio, higher is better)",
                     items, "ratio_rps_vs_plain", "1.0 = plain",
                     lambda s: f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})")
    parts += a
    b, y = svg_panel(y + 10, "Caddy CPU time per request vs plain (ratio, lower is better)",
                     items, "ratio_caddy_cpu_vs_plain", "1.0 = plain",
                     lambda s: f"×{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})",
                     extra_key="ratio_caddy_plus_authorizer_cpu_vs_plain")
    parts += b
    if instructions:
        c, y = svg_panel(y + 10, f"Caddy instructions per request vs plain (callgrind, {instructions.get('date', '')}; "
                         "lower is better)", instructions["summary"], "ratio_vs_plain", "1.0 = plain",
                         lambda s: f"×{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})")
        parts += c
    h = y + 22
    rounds = p.get("rounds")
    sub = (f"{rounds} interleaved round{'s' if rounds != 1 else ''} × {p.get('duration')} s per route, wrk -c{p.get('connections')}, "
           f"one Caddy on loopback, {meta.get('nproc', '?')} shared CPUs, {meta.get('date', '')}. "
           f"Bar: median over rounds; whisker: min–max.")
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="960" height="{h}" viewBox="0 0 960 {h}" '
        f'font-family="Helvetica, Arial, sans-serif">',
        "<style>.t{font-size:14px;font-weight:bold}.lb{font-size:12px}.ax{font-size:10px;fill:#555}"
        ".v{font-size:11px;fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px}.s{font-size:11px;fill:#555}.grid{stroke:#e4e4e4;stroke-width:1}"
        ".bar{fill:#4e79a7}.barp{fill:#a0a0a0}.barx{fill:#a9c4de}.wh{stroke:#222;stroke-width:1.3}"
        ".ref{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:4 3}</style>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="12" y="20" class="t">deplo-auth end to end: cost of each auth method in one Caddy</text>',
    ]
    foot = [f'<text x="12" y="{h - 10}" class="s">{html.escape(sub)}</text>', "</svg>"]
    if summary["noisy_rounds_kept"]:
        oc = summary["other_cpu"]
        warn = (f"Noisy machine: other processes used {oc['median_cores']:.2f} cores (median; max {oc['max_cores']:.2f}) "
                f"during the runs ({', '.join(oc['top'][:3])}).")
        h += 16
        head[0] = head[0].replace(f'height="{h - 16}" viewBox="0 0 960 {h - 16}"', f'height="{h}" viewBox="0 0 960 {h}"')
        foot = [f'<text x="12" y="{h - 26}" class="s">{html.escape(sub)}</text>',
                f'<text x="12" y="{h - 10}" class="s" fill="#c0392b">{html.escape(warn)}</text>', "</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(head + parts + foot) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--instructions", help="instructions.json of bench/run.sh instructions: a third chart panel")
    args = ap.parse_args()
    instructions = None
    if args.instructions:
        with open(args.instructions) as f:
            instructions = json.load(f)
    with open(os.path.join(args.out, "runs.json")) as f:
        runs_doc = json.load(f)
    meta = {}
    mp = os.path.join(args.out, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    summary = summarise(runs_doc)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": runs_doc}, f, indent=1)
    write_md(os.path.join(args.out, "results.md"), summary, meta)
    write_svg(os.path.join(args.out, "throughput.svg"), summary, meta, instructions)
    print_table(summary)
    for n in meta.get("notes", []):
        print(f"note: {n}")
    if summary["discarded_rounds"]:
        print(f"redone rounds (other CPU): {summary['discarded_rounds']}")
    if summary["noisy_rounds_kept"]:
        print(f"WARNING: rounds {summary['noisy_rounds_kept']} kept although other processes used CPU")


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError, OSError) as e:
        print(f"report.py: FAIL: {e}", file=sys.stderr)
        sys.exit(2)
