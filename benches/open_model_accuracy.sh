#!/usr/bin/env bash
# Measures how closely parallax's open model keeps to its arrival schedule:
# the achieved rate against the planned one, and the schedule lag (first
# send minus intended start), at RATES (default 1000 5000 20000 req/s).
#
# Target: `parallax serve --service-time-ms 0.1` on 127.0.0.1, pinned to core
# TARGET_CPU (default 0); parallax is pinned to core GEN_CPU (default 1).
# Each rate runs RUNS (3) times for DURATION_S (10) seconds with a pool of
# 200 users that may grow to 1000. Every run is wrapped in `timeout`.
#
# Figures come from each run's summary.json: `generator.rate_error_percent`,
# `generator.schedule_lag_ms.p50_ms` and `p99_ms`, `generator.warnings`.
# Goal at 1000 req/s: rate error under 0.5 %, lag p50 under 0.1 ms, p99
# under 1 ms.
#
# The runs table also has the CPU time of parallax, of the target and of
# every other process during the run, to tell which one limited a rate that
# was not reached.
#
# Usage: benches/open_model_accuracy.sh   (results in $BENCH_OUT/open_model_accuracy)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

read -r -a RATES <<<"${RATES:-1000 5000 20000}"
RUNS="${RUNS:-3}"
DURATION_S="${DURATION_S:-10}"
USERS="${USERS:-200}"
MAX_USERS="${MAX_USERS:-1000}"
OUT="$BENCH_OUT/open_model_accuracy"
RUN_LIMIT_S=$((DURATION_S + 60))

need_apt jq time util-linux
build_parallax

rm -rf "$OUT"
mkdir -p "$OUT"

wait_for_quiet || echo "not quiet" >"$OUT/not_quiet"
start_target "$OUT/target.log" --service-time-ms 0.1
write_credentials "$OUT/users.csv" "$USERS"

printf 'rate run achieved_rps error_pct lag_p50_ms lag_p99_ms lag_p99_9_ms lag_max_ms no_free_user sent not_sent errors gen_cpu_s target_cpu_s other_s load1 warnings\n' >"$OUT/runs.txt"
for rate in "${RATES[@]}"; do
    cat >"$OUT/open-$rate.toml" <<EOF
name = "open-$rate"

[target]
base_url = "$SERVE_URL"

[login]
credentials = { csv = "users.csv" }

[[request]]
name = "list"
path = "/api/items"

[load]
model = "open"
users = $USERS
max_users = $MAX_USERS
rate_per_s = $rate
duration_s = $DURATION_S
EOF
    for ((run = 1; run <= RUNS; run++)); do
        dir="$OUT/open-$rate-$run"
        mkdir -p "$dir"
        ARGV=("$PARALLAX" run "$OUT/open-$rate.toml" --quiet --out "$dir/report")
        printf '%q ' taskset -c "$GEN_CPU" "${ARGV[@]}" >"$dir/command.txt"
        load1="$(cut -d' ' -f1 /proc/loadavg)"
        uptime >"$dir/uptime.txt"
        target_before="$(process_ticks "$SERVE_PID")"
        read -r busy_before _irq _steal < <(machine_ticks)
        /usr/bin/time -f '%e %U %S' -o "$dir/time.txt" \
            timeout --signal=TERM --kill-after=5 "$RUN_LIMIT_S" \
            taskset -c "$GEN_CPU" "${ARGV[@]}" >"$dir/stdout" 2>"$dir/stderr" || {
            # The scenario has no [checks], so any exit code but 0 is a failure.
            log "run at $rate req/s failed; see $dir/stderr"
            tail -5 "$dir/stderr" >&2
            exit 1
        }
        target_after="$(process_ticks "$SERVE_PID")"
        read -r busy_after _irq _steal < <(machine_ticks)
        read -r _elapsed user_s sys_s <"$dir/time.txt"
        # The target's CPU time and that of every other process (see compare_peers.sh).
        read -r cpu target other < <(awk -v u="$user_s" -v s="$sys_s" -v t0="$target_before" -v t1="$target_after" \
            -v b0="$busy_before" -v b1="$busy_after" -v hz="$(getconf CLK_TCK)" \
            'BEGIN { c = u + s; t = (t1 - t0) / hz; printf "%.2f %.2f %.2f\n", c, t, (b1 - b0) / hz - c - t }')
        jq -r --arg rate "$rate" --arg run "$run" --arg load1 "$load1" \
            --arg cpu "$cpu" --arg target "$target" --arg other "$other" '
            .generator as $g | .all as $a | $g.schedule_lag_ms as $l
            | [$rate, $run, ($g.achieved_rate_rps | floor), ($g.rate_error_percent * 1000 | round / 1000),
               $l.p50_ms, $l.p99_ms, $l.p99_9_ms, $l.max_ms, $g.arrivals_without_free_user,
               $a.requests_sent, ($a.requests_intended - $a.requests_sent),
               ($a.requests_sent - $a.ok), $cpu, $target, $other, $load1, ($g.warnings | length)]
            | map(tostring) | join(" ")' "$dir/report/summary.json" | tee -a "$OUT/runs.txt" >&2
        jq -r '.generator.warnings[]' "$dir/report/summary.json" >"$dir/warnings.txt"
    done
done
stop_target

{
    printf '%-8s %12s %10s %12s %12s\n' rate "achieved/s" "error %" "lag p50 ms" "lag p99 ms"
    for rate in "${RATES[@]}"; do
        rows="$(awk -v r="$rate" '$1 == r' "$OUT/runs.txt")"
        printf '%-8s %12.0f %10.3f %12.3f %12.3f\n' "$rate" \
            "$(cut -d' ' -f3 <<<"$rows" | median)" \
            "$(cut -d' ' -f4 <<<"$rows" | median)" \
            "$(cut -d' ' -f5 <<<"$rows" | median)" \
            "$(cut -d' ' -f6 <<<"$rows" | median)"
    done
} >"$OUT/medians.txt"
echo
echo "runs ($OUT/runs.txt):"
column -t "$OUT/runs.txt"
echo
echo "medians:"
cat "$OUT/medians.txt"
