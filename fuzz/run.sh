#!/usr/bin/env bash
# Fuzzing, bounded: the C core under ASan/UBSan over every seed and regression, then a
# campaign of SECONDS for the libFuzzer target (clang) and for the Python targets.
#   bash fuzz/run.sh [SECONDS]        (default 60 each; 0: replay only, no campaign)
# A crash fails the run; its input is kept in fuzz/regressions/{core,py}/ to be committed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
PY=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/handoff-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
SRC=$(echo csrc/*.c)  # the C core, as csrc/build_ffi.py builds it

"$PY" fuzz/seeds.py "$WORK/seeds"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1

echo "== C core, ASan/UBSan, replaying seeds (spec/vectors, regions) and regressions"
CC_REPLAY=$(command -v clang || command -v gcc)
# shellcheck disable=SC2086
$CC_REPLAY $SAN -std=c11 -Icsrc fuzz/fuzz_core.c fuzz/driver.c $SRC -o "$WORK/replay"
"$WORK/replay" "$WORK/seeds/core" fuzz/regressions/core

if [ "$SECONDS_EACH" -gt 0 ]; then
  if command -v clang >/dev/null && clang -fsanitize=fuzzer -x c /dev/null -o /dev/null \
       -Wl,--unresolved-symbols=ignore-all 2>/dev/null; then
    echo "== C core, libFuzzer campaign, ${SECONDS_EACH}s"
    # shellcheck disable=SC2086
    clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 -std=c11 \
      -Icsrc fuzz/fuzz_core.c $SRC -o "$WORK/fuzz_core"
    mkdir -p "$WORK/corpus"
    cp "$WORK"/seeds/core/* "$WORK/corpus/"
    cp fuzz/regressions/core/* "$WORK/corpus/" 2>/dev/null || true
    if ! "$WORK/fuzz_core" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
         -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$WORK/" \
         "$WORK/corpus" 2>"$WORK/libfuzzer.log"; then
      tail -40 "$WORK/libfuzzer.log"
      for f in "$WORK"/crash-* "$WORK"/leak-* "$WORK"/timeout-* "$WORK"/oom-*; do
        [ -e "$f" ] && cp "$f" fuzz/regressions/core/ && echo "kept fuzz/regressions/core/$(basename "$f")"
      done
      exit 1
    fi
    grep -E "^stat::number_of_executed_units|^Done" "$WORK/libfuzzer.log" || true
  else
    echo "== C core: clang with libFuzzer is not installed (apt-get install clang libclang-rt-14-dev); replay only"
  fi
  echo "== Python targets (containers, schema, C/Python verdict), ${SECONDS_EACH}s"
  "$PY" fuzz/fuzz_py.py --seconds "$SECONDS_EACH" "$WORK/seeds/py" fuzz/regressions/py
fi
