#!/usr/bin/env bash
# Builds one fuzz target with afl.rs and runs AFL++ on it for a set time, then prints the
# executions and every crash and hang with the panic it gives.
#
#   fuzz/run.sh TARGET SECONDS      TARGET: onnx | ncnn | image
#
# Needs `cargo install cargo-afl` and `cargo afl config --build` once (stable Rust).
# Environment: CARGO_PREFIX is put before cargo (e.g. "flock /tmp/cargo.lock nice -n 15");
# FUZZ_MEM_MB (default 2048) is the memory limit and FUZZ_TIMEOUT_MS (default 2000) the time
# limit per input; a second run of a target resumes its corpus in fuzz/out/TARGET.
set -euo pipefail

target=${1:?usage: fuzz/run.sh TARGET SECONDS (TARGET: onnx, ncnn, image)}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
case $target in onnx | ncnn | image) ;; *) echo "unknown target $target" >&2; exit 2 ;; esac

cd "$(dirname "$0")"
# shellcheck disable=SC2086
${CARGO_PREFIX:-} cargo afl build --release --bin "$target"

bin=target/release/$target
out=out/$target
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_AUTORESUME=1
export AFL_NO_AFFINITY=1 AFL_STATSD=0
# The afl.rs runtime aborts on a panic, so AFL sees every panic as a crash.
nice -n "${FUZZ_NICE:-19}" cargo afl fuzz -i "seeds/$target" -o "$out" -x "dict/$target.dict" \
    -m "${FUZZ_MEM_MB:-2048}" -t "${FUZZ_TIMEOUT_MS:-2000}" -V "$seconds" -- "$bin" \
    > "$out/afl.log" 2>&1 || { tail -30 "$out/afl.log"; exit 1; }

stats=$out/default/fuzzer_stats
get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
echo "target $target: $(get execs_done) executions in $(get run_time) s ($(get execs_per_sec) exec/s this run)," \
    "corpus $(get corpus_count), coverage $(get bitmap_cvg)," \
    "crashes $(get saved_crashes), hangs $(get saved_hangs)"

# Each crash and hang found so far, with what it prints when replayed: the panic message and
# location, or for an allocation failure the first frame in batchwise's own src/.
repo_src=$(cd .. && pwd)/src/
explain() {
    local text
    text=$(ulimit -v $(( ${FUZZ_MEM_MB:-2048} * 1024 )); RUST_BACKTRACE=1 timeout 10 "$bin" < "$1" 2>&1 || true)
    local first
    first=$(grep -m1 -A1 -E 'panicked at|memory allocation' <<< "$text" | tr '\n' ' ')
    local at
    at=$(grep -m1 -oE "at $repo_src[^ ]*" <<< "$text" | sed "s|at $repo_src|src/|")
    echo "${first:-no panic on replay (killed by a signal or the time limit)} [${at:-no frame in src/}]"
}
for kind in crashes hangs; do
    for f in "$out"/default/$kind/id:*; do
        [ -e "$f" ] || continue
        echo "$kind: $f: $(explain "$f")"
    done
done
