#!/usr/bin/env bash
# bench/api.sh: throughput and p99 latency of the real `keyrot serve` (API
# key auth, per-key rate limiter, audit and access logs to a file,
# Prometheus metrics, warm cache over the sandbox's Secrets Manager) against
# a bare net/http handler returning the same JSON bytes, with the same wrk
# settings, in alternating rounds. Prints every round, the medians and the
# ratio keyrot/bare.
#
#   bench/api.sh                                     # defaults below
#   DURATION=10s CONNS=32 THREADS=2 ROUNDS=3 bench/api.sh
#   PIN=0 bench/api.sh                               # no taskset pinning
#
# Steps: build ./cmd/keyrot and bench/cmd/{seed,bare}; start `keyrot
# sandbox` on loopback; create USERS IAM users (bench/cmd/seed, AWS SDK);
# `keyrot rotate` once to give them keys; `keyrot serve` with API_KEY set and
# its log (audit and access records, JSON) going to a file; the bare server
# over the bodies keyrot served; then wrk.
#
# Nothing leaves loopback: when `unshare -n` works (root, or user
# namespaces) everything after the build runs in a fresh network namespace
# whose only interface is lo; otherwise every server listens on 127.0.0.1,
# the AWS SDK talks only to AWS_ENDPOINT_URL (the sandbox), IMDS is off and
# notifications go to the log.
#
# Needs Go and wrk (Debian: apt-get install -y wrk); taskset (util-linux)
# for pinning.
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
USERS=${USERS:-50}
PIN=${PIN:-1}
SANDBOX_PORT=${SANDBOX_PORT:-14566}
KEYROT_PORT=${KEYROT_PORT:-18000}
BARE_PORT=${BARE_PORT:-18001}
USER_PATH=/credentials/bench-user-7

cd "$(dirname "$0")/.."

if [[ -z ${API_SH_WORK:-} ]]; then
	command -v wrk >/dev/null || { echo "api.sh: wrk not found: apt-get install -y wrk" >&2; exit 2; }
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	go build -o "$work/" ./cmd/keyrot ./bench/cmd/seed ./bench/cmd/bare
	# Re-run this script, past the build, in a network namespace of its own.
	if unshare -n true 2>/dev/null; then
		API_SH_WORK=$work API_SH_NETNS=1 unshare -n "$0" "$@"
	elif unshare -rn true 2>/dev/null; then
		API_SH_WORK=$work API_SH_NETNS=1 unshare -rn "$0" "$@"
	else
		echo "api.sh: unshare -n unavailable: relying on loopback addresses only" >&2
		API_SH_WORK=$work "$0" "$@"
	fi
	exit $?
fi

work=$API_SH_WORK
if [[ -n ${API_SH_NETNS:-} ]]; then
	ip link set lo up 2>/dev/null || true
fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# The AWS environment: the sandbox and nothing else.
export AWS_ENDPOINT_URL="http://127.0.0.1:$SANDBOX_PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE
export NO_PROXY='*' no_proxy='*'
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy

