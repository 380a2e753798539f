#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ and runs each for a bounded time; fails on any crash,
# timeout (an input taking over 10 s) or out-of-memory (RSS over 2 GiB).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default 5 s, every target)
# Targets run FUZZ_JOBS at a time (default 2); FUZZ_RUNS=N also stops each after N executions
# (long runs: FUZZ_JOBS=1 FUZZ_RUNS=10000000 nice -n 19 scripts/fuzz.sh 3600). Each grows its corpus in fuzz/corpus/<target>
# (not committed) from the seeds in fuzz/seeds/<target>; a crashing input lands in
# fuzz/artifacts/<target>/ and is replayed with `<binary> <file>`.
# The build is a plain `cargo build` with the coverage flags cargo-fuzz passes (stable Rust,
# no sanitizer: the code is `forbid(unsafe_code)`, so a finding is a panic, an overflow,
# a hang or a blow-up, which libFuzzer catches without one).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift $(( $# > 0 ? 1 : 0 ))
jobs=${FUZZ_JOBS:-2}

export CARGO_TARGET_DIR=${TRUSTDECK_FUZZ_TARGET_DIR:-$HOME/.cache/trustdeck/fuzz-target}
unset CARGO_BUILD_BUILD_DIR
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing --cap-lints warn"
# `--cap-lints warn`: `--cfg fuzzing` turns on h2's own fuzz module, which trips its
# deny(missing_docs). An explicit --target keeps the flags off build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
if ! cargo metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 >/dev/null; then
  echo "fuzz: fuzz/Cargo.lock is stale (a workspace crate's dependencies changed); refresh it with" >&2
  echo "  cp Cargo.lock fuzz/Cargo.lock && cargo fetch --manifest-path fuzz/Cargo.toml" >&2
  exit 2
fi
cargo build --manifest-path fuzz/Cargo.toml --profile fuzz --locked --target "$host" --bins
bin_dir=$CARGO_TARGET_DIR/$host/fuzz

# Longest input per target: room for the largest real input, plus some.
max_len() {
  case $1 in
    x509pop | tpm_devid) echo 16384 ;;
    csr | x509_svid | pem | bundle_json) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi

run_one() {
  local t=$1 opts=() log
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  [ -f "fuzz/dicts/$t.dict" ] && opts+=(-dict="fuzz/dicts/$t.dict")
  [ -n "${FUZZ_RUNS:-}" ] && opts+=(-runs="$FUZZ_RUNS")
  log=fuzz/artifacts/$t/last.log
  if "$bin_dir/$t" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
      "${opts[@]}" "fuzz/corpus/$t" "fuzz/seeds/$t" >"$log" 2>&1; then
    field() { awk -v k="stat::$1:" '$1 == k { print $2 }' "$log"; }
    echo "fuzz: $t ok: $(field number_of_executed_units) executions, $(field average_exec_per_sec)/s," \
      "corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs, $(grep -o 'cov: [0-9]*' "$log" | tail -n 1)"
  else
    echo "fuzz: $t FAILED (log $log):" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

failed=0
running=0
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"
