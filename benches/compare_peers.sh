#!/usr/bin/env bash
# Compares parallax with wrk, oha and hey on the same local target: requests
# per second, and requests per CPU-second of the load generator.
#
# Target: `parallax serve --service-time-ms 0` on 127.0.0.1, pinned to core
# TARGET_CPU (default 0). Each generator is pinned to core GEN_CPU (default
# 1) and keeps CONNECTIONS (50) connections alive for DURATION_S (10)
# seconds. Each tool runs RUNS (3) times, and the rounds interleave the
# tools so that a change in the machine's speed hits all of them alike.
# Every run is wrapped in `timeout`, so the script always ends.
#
# The peers all send `Authorization: Bearer <token>` with one token from the
# login endpoint. parallax logs its 50 users in itself, because that is part
# of its job. The logins happen before the load, and `load_elapsed_s`
# excludes them. parallax sends `GET /api/items`, and its rate is
# `all.requests_sent / run.load_elapsed_s` from summary.json.
#
# Rates are completed responses divided by the run time each tool reports.
# oha gets `--worker-threads 1`, because its default is the number of
# physical cores, not the cores it may run on. parallax and hey size their
# runtimes from the CPU affinity, and wrk runs one thread (`-t 1`).
#
# Generator CPU is the user + system time of the whole generator process
# (`/usr/bin/time`), start-up and report writing included. Three more
# columns describe the machine during the run. "irq_s" is interrupt time,
# mostly the loopback traffic itself. "other_s" is the machine's busy time
# (processes and interrupts) minus the generator's and the target's CPU
# time: other work that competed for the two cores. It is near 0, and can
# be slightly negative, on a quiet machine. "steal_s" is time the
# hypervisor gave to other guests.
#
# Usage: benches/compare_peers.sh        (results in $BENCH_OUT/compare_peers)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS="${RUNS:-3}"
DURATION_S="${DURATION_S:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
read -r -a TOOLS <<<"${TOOLS:-parallax wrk oha hey}"
OUT="$BENCH_OUT/compare_peers"
RUN_LIMIT_S=$((DURATION_S + 50))
TICKS_PER_S="$(getconf CLK_TCK)"

need_apt wrk hey jq curl time util-linux
if [[ " ${TOOLS[*]} " == *" oha "* ]] && ! command -v oha >/dev/null; then
    log "installing oha with cargo install"
    cargo install oha --locked --quiet
fi
build_parallax

rm -rf "$OUT"
mkdir -p "$OUT"

{
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
    echo "kernel: $(uname -r)"
    echo "parallax: $("$PARALLAX" --version), source $(git -C "$BENCH_ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "oha: $(oha --version 2>/dev/null || echo not installed)"
    echo "hey: $(dpkg-query -W -f '${Version}' hey) (Debian package)"
} | tee "$OUT/versions.txt" >&2

wait_for_quiet || echo "not quiet" >"$OUT/not_quiet"
start_target "$OUT/target.log" --service-time-ms 0
URL="$SERVE_URL/api/items"

write_credentials "$OUT/users.csv" "$CONNECTIONS"
cat >"$OUT/scenario.toml" <<EOF
name = "compare-peers"

[target]
base_url = "$SERVE_URL"

[login]
credentials = { csv = "users.csv" }

[[request]]
name = "list"
path = "/api/items"

[load]
model = "closed"
users = $CONNECTIONS
duration_s = $DURATION_S
EOF

# Sets ARGV to the command line of one tool's run.
set_argv() {
    local tool="$1" dir="$2" token="$3"
    local header="Authorization: Bearer $token"
    case "$tool" in
        parallax) ARGV=("$PARALLAX" run "$OUT/scenario.toml" --quiet --out "$dir/report") ;;
        wrk) ARGV=(wrk -t 1 -c "$CONNECTIONS" -d "${DURATION_S}s" -H "$header" "$URL") ;;
        oha) ARGV=(oha --no-tui --output-format json --worker-threads 1 -c "$CONNECTIONS" -z "${DURATION_S}s" -H "$header" "$URL") ;;
        hey) ARGV=(hey -c "$CONNECTIONS" -z "${DURATION_S}s" -H "$header" "$URL") ;;
    esac
}

# Prints "requests rate_per_s non_2xx" from one run's output.
read_result() {
    local tool="$1" dir="$2"
    case "$tool" in
        parallax)
            jq -r '.all as $a | "\($a.requests_sent) \($a.requests_sent / .run.load_elapsed_s) \($a.requests_sent - $a.ok)"' \
                "$dir/report/summary.json" ;;
        wrk)
            awk '/requests in/ { n = $1 } /^Requests\/sec/ { r = $2 } /Non-2xx/ { e = $NF }
                 END { print n, r, e + 0 }' "$dir/stdout" ;;
        oha)
            jq -r '(.statusCodeDistribution | to_entries) as $s
                   | ([$s[].value] | add) as $n
                   | "\($n) \($n / .summary.total) \($n - (.statusCodeDistribution["200"] // 0))"' \
                "$dir/stdout" ;;
        hey)
            awk '/Requests\/sec/ { r = $2 } /^[ \t]*\[[0-9]+\]/ { n += $2; if ($1 != "[200]") e += $2 }
                 END { print n, r, e + 0 }' "$dir/stdout" ;;
    esac
}

