#!/usr/bin/env bash
# End-to-end benchmark of deplo_auth against the other ways to put auth in
# front of an API in Caddy (method: BENCHMARKS.md, "How each figure is measured").
#
#   bench/run.sh          full run: 5 interleaved rounds × 3 s per route
#   bench/run.sh smoke    1 round × 1 s per route: checks everything works end
#                         to end (all routes 200, results JSON written); for CI
#   bench/run.sh sidecar  nginx in front (examples/sidecar/nginx): plain proxy
#                         twice, auth_request → bench/authorizer, auth_request
#                         → the deplo_auth_sidecar app (bench/sidecar.caddy)
#                         on its Unix socket and on loopback TCP;
#                         5 interleaved rounds × 3 s per route;
#                         bench/out/sidecar/sidecar.{json,md} (bench/SIDECAR.md)
#   bench/run.sh instructions
#                         Caddy under valgrind's callgrind: instructions per
#                         request per route (bench/instructions.py), a figure
#                         that does not move with the machine's load; 2 rounds
#                         × 10 s per route at 4 connections, ~10 min
#
# Builds Caddy from this repository, the upstream and the authorizer
# (bench/upstream, bench/authorizer), makes a throwaway key file, API token,
# P-256 key pair, dashboard JWT and basic_auth password in a temp dir, starts
# ONE Caddy (bench/Caddyfile) on loopback, checks every route answers 200 with
# its credential and 401 without, drives wrk (bench/drive.py), summarises
# (bench/report.py) into bench/out/results.{json,md} and
# bench/out/throughput.svg. A full run copies the chart to bench/throughput.svg.
#
# Environment (defaults in brackets; smoke mode forces ROUNDS=1 DURATION=1
# WARMUP=0 REDO=0 and writes to bench/out/smoke):
#   ROUNDS [5]  DURATION [3] seconds per route per round  CONNECTIONS [32]
#   THREADS [1] wrk threads   WARMUP [1] seconds per route before round 1
#   REDO [1] times a round is redone when other processes used more than
#   OTHER_CPU_MAX [0.25] cores during one of its runs
#   BENCH_PORT [18080] UPSTREAM_PORT [18081] AUTHZ_PORT [18082] ADMIN_PORT [18083]
#   NGINX_PORT [18084] (sidecar mode) VERIFY_PORT [18085] (the sidecar's TCP listener)
#   OUT [bench/out or bench/out/smoke]  BUILD_TIMEOUT [600] seconds
#   CADDYFILE [bench/Caddyfile]  another config with the same routes, e.g. to
#   measure a global option's effect on every route (see BENCHMARKS.md)
#   BENCH_TIMEOUT  overall bound in seconds (default: computed from the above)
#
# Everything listens on 127.0.0.1 only. The script refuses to start when a port
# is taken, bounds every step, and stops every process it started on exit,
# Ctrl-C or timeout.
set -euo pipefail

MODE=${1:-full}
case "$MODE" in
full | smoke | instructions | sidecar) ;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: bench/run.sh [full|smoke|instructions|sidecar]" >&2
	exit 2
	;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ "$MODE" = smoke ]; then
	ROUNDS=1 DURATION=1 WARMUP=0 REDO=0
	OUT=${OUT:-bench/out/smoke}
fi
# Under callgrind Caddy is ~50 times slower: fewer connections, longer runs,
# and far longer waits for its start and for the first bcrypt.
WAIT_TRIES=200 CURL_MAX_TIME=15 START_EXTRA=0
if [ "$MODE" = instructions ]; then
	ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-10} CONNECTIONS=${CONNECTIONS:-4} WARMUP=0 REDO=0
	OUT=${OUT:-bench/out/instructions}
	WAIT_TRIES=1800 CURL_MAX_TIME=300 START_EXTRA=600
fi
[ "$MODE" = sidecar ] && OUT=${OUT:-bench/out/sidecar}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-1}
REDO=${REDO:-1}
OTHER_CPU_MAX=${OTHER_CPU_MAX:-0.25}
BENCH_PORT=${BENCH_PORT:-18080}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
AUTHZ_PORT=${AUTHZ_PORT:-18082}
ADMIN_PORT=${ADMIN_PORT:-18083}
NGINX_PORT=${NGINX_PORT:-18084}
VERIFY_PORT=${VERIFY_PORT:-18085}
OUT=${OUT:-bench/out}
CADDYFILE=${CADDYFILE:-bench/Caddyfile}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-600}
NROUTES=7
[ "$MODE" = sidecar ] && NROUTES=6

