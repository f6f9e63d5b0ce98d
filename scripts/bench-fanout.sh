#!/usr/bin/env bash
# Put-to-deliver latency through enhanced fan-out on the local three-node cluster: builds
# release binaries, starts a fresh cluster (scripts/local-cluster.sh), writes through nodes 1
# and 2 at a fixed rate while a registered consumer holds a SubscribeToShard subscription to
# every shard through node 3, and prints riffle-bench's report (p50/p90/p99/p99.9 from the
# moment each PutRecords call was scheduled to the moment its record arrived, and whether every
# acknowledged record arrived exactly once). Extra arguments go to riffle-bench, e.g.
# `scripts/bench-fanout.sh --rate 2000 --seconds 60`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p riffle-server -p riffle-bench
scripts/local-cluster.sh wipe >/dev/null 2>&1 || true
trap 'scripts/local-cluster.sh wipe >/dev/null 2>&1 || true' EXIT
scripts/local-cluster.sh up >/dev/null

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), rustc $(rustc --version | cut -d' ' -f2)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# Defaults: 4 shards, 1000 records/s in PutRecords of 10 x 1 KiB, 5 s warm-up, 30 s measured.
./target/release/riffle-bench --mode fanout \
  --endpoint http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569 \
  --stream fanout --shards 4 --rate 1000 --batch 10 --record-bytes 1024 --warmup 5 --seconds 30 "$@"
