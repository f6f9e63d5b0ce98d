#!/usr/bin/env bash
# Idle cost of many shards on the local three-node cluster: creates one stream with N shards
# (3 x N replicas), waits for it to settle, then reports each node's CPU and RSS over 30 s.
# Usage: scripts/idle.sh [shards]   (RIFFLE_NODE_ARGS="--hibernate-after-secs 100000" to compare
# without hibernation). Starts from a wiped cluster and leaves it running.
set -euo pipefail
cd "$(dirname "$0")/.."
shards=${1:-1000}
scripts/local-cluster.sh wipe >/dev/null
scripts/local-cluster.sh up >/dev/null
python3 - "$shards" <<'PY'
import json, os, sys, time, urllib.request
shards = int(sys.argv[1])
def call(op, body):
    req = urllib.request.Request("http://127.0.0.1:4567/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"Kinesis_20131202.{op}", "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"{}")
started = time.time()
call("CreateStream", {"StreamName": "idle", "ShardCount": shards})
while call("DescribeStreamSummary", {"StreamName": "idle"})["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
    time.sleep(0.5)
print(f"created {shards} shards ({3 * shards} replicas) in {time.time() - started:.1f} s")
time.sleep(30)  # leader elections settle; quiet groups hibernate after 10 s
tick = os.sysconf("SC_CLK_TCK")
pids = [int(open(f".riffle-local/node{n}/pid").read()) for n in (1, 2, 3)]
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick
def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
before = [cpu(p) for p in pids]; t0 = time.time()
time.sleep(30)
elapsed = time.time() - t0
for n, pid, b in zip((1, 2, 3), pids, before):
    status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{4566 + n}/_riffle/status"))
    print(f"node {n}: idle cpu {100 * (cpu(pid) - b) / elapsed:5.1f}% of one core, rss {rss(pid):6.1f} MiB, "
          f"{status['local_replicas']} replicas, {status['local_hibernating']} hibernating")
PY