die() {
	echo "bench/run.sh: FAIL: $*" >&2
	exit 1
}

[ -f "$CADDYFILE" ] || die "CADDYFILE $CADDYFILE not found"
for v in ROUNDS DURATION CONNECTIONS THREADS WARMUP REDO BENCH_PORT UPSTREAM_PORT AUTHZ_PORT ADMIN_PORT NGINX_PORT VERIFY_PORT BUILD_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
[ "$MODE" != instructions ] || [ "$DURATION" -ge 5 ] || die "instructions: DURATION must be at least 5 s (Caddy serves ~100 requests/s under callgrind)"
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNECTIONS" -ge 1 ] && [ "$THREADS" -ge 1 ] ||
	die "ROUNDS, DURATION, CONNECTIONS and THREADS must be at least 1"
[ "$DURATION" -le 60 ] || die "DURATION is capped at 60 s per run"
[ "$CONNECTIONS" -ge "$THREADS" ] || die "CONNECTIONS must be at least THREADS"

# ---- overall bound: re-run this script under timeout(1) -----------------------
if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then
	limit=${BENCH_TIMEOUT:-$((BUILD_TIMEOUT + 90 + START_EXTRA + NROUTES * WARMUP + ROUNDS * NROUTES * (DURATION + 6) * (REDO + 1)))}
	export BENCH_UNDER_TIMEOUT=1 BENCH_LIMIT=$limit
	exec timeout -k 10 "$limit" "$ROOT/bench/run.sh" "$@"
fi

# ---- tools ---------------------------------------------------------------------
PY=$(command -v python3 || true)
[ -n "$PY" ] || { [ -x /root/.pyenv/shims/python3 ] && PY=/root/.pyenv/shims/python3; } || true
[ -n "$PY" ] || die "python3 not found"
PY=$("$PY" -c 'import sys; print(sys.executable)') # past pyenv's shim
tools=(go wrk curl openssl ss timeout)
[ "$MODE" = instructions ] && tools+=(valgrind callgrind_control)
if [ "$MODE" = sidecar ]; then
	NGINX=$(command -v nginx || true)
	[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; } || true
	[ -n "$NGINX" ] || die "nginx not found (apt-get install -y nginx-light)"
fi
for t in "${tools[@]}"; do
	command -v "$t" >/dev/null || die "$t not found$([ "$t" = wrk ] && echo ' (apt-get install -y wrk)')$([ "$t" = valgrind ] && echo ' (apt-get install -y valgrind)')"
done

# ---- ports ---------------------------------------------------------------------
ports=("$BENCH_PORT" "$UPSTREAM_PORT" "$AUTHZ_PORT" "$ADMIN_PORT" "$VERIFY_PORT")
[ "$MODE" = sidecar ] && ports+=("$NGINX_PORT")
for p in "${ports[@]}"; do
	if ss -Hltn "sport = :$p" | grep -q .; then
		die "port $p is taken ($(ss -Hltnp "sport = :$p" | head -1 | tr -s ' ')); set BENCH_PORT/UPSTREAM_PORT/AUTHZ_PORT/ADMIN_PORT/NGINX_PORT/VERIFY_PORT"
	fi
done

# ---- cleanup: stop everything this script started -------------------------------
PIDS=()
TMPD=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid i
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	[ -n "$TMPD" ] && rm -rf "$TMPD"
	if [ "$rc" -ne 0 ]; then
		echo "bench/run.sh: exit $rc ($MODE); logs in $OUT/logs/" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

UPTIME_START=$(uptime)
echo "== $MODE: rounds=$ROUNDS duration=${DURATION}s connections=$CONNECTIONS threads=$THREADS warmup=${WARMUP}s redo=$REDO (bound ${BENCH_LIMIT}s)"
echo "== load before: $UPTIME_START"

