#!/usr/bin/env bash
# The long chaos run: repeated random faults (kill, stop, pause, isolate) on random nodes and
# whole AZs of the Docker cluster under a checked load, then a rolling restart and a full-cluster
# restart, each followed by the read-back check through every node.
#
#   scripts/chaos-soak.sh [minutes]   (default 10)
#
# Reports go to target/chaos-soak/<part>/ (report.txt, report.json, report.svg); the summary is
# printed at the end. Exits 1 if any part's checker fails. RIFFLE_PROFILE=debug uses the debug
# build. The cluster is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
profile=${RIFFLE_PROFILE:-release}
riffle="target/$profile/riffle"
out=target/chaos-soak
rm -rf "$out"

scripts/cluster.sh down >/dev/null 2>&1 || true
scripts/cluster.sh up
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT

status=0
run_part() {
  local part=$1; shift
  echo "== $part"
  if ! "$riffle" chaos run --docker compose --out "$out/$part" --stream "soak-$part-$$" "$@" >/dev/null; then
    status=1
  fi
  grep -E "^(writes|PASS|FAIL|verdict)" "$out/$part/report.txt" | sed 's/^/   /'
}

run_part random --schedule repeat --duration $((minutes * 60)) --every 30 --down 12 \
  --fault kill --fault stop --fault pause --fault isolate \
  --target random --target random-az --target leader --shards 8 --rate 2000
run_part rolling --schedule rolling --down 5 --shards 8 --rate 2000
run_part full-restart --schedule full-restart --down 5 --shards 8 --rate 2000
exit $status