# Pinning: the servers on CPU 0, wrk on CPU 1 (see bench/README.md).
srv_cpu=() wrk_cpu=()
if [[ $PIN == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
	srv_cpu=(taskset -c 0) wrk_cpu=(taskset -c 1)
fi

say() { echo "api.sh: $(date +%T) $*" >&2; }

wait_up() { # URL [curl args]: until it answers 2xx (or 10 s)
	local url=$1
	shift
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$@" "$url" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "api.sh: $url did not come up" >&2
	exit 1
}

"$work/keyrot" sandbox --listen "127.0.0.1:$SANDBOX_PORT" >"$work/sandbox.log" 2>&1 & pids+=($!)
wait_up "$AWS_ENDPOINT_URL/_sandbox/faults"
say "seeding $USERS users"
"$work/seed" -n "$USERS" -prefix bench-user-

API_KEY="krt_$(head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 43)"
cat >"$work/keyrot.yaml" <<EOF
region: us-east-1
users:
  names: [$(seq -s, -f 'bench-user-%g' 0 $((USERS - 1)))]
rotation:
  iam_rate: 1000
notify:
  via: log
api:
  listen: 127.0.0.1:$KEYROT_PORT
  # A limit wrk never reaches, so the limiter runs on every request.
  rate_limit: 1000000000
  burst: 1000000000
log:
  format: json
EOF
say "keyrot rotate"
"$work/keyrot" rotate --config "$work/keyrot.yaml" >"$work/rotate.log" 2>&1 ||
	{ echo "api.sh: keyrot rotate failed:" >&2; cat "$work/rotate.log" >&2; exit 1; }

say "keyrot serve"
API_KEY=$API_KEY "${srv_cpu[@]}" "$work/keyrot" serve --config "$work/keyrot.yaml" 2>"$work/api.log" & pids+=($!)
wait_up "http://127.0.0.1:$KEYROT_PORT$USER_PATH" -H "X-API-Key: $API_KEY"

# The bare server serves exactly the bytes keyrot serves.
mkdir "$work/bodies"
for i in $(seq 0 $((USERS - 1))); do
	curl -fsS -H "X-API-Key: $API_KEY" -o "$work/bodies/bench-user-$i.json" "http://127.0.0.1:$KEYROT_PORT/credentials/bench-user-$i"
done
"${srv_cpu[@]}" "$work/bare" -listen "127.0.0.1:$BARE_PORT" -dir "$work/bodies" & pids+=($!)
wait_up "http://127.0.0.1:$BARE_PORT$USER_PATH"
# (X-Keyrot-Cache-Age counts the seconds since the last poll: same size, other digits.)
cmp <(curl -fsSi -H "X-API-Key: $API_KEY" "http://127.0.0.1:$KEYROT_PORT$USER_PATH" | grep -iv '^date:\|^x-keyrot-cache-age:') \
	<(curl -fsSi "http://127.0.0.1:$BARE_PORT$USER_PATH" | grep -iv '^date:\|^x-keyrot-cache-age:') ||
	{ echo "api.sh: responses differ" >&2; exit 1; }

wrk_() { "${wrk_cpu[@]}" wrk -t"$THREADS" -c"$CONNS" -H "X-API-Key: $API_KEY" "$@"; }

# run NAME URL: prints "rps p99_ms"
run() {
	local out
	out=$(wrk_ -d"$DURATION" --latency "$2")
	if grep -q "Non-2xx" <<<"$out"; then echo "api.sh: $1 answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
	awk '
		/Requests\/sec:/ { rps = $2 }
		$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
			ms = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
		END { printf "%.0f %.3f\n", rps, ms }' <<<"$out"
}

say "warming up"
# Warm up both (connections, caches, GC pacing).
wrk_ -d2s "http://127.0.0.1:$KEYROT_PORT$USER_PATH" >/dev/null
wrk_ -d2s "http://127.0.0.1:$BARE_PORT$USER_PATH" >/dev/null

pinning="not pinned"
[[ ${#srv_cpu[@]} -gt 0 ]] && pinning="servers on CPU 0, wrk on CPU 1"
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS alternating rounds, $(nproc) cores, $pinning, $USERS users, netns ${API_SH_NETNS:-no}"
k_rps=() k_p99=() b_rps=() b_p99=() ratios=()
for i in $(seq "$ROUNDS"); do
	read -r r p < <(run bare "http://127.0.0.1:$BARE_PORT$USER_PATH"); b_rps+=("$r"); b_p99+=("$p")
	read -r r p < <(run keyrot "http://127.0.0.1:$KEYROT_PORT$USER_PATH"); k_rps+=("$r"); k_p99+=("$p")
	ratios+=("$(awk -v k="${k_rps[-1]}" -v b="${b_rps[-1]}" 'BEGIN { printf "%.2f", k / b }')")
	echo "round $i: bare ${b_rps[-1]} req/s p99 ${b_p99[-1]} ms; keyrot ${k_rps[-1]} req/s p99 ${k_p99[-1]} ms; ratio ${ratios[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
bm=$(median "${b_rps[@]}") km=$(median "${k_rps[@]}")
bp=$(median "${b_p99[@]}") kp=$(median "${k_p99[@]}")
rm_=$(median "${ratios[@]}")

# Stop keyrot so that its log is complete (buffered records are flushed on Close).
kill "${pids[1]}" && wait "${pids[1]}" 2>/dev/null || true
audit=$(grep -c '"system":"audit"' "$work/api.log" || true)
echo "bare:   $bm req/s, p99 $bp ms (median)"
echo "keyrot: $km req/s, p99 $kp ms (median; $audit audit records in its log)"
echo "ratio keyrot/bare: median of rounds $rm_, of medians $(awk -v k="$km" -v b="$bm" 'BEGIN { printf "%.2f", k / b }') (goal >= 0.80)"
if grep -qF "$API_KEY" "$work/api.log"; then echo "api.sh: the API key is in the log" >&2; exit 1; fi
if grep -q '"SecretAccessKey"\|secret_access_key' "$work/api.log"; then echo "api.sh: a secret access key field is in the log" >&2; exit 1; fi
if [[ -n ${APILOG:-} ]]; then cp "$work/api.log" "$APILOG"; fi
