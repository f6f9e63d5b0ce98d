#!/usr/bin/env bash
# The control-plane scheduler on a fresh local cluster, shown through boto3 and `riffle cluster
# status` (scripts/scheduler_demo.py says what each part checks):
#
#   scripts/scheduler-demo.sh [lineage] [leaders] [repair] [ondemand]   (default: all four)
#
# Wipes and starts scripts/local-cluster.sh with a 15 s replica-repair grace and a 10 s
# on-demand split cooldown (node 4, added by the repair part, joins the same way), and stops it
# at the end. RIFFLE_PROFILE=debug uses the debug build, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import boto3' 2>/dev/null || python3 -m pip install --quiet boto3
profile=${RIFFLE_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --locked -p riffle-server -p riffle-bench
else
  cargo build --locked -p riffle-server -p riffle-bench
fi
export RIFFLE_NODE_ARGS="--replica-repair-grace 15s --on-demand-split-cooldown-secs 10 ${RIFFLE_NODE_ARGS:-}"
scripts/local-cluster.sh wipe >/dev/null
trap 'scripts/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
scripts/local-cluster.sh up
python3 scripts/scheduler_demo.py "$@"
scripts/local-cluster.sh wipe >/dev/null
