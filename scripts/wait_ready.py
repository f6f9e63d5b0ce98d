"""Returns (exit 0) once the Riffle node on 127.0.0.1:PORT accepts CreateStream (it creates and
deletes a probe stream), or exits 1 at the deadline (an epoch second; default: 120 s from now).

Usage: python3 scripts/wait_ready.py PORT [DEADLINE]"""
import json
import sys
import time
import urllib.error
import urllib.request

port = sys.argv[1]
deadline = float(sys.argv[2]) if len(sys.argv) > 2 else time.time() + 120


def call(op, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Amz-Target": f"Kinesis_20131202.{op}", "Content-Type": "application/x-amz-json-1.1"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


name = f"riffle-up-probe-{port}"
status, body = 0, b"not tried"
while time.time() < deadline:
    status, body = call("CreateStream", {"StreamName": name, "ShardCount": 1})
    if status == 200 or b"ResourceInUseException" in body:
        call("DeleteStream", {"StreamName": name})
        sys.exit(0)
    time.sleep(0.5)
print(f"node on port {port} never accepted CreateStream: {status} {body[:200]!r}", file=sys.stderr)
sys.exit(1)