printf 'tool run requests rate_per_s non_2xx gen_cpu_s req_per_cpu_s target_cpu_s irq_s other_s steal_s load1\n' >"$OUT/runs.txt"
for ((run = 1; run <= RUNS; run++)); do
    for tool in "${TOOLS[@]}"; do
        dir="$OUT/$tool-$run"
        mkdir -p "$dir"
        set_argv "$tool" "$dir" '<token>'
        printf '%q ' taskset -c "$GEN_CPU" "${ARGV[@]}" >"$dir/command.txt"
        set_argv "$tool" "$dir" "$(login_token)"
        load1="$(cut -d' ' -f1 /proc/loadavg)"
        uptime >"$dir/uptime.txt"
        target_before="$(process_ticks "$SERVE_PID")"
        read -r busy_before irq_before steal_before < <(machine_ticks)
        /usr/bin/time -f '%e %U %S' -o "$dir/time.txt" \
            timeout --signal=TERM --kill-after=5 "$RUN_LIMIT_S" \
            taskset -c "$GEN_CPU" "${ARGV[@]}" >"$dir/stdout" 2>"$dir/stderr" || {
            log "$tool run $run failed; see $dir/stderr"
            tail -5 "$dir/stderr" >&2
            exit 1
        }
        target_after="$(process_ticks "$SERVE_PID")"
        read -r busy_after irq_after steal_after < <(machine_ticks)
        read -r requests rate non_2xx < <(read_result "$tool" "$dir")
        read -r _elapsed user_s sys_s <"$dir/time.txt"
        awk -v tool="$tool" -v run="$run" -v n="$requests" -v r="$rate" -v e="$non_2xx" \
            -v u="$user_s" -v s="$sys_s" -v t0="$target_before" -v t1="$target_after" \
            -v b0="$busy_before" -v b1="$busy_after" -v i0="$irq_before" -v i1="$irq_after" \
            -v s0="$steal_before" -v s1="$steal_after" -v hz="$TICKS_PER_S" -v load1="$load1" \
            'BEGIN {
                cpu = u + s; target = (t1 - t0) / hz; irq = (i1 - i0) / hz
                other = (b1 - b0) / hz - cpu - target; steal = (s1 - s0) / hz
                printf "%s %d %d %.0f %d %.2f %.0f %.2f %.2f %.2f %.2f %s\n", tool, run, n, r, e, cpu, n / cpu, target, irq, other, steal, load1
            }' | tee -a "$OUT/runs.txt" >&2
    done
done
stop_target

# The share of parallax's CPU time that goes to writing its reports after the
# load: `parallax report` rebuilds the same reports from the run's journal.
if [[ " ${TOOLS[*]} " == *" parallax "* ]]; then
    rebuild="$OUT/report-rebuild"
    rm -rf "$rebuild"
    cp -r "$OUT/parallax-$RUNS/report" "$rebuild"
    rm -f "$rebuild"/summary.* "$rebuild"/*.png "$rebuild"/*.csv
    /usr/bin/time -f '%e %U %S' -o "$OUT/report-rebuild.time" \
        timeout 60 taskset -c "$GEN_CPU" "$PARALLAX" report "$rebuild" >/dev/null
    read -r _elapsed user_s sys_s <"$OUT/report-rebuild.time"
    log "rebuilding one run's reports took $(awk -v u="$user_s" -v s="$sys_s" 'BEGIN { print u + s }') CPU-s"
fi

# Medians per tool, and parallax's ratio to each peer.
{
    printf '%-9s %12s %14s %16s %10s %12s\n' tool "req/s" "gen CPU-s" "req/CPU-s" "non-2xx" "other CPU-s"
    for tool in "${TOOLS[@]}"; do
        rows="$(awk -v t="$tool" '$1 == t' "$OUT/runs.txt")"
        printf '%-9s %12.0f %14.2f %16.0f %10d %12.2f\n' "$tool" \
            "$(cut -d' ' -f4 <<<"$rows" | median)" \
            "$(cut -d' ' -f6 <<<"$rows" | median)" \
            "$(cut -d' ' -f7 <<<"$rows" | median)" \
            "$(awk '{ e += $5 } END { print e }' <<<"$rows")" \
            "$(cut -d' ' -f10 <<<"$rows" | median)"
    done
} >"$OUT/medians.txt"
ratios="$(awk 'NR > 1 { rate[$1] = $2; eff[$1] = $4 }
         END {
             for (t in rate) if (t != "parallax" && rate["parallax"] != "")
                 printf "  %-5s req/s %.2f   req/CPU-s %.2f\n", t, rate["parallax"] / rate[t], eff["parallax"] / eff[t]
         }' "$OUT/medians.txt")"
printf '\nratios, parallax / peer (medians):\n%s\n' "$ratios" >>"$OUT/medians.txt"
echo
echo "runs ($OUT/runs.txt):"
column -t "$OUT/runs.txt"
echo
cat "$OUT/medians.txt"
