#!/usr/bin/env bash
# bench/fleet.sh: bulk observation on a fleet in the sandbox, through the AWS
# SDK over loopback, with a per-call latency and the IAM rate limit.
#
#   bench/fleet.sh                       # USERS="1000" LATENCY=30ms IAM_RATE=10 STORM=30s
#   USERS="1000 10000" STORM=20m bench/fleet.sh
#
# For each fleet size: a rotation storm (every user due at once) cut off
# after STORM (the rest deferred, as a Lambda invocation would), finished
# without the limit, then steady passes with nothing due, with the calls
# each costs from GET /_sandbox/calls and the CPU time of keyrot and of the
# sandbox. The sandbox runs in a process of its own: the peak RSS printed is
# keyrot's alone (VmHWM), at the end of the storm and over the steady
# passes (reset after the unlimited finish, which is the benchmark's
# shortcut, not something a deployment does).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
go build -o "$bin" ./bench/cmd/fleet
for n in ${USERS:-1000}; do
  "$bin" -users "$n" -latency "${LATENCY:-30ms}" -iam-rate "${IAM_RATE:-10}" -storm "${STORM:-30s}" | grep -v '^{'
  echo
done
