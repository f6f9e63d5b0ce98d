#!/usr/bin/env python3
"""The control-plane scheduler at work on the local cluster, through boto3.

Run by scripts/scheduler-demo.sh, which starts the cluster (scripts/local-cluster.sh) with a
short replica-repair grace. Each part prints what it shows and fails loudly if it does not:

  lineage    split, merge and UpdateShardCount: lineage, routing, ChildShards at a parent's end
  leaders    12 shards lead 4/4/4; a killed node's leaders fail over and come back; drain/undrain
  repair     node 4 joins az-a, node 1 (az-a) dies: past the grace its replicas are rebuilt on 4
  ondemand   an on-demand stream under a rising write load (riffle-bench) gains shards

Usage: scheduler_demo.py [part ...]   (all parts, in this order, by default)
"""

import hashlib
import json
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

CLUSTER = "scripts/local-cluster.sh"
PROFILE_BINARY = None  # set in main from RIFFLE_PROFILE


def endpoint(node):
    return f"http://127.0.0.1:{4566 + node}"


def client(node):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint(node),
        region_name="us-east-1",
        aws_access_key_id="riffle",
        aws_secret_access_key="riffle",
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )


def status(node):
    with urllib.request.urlopen(endpoint(node) + "/_riffle/status", timeout=30) as response:
        return json.load(response)


def say(text):
    print(text, flush=True)


def wait(what, timeout, condition):
    started = time.time()
    while True:
        result = condition()
        if result:
            say(f"  ok after {time.time() - started:.1f}s: {what}")
            return result
        if time.time() - started > timeout:
            raise SystemExit(f"FAILED: {what} (not within {timeout}s)")
        time.sleep(0.5)


def wait_active(kinesis, name, timeout=120):
    def active():
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    started = time.time()
    while not active():
        if time.time() - started > timeout:
            raise SystemExit(f"FAILED: {name} did not become ACTIVE in {timeout}s")
        time.sleep(0.3)


def shards_of(kinesis, name):
    shards, token = [], None
    while True:
        page = kinesis.list_shards(NextToken=token) if token else kinesis.list_shards(StreamName=name)
        shards += page["Shards"]
        token = page.get("NextToken")
        if not token:
            return shards


def hash_key(partition_key):
    return int(hashlib.md5(partition_key.encode()).hexdigest(), 16)


def run(*args):
    subprocess.run(args, check=True)


def leaders_of(name, node=1):
    """Open shards of `name` led by each node, from `/_riffle/status`."""
    counts = {}
    for shard in status(node)["shards"]:
        if shard["stream"] == name and shard["state"] == "OPEN" and shard["leader"] is not None:
            counts[shard["leader"]] = counts.get(shard["leader"], 0) + 1
    return counts


def cluster_status(node):
    run(PROFILE_BINARY, "cluster", "status", "--endpoint", endpoint(node))


