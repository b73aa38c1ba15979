#!/usr/bin/env bash
# Berth build benchmark, side by side with Docker's legacy builder and BuildKit when a
# reference dockerd answers on /var/run/docker.sock:
#   cold:   a build with an empty cache of a Dockerfile with 10 RUN steps and a 20 MB COPY on
#           busybox (Berth: builder prune + --no-cache; Docker: --no-cache);
#   cached: the same build again with nothing changed (every step from the cache).
#
#   sudo bench/build.sh                       # Berth (+ Docker if running)
#   sudo BENCH_START_DOCKER=1 bench/build.sh  # also install/start the reference dockerd
#
# Knobs: RUNS (10 cached builds), COLD_RUNS (3), BERTH_BIN_DIR (prebuilt binaries),
# CARGO_TARGET_DIR, BENCH_SKIP_DOCKER, DOCKER_CLI (/usr/local/bin/docker; legacy builder),
# BUILDKIT_CLI (/usr/bin/docker, the Debian 20.10 CLI with BuildKit built in).
#
# berthd runs in a network namespace of its own; the namespace, the daemon, its mounts,
# cgroups and directory are all removed on exit, even on failure.
set -euo pipefail
export LC_ALL=C

RUNS=${RUNS:-10}
COLD_RUNS=${COLD_RUNS:-3}
DOCKER_CLI=${DOCKER_CLI:-/usr/local/bin/docker}
BUILDKIT_CLI=${BUILDKIT_CLI:-/usr/bin/docker}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
log() { printf '[build-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
if [ "${BENCH_START_DOCKER:-0}" = 1 ]; then "$repo/../shared/peers/start-dockerd.sh" >&2 || true; fi

if [ -n "${BERTH_BIN_DIR:-}" ]; then
  bindir=$BERTH_BIN_DIR
else
  target=${CARGO_TARGET_DIR:-$repo/target}
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p berth) >&2 || die "build failed"
  bindir=$target/release
fi

