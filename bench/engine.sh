#!/usr/bin/env bash
# bench/engine.sh: the engine and the sandbox under it, through the AWS SDK
# over loopback. Prints each benchmark's median of COUNT runs.
#
#   bench/engine.sh                  # COUNT=5 BENCHTIME=3s
#
# BenchmarkSteadyPass      a resync pass over 100 users with nothing due (users/s)
# BenchmarkRotationCycle   one user's whole cycle at the seed's timings: create,
#                          store, verify, promote, deactivate, delete (time per cycle)
# BenchmarkSandbox*        single sandbox calls, in parallel (the sandbox must not be
#                          what limits the two above)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'SteadyPass|RotationCycle' -benchtime "$BENCHTIME" -count "$COUNT" ./internal/app/ | tee -a "$out" | grep -E '^Benchmark' || true
go test -run '^$' -bench 'Sandbox' -benchtime "$BENCHTIME" -count "$COUNT" ./sandbox/ | tee -a "$out" | grep -E '^Benchmark' || true
echo
echo "medians of $COUNT runs:"
awk '/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name); ns[name]=ns[name] " " $3
  for (i = 4; i < NF; i++) if ($(i+1) == "users/s") us[name]=us[name] " " $i
}
function median(list,   a, n, i, j, t) {
  n = split(list, a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return a[int((n + 1) / 2)]
}
END {
  for (name in ns) {
    line = sprintf("  %-40s %12.0f ns/op", name, median(ns[name]))
    if (name in us) line = line sprintf("  %8.0f users/s", median(us[name]))
    print line
  }
}' "$out" | sort
