#!/usr/bin/env bash
# Flood and stampede test of deplo_auth (the API-token path) on loopback.
#
# One Caddy built from this repository with deplo_auth (key file with a few
# real tokens made here, `cache { max_entries 10000 }` so the bound shows),
# the fast upstream (bench/upstream), the admin endpoint for /metrics, and:
#   (a) stampede: 1000 goroutines, each on its own warm connection, released
#       together with one never-used token (cold cache); the store lookups are
#       the delta of deplo_auth_store_requests_total (must be exactly 1);
#   (b) flood, throttle off: FLOOD_N requests, each with a distinct fresh
#       well-formed unknown token (valid checksum), at full speed, while a few
#       real clients keep sending the real tokens; samples Caddy's VmRSS and
#       go_goroutines every SAMPLE_EVERY s. N is FLOOD_N or, if a calibration
#       run shows that would take longer than FLOOD_BUDGET seconds, what fits;
#   (c) the same flood, shorter, against a second listener with the default
#       throttle (60 failures / 1m per client IP). The real clients share the
#       flood's IP (127.0.0.1), so they are throttled too: that is reported.
# Writes $OUT/flood.json and $OUT/flood.md (logs and raw files in $OUT/logs).
#
#   bench/flood.sh
#   FLOOD_N=200000 bench/flood.sh
#
# Environment: FLOOD_N [1000000] FLOOD_BUDGET [420] s  FLOOD_MAX [480] s hard stop
#   FLOOD_C [32] flood connections  REAL_C [4] real-client connections
#   CAL_N [20000] calibration requests  STAMPEDE_C [1000]
#   THROTTLE_N [20000] THROTTLE_MAX [60] s  SAMPLE_EVERY [3]
#   FLOOD_PORT [18180] FLOOD_PORT2 [18183] FLOOD_UPSTREAM_PORT [18181] FLOOD_ADMIN_PORT [18182]
#   LOG_LEVEL [WARN] (INFO logs one line per refusal: a million lines)
#   OUT [bench/out] BUILD_TIMEOUT [600]
# Bounded by timeout(1); the trap stops everything it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NAME=flood
FLOOD_N=${FLOOD_N:-1000000}
FLOOD_BUDGET=${FLOOD_BUDGET:-420}
FLOOD_MAX=${FLOOD_MAX:-480}
FLOOD_C=${FLOOD_C:-32}
REAL_C=${REAL_C:-4}
CAL_N=${CAL_N:-20000}
STAMPEDE_C=${STAMPEDE_C:-1000}
THROTTLE_N=${THROTTLE_N:-20000}
THROTTLE_MAX=${THROTTLE_MAX:-60}
SAMPLE_EVERY=${SAMPLE_EVERY:-3}
PORT=${FLOOD_PORT:-18180}
PORT2=${FLOOD_PORT2:-18183}
UPSTREAM_PORT=${FLOOD_UPSTREAM_PORT:-18181}
ADMIN_PORT=${FLOOD_ADMIN_PORT:-18182}
LOG_LEVEL=${LOG_LEVEL:-WARN}
OUT=${OUT:-bench/out}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-600}

for v in FLOOD_N FLOOD_BUDGET FLOOD_MAX FLOOD_C REAL_C CAL_N STAMPEDE_C THROTTLE_N THROTTLE_MAX SAMPLE_EVERY; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v must be a non-negative integer" >&2; exit 2; }
done
[ "$FLOOD_MAX" -le 1800 ] && [ "$THROTTLE_MAX" -le 600 ] || { echo "FLOOD_MAX ≤ 1800, THROTTLE_MAX ≤ 600" >&2; exit 2; }
if [ -z "${FLOOD_UNDER_TIMEOUT:-}" ]; then
	export FLOOD_UNDER_TIMEOUT=1
	exec timeout -k 10 $((BUILD_TIMEOUT + FLOOD_MAX + THROTTLE_MAX + 300)) "$ROOT/bench/flood.sh" "$@"
fi

