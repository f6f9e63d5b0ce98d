#!/usr/bin/env bash
# A three-node Riffle cluster in Docker containers (deploy/docker-compose.yml), one node per AZ.
#
#   scripts/cluster.sh up              build the image (scripts/docker-image.sh) and the riffle-chaos
#                                      binary (what `riffle chaos run --docker` runs), start
#                                      riffle-1..3, wait until each node accepts CreateStream (at most 120 s)
#   scripts/cluster.sh down            stop and remove the containers, the network and the data volumes
#   scripts/cluster.sh status          `docker-compose ps`, and `riffle cluster status`
#   scripts/cluster.sh logs [SERVICE]  the nodes' logs (extra arguments go to docker-compose logs,
#                                      e.g. `logs -f riffle-2`)
#
# Node N runs in container riffle-N (labels riffle.node=N, riffle.az=az-a/az-b/az-c) and serves
# Kinesis on 127.0.0.1:456(6+N) (4567, 4568, 4569). RIFFLE_PROFILE=debug builds the image from
# the debug build (faster to build, slower to run). The compose project is `riffle`.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${RIFFLE_PROFILE:-release}
binary=target/$profile/riffle
ports=(4567 4568 4569)
compose=(docker-compose -f deploy/docker-compose.yml -p riffle)

# Returns once the node on port $1 answers CreateStream, giving up at the epoch second $2.
wait_ready() { python3 scripts/wait_ready.py "$1" "$2"; }

case "${1:-}" in
  up)
    started=$(date +%s)
    RIFFLE_PROFILE=$profile scripts/docker-image.sh
    # Chaos against these containers runs in riffle-chaos (the Docker client is not in riffle).
    if [ "$profile" = release ]; then
      cargo build --locked --release -p riffle-chaos-docker
    else
      cargo build --locked -p riffle-chaos-docker
    fi
    "${compose[@]}" up -d
    deadline=$(($(date +%s) + 120))
    for port in "${ports[@]}"; do
      if ! wait_ready "$port" "$deadline"; then
        "${compose[@]}" ps >&2
        "${compose[@]}" logs --tail 30 >&2
        exit 1
      fi
    done
    echo "cluster is up after $(($(date +%s) - started)) s: http://127.0.0.1:4567 http://127.0.0.1:4568 http://127.0.0.1:4569"
    ;;
  down)
    "${compose[@]}" down -v --remove-orphans
    echo "cluster is down (containers, network and volumes removed)"
    ;;
  status)
    "${compose[@]}" ps
    # The first node that answers; without a local build, the binary inside the container.
    for n in 1 2 3; do
      if [ -x "$binary" ]; then
        "$binary" cluster status --endpoint "http://127.0.0.1:${ports[$((n - 1))]}" && exit 0
      else
        docker exec "riffle-$n" /riffle cluster status --endpoint http://127.0.0.1:4567 && exit 0
      fi
    done
    echo "no node answered /_riffle/status" >&2
    exit 1
    ;;
  logs)
    shift
    "${compose[@]}" logs "$@"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
