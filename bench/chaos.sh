#!/usr/bin/env bash
# bench/chaos.sh: keyrot under faults and kill -9s, with its guarantees
# checked (docs/reliability.md). Builds keyrot and bench/cmd/chaos once,
# then runs the chaos program, which starts `keyrot sandbox --data DIR` and
# `keyrot run` on free loopback ports, seeds USERS IAM users, injects faults
# and kills for DURATION, heals, checks, and ends with the line
#
#   chaos: user_cycles=N kills=K faults=F consumer_calls=C consumer_failures=0 lost_keys=0 stranded_users=0 leaks=0
#
# exiting 1 if a loss figure is not 0 or an invariant broke.
#
#   bench/chaos.sh                                   # 6 users, 3 minutes
#   USERS=3 DURATION=90s bench/chaos.sh              # what CI runs
#   USERS=12 DURATION=35m SEED=7 bench/chaos.sh      # the long run in docs/reliability.md
#
# Knobs (environment): USERS, DURATION, SEED, HEAL (healing period before
# the end checks), THROTTLE, ERRORS, LOST (highest rates a fault phase
# draws), LATENCY, PROPAGATION (highest latency and IAM propagation delay),
# KILL_EVERY (mean time between kill -9s; 0 for none), ROTATE_EVERY,
# DEACTIVATE_AFTER, DELETE_AFTER, BOTO3 (0 to skip the boto3 consumer),
# WORK (keep the logs, data and emails there; default a new temp dir),
# SABOTAGE=1 (half way, deactivate a current key behind keyrot's back and
# write a secret into a log: the run must then fail, showing the checks work).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds() { # "90" -> "90s"; Go durations pass through
	case $1 in *[a-z]) echo "$1" ;; *) echo "${1}s" ;; esac
}

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/keyrot" ./cmd/keyrot
go build -o "$bin/chaos" ./bench/cmd/chaos

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
args=(-keyrot "$bin/keyrot" -rev "$rev"
	-users "${USERS:-6}"
	-duration "$(seconds "${DURATION:-3m}")"
	-seed "${SEED:-1}"
	-throttle "${THROTTLE:-0.2}"
	-errors "${ERRORS:-0.1}"
	-lost "${LOST:-0.15}"
	-latency "$(seconds "${LATENCY:-300ms}")"
	-propagation "$(seconds "${PROPAGATION:-30s}")"
	-kill-every "$(seconds "${KILL_EVERY:-15s}")"
	-rotate-every "$(seconds "${ROTATE_EVERY:-20s}")"
	-deactivate-after "$(seconds "${DEACTIVATE_AFTER:-12s}")"
	-delete-after "$(seconds "${DELETE_AFTER:-5s}")")
[ -n "${HEAL:-}" ] && args+=(-heal "$(seconds "$HEAL")")
[ "${BOTO3:-1}" = 0 ] && args+=(-boto3=false)
[ -n "${WORK:-}" ] && args+=(-work "$WORK")
[ "${SABOTAGE:-0}" = 1 ] && args+=(-sabotage)
"$bin/chaos" "${args[@]}"
