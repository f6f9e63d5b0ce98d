#!/usr/bin/env bash
# Failover benchmark on the local three-node cluster: a PutRecords load through all three
# endpoints, SIGKILL of the node leading the most shards, restart of that node, and the longest
# time without a single acknowledged write; after all rounds, the gap's p50 and p99 over the
# rounds. Usage: scripts/failover.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
profile=${RIFFLE_PROFILE:-release}

scripts/local-cluster.sh up >/dev/null
cargo build --"$profile" --locked -p riffle-bench 2>/dev/null || cargo build --locked -p riffle-bench
bench=target/$profile/riffle-bench
riffle=target/$profile/riffle
endpoints="http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569"
gaps=$(mktemp)
trap 'rm -f "$gaps"' EXIT

for round in $(seq 1 "$rounds"); do
  stream="failover-$round-$$"
  out=$(mktemp)
  # shellcheck disable=SC2086
  $bench --endpoint $endpoints --stream "$stream" --shards 6 --connections 12 --warmup 3 --seconds 20 \
    --timeline --json >"$out" &
  bench_pid=$!
  sleep 8
  victim=$($riffle cluster status --endpoint http://127.0.0.1:4568 --json | python3 -c '
import json, sys, collections
status = json.load(sys.stdin)
leaders = collections.Counter(s["leader"] for s in status["shards"] if s["stream"] == sys.argv[1] and s["leader"])
print(leaders.most_common(1)[0][0] if leaders else 1)' "$stream")
  echo "round $round: killing node $victim (it leads the most shards of $stream)"
  scripts/local-cluster.sh kill "$victim" >/dev/null
  sleep 7
  scripts/local-cluster.sh start "$victim" >/dev/null
  wait "$bench_pid"
  python3 - "$out" "$round" "$gaps" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[3], "a").write("%d\n" % r["longest_gap_ms"])
print("round %s: longest write gap %d ms, %.0f records/s, max call %.0f ms, failed calls %d, failed records %d"
      % (sys.argv[2], r["longest_gap_ms"], r["records_per_sec"], r["max_ms"], r["errors"], r["failed_records"]))
PY
  rm -f "$out"
done
python3 - "$gaps" <<'PY'
import math, sys
gaps = sorted(int(line) for line in open(sys.argv[1]) if line.strip())
rank = lambda q: gaps[max(0, math.ceil(q * len(gaps)) - 1)]
print("write gap over %d kills: p50 %d ms, p99 %d ms, max %d ms (gaps measured in 100 ms slots)"
      % (len(gaps), rank(0.5), rank(0.99), gaps[-1]))
PY
