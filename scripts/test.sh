#!/usr/bin/env bash
# Runs every test Riffle has: formatting and lints, unit and property tests, end-to-end tests
# that drive real nodes with aws-sdk-kinesis, and the conformance smoke tests with boto3 and the
# AWS CLI. Installs what it needs (Python clients) itself. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "formatting"
cargo fmt --all --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "unit, property and end-to-end tests"
# The chaos tests need the container image; they run in their own step below.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast -E 'not binary(chaos)'
else
  # Without nextest the chaos binary runs here too, so its image is built first.
  RIFFLE_PROFILE=debug scripts/docker-image.sh
  cargo test --workspace --locked --no-fail-fast
fi

step "python clients"
if ! python3 -c 'import boto3' 2>/dev/null; then
  python3 -m pip install --quiet boto3
fi
if ! command -v aws >/dev/null 2>&1; then
  python3 -m pip install --quiet awscli
fi

step "conformance: boto3 smoke test and the AWS CLI against a fresh node"
workdir=$(mktemp -d)
node_pid=""
cleanup() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT
./target/debug/riffle server --listen 127.0.0.1:0 --data-dir "$workdir/data" \
  --ready-file "$workdir/ready" >"$workdir/riffle.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do
  [ -s "$workdir/ready" ] && break
  kill -0 "$node_pid" 2>/dev/null || { cat "$workdir/riffle.log"; echo "riffle exited early"; exit 1; }
  sleep 0.1
done
[ -s "$workdir/ready" ] || { cat "$workdir/riffle.log"; echo "riffle did not start"; exit 1; }
endpoint="http://$(cat "$workdir/ready")"

smoke=tests/conformance/smoke.py
[ -f ../shared/conformance/smoke.py ] && smoke=../shared/conformance/smoke.py
python3 "$smoke" "$endpoint"
python3 tests/conformance/subscribe.py "$endpoint"

export AWS_ACCESS_KEY_ID=riffle AWS_SECRET_ACCESS_KEY=riffle AWS_DEFAULT_REGION=us-east-1 AWS_PAGER=""
aws="aws --endpoint-url $endpoint kinesis"
$aws create-stream --stream-name cli-check --shard-count 2
$aws wait stream-exists --stream-name cli-check
sequence=$($aws put-record --stream-name cli-check --partition-key k --data aGVsbG8= --query SequenceNumber --output text)
shard=$($aws put-record --stream-name cli-check --partition-key k --data aGVsbG8= --query ShardId --output text)
iterator=$($aws get-shard-iterator --stream-name cli-check --shard-id "$shard" --shard-iterator-type AT_SEQUENCE_NUMBER \
  --starting-sequence-number "$sequence" --query ShardIterator --output text)
count=$($aws get-records --shard-iterator "$iterator" --query 'length(Records)' --output text)
[ "$count" = "2" ] || { echo "AWS CLI read $count records, expected 2"; exit 1; }
$aws delete-stream --stream-name cli-check
echo "aws cli: ok"

step "benchmark smoke (the tool works; numbers come from scripts/bench.sh)"
result=$(./target/debug/riffle-bench --endpoint "$endpoint" --stream bench-smoke --connections 4 --seconds 2 --warmup 0 --json)
echo "$result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["errors"]==0 and r["failed_records"]==0 and r["records_per_sec"]>0, r' "$result"
result=$(./target/debug/riffle-bench --endpoint "$endpoint" --stream bench-smoke --rate 2000 --seconds 2 --warmup 0 --json)
echo "$result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["errors"]==0 and r["failed_records"]==0 and r["records_per_sec"]>1000, r' "$result"

step "three-node cluster (scripts/local-cluster.sh): smoke test on every node, through a node kill"
export RIFFLE_PROFILE=debug
cluster_cleanup() { scripts/local-cluster.sh down >/dev/null 2>&1 || true; cleanup; }
trap cluster_cleanup EXIT
scripts/local-cluster.sh wipe >/dev/null
scripts/local-cluster.sh up
python3 "$smoke" http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569
scripts/local-cluster.sh kill 2
python3 "$smoke" http://127.0.0.1:4567 http://127.0.0.1:4569
scripts/local-cluster.sh start 2
python3 "$smoke" http://127.0.0.1:4568 http://127.0.0.1:4567 http://127.0.0.1:4569
./target/debug/riffle cluster status --endpoint http://127.0.0.1:4568
# boto3 subscribes through node 3 to records written through node 1.
python3 tests/conformance/subscribe.py http://127.0.0.1:4569 http://127.0.0.1:4567
# Fan-out smoke (numbers come from scripts/bench-fanout.sh): writes through nodes 1 and 2, a
# subscription to every shard through node 3; fails if an acknowledged record is not delivered.
./target/debug/riffle-bench --mode fanout --endpoint http://127.0.0.1:4567 http://127.0.0.1:4568 \
  http://127.0.0.1:4569 --stream fanout-smoke --shards 2 --rate 200 --batch 10 --seconds 3 --warmup 1
scripts/local-cluster.sh wipe

step "scheduler on a fresh cluster: resharding lineage, leader spread, replica repair, on-demand scaling"
scripts/scheduler-demo.sh

step "chaos in containers: riffle:dev built from nothing, one short run per fault class (testcontainers)"
if cargo nextest --version >/dev/null 2>&1; then
  RIFFLE_PROFILE=debug scripts/docker-image.sh
  cargo nextest run -p riffle-tests --test chaos --locked --no-fail-fast --test-threads 1
fi

step "riffle chaos against the local cluster (signals): a short run of repeated random faults"
scripts/local-cluster.sh wipe >/dev/null
scripts/local-cluster.sh up >/dev/null
./target/debug/riffle chaos run --local .riffle-local --start-command "scripts/local-cluster.sh start" \
  --schedule repeat --fault kill --fault pause --fault stop --target random \
  --warmup 5 --duration 30 --every 10 --down 6 --settle 5 --rate 500 | tail -8
scripts/local-cluster.sh wipe

step "all tests passed"