mkdir -p bench/out "$OUT/logs" "$OUT/raw"
rm -f "$OUT"/raw/*.txt "$OUT"/results.json "$OUT"/results.md "$OUT"/throughput.svg "$OUT"/runs.json "$OUT"/meta.json

# ---- 1. build -------------------------------------------------------------------
echo "== build"
timeout "$BUILD_TIMEOUT" go build -o bench/out/caddy ./cmd/xcaddy-build
timeout "$BUILD_TIMEOUT" go build -o bench/out/upstream ./bench/upstream
timeout "$BUILD_TIMEOUT" go build -o bench/out/authorizer ./bench/authorizer
CADDY=bench/out/caddy

# ---- 2. credentials (throwaway, in a temp dir) ------------------------------------
TMPD=$(mktemp -d -t deplo-bench.XXXXXX)
KEYS=$TMPD/keys.json
printf '{"tokens": []}\n' >"$KEYS"
TOKEN=$(timeout 30 "$CADDY" deplo-auth token create --keys-file "$KEYS" --name bench --workspace ws_bench --scopes read 2>"$OUT/logs/token-create.log")
[[ $TOKEN =~ ^sk_live_[0-9A-Za-z]{32}$ ]] || die "token create printed no token (see $OUT/logs/token-create.log)"
# The control route (/ident/) forwards the same identity headers, subject included.
TOKEN_ID=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"][0]["id"])' "$KEYS")
[[ $TOKEN_ID =~ ^[A-Za-z0-9_-]+$ ]] || die "no token id in $KEYS"

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMPD/jwt.key.pem" 2>/dev/null
openssl pkey -in "$TMPD/jwt.key.pem" -pubout -out "$TMPD/jwt.pub.pem" 2>/dev/null
# The JWT must outlive the run: 15 minutes, or longer for long runs.
ttl_min=$(((BENCH_LIMIT + 59) / 60 + 5))
[ "$ttl_min" -lt 15 ] && ttl_min=15
JWT=$(timeout 30 "$CADDY" deplo-auth jwt mint --key "$TMPD/jwt.key.pem" --alg ES256 --sub u1 --workspace ws_bench --scopes read --ttl "${ttl_min}m")
[[ $JWT =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || die "jwt mint printed no JWT"

BASIC_PASS=$(openssl rand -hex 12)
# bcrypt at Caddy's default cost (the hash-password default algorithm).
BASIC_HASH=$(timeout 120 "$CADDY" hash-password --plaintext "$BASIC_PASS")
BCRYPT_COST=$(printf '%s' "$BASIC_HASH" | cut -d'$' -f3)
BASIC_AUTH="Basic $(printf 'bench:%s' "$BASIC_PASS" | base64 -w0)"

cat >"$TMPD/routes.json" <<EOF
[
 {"name": "plain-a", "path": "/plain-a/ws_bench/x", "authorization": "Bearer $TOKEN"},
 {"name": "plain-b", "path": "/plain-b/ws_bench/x", "authorization": "Bearer $TOKEN"},
 {"name": "ident",   "path": "/ident/ws_bench/x",   "authorization": "Bearer $TOKEN"},
 {"name": "apikey",  "path": "/apikey/ws_bench/x",  "authorization": "Bearer $TOKEN"},
 {"name": "jwt",     "path": "/jwt/ws_bench/x",     "authorization": "Bearer $JWT"},
 {"name": "basic",   "path": "/basic/ws_bench/x",   "authorization": "$BASIC_AUTH"},
 {"name": "forward", "path": "/forward/ws_bench/x", "authorization": "Bearer $TOKEN"}
]
EOF

# ---- 3. processes ------------------------------------------------------------------
echo "== start upstream :$UPSTREAM_PORT, authorizer :$AUTHZ_PORT, caddy :$BENCH_PORT (admin :$ADMIN_PORT)"
bench/out/upstream -addr "127.0.0.1:$UPSTREAM_PORT" >"$OUT/logs/upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
BENCH_AUTHZ_TOKEN=$TOKEN bench/out/authorizer -addr "127.0.0.1:$AUTHZ_PORT" >"$OUT/logs/authorizer.log" 2>&1 &
AUTHZ_PID=$!
PIDS+=("$AUTHZ_PID")
CADDY_CMD=("$CADDY")
if [ "$MODE" = instructions ]; then
	# asyncpreemptoff: callgrind asserts on Go's preemption signals.
	CADDY_CMD=(env GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$OUT/raw/callgrind.out" "$CADDY")
	rm -f "$OUT"/raw/callgrind.out*
fi
BENCH_PORT=$BENCH_PORT BENCH_UPSTREAM_PORT=$UPSTREAM_PORT BENCH_AUTHZ_PORT=$AUTHZ_PORT \
	BENCH_ADMIN_PORT=$ADMIN_PORT BENCH_KEYS_FILE=$KEYS BENCH_JWT_PUBLIC_KEY=$TMPD/jwt.pub.pem \
	BENCH_BASIC_HASH=$BASIC_HASH BENCH_TOKEN_ID=$TOKEN_ID \
	BENCH_VERIFY_SOCKET=$TMPD/verify.sock BENCH_VERIFY_PORT=$VERIFY_PORT \
	"${CADDY_CMD[@]}" run --config "$CADDYFILE" --adapter caddyfile >"$OUT/logs/caddy.log" 2>&1 &
CADDY_PID=$!
PIDS+=("$CADDY_PID")

# wait_up <name> <pid> <url>: any HTTP answer within WAIT_TRIES / 10 s.
wait_up() {
	local i
	for i in $(seq 1 "$WAIT_TRIES"); do
		kill -0 "$2" 2>/dev/null || die "$1 exited at start; see $OUT/logs/$1.log: $(tail -3 "$OUT/logs/$1.log")"
		if curl -s -o /dev/null --max-time 1 "$3"; then return 0; fi
		sleep 0.1
	done
	die "$1 did not answer on $3 within $((WAIT_TRIES / 10)) s"
}
wait_up upstream "$UPSTREAM_PID" "http://127.0.0.1:$UPSTREAM_PORT/"
wait_up authorizer "$AUTHZ_PID" "http://127.0.0.1:$AUTHZ_PORT/verify"
wait_up caddy "$CADDY_PID" "http://127.0.0.1:$BENCH_PORT/plain-a/x"

# ---- checks: 200 with the credential, 401 without ------------------------------------
BASE=http://127.0.0.1:$BENCH_PORT
FIRST_TIMES=$TMPD/first-request.tsv
: >"$FIRST_TIMES"
# check <route> <path> <want status> [<authorization>]
check() {
	local name=$1 path=$2 want=$3 auth=${4:-} res code body t
	local args=(-s --max-time "$CURL_MAX_TIME" -o "$TMPD/body" -w '%{http_code} %{time_total}')
	[ -n "$auth" ] && args+=(-H "Authorization: $auth")
	res=$(curl "${args[@]}" "$BASE$path") || die "curl $path failed"
	code=${res%% *}
	t=${res#* }
	body=$(head -c 200 "$TMPD/body")
	[ "$code" = "$want" ] || die "$name: GET $path answered $code, want $want (body: $body)"
	if [ "$want" = 200 ] && [ "$body" != ok ]; then die "$name: GET $path answered '$body', want 'ok'"; fi
	if [ "$want" = 200 ]; then printf '%s\t%s\n' "$name" "$t" >>"$FIRST_TIMES"; fi
}
echo "== check routes"
while IFS=$'\t' read -r name path auth; do
	check "$name" "$path" 200 "$auth"
	case "$name" in
	plain-* | ident) ;;
	*) check "$name" "$path" 401 ;;
	esac
	case "$name" in
	apikey | jwt | forward) check "$name" "$path" 401 "Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" ;;
	esac
done < <("$PY" -c 'import json,sys
for r in json.load(open(sys.argv[1])): print(r["name"], r["path"], r["authorization"], sep="\t")' "$TMPD/routes.json")
# The API token on the JWT-only route and the JWT on the API-token route are refused.
check jwt /jwt/ws_bench/x 401 "Bearer $TOKEN"
check apikey /apikey/ws_bench/x 401 "Bearer $JWT"
echo "   all routes: 200 with the credential, 401 without or with a wrong one"
# The control route must forward exactly what the API-token route forwards.
fwd_ident=$(curl -s --max-time "$CURL_MAX_TIME" -H "Authorization: Bearer $TOKEN" "$BASE/ident/ws_bench/_headers") || die "curl /ident/…/_headers failed"
fwd_apikey=$(curl -s --max-time "$CURL_MAX_TIME" -H "Authorization: Bearer $TOKEN" "$BASE/apikey/ws_bench/_headers") || die "curl /apikey/…/_headers failed"
[ "$fwd_ident" = "$fwd_apikey" ] && [[ $fwd_apikey == *X-Deplo-Subject:* ]] ||
	die "the control route forwards other headers than the API-token route:
--- /ident/
$fwd_ident
--- /apikey/
$fwd_apikey"
echo "   the control route forwards the same headers as the API-token route"
echo "   first request per route (cold caches), seconds: $(tr '\t\n' '= ' <"$FIRST_TIMES")"

# ---- 4s. sidecar mode: nginx in front -------------------------------------------------
if [ "$MODE" = sidecar ]; then
	NGX=$TMPD/nginx
	mkdir -p "$NGX/tmp"
	EX=$ROOT/examples/sidecar/nginx
	# The loopback-TCP variant: the example's verify location, renamed.
	awk '/^location = \/_deplo_verify/{p=1} p{print} p&&/^}/{exit}' "$EX/server.conf" |
		sed 's#/_deplo_verify#/_deplo_verify_tcp#; s#http://deplo_verify;#http://deplo_verify_tcp;#' >"$NGX/verify-tcp.conf"
	sed 's#auth_request /_deplo_verify;#auth_request /_deplo_verify_tcp;#' "$EX/location.conf" >"$NGX/location-tcp.conf"
	grep -q _deplo_verify_tcp "$NGX/verify-tcp.conf" || die "could not derive the TCP verify location from $EX/server.conf"
	user=""
	[ "$(id -u)" = 0 ] && user="user root;" # the workers must reach the socket in the 0700 temp dir
	cat >"$NGX/nginx.conf" <<NGINX
$user
worker_processes 1;
error_log $(cd "$OUT" && pwd)/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $NGX/tmp/body;
	proxy_temp_path $NGX/tmp/proxy;
	fastcgi_temp_path $NGX/tmp/fastcgi;
	uwsgi_temp_path $NGX/tmp/uwsgi;
	scgi_temp_path $NGX/tmp/scgi;
	upstream bench_upstream { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
	upstream deplo_verify { server unix:$TMPD/verify.sock; keepalive 64; }
	upstream deplo_verify_tcp { server 127.0.0.1:$VERIFY_PORT; keepalive 64; }
	upstream bench_authz { server 127.0.0.1:$AUTHZ_PORT; keepalive 64; }
	include $EX/http.conf;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		proxy_http_version 1.1;
		include $EX/server.conf;
		include $NGX/verify-tcp.conf;
		location = /_authz {
			internal;
			proxy_pass http://bench_authz/verify;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
		}
		location /nginx-plain-a/ {
			proxy_set_header Connection "";
			proxy_pass http://bench_upstream;
		}
		location /nginx-plain-b/ {
			proxy_set_header Connection "";
			proxy_pass http://bench_upstream;
		}
		location /nginx-authz/ {
			auth_request /_authz;
			auth_request_set \$bench_subject \$upstream_http_x_auth_subject;
			proxy_set_header X-Auth-Subject \$bench_subject;
			proxy_set_header Connection "";
			proxy_pass http://bench_upstream;
		}
		location /nginx-verify/ {
			include $EX/location.conf;
			proxy_set_header Connection "";
			proxy_pass http://bench_upstream;
		}
		location /nginx-verify-tcp/ {
			include $NGX/location-tcp.conf;
			proxy_set_header Connection "";
			proxy_pass http://bench_upstream;
		}
	}
}
NGINX
	"$NGINX" -t -q -p "$NGX" -c "$NGX/nginx.conf" -g "daemon off; pid $NGX/nginx.pid;" 2>>"$OUT/logs/nginx-error.log" ||
		die "nginx -t failed; see $OUT/logs/nginx-error.log"
	"$NGINX" -p "$NGX" -c "$NGX/nginx.conf" -g "daemon off; pid $NGX/nginx.pid;" >"$OUT/logs/nginx.log" 2>&1 &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	wait_up nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/nginx-plain-a/x"
	NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
	[ -n "$NGINX_WORKER" ] || die "no nginx worker process"
	NBASE=http://127.0.0.1:$NGINX_PORT
	routes_json='['
	for r in nginx-plain-a nginx-plain-b nginx-authz nginx-verify nginx-verify-tcp; do
		routes_json+="{\"name\": \"$r\", \"url\": \"$NBASE/$r/ws_bench/x\", \"authorization\": \"Bearer $TOKEN\"},"
	done
	printf '%s]\n' "${routes_json%,}" >"$TMPD/sidecar-routes.json"
	BASE=$NBASE
	for r in nginx-plain-a nginx-plain-b nginx-authz nginx-verify nginx-verify-tcp; do
		check "$r" "/$r/ws_bench/x" 200 "Bearer $TOKEN"
	done
	for r in nginx-authz nginx-verify nginx-verify-tcp; do
		check "$r" "/$r/ws_bench/x" 401
		check "$r" "/$r/ws_bench/x" 401 "Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	done
	# The verify routes forward the API token's identity to the upstream.
	for r in nginx-verify nginx-verify-tcp; do
		fwd=$(curl -s --max-time "$CURL_MAX_TIME" -H "Authorization: Bearer $TOKEN" "$NBASE/$r/ws_bench/_headers") || die "curl $r/_headers failed"
		[[ $fwd == *"X-Deplo-Subject: $TOKEN_ID"* ]] || die "$r forwards no identity: $fwd"
	done
	echo "   nginx routes: 200 with the token, 401 without or with a wrong one; verify routes forward the identity"
	echo "== load before the run: $(uptime)"
	"$PY" bench/drive.py --routes "$TMPD/sidecar-routes.json" --base-url "$NBASE" --out "$OUT" \
		--lua bench/wrk-report.lua --caddy-pid "$CADDY_PID" --upstream-pid "$UPSTREAM_PID" \
		--authorizer-pid "$AUTHZ_PID" --pid "nginx=$NGINX_WORKER" --rounds "$ROUNDS" --duration "$DURATION" \
		--warmup "$WARMUP" --threads "$THREADS" --connections "$CONNECTIONS" --redo "$REDO" --other-cpu-max "$OTHER_CPU_MAX"
	echo
	"$PY" bench/sidecar_report.py --out "$OUT"
	echo "== wrote $OUT/sidecar.json, $OUT/sidecar.md (command: bench/run.sh sidecar; load after: $(uptime))"
	exit 0
fi

# ---- 4. load -------------------------------------------------------------------------
if [ "$MODE" = instructions ]; then
	echo "== instructions per request (callgrind), $ROUNDS rounds × ${DURATION}s per route, $CONNECTIONS connections"
	"$PY" bench/instructions.py --routes "$TMPD/routes.json" --base-url "$BASE" --out "$OUT" \
		--lua bench/wrk-report.lua --caddy-pid "$CADDY_PID" --dump-prefix "$OUT/raw/callgrind.out" \
		--rounds "$ROUNDS" --duration "$DURATION" --connections "$CONNECTIONS" --caddyfile "$CADDYFILE"
	echo
	echo "== wrote $OUT/instructions.json, $OUT/instructions.md (load after: $(uptime))"
	exit 0
fi
UPTIME_RUN=$(uptime)
echo "== load before the run: $UPTIME_RUN"
"$PY" bench/drive.py --routes "$TMPD/routes.json" --base-url "$BASE" --out "$OUT" \
	--lua bench/wrk-report.lua --caddy-pid "$CADDY_PID" --upstream-pid "$UPSTREAM_PID" \
	--authorizer-pid "$AUTHZ_PID" --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" \
	--threads "$THREADS" --connections "$CONNECTIONS" --redo "$REDO" --other-cpu-max "$OTHER_CPU_MAX"
UPTIME_END=$(uptime)
kill -0 "$CADDY_PID" 2>/dev/null || die "caddy died during the run; see $OUT/logs/caddy.log"

# ---- 5./6. report ---------------------------------------------------------------------
cmdline="bench/run.sh"
[ "$MODE" = smoke ] && cmdline+=" smoke"
for v in CADDYFILE ROUNDS DURATION CONNECTIONS THREADS WARMUP REDO OTHER_CPU_MAX; do
	# Show the parameters that were set in the environment (not in smoke mode).
	if [ "$MODE" = full ] && printenv "$v" >/dev/null; then cmdline="$v=${!v} $cmdline"; fi
done
export M_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) M_CMD=$cmdline M_MODE=$MODE \
	M_UPTIME_START=$UPTIME_START M_UPTIME_RUN=$UPTIME_RUN M_UPTIME_END=$UPTIME_END \
	M_CADDY=$("$CADDY" version | cut -d' ' -f1) M_GO=$(go version | cut -d' ' -f3-) \
	M_WRK=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2) M_GIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	M_DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo 1 || echo 0) \
	M_FIRST=$FIRST_TIMES M_BCRYPT_COST=$BCRYPT_COST M_JWT_TTL=${ttl_min}m \
	ROUNDS DURATION CONNECTIONS THREADS WARMUP REDO OTHER_CPU_MAX
"$PY" - "$OUT/meta.json" <<'EOF'
import json, os, re, sys
e = os.environ
def la(s):
    m = re.search(r"load average: (.*)$", s)
    return m.group(1) if m else s
first = {}
with open(e["M_FIRST"]) as f:
    for line in f:
        name, t = line.split("\t")
        first.setdefault(name, float(t))
model = "?"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
meta = {
    "date": e["M_DATE"], "command": e["M_CMD"], "mode": e["M_MODE"],
    "params": {k.lower(): (float(e[k]) if k == "OTHER_CPU_MAX" else int(e[k]))
               for k in ("ROUNDS", "DURATION", "CONNECTIONS", "THREADS", "WARMUP", "REDO", "OTHER_CPU_MAX")},
    "uptime_start": e["M_UPTIME_START"].strip(), "uptime_before_run": e["M_UPTIME_RUN"].strip(),
    "uptime_after_run": e["M_UPTIME_END"].strip(),
    "loadavg_before": la(e["M_UPTIME_RUN"].strip()), "loadavg_after": la(e["M_UPTIME_END"].strip()),
    "nproc": os.cpu_count(), "cpu_model": model,
    "caddy_version": e["M_CADDY"], "go_version": e["M_GO"], "wrk_version": e["M_WRK"],
    "git_commit": e["M_GIT"], "git_dirty": e["M_DIRTY"] == "1",
    "first_request_seconds": first,
    "bcrypt_cost": int(e["M_BCRYPT_COST"]), "jwt_ttl": e["M_JWT_TTL"],
    "notes": [
        f"basic_auth: bcrypt cost {int(e['M_BCRYPT_COST'])} (Caddy's default); the Caddyfile `basic_auth` "
        "directive always turns Caddy's hash cache on (no option to turn it off), so after the first request "
        "each request is a map lookup keyed by hash+password; the first request took "
        f"{first.get('basic', float('nan')) * 1000:.0f} ms (a bcrypt).",
        "deplo_auth: one API token and one JWT for the whole run, so both hit the module's caches "
        "(token cache; JWT verification cache) after the first request, as a client reusing its credential does.",
        "forward_auth: the authorizer is a minimal Go server comparing one header (no store, no logging): "
        "a lower bound of Oathkeeper/Authelia; it costs one extra loopback HTTP round trip per request.",
        "Plain routes receive the same `Authorization: Bearer sk_live_…` header as the API-token route, ignored.",
    ],
}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f, indent=1)
EOF
echo
# The chart gets a third panel from `run.sh instructions` when that ran on
# this very commit with the same Caddyfile.
report_args=(--out "$OUT")
INSTR=$OUT/instructions/instructions.json
if [ "$MODE" = full ] && [ -f "$INSTR" ]; then
	if "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if (d.get("git_commit"), d.get("caddyfile")) == (sys.argv[2], sys.argv[3]) else 1)' \
		"$INSTR" "$(git rev-parse --short HEAD 2>/dev/null)" "$CADDYFILE"; then
		report_args+=(--instructions "$INSTR")
	else
		echo "note: $INSTR is from another commit or Caddyfile; not charted (run bench/run.sh instructions first)"
	fi
fi
"$PY" bench/report.py "${report_args[@]}"

# ---- smoke: the JSON must hold every route ----------------------------------------------
"$PY" - "$OUT/results.json" "$NROUTES" <<'EOF' || die "results.json incomplete"
import json, sys
d = json.load(open(sys.argv[1]))
routes = {r["route"]: r for r in d["summary"]["routes"]}
want = {"plain-a", "plain-b", "ident", "apikey", "jwt", "basic", "forward"}
missing = want - set(routes)
assert not missing, f"missing routes {missing}"
assert all(r["rps"]["median"] > 0 for r in routes.values()), "a route served no requests"
EOF

if [ "$MODE" = full ] && [ "$CADDYFILE" = bench/Caddyfile ]; then
	cp "$OUT/throughput.svg" bench/throughput.svg
	echo
	echo "== wrote $OUT/results.json, $OUT/results.md, $OUT/throughput.svg; copied the chart to bench/throughput.svg"
elif [ "$MODE" = full ]; then
	echo
	echo "== wrote $OUT/results.json, $OUT/results.md, $OUT/throughput.svg (with $CADDYFILE: bench/throughput.svg left alone)"
else
	echo
	echo "== smoke OK: all routes 200, $OUT/results.json written"
fi
echo "== load after: $UPTIME_END"
