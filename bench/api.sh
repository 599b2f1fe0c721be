#!/usr/bin/env bash
# bench/api.sh: throughput and p99 latency of the keyrot API (auth, audit
# log, access log, metrics and rate limiter on, warm cache) against a bare
# net/http handler returning the same JSON bytes, with the same wrk settings.
# Prints the medians of ROUNDS alternating runs and their ratio.
#
#   bench/api.sh                         # defaults below
#   DURATION=10s CONNS=32 THREADS=2 ROUNDS=3 bench/api.sh
#
# Needs wrk (Debian: apt-get install -y wrk) and Go.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
KEYROT_PORT=${KEYROT_PORT:-18000}
BARE_PORT=${BARE_PORT:-18001}
USER_PATH=/credentials/bench-user-7

command -v wrk >/dev/null || { echo "api.sh: wrk not found: apt-get install -y wrk" >&2; exit 2; }
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/apibench" ./bench/cmd/apibench
KEYROT_BENCH_API_KEY="krt_$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 43)"
export KEYROT_BENCH_API_KEY
"$work/apibench" -mode keyrot -listen "127.0.0.1:$KEYROT_PORT" -log "${APILOG:-$work/api.log}" & pids+=($!)
"$work/apibench" -mode bare -listen "127.0.0.1:$BARE_PORT" & pids+=($!)

wait_up() { # until the server answers (or 10 s)
	for _ in $(seq 100); do
		curl -fsS -o /dev/null -H "X-API-Key: $KEYROT_BENCH_API_KEY" "$1" && return 0
		sleep 0.1
	done
	echo "api.sh: $1 did not come up" >&2
	exit 1
}
wait_up "http://127.0.0.1:$KEYROT_PORT$USER_PATH"
wait_up "http://127.0.0.1:$BARE_PORT$USER_PATH"
cmp <(curl -fsS -H "X-API-Key: $KEYROT_BENCH_API_KEY" "http://127.0.0.1:$KEYROT_PORT$USER_PATH") \
	<(curl -fsS "http://127.0.0.1:$BARE_PORT$USER_PATH") || { echo "api.sh: bodies differ" >&2; exit 1; }

# run NAME URL: prints "rps p99_ms"
run() {
	local out
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "X-API-Key: $KEYROT_BENCH_API_KEY" "$2")
	if grep -q "Non-2xx" <<<"$out"; then echo "api.sh: $1 answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
	awk '
		/Requests\/sec:/ { rps = $2 }
		$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
			ms = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		END { printf "%.0f %.3f\n", rps, ms }' <<<"$out"
}

# Warm up both (connections, JIT-free but caches and GC pacing).
wrk -t"$THREADS" -c"$CONNS" -d2s -H "X-API-Key: $KEYROT_BENCH_API_KEY" "http://127.0.0.1:$KEYROT_PORT$USER_PATH" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d2s "http://127.0.0.1:$BARE_PORT$USER_PATH" >/dev/null

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS alternating rounds, $(nproc) cores"
k_rps=() k_p99=() b_rps=() b_p99=()
for i in $(seq "$ROUNDS"); do
	read -r r p < <(run bare "http://127.0.0.1:$BARE_PORT$USER_PATH"); b_rps+=("$r"); b_p99+=("$p")
	read -r r p < <(run keyrot "http://127.0.0.1:$KEYROT_PORT$USER_PATH"); k_rps+=("$r"); k_p99+=("$p")
	echo "round $i: bare ${b_rps[-1]} req/s p99 ${b_p99[-1]} ms; keyrot ${k_rps[-1]} req/s p99 ${k_p99[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
bm=$(median "${b_rps[@]}") km=$(median "${k_rps[@]}")
bp=$(median "${b_p99[@]}") kp=$(median "${k_p99[@]}")
audit=$(grep -c '"system":"audit"' "$work/api.log" || true)
echo "bare:   $bm req/s, p99 $bp ms (median)"
echo "keyrot: $km req/s, p99 $kp ms (median; $audit audit records written)"
awk -v k="$km" -v b="$bm" 'BEGIN { printf "ratio keyrot/bare: %.2f (goal >= 0.80)\n", k / b }'
if grep -q "$KEYROT_BENCH_API_KEY" "$work/api.log"; then echo "api.sh: the API key is in the log" >&2; exit 1; fi
