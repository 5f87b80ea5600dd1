# shellcheck shell=bash
# Helpers shared by the benchmark scripts in this folder; sourced, not run.
#
# Every target these scripts start is `parallax serve` on 127.0.0.1 and stops
# with the script. Every load they apply runs under `timeout`, so it stops
# by itself.
#
# Settings, from the environment:
#   CARGO_TARGET_DIR   where the release build goes (default /tmp/bench-target)
#   BENCH_OUT          folder for raw results (default /tmp/parallax-bench)
#   BENCH_MAX_LOAD     1-minute load average to wait for before measuring (default 1)
#   BENCH_LOAD_WAIT_S  maximum wait for that load, in seconds (default 600)
#   TARGET_CPU         core the target is pinned to (default 0)
#   GEN_CPU            core the load generator is pinned to (default 1)

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/bench-target}"
BENCH_OUT="${BENCH_OUT:-/tmp/parallax-bench}"
BENCH_MAX_LOAD="${BENCH_MAX_LOAD:-1}"
BENCH_LOAD_WAIT_S="${BENCH_LOAD_WAIT_S:-600}"
TARGET_CPU="${TARGET_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
PARALLAX="$CARGO_TARGET_DIR/release/parallax"

SERVE_PID=""
SERVE_URL=""

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Installs Debian packages that are missing, by package name.
need_apt() {
    local missing=()
    local package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

build_parallax() {
    log "building parallax (release) into $CARGO_TARGET_DIR"
    (cd "$BENCH_ROOT" && cargo build --release --quiet --bin parallax)
}

# Waits until the 1-minute load average is at most BENCH_MAX_LOAD, polling
# every 30 s for at most BENCH_LOAD_WAIT_S. Prints `uptime` either way and
# returns 1 when the machine did not get quiet in time (measuring goes on).
wait_for_quiet() {
    local waited=0 load
    while :; do
        load="$(cut -d' ' -f1 /proc/loadavg)"
        if awk -v l="$load" -v m="$BENCH_MAX_LOAD" 'BEGIN { exit !(l <= m) }'; then
            log "quiet: $(uptime)"
            return 0
        fi
        if ((waited >= BENCH_LOAD_WAIT_S)); then
            log "NOT QUIET after ${waited}s, measuring anyway: $(uptime)"
            return 1
        fi
        log "load average $load > $BENCH_MAX_LOAD; waiting 30 s (${waited}s so far)"
        sleep 30
        waited=$((waited + 30))
    done
}

# Starts `parallax serve` on a free loopback port, pinned to TARGET_CPU.
# Arguments are passed to `serve`. Sets SERVE_PID and SERVE_URL.
start_target() {
    local log_file="$1"
    shift
    # Emptied first, so that the port read below is never an earlier run's.
    : >"$log_file"
    taskset -c "$TARGET_CPU" "$PARALLAX" serve --port 0 --token-lifetime-s 3600 "$@" >"$log_file" 2>&1 &
    SERVE_PID=$!
    local tries=0
    until SERVE_URL="$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$log_file")" && [[ -n "$SERVE_URL" ]]; do
        tries=$((tries + 1))
        if ((tries > 100)) || ! kill -0 "$SERVE_PID" 2>/dev/null; then
            log "the target did not start; its output:"
            cat "$log_file" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "target $SERVE_URL (pid $SERVE_PID, core $TARGET_CPU): serve $*"
}

stop_target() {
    if [[ -n "$SERVE_PID" ]] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID"
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    SERVE_PID=""
}

# CPU time of a process so far, in clock ticks (user + system).
process_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# CPU time of the whole machine so far, in clock ticks, from /proc/stat:
# "busy irq steal". busy is user + nice + system + irq + softirq: the time
# of every process, the generator's and the target's included, plus the
# interrupt time in which the kernel handles most loopback traffic. A
# process's own CPU time covers part of that interrupt time, so the two
# overlap. irq is the interrupt time alone, and steal the time the
# hypervisor gave to other guests.
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $7 + $8, $9 }' /proc/stat
}

# A token for user1 from the target's login endpoint.
login_token() {
    curl -s --max-time 5 -X POST "$SERVE_URL/api/auth/login" \
        -H 'Content-Type: application/json' \
        -d '{"email":"user1@demo.test","password":"demo-pass-1"}' |
        jq -er '.data.token'
}

# Writes a credentials CSV with the demo users user1..userN.
write_credentials() {
    local file="$1" count="$2" i
    {
        echo "username,password"
        for ((i = 1; i <= count; i++)); do
            echo "user$i@demo.test,demo-pass-$i"
        done
    } >"$file"
}

# The median of the numbers on standard input, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The target stops with the script, however the script ends.
trap stop_target EXIT
trap 'exit 130' INT TERM
