#!/usr/bin/env bash
# Soak test of deplo_auth: one Caddy on loopback (key file with real tokens,
# cache max_entries 10000, throttle off — the unknown-token share comes from
# one IP and would otherwise be cut to 429 after 60 failures a minute), a fast
# upstream, and `loadgen mixed` for SOAK_DURATION: 70% cached real token (200),
# 10% insufficient scope (403), 10% fresh unknown token (401), 5% no credential
# (401), 5% public route (200), at SOAK_RATE requests/s over SOAK_C connections.
# Samples Caddy's RSS (VmRSS) and go_goroutines every SAMPLE_EVERY s; reports
# statuses per interval (every response must be the one its type expects) and
# RSS / goroutines over time. Writes $OUT/soak.json and $OUT/soak.md.
#
#   bench/soak.sh                         10 minutes at 1000 req/s
#   SOAK_DURATION=3m SOAK_RATE=500 bench/soak.sh
#
# Environment: SOAK_DURATION [10m] SOAK_RATE [1000] SOAK_C [16] SOAK_INTERVAL [30s]
#   SAMPLE_EVERY [30] SOAK_PORT [18190] SOAK_UPSTREAM_PORT [18191]
#   SOAK_ADMIN_PORT [18192] LOG_LEVEL [WARN] (INFO logs one line per refusal)
#   OUT [bench/out] BUILD_TIMEOUT [600]
# Bounded by timeout(1) (duration + 15 min); the trap stops everything it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NAME=soak
SOAK_DURATION=${SOAK_DURATION:-10m}
SOAK_RATE=${SOAK_RATE:-1000}
SOAK_C=${SOAK_C:-16}
SOAK_INTERVAL=${SOAK_INTERVAL:-30s}
SAMPLE_EVERY=${SAMPLE_EVERY:-30}
PORT=${SOAK_PORT:-18190}
UPSTREAM_PORT=${SOAK_UPSTREAM_PORT:-18191}
ADMIN_PORT=${SOAK_ADMIN_PORT:-18192}
PORT2=
LOG_LEVEL=${LOG_LEVEL:-WARN}
OUT=${OUT:-bench/out}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-600}

[[ $SOAK_DURATION =~ ^[0-9]+[smh]$ ]] || { echo "SOAK_DURATION like 10m, 180s" >&2; exit 2; }
dur_s=$(echo "$SOAK_DURATION" | awk '{n=substr($0,1,length($0)-1); u=substr($0,length($0)); print n*(u=="h"?3600:(u=="m"?60:1))}')
[ "$dur_s" -le 7200 ] || { echo "SOAK_DURATION capped at 2h" >&2; exit 2; }
if [ -z "${SOAK_UNDER_TIMEOUT:-}" ]; then
	export SOAK_UNDER_TIMEOUT=1
	exec timeout -k 10 $((dur_s + BUILD_TIMEOUT + 300)) "$ROOT/bench/soak.sh" "$@"
fi

source bench/flood_common.sh
build
make_tokens
start_all

echo "== soak: $SOAK_DURATION at $SOAK_RATE req/s, $SOAK_C connections, intervals of $SOAK_INTERVAL; load: $(uptime | sed 's/.*load/load/')"
metrics "$TMPD/m0"
sampler_start "$OUT/soak-samples.tsv"
START_EPOCH=$(date +%s)
bench/out/loadgen mixed -url "http://127.0.0.1:$PORT" -real-file "$TMPD/real.txt" -duration "$SOAK_DURATION" \
	-interval "$SOAK_INTERVAL" -rate "$SOAK_RATE" -c "$SOAK_C" >"$OUT/soak-loadgen.jsonl" 2>"$OUT/logs/soak-loadgen.log" ||
	die "loadgen failed: $(tail -3 "$OUT/logs/soak-loadgen.log")"
sleep 1
metrics "$TMPD/m1"
# One last sample after the load.
sampler_stop
kill -0 "$CADDY_PID" 2>/dev/null || die "caddy died during the soak"
rss=$(awk '/^VmRSS:/{print $2}' "/proc/$CADDY_PID/status")
g=$(awk '$1=="go_goroutines"{print $2}' "$TMPD/m1")
h=$(awk '$1=="go_memstats_heap_inuse_bytes"{print $2}' "$TMPD/m1")
printf '%s\t%s\t%s\t%s\n' "$(date +%s)" "$rss" "$g" "$h" >>"$OUT/soak-samples.tsv"

"$PY" bench/flood_report.py soak --out "$OUT" --m0 "$TMPD/m0" --m1 "$TMPD/m1" --start "$START_EPOCH" \
	--cmd "SOAK_DURATION=$SOAK_DURATION SOAK_RATE=$SOAK_RATE SOAK_C=$SOAK_C bench/soak.sh" --log-level "$LOG_LEVEL"
echo "== wrote $OUT/soak.json, $OUT/soak.md"
