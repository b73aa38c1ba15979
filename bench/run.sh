#!/usr/bin/env bash
# Berth "run containers" benchmark, side by side with Docker and Podman when they are there.
#
#   sudo bench/run.sh                       # Berth (+ Docker/Podman if already installed)
#   sudo BENCH_START_DOCKER=1 bench/run.sh  # also install/start the reference dockerd
#
# Knobs (environment): RUNS (50), PARALLEL (8), PS_CONTAINERS (20), PS_RUNS (20),
# API_RUNS (2000), CMD_TIMEOUT (60 s per command), BENCH_START_DOCKER (0), BENCH_SKIP_DOCKER, BENCH_SKIP_PODMAN,
# BERTH_BIN_DIR (use prebuilt berth/berthd/berth-shim/berth-shim-runtime; no build), CARGO_TARGET_DIR,
# DOCKER_CLI (/usr/local/bin/docker). See bench/README.md.
#
# Berth runs on its own private daemon (socket, data root, exec root and cgroup parent under a
# fresh /tmp/berth-bench.XXXXXX); the default /run/berth and /var/lib/berth are never touched.
# Everything the script makes is removed on exit, even on failure or Ctrl-C.
set -euo pipefail
export LC_ALL=C

RUNS=${RUNS:-50}
PARALLEL=${PARALLEL:-8}
PS_CONTAINERS=${PS_CONTAINERS:-20}
PS_RUNS=${PS_RUNS:-20}
STATS_RUNS=${STATS_RUNS:-5}
API_RUNS=${API_RUNS:-2000}
CMD_TIMEOUT=${CMD_TIMEOUT:-60}
DOCKER_CLI=${DOCKER_CLI:-/usr/local/bin/docker}
DOCKER_SOCK=/var/run/docker.sock

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
stamp=$(date +%Y-%m-%d-%H%M%S)
results_dir=$here/results
results=$results_dir/$stamp.md

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (sudo bench/run.sh): containers need it"
for t in timeout xargs awk sort python3; do command -v "$t" >/dev/null || die "missing tool: $t"; done

# ---------------------------------------------------------------------------------------------
# Build (or locate) Berth.
# ---------------------------------------------------------------------------------------------
if [ -n "${BERTH_BIN_DIR:-}" ]; then
  bindir=$BERTH_BIN_DIR
else
  target=${CARGO_TARGET_DIR:-$repo/target}
  command -v cargo >/dev/null ||
    die "cargo not on PATH (under sudo: sudo env PATH=\"\$PATH\" bench/run.sh, or set BERTH_BIN_DIR)"
  log "building Berth (release) into $target"
  (cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release -p berth) || die "cargo build failed"
  bindir=$target/release
fi
for b in berth berthd berth-shim berth-shim-runtime; do
  [ -x "$bindir/$b" ] || die "$bindir/$b not found (BERTH_BIN_DIR / CARGO_TARGET_DIR?)"
done

