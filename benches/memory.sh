#!/usr/bin/env bash
# Memory of the parallax process: peak RSS with few and with many virtual
# users, and RSS over a longer run, to show that memory does not grow with
# the number of requests.
#
# Target: `parallax serve --service-time-ms 1` on 127.0.0.1, started afresh
# for each run and pinned to core TARGET_CPU (default 0). parallax is pinned
# to core GEN_CPU (default 1) and sent to the target with `--target`.
# The target accepts user1..user1000, so the credentials file has those 1000
# demo users and the virtual users take them round-robin.
#
# Runs (closed model, one `GET /api/items` per iteration):
#   users-50      50 users, no pacing, 10 s: as many requests as the target takes
#   users-10000   10,000 users, pacing 5 s (2,000 req/s in all), 20 s. The
#                 10,000 logins run at most 64 at a time, before the load.
#                 Every user starts at once, so the first iteration sends
#                 10,000 requests together and parallax opens about as many
#                 connections.
#   users-10000-ramp  the same with ramp_up_s = 5: the starts are spread
#                 over one pacing interval, so far fewer requests overlap
#   long-run      50 users, no pacing, LONG_S (default 180) seconds, with
#                 VmRSS sampled from /proc every SAMPLE_S (default 5) seconds
#
# Peak RSS is "Maximum resident set size" of `/usr/bin/time -v`. VmRSS and
# the number of open file descriptors (mostly connections) are sampled every
# second (every SAMPLE_S seconds in the long run). Every run is wrapped in
# `timeout`.
#
# Usage: benches/memory.sh                (results in $BENCH_OUT/memory)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LONG_S="${LONG_S:-180}"
SAMPLE_S="${SAMPLE_S:-5}"
OUT="$BENCH_OUT/memory"

need_apt jq time util-linux procps
build_parallax

rm -rf "$OUT"
mkdir -p "$OUT"

wait_for_quiet || echo "not quiet" >"$OUT/not_quiet"
write_credentials "$OUT/users.csv" 1000

# Writes a closed-model scenario: name, users, duration, extra [load] lines.
# The base URL is a placeholder, because each run gets a fresh target.
write_scenario() {
    cat >"$OUT/$1.toml" <<EOF
name = "memory-$1"

[target]
base_url = "http://127.0.0.1:1"

[login]
credentials = { csv = "users.csv" }

[[request]]
name = "list"
path = "/api/items"

[load]
model = "closed"
users = $2
duration_s = $3
$4
EOF
}

write_scenario users-50 50 10 ""
write_scenario users-10000 10000 20 "pacing_ms = 5000"
write_scenario users-10000-ramp 10000 20 "pacing_ms = 5000
ramp_up_s = 5"
write_scenario long-run 50 "$LONG_S" ""

printf 'run users duration_s peak_rss_mib max_fds requests_sent logins gen_cpu_s load1\n' >"$OUT/runs.txt"

# Runs one scenario under /usr/bin/time -v against a fresh target, so that
# no run inherits the connections of the one before, and writes "elapsed_s
# vmrss_kib fds" lines to rss.txt every sample_s seconds.
measure() {
    local name="$1" users="$2" duration="$3" sample_s="${4:-1}"
    local dir="$OUT/$name"
    mkdir -p "$dir"
    start_target "$dir/target.log" --service-time-ms 1

    local argv=("$PARALLAX" run "$OUT/$name.toml" --target "$SERVE_URL" --quiet --out "$dir/report")
    printf '%q ' taskset -c "$GEN_CPU" "${argv[@]}" >"$dir/command.txt"
    local load1
    load1="$(cut -d' ' -f1 /proc/loadavg)"
    uptime >"$dir/uptime.txt"

    timeout --signal=TERM --kill-after=5 $((duration + 120)) \
        /usr/bin/time -v -o "$dir/time.txt" \
        taskset -c "$GEN_CPU" "${argv[@]}" >"$dir/stdout" 2>"$dir/stderr" &
    local outer=$!
    sample_rss "$outer" "$sample_s" >"$dir/rss.txt" &
    local sampler=$!
    wait "$outer" || {
        log "$name failed; see $dir/stderr"
        tail -5 "$dir/stderr" >&2
        exit 1
    }
    wait "$sampler"
    stop_target

    local peak_kib user_s sys_s
    peak_kib="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$dir/time.txt")"
    user_s="$(awk -F': ' '/User time/ { print $2 }' "$dir/time.txt")"
    sys_s="$(awk -F': ' '/System time/ { print $2 }' "$dir/time.txt")"
    jq -r --arg name "$name" --arg users "$users" --arg duration "$duration" --arg load1 "$load1" \
        --arg peak "$(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k / 1024 }')" \
        --arg cpu "$(awk -v u="$user_s" -v s="$sys_s" 'BEGIN { printf "%.2f", u + s }')" \
        --arg fds "$(awk '$3 > m { m = $3 } END { print m + 0 }' "$dir/rss.txt")" \
        '[$name, $users, $duration, $peak, $fds, .all.requests_sent, .logins.initial, $cpu, $load1]
         | map(tostring) | join(" ")' "$dir/report/summary.json" | tee -a "$OUT/runs.txt" >&2
}

# Prints "elapsed_s vmrss_kib fds" of the parallax process under the timeout
# process `outer` (timeout -> time -> parallax) until it exits.
sample_rss() {
    local outer="$1" every="$2" time_pid="" pid="" start rss fds
    start="$(date +%s)"
    while kill -0 "$outer" 2>/dev/null; do
        [[ -z "$time_pid" ]] && time_pid="$(pgrep -P "$outer" | head -1 || true)"
        [[ -n "$time_pid" && -z "$pid" ]] && pid="$(pgrep -P "$time_pid" | head -1 || true)"
        if [[ -n "$pid" ]]; then
            rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)"
            fds="$(find "/proc/$pid/fd" -mindepth 1 2>/dev/null | wc -l)"
            [[ -n "$rss" ]] && echo "$(($(date +%s) - start)) $rss $fds"
        fi
        sleep "$every"
    done
}

measure users-50 50 10
measure users-10000 10000 20
measure users-10000-ramp 10000 20
measure long-run 50 "$LONG_S" "$SAMPLE_S"

echo
echo "runs ($OUT/runs.txt):"
column -t "$OUT/runs.txt"
echo
echo "long run, VmRSS (KiB) and open fds by elapsed second ($OUT/long-run/rss.txt):"
awk 'NR == 1 || NR % 6 == 0 { printf "  %4d s  %8d  %6d\n", $1, $2, $3 }
     { last = $0 } END { split(last, f, " "); printf "  %4d s  %8d  %6d (last)\n", f[1], f[2], f[3] }' \
    "$OUT/long-run/rss.txt"
