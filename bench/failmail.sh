#!/usr/bin/env bash
# bench/failmail.sh: how many "FAILED rotation" emails a throttled account
# produces. Runs `keyrot dev` (two users, rotate every 40s) with a fraction
# of every AWS call throttled for DURATION, then counts the emails in the
# sandbox's SES outbox: FAILED, RECOVERED, key created. With REVS, each
# revision is built and run in turn, so a change can be compared with the
# code before it in one run.
#
#   bench/failmail.sh                          # this tree, 30% throttling, 3 minutes
#   REVS="fe38e3c HEAD" bench/failmail.sh      # before and after
#   THROTTLE=0.3 DURATION=180 bench/failmail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
THROTTLE=${THROTTLE:-0.3}
DURATION=${DURATION:-180}
REVS=${REVS:-}
work=$(mktemp -d)
trap 'rm -rf "$work"; git worktree prune' EXIT

build() { # rev -> binary path
	local rev=$1 out=$work/keyrot-$1
	if [ "$rev" = "." ]; then
		go build -o "$out" ./cmd/keyrot
	else
		git worktree add -q --detach "$work/src-$rev" "$rev"
		(cd "$work/src-$rev" && go build -o "$out" ./cmd/keyrot)
	fi
	echo "$out"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # binary label
	local bin=$1 label=$2 sb api
	sb=$(free_port)
	api=$(free_port)
	"$bin" dev --throttle-rate "$THROTTLE" --listen "127.0.0.1:$sb" --api-listen "127.0.0.1:$api" >"$work/$label.log" 2>&1 &
	local pid=$!
	sleep "$DURATION"
	curl -sf -o "$work/outbox.json" "http://127.0.0.1:$sb/_sandbox/ses/outbox"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	python3 - "$label" "$THROTTLE" "$DURATION" "$work/outbox.json" <<'EOF'
import json, sys
mails = json.load(open(sys.argv[4]))
if isinstance(mails, dict):
    mails = mails.get("messages") or mails.get("Messages") or mails.get("emails") or []
subj = [m.get("Subject") or m.get("subject") or "" for m in mails]
count = lambda p: sum(1 for s in subj if s.startswith(p))
print(f"{sys.argv[1]:>10}: throttle={sys.argv[2]} duration={sys.argv[3]}s  FAILED={count('[keyrot] FAILED')} RECOVERED={count('[keyrot] RECOVERED')} created={count('[keyrot] key created')} emails={len(subj)}")
EOF
}

if [ -z "$REVS" ]; then
	run "$(build .)" "this tree"
else
	for rev in $REVS; do
		run "$(build "$(git rev-parse --short "$rev")")" "$rev"
	done
fi
