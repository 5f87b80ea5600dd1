#!/usr/bin/env bash
# A short fuzzing run that CI can afford: every target for SMOKE_SECONDS
# (20 by default), starting from the committed seeds. Fails when a target
# panics, hangs for more than 10 s on one input, or does not build.
#
# Runs on the stable toolchain: `-s none` builds without AddressSanitizer,
# whose `-Zsanitizer` flag needs nightly. parallax's parsers are safe Rust,
# so the panics and failed checks this looks for need no sanitizer.
# Longer runs: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${SMOKE_SECONDS:-20}"
# Outside the work tree, so that cargo does not wait for the lock on the main
# build's target/ folder.
target_dir="${FUZZ_TARGET_DIR:-/tmp/parallax-fuzz-target}"
cargo_fuzz_version="0.13.2"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

cargo fuzz build -s none --target-dir "$target_dir"

# New inputs go to a scratch folder, so the committed seeds stay as they are.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

passed=0
failed=0
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  dictionary="fuzz/dictionaries/$target.dict"
  options=(-max_total_time="$seconds" -timeout=10)
  if [[ -f "$dictionary" ]]; then
    options+=(-dict="$dictionary")
  fi
  log="$scratch/$target.log"
  if cargo fuzz run -s none --target-dir "$target_dir" "$target" \
    "$scratch/$target" "fuzz/corpus/$target" -- "${options[@]}" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "fuzz $target: no crash in ${seconds} s ($(grep -o 'Done [0-9]* runs' "$log"))"
  else
    failed=$((failed + 1))
    echo "fuzz $target: FAILED; its panic message and the end of its log follow"
    grep -m 1 -A 3 'panicked at' "$log" || true
    tail -n 30 "$log"
  fi
done

echo "fuzz: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
