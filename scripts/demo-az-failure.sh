#!/usr/bin/env bash
# The multi-AZ resilience demo: starts the three-node Docker cluster (one node per AZ), runs a
# checked load through all three endpoints, takes every node of az-b down, shows writes going on
# through az-a and az-c second by second, brings az-b back, lets it catch up, and ends with the
# checker's verdict (every acknowledged record read back through every node, in order).
#
#   scripts/demo-az-failure.sh [kill|stop|pause|isolate] [seconds down]   (default: stop 20)
#
# Reports (text, JSON, SVG chart) go to target/demo-az-failure/. RIFFLE_PROFILE=debug uses the
# debug build. The cluster is left running (scripts/cluster.sh down removes it).
set -euo pipefail
cd "$(dirname "$0")/.."
fault=${1:-stop}
down=${2:-20}
profile=${RIFFLE_PROFILE:-release}

scripts/cluster.sh up
echo
echo "== az-b goes down ($fault) for ${down}s while producers write through 127.0.0.1:4567-4569"
echo "   (ack: records acknowledged that second, fail: records that failed and were retried,"
echo "    read: records the live readers consumed)"
"target/$profile/riffle" chaos run --docker compose --schedule single --fault "$fault" --target az:az-b \
  --warmup 10 --down "$down" --settle 15 --shards 6 --rate 2000 --live --out target/demo-az-failure \
  | awk '/^scenario /{skip=1} /^writes:/{skip=0} !skip'  # live timeline, then the verdict
echo
echo "chart: target/demo-az-failure/report.svg   json: target/demo-az-failure/report.json"
"target/$profile/riffle" cluster status --endpoint http://127.0.0.1:4568 | sed -n '1,6p'
