#!/usr/bin/env bash
# Image transfer benchmark: pull of a 4-layer image (~50 MB of mixed data per layer) from a
# loopback registry, side by side with `docker pull` and `podman pull` of the same image from
# the same registry; also Berth's push, save and load.
#
#   sudo bench/pull.sh                      # Berth (+ Docker/Podman when already there)
#   sudo BENCH_START_DOCKER=1 bench/pull.sh # also install/start the reference dockerd
#
# Knobs: RUNS (5), LAYERS (4), LAYER_MB (50), REGISTRY (distribution|berth; distribution when
# /usr/bin/docker-registry exists), BERTH_BIN_DIR (prebuilt binaries), CARGO_TARGET_DIR,
# BENCH_SKIP_DOCKER, BENCH_SKIP_PODMAN.
#
# Everything runs on private state under a fresh /tmp/berth-pull.XXXXXX, removed on exit.
set -euo pipefail
export LC_ALL=C

RUNS=${RUNS:-5}
LAYERS=${LAYERS:-4}
LAYER_MB=${LAYER_MB:-50}
DOCKER_CLI=${DOCKER_CLI:-/usr/local/bin/docker}
DOCKER_SOCK=/var/run/docker.sock
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
stamp=$(date +%Y-%m-%d-%H%M%S)
results=$here/results/pull-$stamp.md

log() { printf '[pull-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
command -v python3 >/dev/null || die "python3 is needed to make the test image"

if [ -n "${BERTH_BIN_DIR:-}" ]; then
  bindir=$BERTH_BIN_DIR
else
  target=${CARGO_TARGET_DIR:-$repo/target}
  log "building Berth (release) into $target"
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p berth) || die "cargo build failed"
  bindir=$target/release
fi

work=$(mktemp -d /tmp/berth-pull.XXXXXX)
berthd_pid="" registry_pid=""
cleanup() {
  set +e
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  if [ -n "${docker_ref:-}" ]; then
    $DOCKER_CLI -H unix://$DOCKER_SOCK rmi -f "$docker_ref" >/dev/null 2>&1
  fi
  if [ -n "${podman_ref:-}" ]; then podman rmi -f "$podman_ref" >/dev/null 2>&1; fi
  grep -F " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rmdir /sys/fs/cgroup/*/berth-pull-bench 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
registry=${REGISTRY:-}
if [ -z "$registry" ]; then
  if [ -x /usr/bin/docker-registry ]; then registry=distribution; else registry=berth; fi
fi
if [ "$registry" = distribution ]; then
  cat >"$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
  /usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
else
  "$bindir/berth" registry serve --addr "127.0.0.1:$port" --root "$work/registry" >"$work/registry.log" 2>&1 &
fi
registry_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/v2/" >/dev/null || die "registry did not start: $(cat "$work/registry.log")"
log "registry ($registry) on 127.0.0.1:$port"

# Berth on private state.
sock=$work/berth.sock
echo '{}' >"$work/daemon.json"
"$bindir/berthd" -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" \
  --cgroup-parent /berth-pull-bench --config-file "$work/daemon.json" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
berth() { "$bindir/berth" -H "unix://$sock" "$@"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

log "making a $LAYERS-layer image ($LAYER_MB MB per layer)"
python3 "$here/mkimage.py" "$work/layout" "$LAYERS" "$LAYER_MB"
compressed=$(du -sb "$work/layout/blobs" | awk '{print $1}')
tar -C "$work/layout" -cf "$work/layout.tar" .

ref=127.0.0.1:$port/bench/big:1
t=$(now)
id=$(berth load -i "$work/layout.tar" | awk '/Loaded image ID/ {print $4}')
load_s=$(elapsed "$t")
[ -n "$id" ] || die "berth load gave no image id"
berth tag "$id" "$ref"
t=$(now)
berth push "$ref" >/dev/null
push_s=$(elapsed "$t")
t=$(now)
berth save -o "$work/saved.tar" "$ref"
save_s=$(elapsed "$t")
saved=$(stat -c %s "$work/saved.tar")
berth rmi -f "$ref" "$id" >/dev/null 2>&1 || true

pull_times() { # $1: pull command, $2: removal command
  for _ in $(seq "$RUNS"); do
    eval "$2" >/dev/null 2>&1 || true
    local t0
    t0=$(now)
    eval "$1" >/dev/null || die "pull failed: $1"
    elapsed "$t0"
    echo
  done
  eval "$2" >/dev/null 2>&1 || true
}

log "berth pull x$RUNS"
berth_pull=$(pull_times "berth pull -q $ref" "berth rmi -f $ref" | median)
docker_pull="" podman_pull=""
if [ -z "${BENCH_SKIP_DOCKER:-}" ]; then
  if [ -n "${BENCH_START_DOCKER:-}" ]; then "$repo/../shared/peers/start-dockerd.sh" >&2 || true; fi
  if $DOCKER_CLI -H unix://$DOCKER_SOCK version >/dev/null 2>&1; then
    docker_ref=$ref
    log "docker pull x$RUNS"
    docker_pull=$(pull_times "$DOCKER_CLI -H unix://$DOCKER_SOCK pull -q $ref" \
      "$DOCKER_CLI -H unix://$DOCKER_SOCK rmi -f $ref" | median)
  fi
fi
if [ -z "${BENCH_SKIP_PODMAN:-}" ] && command -v podman >/dev/null; then
  podman_ref=$ref
  log "podman pull x$RUNS"
  podman_pull=$(pull_times "podman pull -q --tls-verify=false $ref" "podman rmi -f $ref" | median)
fi

mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1e6 }'; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f MB/s", b / 1e6 / s; else print "-" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
mkdir -p "$here/results"
{
  echo "# Pull benchmark $stamp"
  echo
  echo "$LAYERS layers × $LAYER_MB MB (half random, half text; $(mb "$compressed") MB gzip-compressed), registry: $registry on loopback, median of $RUNS pulls (image removed before each)."
  echo
  echo "| | seconds | vs Docker |"
  echo "|---|---|---|"
  echo "| berth pull | $berth_pull | $(ratio "$berth_pull" "${docker_pull:-0}") |"
  [ -n "$docker_pull" ] && echo "| docker pull (dockerd 20.10) | $docker_pull | 1.00× |"
  [ -n "$podman_pull" ] && echo "| podman pull | $podman_pull | $(ratio "$podman_pull" "${docker_pull:-0}") |"
  echo
  echo "| berth | seconds | throughput |"
  echo "|---|---|---|"
  echo "| push (gzip blobs as stored) | $push_s | $(rate "$compressed" "$push_s") |"
  echo "| save | $save_s | $(rate "$saved" "$save_s") |"
  echo "| load (OCI layout tar) | $load_s | $(rate "$(stat -c %s "$work/layout.tar")" "$load_s") |"
} | tee "$results"
log "results in $results"
