# Shared setup of bench/flood.sh and bench/soak.sh (sourced, not run).
#
# Expects: ROOT, OUT, NAME (flood|soak), PORT, UPSTREAM_PORT, ADMIN_PORT,
# PORT2 (optional second listener with the default throttle), LOG_LEVEL,
# BUILD_TIMEOUT, SAMPLE_EVERY. Provides: die, cleanup trap, build, make_tokens,
# start_all, metrics <file>, sampler_start <file>, PIDS, TMPD, CADDY_PID.
# Everything listens on 127.0.0.1 only; the trap stops every process started.

die() {
	echo "bench/$NAME.sh: FAIL: $*" >&2
	exit 1
}

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
	[ "$rc" -ne 0 ] && echo "bench/$NAME.sh: exit $rc; logs in $OUT/logs/" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PY=$(command -v python3 || true)
[ -n "$PY" ] || { [ -x /root/.pyenv/shims/python3 ] && PY=/root/.pyenv/shims/python3; } || true
[ -n "$PY" ] || die "python3 not found"
PY=$("$PY" -c 'import sys; print(sys.executable)')
for t in go curl ss timeout; do command -v "$t" >/dev/null || die "$t not found"; done

for p in "$PORT" "$UPSTREAM_PORT" "$ADMIN_PORT" ${PORT2:+"$PORT2"}; do
	if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is taken; set the *_PORT variables"; fi
done

# 1000 stampede connections + the flood need file descriptors (Caddy inherits this).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$OUT/logs"

build() {
	echo "== build"
	timeout "$BUILD_TIMEOUT" go build -o bench/out/caddy ./cmd/xcaddy-build
	timeout "$BUILD_TIMEOUT" go build -o bench/out/upstream ./bench/upstream
	timeout "$BUILD_TIMEOUT" go build -o bench/out/loadgen ./bench/loadgen
	CADDY=bench/out/caddy
}

# make_tokens: a temp key file with 3 real read tokens (ws_bench) and one
# never-used token for the stampede. Tokens stay in $TMPD, never on a command line.
make_tokens() {
	TMPD=$(mktemp -d -t "deplo-$NAME.XXXXXX")
	KEYS=$TMPD/keys.json
	printf '{"tokens": []}\n' >"$KEYS"
	local i t
	: >"$TMPD/real.txt"
	for i in 1 2 3; do
		t=$(timeout 30 "$CADDY" deplo-auth token create --keys-file "$KEYS" --name "real-$i" --workspace ws_bench --scopes read 2>>"$OUT/logs/token-create.log")
		[[ $t =~ ^sk_live_[0-9A-Za-z]{32}$ ]] || die "token create printed no token"
		echo "$t" >>"$TMPD/real.txt"
	done
	t=$(timeout 30 "$CADDY" deplo-auth token create --keys-file "$KEYS" --name stampede --workspace ws_bench --scopes read 2>>"$OUT/logs/token-create.log")
	[[ $t =~ ^sk_live_[0-9A-Za-z]{32}$ ]] || die "token create printed no token"
	echo "$t" >"$TMPD/stampede.txt"
	chmod 600 "$TMPD"/*.txt
}

# site <port> <throttle line>
site() {
	cat <<EOF
http://:$1 {
	bind 127.0.0.1
	deplo_auth {
		keys file $KEYS
		cache {
			max_entries 10000
		}
		$2
		route GET /healthz public
		route GET /v1/workspaces/{workspace}/projects read
		route POST /v1/workspaces/{workspace}/projects/{project}/deployments deploy
	}
	reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
EOF
}

start_all() {
	{
		cat <<EOF
{
	admin 127.0.0.1:$ADMIN_PORT
	auto_https off
	persist_config off
	grace_period 1s
	log {
		level $LOG_LEVEL
	}
}
EOF
		site "$PORT" "throttle off"
		# The second listener keeps the default throttle (60 failures / 1m per client IP).
		[ -n "${PORT2:-}" ] && site "$PORT2" "# throttle: default"
	} >"$TMPD/Caddyfile"
	cp "$TMPD/Caddyfile" "$OUT/logs/$NAME.Caddyfile"
	echo "== start upstream :$UPSTREAM_PORT, caddy :$PORT${PORT2:+ and :$PORT2 (default throttle)} (admin :$ADMIN_PORT), log level $LOG_LEVEL"
	bench/out/upstream -addr "127.0.0.1:$UPSTREAM_PORT" >"$OUT/logs/$NAME-upstream.log" 2>&1 &
	UPSTREAM_PID=$!
	PIDS+=("$UPSTREAM_PID")
	"$CADDY" run --config "$TMPD/Caddyfile" --adapter caddyfile >"$OUT/logs/$NAME-caddy.log" 2>&1 &
	CADDY_PID=$!
	PIDS+=("$CADDY_PID")
	local i
	for i in $(seq 1 200); do
		kill -0 "$CADDY_PID" 2>/dev/null || die "caddy exited at start: $(tail -3 "$OUT/logs/$NAME-caddy.log")"
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/healthz" &&
			curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$ADMIN_PORT/metrics"; then
			break
		fi
		sleep 0.1
	done
	[ "$i" -lt 200 ] || die "caddy did not answer within 20 s"
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $(head -1 "$TMPD/real.txt")" \
		"http://127.0.0.1:$PORT/v1/workspaces/ws_bench/projects")
	[ "$code" = 200 ] || die "a real token got $code, want 200"
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/v1/workspaces/ws_bench/projects")
	[ "$code" = 401 ] || die "no credential got $code, want 401"
}

# metrics <file>: the admin /metrics text and /deplo-auth/status JSON.
metrics() {
	curl -s --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" >"$1" || die "metrics scrape failed"
	curl -s --max-time 10 "http://127.0.0.1:$ADMIN_PORT/deplo-auth/status" >"$1.status.json" || true
}

# sampler_start <tsv>: every SAMPLE_EVERY s, "epoch rss_kb goroutines heap_inuse_bytes".
sampler_start() {
	local f=$1
	printf 'epoch\trss_kb\tgoroutines\theap_inuse_bytes\n' >"$f"
	(
		trap 'exit 0' TERM
		while kill -0 "$CADDY_PID" 2>/dev/null; do
			rss=$(awk '/^VmRSS:/{print $2}' "/proc/$CADDY_PID/status" 2>/dev/null || echo 0)
			m=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" || true)
			g=$(printf '%s\n' "$m" | awk '$1=="go_goroutines"{print $2}')
			h=$(printf '%s\n' "$m" | awk '$1=="go_memstats_heap_inuse_bytes"{print $2}')
			printf '%s\t%s\t%s\t%s\n' "$(date +%s.%N | cut -c1-14)" "${rss:-0}" "${g:-0}" "${h:-0}" >>"$f"
			sleep "$SAMPLE_EVERY" &
			wait $!
		done
	) &
	SAMPLER_PID=$!
	PIDS+=("$SAMPLER_PID")
}

sampler_stop() {
	kill -TERM "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
}
