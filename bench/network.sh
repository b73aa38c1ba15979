#!/usr/bin/env bash
# Berth networking benchmark, side by side with Docker (and Podman) when they are there:
#   1. `run --rm busybox true` on the default bridge (a veth, an address, routes, teardown);
#   2. HTTP requests per second through a published port (busybox httpd behind -p), from the
#      host's 127.0.0.1 (Docker: docker-proxy; Berth: kernel DNAT) and from the host's bridge
#      address.
#
#   sudo bench/network.sh                       # Berth (+ Docker/Podman if running/installed)
#   sudo BENCH_START_DOCKER=1 bench/network.sh  # also install/start the reference dockerd
#
# Knobs: RUNS (30), REQUESTS (5000), CONCURRENCY (16), BERTH_BIN_DIR (prebuilt binaries),
# CARGO_TARGET_DIR, BENCH_SKIP_DOCKER, BENCH_SKIP_PODMAN, DOCKER_CLI (/usr/local/bin/docker).
#
# berthd runs in a network namespace of its own (its "host"), so its bridge, veths and
# nftables table never touch the machine's; the namespace, the daemon, its containers, mounts,
# cgroups and directory are all removed on exit, even on failure. `ab` (apache2-utils) is
# installed if missing.
set -euo pipefail
export LC_ALL=C

RUNS=${RUNS:-30}
REQUESTS=${REQUESTS:-5000}
CONCURRENCY=${CONCURRENCY:-16}
DOCKER_CLI=${DOCKER_CLI:-/usr/local/bin/docker}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
log() { printf '[net-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

if ! command -v ab >/dev/null; then
  log "installing apache2-utils (ab)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null
fi
if [ "${BENCH_START_DOCKER:-0}" = 1 ]; then "$repo/../shared/peers/start-dockerd.sh" >&2 || true; fi

if [ -n "${BERTH_BIN_DIR:-}" ]; then
  bindir=$BERTH_BIN_DIR
else
  target=${CARGO_TARGET_DIR:-$repo/target}
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p berth) >&2 || die "build failed"
  bindir=$target/release
fi