source bench/flood_common.sh
build
make_tokens
start_all
RSS_START=$(awk '/^VmRSS:/{print $2}' "/proc/$CADDY_PID/status")
R=$OUT/logs/flood-raw
mkdir -p "$R"
rm -f "$R"/*
LG=bench/out/loadgen
BASE=http://127.0.0.1:$PORT
echo "== load: $(uptime | sed 's/.*load/load/')"

# ---- (a) stampede ------------------------------------------------------------------
echo "== (a) stampede: $STAMPEDE_C goroutines, one never-used token"
metrics "$R/stampede.m0"
timeout 120 "$LG" stampede -url "$BASE" -c "$STAMPEDE_C" -real-file "$TMPD/stampede.txt" >"$R/stampede.json" 2>"$OUT/logs/flood-stampede.log" ||
	die "stampede failed: $(tail -3 "$OUT/logs/flood-stampede.log")"
metrics "$R/stampede.m1"

# ---- calibration -------------------------------------------------------------------
echo "== calibration: $CAL_N flood requests"
timeout 300 "$LG" flood -url "$BASE" -n "$CAL_N" -c "$FLOOD_C" -real-c "$REAL_C" -real-file "$TMPD/real.txt" \
	-max-duration 120s >"$R/calibration.json" 2>"$OUT/logs/flood-calibration.log" || die "calibration failed"
read -r N REASON < <("$PY" - "$R/calibration.json" "$FLOOD_N" "$FLOOD_BUDGET" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); want = int(sys.argv[2]); budget = int(sys.argv[3])
fit = int(r["flood_rps"] * budget // 1000 * 1000)
if fit >= want:
    print(want, f"FLOOD_N={want} fits in {budget} s at the calibrated rate")
else:
    print(max(fit, 1000), f"FLOOD_N={want} would take ~{want / r['flood_rps']:.0f} s at the calibrated rate; capped to {budget} s")
EOF
)
echo "   $("$PY" -c 'import json,sys; print("%.0f req/s" % json.load(open(sys.argv[1]))["flood_rps"])' "$R/calibration.json") → N=$N ($REASON)"

# ---- (b) flood -------------------------------------------------------------------------
echo "== (b) flood: N=$N, $FLOOD_C connections + $REAL_C real-client connections, throttle off (hard stop ${FLOOD_MAX}s)"
metrics "$R/flood.m0"
sampler_start "$R/flood-samples.tsv"
timeout $((FLOOD_MAX + 60)) "$LG" flood -url "$BASE" -n "$N" -c "$FLOOD_C" -real-c "$REAL_C" -real-file "$TMPD/real.txt" \
	-max-duration "${FLOOD_MAX}s" -progress 15s >"$R/flood.json" 2>"$OUT/logs/flood-loadgen.log" || die "flood failed: $(tail -3 "$OUT/logs/flood-loadgen.log")"
sleep "$SAMPLE_EVERY"
sampler_stop
metrics "$R/flood.m1"
kill -0 "$CADDY_PID" 2>/dev/null || die "caddy died during the flood"

# ---- (c) throttled flood ------------------------------------------------------------------
echo "== (c) flood against the default throttle: $THROTTLE_N requests (hard stop ${THROTTLE_MAX}s)"
metrics "$R/throttled.m0"
timeout $((THROTTLE_MAX + 60)) "$LG" flood -url "http://127.0.0.1:$PORT2" -n "$THROTTLE_N" -c "$FLOOD_C" -real-c "$REAL_C" \
	-real-file "$TMPD/real.txt" -max-duration "${THROTTLE_MAX}s" >"$R/throttled.json" 2>"$OUT/logs/flood-throttled.log" ||
	die "throttled flood failed"
metrics "$R/throttled.m1"

cat >"$R/phases.json" <<EOF
{
 "config": {"max_entries": 10000, "log_level": "$LOG_LEVEL", "sample_every": $SAMPLE_EVERY, "flood_c": $FLOOD_C,
            "real_c": $REAL_C, "flood_n_env": $FLOOD_N, "rss_kb_at_start": $RSS_START, "flood_budget_s": $FLOOD_BUDGET, "flood_max_s": $FLOOD_MAX},
 "stampede": {"m0": "$R/stampede.m0", "m1": "$R/stampede.m1", "result": "$R/stampede.json"},
 "calibration": {"result": "$R/calibration.json", "n_chosen": $N, "reason": "$REASON"},
 "flood": {"m0": "$R/flood.m0", "m1": "$R/flood.m1", "result": "$R/flood.json", "samples": "$R/flood-samples.tsv"},
 "throttled": {"m0": "$R/throttled.m0", "m1": "$R/throttled.m1", "result": "$R/throttled.json"}
}
EOF
cmd="bench/flood.sh"
for v in FLOOD_N FLOOD_BUDGET FLOOD_C REAL_C LOG_LEVEL; do printenv "$v" >/dev/null && cmd="$v=${!v} $cmd"; done
"$PY" bench/flood_report.py flood --out "$OUT" --phases "$R/phases.json" --cmd "$cmd"
echo "== wrote $OUT/flood.json, $OUT/flood.md"
