"""boto3 SubscribeToShard against one endpoint (HTTP/1.1 chunked event stream): a consumer is
registered and becomes ACTIVE, TRIM_HORIZON delivers what was written before, a second
subscription of the same consumer and shard within 5 seconds is refused (ResourceInUseException,
as on AWS), LATEST (through a second consumer) delivers what is written after, in order.
Usage: python3 tests/conformance/subscribe.py ENDPOINT [WRITE_ENDPOINT]: subscriptions go to
ENDPOINT, writes to WRITE_ENDPOINT (default: the same), so on a cluster the records travel from
one node's client to another node's subscriber."""
import sys
import threading
import time

import boto3

k = boto3.client("kinesis", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="riffle", aws_secret_access_key="riffle")
producer = boto3.client("kinesis", endpoint_url=sys.argv[-1], region_name="us-east-1",
                        aws_access_key_id="riffle", aws_secret_access_key="riffle")
name = f"subscribe-{int(time.time())}"
k.create_stream(StreamName=name, ShardCount=1)
k.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
arn = k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def register(consumer_name):
    registered = k.register_stream_consumer(StreamARN=arn, ConsumerName=consumer_name)["Consumer"]
    deadline = time.time() + 30
    while k.describe_stream_consumer(ConsumerARN=registered["ConsumerARN"])["ConsumerDescription"]["ConsumerStatus"] != "ACTIVE":
        assert time.time() < deadline, "consumer never became ACTIVE"
        time.sleep(0.2)
    return registered


consumer = register("c1")
second = register("c2")
shard = k.list_shards(StreamName=name)["Shards"][0]["ShardId"]
for i in range(5):
    producer.put_record(StreamName=name, PartitionKey="pk", Data=f"r{i}".encode())


def read(response, count):
    got = []
    for event in response["EventStream"]:
        got += [r["Data"].decode() for r in event["SubscribeToShardEvent"]["Records"]]
        if len(got) >= count:
            return got
    return got


early = read(k.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId=shard,
                                  StartingPosition={"Type": "TRIM_HORIZON"}), 5)
assert early == [f"r{i}" for i in range(5)], early

try:
    k.subscribe_to_shard(ConsumerARN=consumer["ConsumerARN"], ShardId=shard,
                         StartingPosition={"Type": "TRIM_HORIZON"})
    raise AssertionError("a second subscription within 5 seconds was accepted")
except k.exceptions.ResourceInUseException:
    pass

response = k.subscribe_to_shard(ConsumerARN=second["ConsumerARN"], ShardId=shard,
                                StartingPosition={"Type": "LATEST"})


def writer():
    time.sleep(1)
    for i in range(3):
        producer.put_record(StreamName=name, PartitionKey="pk", Data=f"late{i}".encode())


threading.Thread(target=writer).start()
late = read(response, 3)
assert late == ["late0", "late1", "late2"], late
k.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
print(f"subscribe: ok (TRIM_HORIZON, ResourceInUse within 5 s, LATEST through boto3; "
      f"subscribed via {sys.argv[1]}, written via {sys.argv[-1]})")
