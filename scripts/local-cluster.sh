#!/usr/bin/env bash
# A three-node Riffle cluster on loopback, one node per AZ.
#
#   scripts/local-cluster.sh up        build if needed, start nodes 1-3, wait until CreateStream works
#   scripts/local-cluster.sh down      stop every node (SIGTERM, then SIGKILL after 10 s)
#   scripts/local-cluster.sh status    which processes run, and `riffle cluster status`
#   scripts/local-cluster.sh kill N    SIGKILL node N
#   scripts/local-cluster.sh start N   start node N again on its existing data
#   scripts/local-cluster.sh join N AZ start a new node N (4-9) in AZ that joins the cluster
#   scripts/local-cluster.sh wipe      down, then delete .riffle-local/
#
# Node N serves Kinesis on 127.0.0.1:456(6+N) (4567, 4568, 4569), peers on 127.0.0.1:466(6+N),
# AZ az-a/az-b/az-c, data and logs under .riffle-local/nodeN/. RIFFLE_PROFILE=debug uses the
# debug build (faster to build, slower to run); extra node flags go in RIFFLE_NODE_ARGS;
# RIFFLE_BINARY=path runs that binary instead of building one (before/after comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."

root=.riffle-local
profile=${RIFFLE_PROFILE:-release}
binary=${RIFFLE_BINARY:-target/$profile/riffle}
azs=(az-a az-b az-c)
peers="1=127.0.0.1:4667,2=127.0.0.1:4668,3=127.0.0.1:4669"

build() {
  if [ -n "${RIFFLE_BINARY:-}" ]; then
    return
  elif [ "$profile" = release ]; then
    cargo build --release --locked -p riffle-server
  else
    cargo build --locked -p riffle-server
  fi
}

pid_of() { cat "$root/node$1/pid" 2>/dev/null || true; }
running() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# Nodes 1-3 plus any that joined (their directory holds `az`).
nodes() {
  local n
  for n in 1 2 3 4 5 6 7 8 9; do
    if [ "$n" -le 3 ] || [ -f "$root/node$n/az" ]; then echo "$n"; fi
  done
}

start_node() {
  local n=$1 az membership
  if running "$n"; then echo "node $n already running (pid $(pid_of "$n"))"; return; fi
  mkdir -p "$root/node$n"
  if [ "$n" -le 3 ]; then
    az=${azs[$((n - 1))]}
    membership=(--peers "$peers")
  else
    az=$(cat "$root/node$n/az")
    membership=(--join 127.0.0.1:4667)
  fi
  # shellcheck disable=SC2086
  nohup "$binary" server \
    --node-id "$n" --az "$az" \
    --listen "127.0.0.1:$((4566 + n))" --peer-listen "127.0.0.1:$((4666 + n))" \
    "${membership[@]}" --data-dir "$root/node$n/data" ${RIFFLE_NODE_ARGS:-} \
    >>"$root/node$n/riffle.log" 2>&1 &
  echo $! >"$root/node$n/pid"
  echo "node $n started (pid $!, kinesis 127.0.0.1:$((4566 + n)), $az)"
}

# Returns once the node on port $1 answers CreateStream (at most 120 s).
wait_ready() { python3 scripts/wait_ready.py "$1"; }

stop_node() {
  local n=$1 pid
  pid=$(pid_of "$n")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$root/node$n/pid"
}

case "${1:-}" in
  up)
    build
    for n in 1 2 3; do start_node "$n"; done
    for n in 1 2 3; do wait_ready $((4566 + n)); done
    echo "cluster is up: http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569"
    ;;
  down)
    for n in $(nodes); do stop_node "$n"; done
    echo "cluster is down"
    ;;
  status)
    for n in $(nodes); do
      if running "$n"; then echo "node $n: running (pid $(pid_of "$n"))"; else echo "node $n: not running"; fi
    done
    for n in $(nodes); do
      if running "$n"; then "$binary" cluster status --endpoint "http://127.0.0.1:$((4566 + n))" && exit 0; fi
    done
    ;;
  kill)
    n=${2:?usage: local-cluster.sh kill N}
    pid=$(pid_of "$n")
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; rm -f "$root/node$n/pid"; echo "node $n killed (SIGKILL)"; fi
    ;;
  start)
    n=${2:?usage: local-cluster.sh start N}
    [ -x "$binary" ] || build
    start_node "$n"
    wait_ready $((4566 + n))
    ;;
  join)
    n=${2:?usage: local-cluster.sh join N AZ}
    az=${3:?usage: local-cluster.sh join N AZ}
    [ "$n" -ge 4 ] && [ "$n" -le 9 ] || { echo "joining nodes are numbered 4-9"; exit 2; }
    [ -x "$binary" ] || build
    mkdir -p "$root/node$n"
    echo "$az" >"$root/node$n/az"
    start_node "$n"
    wait_ready $((4566 + n))
    ;;
  wipe)
    for n in $(nodes); do stop_node "$n"; done
    rm -rf "$root"
    echo "removed $root"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
