#!/usr/bin/env bash
# Runs every fuzz target of the module for a given time each (default 10m),
# one after another, and stops at the first failure. The failing input is
# written by Go to <package>/testdata/fuzz/<Target>/ — commit it with the fix,
# so the normal test run replays it. Commit only such failing inputs: the
# corpus a run grows stays in $(go env GOCACHE)/fuzz, and f.Add holds the seeds.
#
#   scripts/fuzz-all.sh            # 10 minutes per target
#   scripts/fuzz-all.sh 30s        # a quick pass
#   scripts/fuzz-all.sh 10m policy # only the targets of ./policy
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10m}"
only="${2:-}"
summary=()
for pkg in $(go list ./...); do
	dir=".${pkg#github.com/deplo-sh/deplo-auth}"
	[ -n "$only" ] && [ "$dir" != "./$only" ] && continue
	for target in $(go test -list '^Fuzz' "$dir" | grep '^Fuzz' || true); do
		echo "== $dir $target ($duration)"
		out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" "$dir" 2>&1) || {
			echo "$out" | tail -n 30
			echo "FAIL: $dir $target"
			exit 1
		}
		line=$(echo "$out" | grep 'fuzz: elapsed' | tail -n 1)
		echo "$line"
		summary+=("$dir $target: ${line#fuzz: }")
	done
done
echo
echo "== summary"
printf '%s\n' "${summary[@]}"