# ---------------------------------------------------------------------------------------------
# Private state, and the clean-up that removes all of it.
# ---------------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
chmod 0711 "$work"
sock=$work/b.sock
cgname=berth-bench-${work##*.}
berthd_pid=""
started_dockerd=0
podman_imported=0
tag=bench${work##*.} # prefix of every container name this run creates
declare -a cleanup_clients=() # "label|client words..." whose $tag-* containers must go
pinned_pid=""                  # a daemon the one-CPU series has pinned, and its own mask
pinned_mask=""

cgroup_dirs() { # our cgroup parent in every hierarchy that has it
  local d
  for d in /sys/fs/cgroup/*/"$cgname" /sys/fs/cgroup/"$cgname"; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}
cgroup_pids() {
  local d
  for d in $(cgroup_dirs); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u
}
count_cgroups() { # cgroup dirs below our parent, all hierarchies
  local d
  for d in $(cgroup_dirs); do find "$d" -mindepth 1 -type d; done | wc -l
}
mounts_under() { # mount points at or under $1, deepest first
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}
procs_mentioning() { # pids whose command line contains $1 (not this shell)
  local p cmd
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmd == *"$1"* ]] && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  log "cleaning up"
  [ -n "$pinned_pid" ] && taskset -a -p "$pinned_mask" "$pinned_pid" >/dev/null 2>&1
  # Containers this run named, on every engine (the --rm ones remove themselves).
  local entry label ids
  for entry in "${cleanup_clients[@]}"; do
    label=${entry%%|*}
    read -r -a c <<<"${entry#*|}"
    ids=$(timeout 20 "${c[@]}" ps -aq --filter "name=$tag-" 2>/dev/null)
    [ -n "$ids" ] && timeout 60 "${c[@]}" rm -f $ids >/dev/null 2>&1
  done
  [ "$podman_imported" = 1 ] && timeout 30 podman rmi -f localhost/busybox:latest >/dev/null 2>&1
  # Our berthd.
  if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
    kill -TERM "$berthd_pid"
    for _ in $(seq 50); do kill -0 "$berthd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$berthd_pid" 2>/dev/null
    wait "$berthd_pid" 2>/dev/null
  fi
  # Container processes left in our cgroups: thaw, kill.
  local d p
  for _ in $(seq 50); do
    for d in $(cgroup_dirs); do
      find "$d" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null
    done
    p=$(cgroup_pids)
    [ -z "$p" ] && break
    kill -KILL $p 2>/dev/null
    sleep 0.1
  done
  # Shims and anything else started from our directory.
  for _ in $(seq 50); do
    p=$(procs_mentioning "$work/")
    [ -z "$p" ] && break
    kill -KILL $p 2>/dev/null
    sleep 0.1
  done
  # Mounts, cgroups, the directory.
  for m in $(mounts_under "$work"); do umount -l "$m" 2>/dev/null; done
  for d in $(cgroup_dirs); do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  if [ -n "$(mounts_under "$work")" ]; then
    log "WARNING: mounts left under $work, not removing it: $(mounts_under "$work" | tr '\n' ' ')"
  else
    rm -rf "$work"
  fi
  [ -n "$(cgroup_dirs)" ] && log "WARNING: cgroup dirs left: $(cgroup_dirs | tr '\n' ' ')"
  if [ "$started_dockerd" = 1 ] && [ -f /var/run/docker.pid ]; then
    log "stopping the dockerd this run started"
    kill "$(cat /var/run/docker.pid)" 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------
errors=$work/errors.log
: >"$errors"

# timed FILE RUNS PARALLEL CMD...: runs CMD RUNS times, PARALLEL at once, each under
# CMD_TIMEOUT; appends each run's wall time in microseconds to FILE (a failed run: a line to
# FILE.fail and its error text to $errors) and prints the series' total in microseconds.
# bench/timed.py spawns CMD itself and times only it: no timeout(1), shell or mktemp in the
# measured window.
timed() {
  local out=$1 runs=$2 par=$3
  shift 3
  python3 "$here/timed.py" "$runs" "$par" "$CMD_TIMEOUT" "$out" "$errors" "$@"
}

# stats FILE: "mean median p95 n" in ms over the microsecond samples in FILE.
stats() {
  [ -s "$1" ] || { echo "- - - 0"; return; }
  sort -n "$1" | awk '{ a[NR] = $1; s += $1 }
    END {
      med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
      p = int(0.95 * NR); if (p < 0.95 * NR) p++; if (p < 1) p = 1
      printf "%.1f %.1f %.1f %d\n", s / NR / 1000, med / 1000, a[p] / 1000, NR
    }'
}
fails() { [ -f "$1.fail" ] && wc -l <"$1.fail" | tr -d ' ' || echo 0; }

declare -A SOCK=()
declare -A DPID=() # the process that answers the API, for the one-CPU series

rss_kb() { awk '/^VmRSS:/ { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0; }
sum_rss_kb() {
  local t=0 p
  for p in "$@"; do t=$((t + $(rss_kb "$p"))); done
  echo "$t"
}
# status_kb FIELD PID...: sum of one /proc/<pid>/status field (RssAnon, RssFile, ...).
status_kb() {
  local f=$1 p t=0 v
  shift
  for p in "$@"; do
    v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# cpu_ns PID: CPU time of all the process's threads so far, in ns (schedstat's first field).
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ t += $1 } END { printf "%.0f", t }'
}
pss_kb() { # sum of Pss over PIDs (shared pages split between the processes that map them)
  local p t=0 v
  for p in "$@"; do
    v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mb2() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }

# supervisor_pids NAME IDS...: pids of processes whose argv[0] is NAME and whose command line
# names one of the container ids (so other engines' and other runs' supervisors never count).
supervisor_pids() {
  local name=$1 p cmd argv0 id
  shift
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    argv0=${cmd%% *}
    [ "${argv0##*/}" = "$name" ] || continue
    for id in "$@"; do
      if [[ $cmd == *"$id"* ]]; then
        echo "${p#/proc/}"
        break
      fi
    done
  done
  return 0
}

declare -A R=() # R[column:metric] = cell text

# must CMD...: a set-up step; on failure print its error (and Berth's log) and stop.
must() {
  local out rc=0
  out=$(timeout "$CMD_TIMEOUT" "$@" 2>&1) || rc=$?
  if [ "$rc" != 0 ]; then
    log "failed (rc=$rc$([ "$rc" = 124 ] && echo ', timeout')): $*"
    printf '%s\n' "$out" | tail -20 >&2
    if [[ ${1##*/} == berth || " $* " == *" unix://$sock "* ]]; then
      log "berthd.log tail:"
      tail -30 "$work/berthd.log" | sed 's/\x1b\[[0-9;]*m//g' >&2
    fi
    exit 1
  fi
  printf '%s\n' "$out"
}

# suite COLUMN SUPERVISOR IMAGE CLIENT...: every timed measurement through one client.
suite() {
  local col=$1 sup=$2 img=$3
  shift 3
  local -a c=("$@")
  local f=$work/$col t0 t1 i total
  log "[$col] warm-up"
  must "${c[@]}" run --rm --network none "$img" true >/dev/null

  log "[$col] run --rm x$RUNS sequential"
  total=$(timed "$f.seq" "$RUNS" 1 "${c[@]}" run --rm --network none "$img" true)
  R[$col:seq_total]=$(awk -v d="$total" 'BEGIN { printf "%.2f", d / 1e6 }')
  read -r mean med p95 n <<<"$(stats "$f.seq")"
  R[$col:seq]="$mean / $med / $p95"
  R[$col:seq_mean]=$mean
  R[$col:seq_fail]=$(fails "$f.seq")

  log "[$col] run --rm x$RUNS, $PARALLEL in parallel"
  total=$(timed "$f.par" "$RUNS" "$PARALLEL" "${c[@]}" run --rm --network none "$img" true)
  R[$col:par_total]=$(awk -v d="$total" 'BEGIN { printf "%.2f", d / 1e6 }')
  read -r mean med p95 n <<<"$(stats "$f.par")"
  R[$col:par]="$mean / $med / $p95"
  R[$col:par_fail]=$(fails "$f.par")

  log "[$col] exec true x$RUNS"
  must "${c[@]}" run -d --network none --name "$tag-exec" "$img" sleep 1000 >/dev/null
  timed "$f.exec" "$RUNS" 1 "${c[@]}" exec "$tag-exec" true >/dev/null
  must "${c[@]}" rm -f "$tag-exec" >/dev/null
  read -r mean med p95 n <<<"$(stats "$f.exec")"
  R[$col:exec]="$mean / $med"
  R[$col:exec_mean]=$mean
  R[$col:exec_fail]=$(fails "$f.exec")

  log "[$col] $PS_CONTAINERS x run -d sleep 1000"
  local -a ids=()
  local id
  for ((i = 0; i < PS_CONTAINERS; i++)); do
    t0=${EPOCHREALTIME/./}
    id=$(must "${c[@]}" run -d --network none --name "$tag-ps-$i" "$img" sleep 1000 | tail -1)
    t1=${EPOCHREALTIME/./}
    echo $((t1 - t0)) >>"$f.rund"
    ids+=("$id")
  done
  read -r mean med p95 n <<<"$(stats "$f.rund")"
  R[$col:rund]="$mean / $med"

  sleep 1 # let the supervisors settle after start-up
  local -a sp
  mapfile -t sp < <(supervisor_pids "$sup" "${ids[@]}")
  if [ "${#sp[@]}" -gt 0 ]; then
    local total
    total=$(sum_rss_kb "${sp[@]}")
    R[$col:shim_kb]=$((total / ${#sp[@]}))
    local n=${#sp[@]} anon file pss
    anon=$(status_kb RssAnon "${sp[@]}")
    file=$(status_kb RssFile "${sp[@]}")
    pss=$(pss_kb "${sp[@]}")
    R[$col:shim]="$(mb2 $((total / n))) ($sup x$n)"
    R[$col:shim_detail]="$(mb2 $((anon / n))) / $(mb2 $((file / n))) / $(mb2 $((pss / n)))"
  else
    R[$col:shim]="n/a (no $sup found)"
  fi

  log "[$col] ps x$PS_RUNS with $PS_CONTAINERS running"
  timed "$f.ps" "$PS_RUNS" 1 "${c[@]}" ps >/dev/null
  read -r mean med p95 n <<<"$(stats "$f.ps")"
  R[$col:ps]=$mean
  R[$col:ps_fail]=$(fails "$f.ps")
  local running
  running=$(timeout "$CMD_TIMEOUT" "${c[@]}" ps -q --filter "name=$tag-ps-" 2>/dev/null | wc -l)
  [ "$running" = "$PS_CONTAINERS" ] ||
    echo "--- [$col] expected $PS_CONTAINERS running containers in ps, saw $running" >>"$errors"

  log "[$col] inspect x$PS_RUNS, stats --no-stream x$STATS_RUNS"
  timed "$f.inspect" "$PS_RUNS" 1 "${c[@]}" inspect "${ids[0]}" >/dev/null
  read -r mean med p95 n <<<"$(stats "$f.inspect")"
  R[$col:inspect]=$mean
  R[$col:inspect_fail]=$(fails "$f.inspect")
  timed "$f.stats" "$STATS_RUNS" 1 "${c[@]}" stats --no-stream "${ids[0]}" >/dev/null
  read -r mean med p95 n <<<"$(stats "$f.stats")"
  R[$col:stats]=$mean
  R[$col:stats_fail]=$(fails "$f.stats")

  if [ -n "${SOCK[$col]:-}" ]; then
    log "[$col] API latency: ping, ps, inspect x$API_RUNS, exec x$PS_RUNS (bench/api.py)"
    local s=${SOCK[$col]} k n req mean med p95 line
    # KEY|RUNS|METHOD PATH [BODY]: one keep-alive connection per series, as SDKs use it.
    for line in "ping|$API_RUNS|GET /_ping" "ps|$API_RUNS|GET /containers/json" \
      "inspect|$API_RUNS|GET /containers/${ids[0]}/json" \
      "exec|$PS_RUNS|POST /containers/${ids[0]}/exec {\"Cmd\":[\"true\"],\"AttachStdout\":true}"; do
      IFS='|' read -r k n req <<<"$line"
      # The daemon's CPU time over the series, per call: what its latency costs it (Berth
      # busy-polls its connections briefly after each answer).
      local cpu0=""
      [ -n "${DPID[$col]:-}" ] && cpu0=$(cpu_ns "${DPID[$col]}")
      # shellcheck disable=SC2086 # METHOD PATH BODY are three words
      if read -r mean med p95 < <(python3 "$here/api.py" "$s" keepalive "$n" $req 2>>"$errors"); then
        [ -n "$cpu0" ] && R[$col:api_${k}_cpu]=$(awk -v a="$cpu0" -v b="$(cpu_ns "${DPID[$col]}")" -v n="$n" \
          'BEGIN { printf "%.0f", (b - a) / n / 1000 }')
        # ms with three decimals for the ratios; µs mean / median for the table.
        R[$col:api_$k]=$(awk -v m="$mean" 'BEGIN { printf "%.3f", m / 1000 }')
        R[$col:api_${k}_us]="$mean / $med"
      else
        R[$col:api_${k}_us]="(**failed**)"
      fi
    done
    # The same calls with the client and the daemon's threads on one CPU. On a VM whose idle
    # vCPUs halt, each round trip otherwise pays two cross-CPU wake-ups (see `api.py floor`),
    # tens of µs that no daemon can save; here what is left is the daemon's own turn-around.
    # The daemon's affinity is put back at once, and by the clean-up if the run stops here.
    if [ -n "${DPID[$col]:-}" ] && command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
      local pid=${DPID[$col]} cpu=$(($(nproc) - 1))
      pinned_mask=$(taskset -p "$pid" | awk '{ print $NF }')
      pinned_pid=$pid
      taskset -a -p -c "$cpu" "$pid" >/dev/null
      for line in "ping|GET /_ping" "ps|GET /containers/json" "inspect|GET /containers/${ids[0]}/json"; do
        IFS='|' read -r k req <<<"$line"
        # shellcheck disable=SC2086 # METHOD PATH are two words
        if read -r mean med p95 < <(taskset -c "$cpu" python3 "$here/api.py" "$s" keepalive "$API_RUNS" $req 2>>"$errors"); then
          R[$col:cpu1_$k]=$(awk -v m="$mean" 'BEGIN { printf "%.3f", m / 1000 }')
          R[$col:cpu1_${k}_us]="$mean / $med"
        else
          R[$col:cpu1_${k}_us]="(**failed**)"
        fi
      done
      taskset -a -p "$pinned_mask" "$pid" >/dev/null
      pinned_pid=""
    fi
  fi

  log "[$col] rm -f the $PS_CONTAINERS containers"
  t0=${EPOCHREALTIME/./}
  must "${c[@]}" rm -f "${ids[@]}" >/dev/null
  t1=${EPOCHREALTIME/./}
  R[$col:rmf]=$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.2f", d / 1e6 }')
}

# ---------------------------------------------------------------------------------------------
# Berth.
# ---------------------------------------------------------------------------------------------
have_docker_cli=0
[ -x "$DOCKER_CLI" ] && have_docker_cli=1
berth_cli=("$bindir/berth" -H "unix://$sock")
berth_dcli=("$DOCKER_CLI" -H "unix://$sock")
export DOCKER_CONFIG=$work/docker-config # no user config or context gets in the way
mkdir -p "$DOCKER_CONFIG"
echo '{}' >"$DOCKER_CONFIG/config.json" # podman reads DOCKER_CONFIG too, and wants the file

# No default bridge: this benchmark runs --network none, and must not touch the host's network.
echo '{"bridge": "none"}' >"$work/daemon.json"
log "starting berthd on $sock (cgroup parent /$cgname)"
"$bindir/berthd" -H "unix://$sock" --data-root "$work/data" --exec-root "$work/run" \
  --cgroup-parent "/$cgname" --config-file "$work/daemon.json" \
  </dev/null >"$work/berthd.log" 2>&1 &
berthd_pid=$!
cleanup_clients+=("berth|${berth_cli[*]}")
for _ in $(seq 100); do
  kill -0 "$berthd_pid" 2>/dev/null || { cat "$work/berthd.log" >&2; die "berthd exited at start-up"; }
  timeout 5 "${berth_cli[@]}" version >/dev/null 2>&1 && break
  sleep 0.2
done
timeout 5 "${berth_cli[@]}" version >/dev/null 2>&1 || { tail -30 "$work/berthd.log" >&2; die "berthd did not answer within 20 s"; }

log "importing busybox:latest into Berth"
"$repo/scripts/mkrootfs-busybox.sh" >"$work/busybox.tar" || die "scripts/mkrootfs-busybox.sh failed"
must "${berth_cli[@]}" import - busybox:latest <"$work/busybox.tar" >/dev/null
sleep 1
base_mnt=$(mounts_under "$work" | wc -l) # what berthd itself keeps mounted, for the leak check
base_cg=$(count_cgroups)
R[berth:idle_kb]=$(rss_kb "$berthd_pid")
R[berth:idle]="$(mb "${R[berth:idle_kb]}") (berthd)"

columns=()
if [ "$have_docker_cli" = 1 ]; then
  SOCK[berth]=$sock
  DPID[berth]=$berthd_pid
  suite berth berth-shim busybox:latest "${berth_dcli[@]}"
  columns+=(berth)
else
  log "no docker CLI at $DOCKER_CLI: Berth measured with its own CLI only"
fi
suite berthcli berth-shim busybox:latest "${berth_cli[@]}"
columns+=(berthcli)

# Leftovers once every container is gone: a leak check.
sleep 1
left_ctr=$(timeout 20 "${berth_cli[@]}" ps -aq 2>/dev/null | wc -l)
left_shim=$(supervisor_pids berth-shim "$work/" | wc -l)
left_mnt=$(($(mounts_under "$work" | wc -l) - base_mnt))
left_cg=$(($(count_cgroups) - base_cg))
R[berth:leftovers]="$left_ctr / $left_shim / $left_mnt / $left_cg"
R[berth:idle_after_kb]=$(rss_kb "$berthd_pid")
R[berth:idle_after]="$(mb "${R[berth:idle_after_kb]}") (berthd)"
kill -0 "$berthd_pid" 2>/dev/null || echo "--- berthd died during the benchmark" >>"$errors"

# ---------------------------------------------------------------------------------------------
# Docker.
# ---------------------------------------------------------------------------------------------
docker_c=("$DOCKER_CLI" -H "unix://$DOCKER_SOCK")
docker_daemon_pids() { pidof dockerd containerd 2>/dev/null | tr ' ' '\n'; }
if [ "${BENCH_SKIP_DOCKER:-0}" = 1 ]; then
  R[docker:note]="skipped (BENCH_SKIP_DOCKER=1)"
elif [ "$have_docker_cli" = 0 ]; then
  R[docker:note]="skipped (no docker CLI at $DOCKER_CLI)"
else
  if ! timeout 10 "${docker_c[@]}" info >/dev/null 2>&1 && [ "${BENCH_START_DOCKER:-0}" = 1 ]; then
    log "starting the reference dockerd (/work/shared/peers/start-dockerd.sh)"
    if timeout 900 bash /work/shared/peers/start-dockerd.sh >&2; then started_dockerd=1; fi
  fi
  if timeout 10 "${docker_c[@]}" info >/dev/null 2>&1; then
    cleanup_clients+=("docker|${docker_c[*]}")
    if ! timeout 10 "${docker_c[@]}" image inspect busybox:latest >/dev/null 2>&1; then
      log "importing busybox:latest into Docker"
      must "${docker_c[@]}" import - busybox:latest <"$work/busybox.tar" >/dev/null
    fi
    running=$(timeout 10 "${docker_c[@]}" ps -q | wc -l)
    [ "$running" = 0 ] || log "note: Docker already runs $running containers; idle RSS includes them"
    mapfile -t dp < <(docker_daemon_pids)
    R[docker:idle_kb]=$(sum_rss_kb "${dp[@]}")
    R[docker:idle]="$(mb "${R[docker:idle_kb]}") (dockerd+containerd)"
    SOCK[docker]=$DOCKER_SOCK
    DPID[docker]=$(pidof dockerd | awk '{ print $1 }')
    suite docker containerd-shim-runc-v2 busybox:latest "${docker_c[@]}"
    columns+=(docker)
    sleep 1
    mapfile -t dp < <(docker_daemon_pids)
    R[docker:idle_after]="$(mb "$(sum_rss_kb "${dp[@]}")") (dockerd+containerd)"
    R[docker:version]=$(timeout 10 "${docker_c[@]}" version -f '{{.Server.Version}}' 2>/dev/null || echo '?')
  else
    R[docker:note]="skipped (nothing answers on $DOCKER_SOCK; BENCH_START_DOCKER=1 starts one)"
  fi
fi
[ -n "${R[docker:note]:-}" ] && log "Docker ${R[docker:note]}"

# ---------------------------------------------------------------------------------------------
# Podman.
# ---------------------------------------------------------------------------------------------
if [ "${BENCH_SKIP_PODMAN:-0}" = 1 ]; then
  R[podman:note]="skipped (BENCH_SKIP_PODMAN=1)"
elif ! command -v podman >/dev/null; then
  R[podman:note]="skipped (podman not installed)"
else
  podman_c=(podman)
  # Without CAP_SYS_RESOURCE (some sandboxes), runc cannot apply podman's default rlimits
  # (nofile/nproc far above the hard limit): give podman a config with attainable ones.
  capeff=$(awk '/^CapEff/ { print $2 }' /proc/self/status)
  if (((16#$capeff >> 24 & 1) == 0)); then
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' \
      "$(ulimit -Hn)" "$(ulimit -Hn)" >"$work/containers.conf"
    export CONTAINERS_CONF=$work/containers.conf
    R[podman:note2]="no CAP_SYS_RESOURCE: podman ran with nofile=$(ulimit -Hn), nproc=4096"
    log "podman: ${R[podman:note2]}"
  fi
  cleanup_clients+=("podman|podman")
  if ! timeout 30 podman image exists localhost/busybox:latest; then
    log "importing busybox:latest into Podman"
    must podman import - localhost/busybox:latest <"$work/busybox.tar" >/dev/null
    podman_imported=1
  fi
  R[podman:idle]="n/a (no daemon)"
  R[podman:idle_after]="n/a (no daemon)"
  suite podman conmon localhost/busybox:latest "${podman_c[@]}"
  columns+=(podman)
  R[podman:version]=$(podman version -f '{{.Client.Version}}' 2>/dev/null || echo '?')
fi
[ -n "${R[podman:note]:-}" ] && log "Podman ${R[podman:note]}"

# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
cell() { echo "${R[$1:$2]:-—}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.3f", a / b; else print "" }'; }
times() { [ -n "$1" ] && echo "$1×" || echo "n/a"; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { if (v == "") print "n/a"; else if (v <= t) print "**met**"; else print "**not met**" }'; }

all_cols=(berth berthcli docker podman)
declare -A hdr=([berth]="Berth (docker CLI)" [berthcli]="Berth (berth CLI)" [docker]="Docker" [podman]="Podman")
for c in docker podman; do
  [ -n "${R[$c:note]:-}" ] && hdr[$c]="${hdr[$c]} — ${R[$c:note]}"
done
[ "$have_docker_cli" = 0 ] && hdr[berth]="Berth (docker CLI) — no docker CLI"

row() { # LABEL METRIC [SUFFIX-METRIC-FOR-FAILURES]
  local line="| $1 |" c v f
  for c in "${all_cols[@]}"; do
    v=$(cell "$c" "$2")
    if [ -n "${3:-}" ] && [ "${R[$c:$3]:-0}" != 0 ]; then v="$v (**${R[$c:$3]} failed**)"; fi
    line+=" $v |"
  done
  echo "$line"
}
# Columns that share the daemon: the idle figures belong to Berth, whichever client.
R[berthcli:idle]="(same daemon)"
R[berthcli:idle_after]="(same daemon)"
R[berthcli:leftovers]="(same daemon)"

berth_git=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(cd "$repo" && git status --porcelain 2>/dev/null)" ] && berth_git="$berth_git (dirty)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)

berth_seq=${R[berth:seq_mean]:-}
berthcli_seq=${R[berthcli:seq_mean]:-}
docker_seq=${R[docker:seq_mean]:-}
r1=$(ratio "$berth_seq" "$docker_seq")
r2=$(ratio "$berthcli_seq" "$docker_seq")
r3=$(ratio "${R[berth:par_total]:-}" "${R[docker:par_total]:-}")
r4=$(ratio "${R[berthcli:par_total]:-}" "${R[docker:par_total]:-}")
idle_mb=$(mb "${R[berth:idle_kb]}")
floor_us=$(python3 "$here/api.py" floor "$API_RUNS" 2>>"$errors" | sed 's| | / |g' || echo "—")
shim_mb=$([ -n "${R[berthcli:shim_kb]:-}" ] && mb2 "${R[berthcli:shim_kb]}" || echo "")
# The docker CLI's own start-up, with no request at all: the part of every docker-CLI figure
# that no daemon can make shorter.
cli_floor="—"
if [ "$have_docker_cli" = 1 ]; then
  timed "$work/cli-floor" "$PS_RUNS" 1 "$DOCKER_CLI" --version >/dev/null
  read -r mean med p95 n <<<"$(stats "$work/cli-floor")"
  cli_floor="$mean / $med"
fi

{
  echo "# Berth benchmark — $stamp"
  echo
  echo "Machine: $(nproc) cores ($cpu), $mem, kernel $(uname -r). Berth $berth_git" \
    "(release), Docker ${R[docker:version]:-—}, Podman ${R[podman:version]:-—}." \
    "RUNS=$RUNS, PARALLEL=$PARALLEL, $PS_CONTAINERS containers for ps, $PS_RUNS ps runs." \
    "All containers: busybox, \`--network none\`. Times in ms unless marked s; RSS in MiB."
  echo
  echo "The machine's floor for one API round trip (bench/api.py floor: one byte to another" \
    "process and back, no daemon), mean / median / p95: $floor_us µs. Every request to any" \
    "daemon pays it. The docker CLI's start-up alone (\`docker --version\`, no request) ×$PS_RUNS," \
    "mean / median: $cli_floor ms; every docker-CLI figure below includes it."
  echo
  printf '| Measurement |'
  for c in "${all_cols[@]}"; do printf ' %s |' "${hdr[$c]}"; done
  printf '\n|---|'
  for _ in "${all_cols[@]}"; do printf -- '---|'; done
  echo
  row "\`run --rm busybox true\` ×$RUNS sequential: total (s)" seq_total
  row "… per run: mean / median / p95 (ms)" seq seq_fail
  row "\`run --rm\` ×$RUNS, $PARALLEL parallel: total (s)" par_total
  row "… per run: mean / median / p95 (ms)" par par_fail
  row "\`exec true\` ×$RUNS: mean / median (ms)" exec exec_fail
  row "\`run -d sleep 1000\` ×$PS_CONTAINERS: mean / median (ms)" rund
  row "\`ps\` with $PS_CONTAINERS running ×$PS_RUNS: mean (ms)" ps ps_fail
  row "\`inspect\` of a running container ×$PS_RUNS: mean (ms)" inspect inspect_fail
  row "\`stats --no-stream\` of a running container ×$STATS_RUNS: mean (ms)" stats stats_fail
  row "API latency (bench/api.py, keep-alive): \`GET /_ping\` ×$API_RUNS, mean / median (µs)" api_ping_us
  row "API latency: \`GET /containers/json\` with $PS_CONTAINERS running ×$API_RUNS, mean / median (µs)" api_ps_us
  row "API latency: \`GET /containers/{id}/json\` ×$API_RUNS, mean / median (µs)" api_inspect_us
  row "API latency: exec create + start of \`true\` ×$PS_RUNS, mean / median (µs)" api_exec_us
  row "… the daemon's CPU time per call: \`_ping\` (µs)" api_ping_cpu
  row "… per \`GET /containers/json\` (µs)" api_ps_cpu
  row "… per \`GET /containers/{id}/json\` (µs)" api_inspect_cpu
  row "API latency, client and daemon on one CPU: \`GET /_ping\` ×$API_RUNS, mean / median (µs)" cpu1_ping_us
  row "… \`GET /containers/json\` with $PS_CONTAINERS running, one CPU (µs)" cpu1_ps_us
  row "… \`GET /containers/{id}/json\`, one CPU (µs)" cpu1_inspect_us
  row "\`rm -f\` of the $PS_CONTAINERS running: total (s)" rmf
  row "Idle daemon RSS, image loaded, no containers (MiB)" idle
  row "Per-container supervisor RSS, $PS_CONTAINERS running: mean (MiB)" shim
  row "… of which anon / file-backed RSS, and PSS: mean (MiB)" shim_detail
  row "Idle daemon RSS after the whole run (MiB)" idle_after
  row "Leftovers after all rm: containers / shims / mounts / cgroups" leftovers
  echo
  echo "| Target | Figure | Status |"
  echo "|---|---|---|"
  echo "| \`run --rm\` ≤ 1/10 of Docker's time (docker CLI on both, sequential mean) | $(times "$r1") ($berth_seq vs ${docker_seq:-—} ms) | $(verdict "$r1" 0.1) |"
  echo "| \`run --rm\` ≤ 1/10 of Docker's time (berth CLI vs docker on dockerd, sequential mean) | $(times "$r2") ($berthcli_seq vs ${docker_seq:-—} ms) | $(verdict "$r2" 0.1) |"
  echo "| \`run --rm\` ≤ 1/10 of Docker's time (docker CLI on both, $PARALLEL-parallel total) | $(times "$r3") (${R[berth:par_total]:-—} vs ${R[docker:par_total]:-—} s) | $(verdict "$r3" 0.1) |"
  echo "| \`run --rm\` ≤ 1/10 of Docker's time (berth CLI vs docker on dockerd, $PARALLEL-parallel total) | $(times "$r4") (${R[berthcli:par_total]:-—} vs ${R[docker:par_total]:-—} s) | $(verdict "$r4" 0.1) |"
  # Issue 4's targets: KEY|what|bound, Berth against dockerd.
  for t in "api_ps|API latency \`ps\`|1/3" "api_inspect|API latency \`inspect\`|1/3" \
    "api_exec|API latency \`exec\`|1/5" "cpu1_ps|API latency \`ps\`, one CPU|1/3" \
    "cpu1_inspect|API latency \`inspect\`, one CPU|1/3" "ps|\`ps\` (docker CLI on both)|1/3" \
    "inspect|\`inspect\` (docker CLI on both)|1/3" "exec_mean|\`exec\` (docker CLI on both)|1/5"; do
    IFS='|' read -r k what bound <<<"$t"
    want=$(awk -v b="$bound" 'BEGIN { split(b, f, "/"); printf "%.3f", f[1] / f[2] }')
    r=$(ratio "${R[berth:$k]:-}" "${R[docker:$k]:-}")
    echo "| $what ≤ $bound of dockerd's time | $(times "$r") (${R[berth:$k]:-—} vs ${R[docker:$k]:-—} ms) | $(verdict "$r" "$want") |"
  done
  echo "| berthd idle RSS ≤ 15 MB | $idle_mb MiB | $(verdict "$idle_mb" 15) |"
  echo "| berth-shim RSS ≤ 1.5 MB | ${shim_mb:-n/a} MiB | $(verdict "$shim_mb" 1.5) |"
  [ -n "${R[podman:note2]:-}" ] && printf '\nNote: %s.\n' "${R[podman:note2]}"
  if [ -s "$errors" ]; then
    echo
    echo "### Failures"
    echo
    echo '```'
    head -c 8000 "$errors"
    echo '```'
  fi
} >"$work/report.md"

mkdir -p "$results_dir"
cp "$work/report.md" "$results"
if [ -s "$errors" ]; then
  sed 's/\x1b\[[0-9;]*m//g' "$work/berthd.log" >"$results_dir/$stamp-berthd.log"
  log "there were failures: see the report; berthd log kept in $results_dir/$stamp-berthd.log"
fi
echo
cat "$work/report.md"
echo
log "written to $results"
