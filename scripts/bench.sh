#!/usr/bin/env bash
# Single-node PutRecords throughput: builds release binaries, starts a fresh node in a temporary
# directory, runs riffle-bench against it and prints the result. Extra arguments go to
# riffle-bench (e.g. `scripts/bench.sh --connections 32 --seconds 30`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p riffle-server -p riffle-bench
workdir=$(mktemp -d)
node_pid=""
cleanup() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

./target/release/riffle server --listen 127.0.0.1:0 --data-dir "$workdir/data" --ready-file "$workdir/ready" \
  >"$workdir/riffle.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do [ -s "$workdir/ready" ] && break; sleep 0.1; done
[ -s "$workdir/ready" ] || { cat "$workdir/riffle.log"; exit 1; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), rustc $(rustc --version | cut -d' ' -f2)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# riffle-bench's defaults: stream `bench` with 4 shards, 16 connections, PutRecords of 100 x 1 KiB,
# 2 s warm-up, 10 s measured.
./target/release/riffle-bench --endpoint "http://$(cat "$workdir/ready")" "$@"