def part_lineage():
    say("== lineage: SplitShard, MergeShards, UpdateShardCount through boto3")
    kinesis = client(1)
    name = f"demo-lineage-{int(time.time())}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    wait_active(kinesis, name)
    first = shards_of(kinesis, name)[0]
    low = int(first["HashKeyRange"]["StartingHashKey"])
    high = int(first["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(
        StreamName=name, ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2 + 1)
    )
    wait_active(kinesis, name)
    # The split's upper child (shard 3) and the untouched shard 1 are adjacent.
    kinesis.merge_shards(
        StreamName=name, ShardToMerge="shardId-000000000003", AdjacentShardToMerge="shardId-000000000001"
    )
    wait_active(kinesis, name)
    answer = kinesis.update_shard_count(StreamName=name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    say(f"  UpdateShardCount: {answer['CurrentShardCount']} -> {answer['TargetShardCount']}")
    wait_active(kinesis, name)
    shards = shards_of(kinesis, name)
    say(f"  {'shard':<22} {'parent':<22} {'adjacent parent':<22} {'state':<7} starting hash key")
    for shard in shards:
        closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
        say(
            f"  {shard['ShardId']:<22} {shard.get('ParentShardId', '-'):<22} "
            f"{shard.get('AdjacentParentShardId', '-'):<22} {'CLOSED' if closed else 'OPEN':<7} "
            f"{shard['HashKeyRange']['StartingHashKey']}"
        )
    open_shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert len(open_shards) == 4, open_shards
    width = (2**128) // 4
    starts = sorted(int(s["HashKeyRange"]["StartingHashKey"]) for s in open_shards)
    assert all(abs(start - i * width) <= 4 for i, start in enumerate(starts)), starts
    ids = {s["ShardId"] for s in shards}
    for shard in shards:
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            assert parent is None or parent in ids, shard
    say("  ok: four equal open ranges, every parent known")

    # Routing: every record lands on the open shard covering its key, through any node.
    ranges = {
        s["ShardId"]: (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in open_shards
    }
    for node in (1, 2, 3):
        records = [{"PartitionKey": f"key-{node}-{i}", "Data": b"x"} for i in range(200)]
        answer = client(node).put_records(StreamName=name, Records=records)
        assert answer["FailedRecordCount"] == 0, answer
        for record, result in zip(records, answer["Records"]):
            low, high = ranges[result["ShardId"]]
            assert low <= hash_key(record["PartitionKey"]) <= high, (record, result)
    say("  ok: 600 records through nodes 1-3, each on the open shard covering its hash key")

    # A closed parent reads to its end, then names its children.
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator)
        iterator = page.get("NextShardIterator")
        children = page.get("ChildShards")
    say(f"  ok: shardId-000000000000 ends with ChildShards {[c['ShardId'] for c in children]}")
    assert children


def part_leaders():
    say("== leaders: 12 shards, 4/4/4, through a node kill and a drain")
    kinesis = client(1)
    name = f"demo-leaders-{int(time.time())}"
    kinesis.create_stream(StreamName=name, ShardCount=12)
    wait_active(kinesis, name)
    even = {1: 4, 2: 4, 3: 4}
    wait("12 leaders spread 4/4/4 after creation", 30, lambda: leaders_of(name) == even)
    run(CLUSTER, "kill", "3")
    wait("node 3's leaders failed over to nodes 1 and 2", 30, lambda: sum(leaders_of(name).get(n, 0) for n in (1, 2)) == 12)
    say(f"  leaders now {leaders_of(name)}")
    run(CLUSTER, "start", "3")
    wait("4/4/4 again after node 3 returned", 60, lambda: leaders_of(name) == even)
    run(PROFILE_BINARY, "node", "drain", "2", "--endpoint", endpoint(1))
    wait("node 2 drained (leads nothing)", 30, lambda: leaders_of(name).get(2, 0) == 0)
    say(f"  leaders now {leaders_of(name)}")
    run(PROFILE_BINARY, "node", "undrain", "2", "--endpoint", endpoint(1))
    wait("4/4/4 again after undrain", 30, lambda: leaders_of(name) == even)


def part_repair():
    say("== repair: node 4 joins az-a; node 1 (az-a) dies; its replicas are rebuilt on node 4")
    run(CLUSTER, "join", "4", "az-a")

    def replicas():
        return {node["id"]: node["replicas"] for node in status(2)["nodes"]}

    say(f"  replicas per node when node 4 joined: {replicas()}")

    def balanced():
        # Nodes 1 and 4 share az-a, so they share its replicas (one replica per AZ per shard).
        counts = replicas()
        idle = all(shard["moving"] is None for shard in status(2)["shards"])
        return idle and abs(counts[1] - counts[4]) <= 1

    wait("replicas moved onto node 4 until balanced with node 1", 180, balanced)
    say(f"  replicas per node: {replicas()}")
    kinesis = client(2)
    name = f"demo-repair-{int(time.time())}"
    kinesis.create_stream(StreamName=name, ShardCount=4)
    wait_active(kinesis, name)
    records = [{"PartitionKey": f"k{i}", "Data": f"record-{i}".encode()} for i in range(400)]
    assert kinesis.put_records(StreamName=name, Records=records)["FailedRecordCount"] == 0

    on_one = [s for s in status(2)["shards"] if s["stream"] == name and 1 in s["replicas"]]
    say(f"  node 1 holds replicas of {len(on_one)} of the stream's shards; killing it")
    run(CLUSTER, "kill", "1")

    def rebuilt():
        shards = status(2)["shards"]
        moving = [s for s in shards if s["moving"]]
        if moving:
            say(f"  {len(moving)} moving, e.g. {moving[0]['shard_id']}: {moving[0]['moving']['reason']}")
        return not moving and not any(1 in s["replicas"] for s in shards)

    wait("no replica left on node 1 (rebuilt past the grace period)", 240, rebuilt)
    cluster_status(2)
    seen = 0
    for shard in shards_of(kinesis, name):
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        seen += len(page["Records"])
    assert seen == 400, seen
    say("  ok: all 400 records readable after the repair")
    run(CLUSTER, "start", "1")


def part_ondemand():
    say("== on-demand: a stream under a rising write load gains shards by itself")
    kinesis = client(2)
    name = f"demo-ondemand-{int(time.time())}"
    kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    wait_active(kinesis, name)
    bench = PROFILE_BINARY.replace("/riffle", "/riffle-bench")
    open_count = lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["OpenShardCount"]
    say(f"  open shards at creation: {open_count()}")
    for connections in (1, 4, 8):
        subprocess.run(
            [bench, "--endpoint", endpoint(2), endpoint(3), "--stream", name, "--connections",
             str(connections), "--seconds", "10", "--warmup", "0"],
            check=True, stdout=subprocess.DEVNULL,
        )
        say(f"  after 10 s at {connections} connection(s): {open_count()} open shards")
        if open_count() > 4:
            break
    assert open_count() > 4, "the stream never split"
    for shard in status(2)["shards"]:
        if shard["stream"] == name and shard["reason"].startswith("on-demand"):
            say(f"  {shard['shard_id']}: {shard['reason']}")
            break


PARTS = {"lineage": part_lineage, "leaders": part_leaders, "repair": part_repair, "ondemand": part_ondemand}


def main():
    global PROFILE_BINARY
    import os

    PROFILE_BINARY = f"target/{os.environ.get('RIFFLE_PROFILE', 'release')}/riffle"
    parts = sys.argv[1:] or list(PARTS)
    for part in parts:
        PARTS[part]()
    say("scheduler demo: all parts passed")


if __name__ == "__main__":
    main()
