#!/usr/bin/env bash
# Coverage-guided fuzzing of kith's decoders with cargo-afl (AFL++ on the stable toolchain).
#
#   tests/fuzz/run.sh TARGET [SECONDS]   one target (`run.sh list` names them)
#   tests/fuzz/run.sh all [SECONDS]      each target in turn, SECONDS each
#
# Prints one line per target: executions, crashes and hangs; exits 1 if any target crashed
# or hung. Crashing inputs are kept in tests/fuzz/out/TARGET/default/crashes/.
set -euo pipefail
cd "$(dirname "$0")"
what="${1:?usage: run.sh TARGET|all|list [SECONDS]}"
secs="${2:-60}"

command -v cargo-afl >/dev/null || cargo install cargo-afl --locked
# Builds AFL++ once per toolchain; says so and does nothing when already built.
cargo afl config --build >/dev/null 2>&1 || true
target_dir="${CARGO_TARGET_DIR:-target}"
cargo afl build --release --quiet
bin="$target_dir/release/kith-fuzz"

if [ "$what" = list ]; then
  "$bin" list
  exit 0
fi
targets=("$what")
if [ "$what" = all ]; then
  mapfile -t targets < <("$bin" list)
fi

# The coverage map of the whole binary (automerge is large): afl-fuzz asks for it up front.
map_size=$(AFL_DUMP_MAP_SIZE=1 "$bin" list 2>/dev/null || true)
rm -rf out/seeds
"$bin" seeds out/seeds
failed=0
printf '%-14s %14s %8s %6s\n' target executions crashes hangs
for t in "${targets[@]}"; do
  rm -rf "out/$t"
  # -m: a run that tries to allocate past 4 GiB of address space is a crash (allocation must stay bounded);
  # -t: one taking over 2 s is a hang.
  AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
    AFL_MAP_SIZE="$map_size" \
    cargo afl fuzz -V "$secs" -m 4096 -t 2000 -i "out/seeds/$t" -o "out/$t" -- "$bin" "$t" \
    >"out/$t.log" 2>&1 || { echo "afl-fuzz failed for $t, see tests/fuzz/out/$t.log"; failed=1; continue; }
  stats="out/$t/default/fuzzer_stats"
  execs=$(awk -F': *' '$1 ~ /^execs_done/ {print $2}' "$stats")
  crashes=$(awk -F': *' '$1 ~ /^saved_crashes/ {print $2}' "$stats")
  hangs=$(awk -F': *' '$1 ~ /^saved_hangs/ {print $2}' "$stats")
  printf '%-14s %14s %8s %6s\n' "$t" "$execs" "$crashes" "$hangs"
  if [ "${crashes:-0}" != 0 ] || [ "${hangs:-0}" != 0 ]; then failed=1; fi
done
exit "$failed"
