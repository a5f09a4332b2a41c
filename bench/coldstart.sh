#!/usr/bin/env bash
# Cold start: from `git clone` to the first authenticated 200, as a new user
# following the README verbatim, with empty Go module and build caches
# (GOMODCACHE and GOCACHE in a temporary directory; modules come from the
# proxy, so the machine needs the network).
#
#   bench/coldstart.sh             clone → README's first command → the walk-through's
#                                  token create → its first authenticated curl (200)
#   bench/coldstart.sh breakdown   the same clone, then: modules for the build only,
#                                  Caddy with the standard modules alone (cold build
#                                  cache), then this repository's binary on top of it
#
# It uses the README's ports (:8080, admin localhost:2019, upstream 9081):
# they must be free. SRC=<path or URL> clones another copy. Prints the machine's load (uptime) before and after:
# figures from a busy machine are not a quiet machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-$(git rev-parse --show-toplevel)}   # the repository to clone
MODE=${1:-run}

for p in 8080 2019 9081; do
	if ss -Hltn "sport = :$p" | grep -q .; then
		echo "port $p is taken: the README's Caddy could not start" >&2
		exit 1
	fi
done

T=$(mktemp -d /tmp/deplo-coldstart.XXXXXX)
caddy_pid=""
cleanup() {
	if [ -n "$caddy_pid" ]; then kill -- -"$caddy_pid" 2>/dev/null || true; wait "$caddy_pid" 2>/dev/null || true; fi
	chmod -R u+w "$T" 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT
export GOMODCACHE=$T/gomodcache GOCACHE=$T/gocache
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== $(date -u +%FT%TZ) $(go version) on $(nproc) cores; load:$(uptime | sed 's/.*load average: / /')"
t0=$(now)
git clone -q "$SRC" "$T/repo"
cd "$T/repo"
echo "clone                                 $(since "$t0") s"

if [ "$MODE" = breakdown ]; then
	t=$(now)
	go list -deps ./cmd/xcaddy-build >/dev/null
	echo "modules the build needs (proxy)       $(since "$t") s, $(du -sm "$GOMODCACHE" | cut -f1) MB"
	mkdir -p "$T/caddyonly" cmd/caddyonly
	cat >cmd/caddyonly/main.go <<'EOF'
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() { caddycmd.Main() }
EOF
	t=$(now)
	go build -o "$T/caddyonly/caddy" ./cmd/caddyonly
	echo "build: Caddy + standard modules only  $(since "$t") s, $(du -m "$T/caddyonly/caddy" | cut -f1) MB"
	t=$(now)
	go build -o "$T/caddy" ./cmd/xcaddy-build
	echo "build: + deplo-auth, on that cache    $(since "$t") s, $(du -m "$T/caddy" | cut -f1) MB"
	echo "build cache $(du -sm "$GOCACHE" | cut -f1) MB, module cache $(du -sm "$GOMODCACHE" | cut -f1) MB"
	echo "== load:$(uptime | sed 's/.*load average: / /')"
	exit 0
fi

# The README's quick start, first command (in a process group of its own, so
# that stopping it stops the Caddy that `go run` started).
t=$(now)
set -m
go run ./cmd/xcaddy-build run --config Caddyfile.example >"$T/caddy.log" 2>&1 &
caddy_pid=$!
set +m
until curl -fso /dev/null localhost:8080/healthz; do
	if ! kill -0 "$caddy_pid" 2>/dev/null; then
		echo "the README's first command stopped:" >&2
		tail -20 "$T/caddy.log" >&2
		exit 1
	fi
	sleep 0.2
done
echo "README's first command: Caddy serves   $(since "$t") s (download, build, start)"

# The walk-through's first authenticated request: create a token, use it.
t=$(now)
TOKEN=$(go run ./cmd/xcaddy-build deplo-auth token create --keys-file demo/keys.json \
	--name "my laptop" --workspace ws_acme --scopes read 2>/dev/null)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" localhost:8080/v1/workspaces/ws_acme/projects)
echo "token create + first curl: $code        $(since "$t") s"
echo "clone → first authenticated $code      $(since "$t0") s"
echo "build cache $(du -sm "$GOCACHE" | cut -f1) MB, module cache $(du -sm "$GOMODCACHE" | cut -f1) MB"
echo "== load:$(uptime | sed 's/.*load average: / /')"
[ "$code" = 200 ]