work=$(mktemp -d /tmp/bbb.XXXXXX)
chmod 0711 "$work"
ns=berth-bb-${work##*.}
cg=berth-bb-${work##*.}
sock=$work/b.sock
berthd_pid=""
docker_tags=()

cleanup() {
  set +e
  trap - EXIT INT TERM
  log "cleaning up"
  for t in "${docker_tags[@]}"; do "$DOCKER_CLI" -H unix:///var/run/docker.sock rmi -f "$t" >/dev/null 2>&1; done
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

# The context: 10 RUN steps and a 20 MB file to COPY.
ctx=$work/ctx
mkdir -p "$ctx"
head -c $((20 << 20)) /dev/urandom >"$ctx/blob.bin"
{
  echo "FROM busybox"
  echo "COPY blob.bin /data/blob.bin"
  for i in $(seq 1 10); do echo "RUN echo step $i > /step$i && sha1sum /data/blob.bin >> /step$i"; done
  echo 'CMD ["cat", "/step10"]'
} >"$ctx/Dockerfile"

ip netns add "$ns"
ip -n "$ns" link set lo up
echo '{}' >"$work/daemon.json"
nsenter --net="/run/netns/$ns" "$bindir/berthd" -H "unix://$sock" --data-root "$work/data" \
  --exec-root "$work/run" --cgroup-parent "/$cg" --config-file "$work/daemon.json" \
  </dev/null >"$work/berthd.log" 2>&1 &
berthd_pid=$!
berth=("$bindir/berth" -H "unix://$sock")
for _ in $(seq 100); do "${berth[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${berth[@]}" version >/dev/null 2>&1 || { cat "$work/berthd.log" >&2; die "berthd did not start"; }
"$repo/../shared/fixtures/mkrootfs-busybox.sh" | "${berth[@]}" import - busybox:latest >/dev/null

# mean wall time in ms of N runs of "$@", each after running $PREP (a shell snippet)
mean_ms() {
  local n=$1 prep=$2 s e total=0 i
  shift 2
  for ((i = 0; i < n; i++)); do
    eval "$prep" >/dev/null 2>&1 || true
    s=${EPOCHREALTIME/./}
    "$@" >/dev/null 2>&1 || { echo "fail"; return; }
    e=${EPOCHREALTIME/./}
    total=$((total + e - s))
  done
  awk -v t=$total -v n="$n" 'BEGIN { printf "%.0f", t / n / 1000 }'
}

declare -A R
log "[berth] cold x$COLD_RUNS, cached x$RUNS (berth CLI, context read in place)"
R[berth:cold]=$(mean_ms "$COLD_RUNS" '"${berth[@]}" builder prune -f' "${berth[@]}" build --no-cache -t bench "$ctx")
"${berth[@]}" build -t bench "$ctx" >/dev/null
R[berth:cached]=$(mean_ms "$RUNS" : "${berth[@]}" build -t bench "$ctx")
log "[berth] the same through the docker CLI's legacy builder (context sent as a tar)"
dockerb=(env DOCKER_BUILDKIT=0 DOCKER_HOST="unix://$sock" "$DOCKER_CLI")
R[berth-docker:cold]=$(mean_ms "$COLD_RUNS" '"${berth[@]}" builder prune -f' "${dockerb[@]}" build --no-cache -t bench "$ctx")
R[berth-docker:cached]=$(mean_ms "$RUNS" : "${dockerb[@]}" build -t bench "$ctx")
cols=(berth berth-docker)

if [ -z "${BENCH_SKIP_DOCKER:-}" ] && [ -x "$DOCKER_CLI" ] && "$DOCKER_CLI" -H unix:///var/run/docker.sock info >/dev/null 2>&1; then
  if "$DOCKER_CLI" -H unix:///var/run/docker.sock image inspect busybox:latest >/dev/null 2>&1; then
    legacy=(env DOCKER_BUILDKIT=0 DOCKER_HOST=unix:///var/run/docker.sock "$DOCKER_CLI")
    log "[docker legacy builder] cold x$COLD_RUNS, cached x$RUNS"
    docker_tags+=(berth-bench-legacy)
    R[legacy:cold]=$(mean_ms "$COLD_RUNS" : "${legacy[@]}" build --no-cache -t berth-bench-legacy "$ctx")
    "${legacy[@]}" build -t berth-bench-legacy "$ctx" >/dev/null 2>&1
    R[legacy:cached]=$(mean_ms "$RUNS" : "${legacy[@]}" build -t berth-bench-legacy "$ctx")
    cols+=(legacy)
    if [ -x "$BUILDKIT_CLI" ]; then
      bk=(env DOCKER_BUILDKIT=1 DOCKER_HOST=unix:///var/run/docker.sock "$BUILDKIT_CLI")
      log "[docker BuildKit] cold x$COLD_RUNS, cached x$RUNS"
      docker_tags+=(berth-bench-buildkit)
      R[buildkit:cold]=$(mean_ms "$COLD_RUNS" : "${bk[@]}" build --no-cache -t berth-bench-buildkit "$ctx")
      "${bk[@]}" build -t berth-bench-buildkit "$ctx" >/dev/null 2>&1
      R[buildkit:cached]=$(mean_ms "$RUNS" : "${bk[@]}" build -t berth-bench-buildkit "$ctx")
      cols+=(buildkit)
    fi
  fi
fi

mkdir -p "$here/results"
results=$here/results/build-$(date +%Y-%m-%d-%H%M%S).md
exec > >(tee "$results")
echo "# Berth build benchmark, $(date -u +%FT%TZ), $(nproc) cores; 10 RUN steps + a 20 MB COPY on busybox"
echo
echo "Columns: berth = berth CLI (context read in place); berth-docker = docker CLI legacy builder against berthd (context as a tar); legacy = dockerd's legacy builder; buildkit = dockerd's BuildKit (Debian docker 20.10 CLI)."
printf '\n| %s |' "ms (mean)"; for c in "${cols[@]}"; do printf ' %s |' "$c"; done; echo
printf '|---|'; for _ in "${cols[@]}"; do printf -- '---|'; done; echo
for k in cold cached; do
  printf '| %s |' "$k"
  for c in "${cols[@]}"; do printf ' %s |' "${R[$c:$k]:-n/a}"; done
  echo
done
if [ -n "${R[buildkit:cold]:-}" ] && [ "${R[buildkit:cold]}" != fail ] && [ "${R[berth:cold]}" != fail ]; then
  awk -v b="${R[berth:cold]}" -v d="${R[buildkit:cold]}" 'BEGIN { printf "\ncold: Berth/BuildKit = %.2f (target <= 0.33)\n", b / d }'
fi
echo "cached: Berth ${R[berth:cached]} ms (target <= 50 ms)"
log "report: $results"