work=$(mktemp -d /tmp/berth-netbench.XXXXXX)
chmod 0711 "$work"
ns=berth-netbench-${work##*.}
cg=berth-netbench-${work##*.}
sock=$work/b.sock
berthd_pid=""
docker_ids=()

cleanup() {
  set +e
  trap - EXIT INT TERM
  log "cleaning up"
  for id in "${docker_ids[@]}"; do "$DOCKER_CLI" -H unix:///var/run/docker.sock rm -f "$id" >/dev/null 2>&1; done
  [ -n "$berthd_pid" ] && kill -KILL "$berthd_pid" 2>/dev/null
  for _ in $(seq 50); do
    pids=$(for d in /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/"$cg"; do [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} +; done 2>/dev/null | sort -u)
    for p in /proc/[0-9]*; do grep -qs "$work/" "$p/cmdline" && pids="$pids ${p#/proc/}"; done
    [ -z "${pids// /}" ] && break
    kill -KILL $pids 2>/dev/null
    sleep 0.1
  done
  awk -v p="$work" 'index($5, p) == 1 { print length($5) " " $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2- |
    while read -r m; do umount -l "$m"; done
  for d in /sys/fs/cgroup/*/"$cg" /sys/fs/cgroup/"$cg"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
echo '{}' >"$work/daemon.json"
nsenter --net="/run/netns/$ns" "$bindir/berthd" -H "unix://$sock" --data-root "$work/data" \
  --exec-root "$work/run" --cgroup-parent "/$cg" --config-file "$work/daemon.json" \
  </dev/null >"$work/berthd.log" 2>&1 &
berthd_pid=$!
berth=("$bindir/berth" -H "unix://$sock")
for _ in $(seq 100); do "${berth[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"$repo/../shared/fixtures/mkrootfs-busybox.sh" | "${berth[@]}" import - busybox:latest >/dev/null
inns() { nsenter --net="/run/netns/$ns" "$@"; }

# mean of RUNS timed runs of "$@", in ms
time_runs() {
  local s e total=0 i
  "$@" >/dev/null 2>&1 || { log "warm-up failed: $*"; echo "fail"; return; }
  for ((i = 0; i < RUNS; i++)); do
    s=${EPOCHREALTIME/./}
    "$@" >/dev/null 2>&1 || { echo "fail"; return; }
    e=${EPOCHREALTIME/./}
    total=$((total + e - s))
  done
  awk -v t=$total -v n="$RUNS" 'BEGIN { printf "%.1f", t / n / 1000 }'
}
# requests per second of ab against $2 (run with the prefix command words in $1)
rps() {
  local prefix=$1 url=$2 out
  for _ in $(seq 50); do $prefix busybox wget -q -O /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
  out=$($prefix ab -q -n "$REQUESTS" -c "$CONCURRENCY" "$url" 2>&1) || { echo "fail"; return; }
  awk '/Requests per second/ { printf "%.0f", $4 }' <<<"$out"
}

declare -A R
web='mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www'

log "[berth] run --rm busybox true x$RUNS (default bridge)"
R[berth:run]=$(time_runs "${berth[@]}" run --rm busybox true)
R[berth:run_none]=$(time_runs "${berth[@]}" run --rm --network none busybox true)
"${berth[@]}" run -d --name web -p 18300:80 busybox sh -c "$web" >/dev/null
log "[berth] ab -n $REQUESTS -c $CONCURRENCY through the published port"
R[berth:lo]=$(rps "inns" "http://127.0.0.1:18300/")
gw=$("${berth[@]}" network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' bridge)
R[berth:br]=$(rps "inns" "http://$gw:18300/")
R[berth:direct]=$(rps "inns" "http://$("${berth[@]}" inspect -f '{{.NetworkSettings.IPAddress}}' web)/")

cols=(berth)
if [ -z "${BENCH_SKIP_DOCKER:-}" ] && [ -x "$DOCKER_CLI" ] && "$DOCKER_CLI" -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
  docker=("$DOCKER_CLI" -H unix:///var/run/docker.sock)
  if "${docker[@]}" image inspect busybox:latest >/dev/null 2>&1; then
    log "[docker] run --rm busybox true x$RUNS (default bridge)"
    R[docker:run]=$(time_runs "${docker[@]}" run --rm busybox true)
    R[docker:run_none]=$(time_runs "${docker[@]}" run --rm --network none busybox true)
    docker_ids+=("$("${docker[@]}" run -d -p 18301:80 busybox sh -c "$web")")
    log "[docker] ab through the published port"
    R[docker:lo]=$(rps "" "http://127.0.0.1:18301/")
    dgw=$("${docker[@]}" network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' bridge)
    R[docker:br]=$(rps "" "http://$dgw:18301/")
    R[docker:direct]=$(rps "" "http://$("${docker[@]}" inspect -f '{{.NetworkSettings.IPAddress}}' "${docker_ids[0]}")/")
    cols+=(docker)
  fi
fi
if [ -z "${BENCH_SKIP_PODMAN:-}" ] && command -v podman >/dev/null; then
  # Without CAP_SYS_RESOURCE, runc cannot apply podman's default rlimits: attainable ones.
  capeff=$(awk '/^CapEff/ { print $2 }' /proc/self/status)
  if (((16#$capeff >> 24 & 1) == 0)); then
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' \
      "$(ulimit -Hn)" "$(ulimit -Hn)" >"$work/containers.conf"
    export CONTAINERS_CONF=$work/containers.conf
  fi
  if podman image exists localhost/busybox:latest 2>/dev/null || "$repo/../shared/fixtures/mkrootfs-busybox.sh" | podman import - localhost/busybox:latest >/dev/null 2>&1; then
    log "[podman] run --rm busybox true x$RUNS (default network)"
    R[podman:run]=$(time_runs podman run --rm localhost/busybox:latest true)
    R[podman:run_none]=$(time_runs podman run --rm --network none localhost/busybox:latest true)
    cols+=(podman)
  fi
fi

mkdir -p "$here/results"
results=$here/results/network-$(date +%Y-%m-%d-%H%M%S).md
exec > >(tee "$results")
echo "# Berth networking benchmark, $(date -u +%FT%TZ), $(nproc) cores, RUNS=$RUNS, ab -n $REQUESTS -c $CONCURRENCY"
printf '\n| %s |' "measure"; for c in "${cols[@]}"; do printf ' %s |' "$c"; done; echo
printf '|---|'; for _ in "${cols[@]}"; do printf -- '---|'; done; echo
row() {
  local label=$1 key=$2
  printf '| %s |' "$label"
  for c in "${cols[@]}"; do printf ' %s |' "${R[$c:$key]:-n/a}"; done
  echo
}
row "run --rm true, default bridge (ms, mean of $RUNS)" run
row "run --rm true, --network none (ms)" run_none
row "req/s via 127.0.0.1:published port" lo
row "req/s via the bridge address:published port" br
row "req/s to the container address directly" direct
if [ -n "${R[docker:run]:-}" ] && [ "${R[docker:run]}" != fail ] && [ "${R[berth:run]}" != fail ]; then
  awk -v b="${R[berth:run]}" -v d="${R[docker:run]}" 'BEGIN { printf "\nrun --rm on the default bridge: Berth/Docker = %.2f (target <= 0.125)\n", b / d }'
fi
log "report: $results"
