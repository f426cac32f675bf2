#!/usr/bin/env bash
# Builds the Dockerfile fuzz target with clang's libFuzzer (+ASan/UBSan) and runs it for a
# bounded time over the corpus. Fails on any crash, abort, leak, timeout (a hang) or OOM.
#   run_libfuzzer.sh SECONDS CORPUS_DIR... -- SOURCES...
set -euo pipefail
seconds=$1; shift
corpora=()
while [ "$1" != "--" ]; do corpora+=("$1"); shift; done
shift
srcs=("$@")
work=${TEST_TMPDIR:-$(mktemp -d)}/fuzz
mkdir -p "$work/corpus"
for c in "${corpora[@]}"; do
  find -L "$c" -type f -name 'Dockerfile*' -o -type f -path '*fuzz/corpus/*' | while read -r f; do
    cp "$f" "$work/corpus/$(sha256sum "$f" | cut -c1-16)"
  done
done
absl_libs=(-labsl_statusor -labsl_status -labsl_strerror -labsl_str_format_internal
  -labsl_cord -labsl_cordz_info -labsl_cord_internal -labsl_cordz_functions -labsl_cordz_handle
  -labsl_raw_hash_set -labsl_hashtablez_sampler -labsl_exponential_biased -labsl_synchronization
  -labsl_graphcycles_internal -labsl_stacktrace -labsl_symbolize -labsl_debugging_internal
  -labsl_demangle_internal -labsl_malloc_internal -labsl_time -labsl_civil_time -labsl_time_zone
  -labsl_throw_delegate -labsl_raw_logging_internal -labsl_hash -labsl_city -labsl_strings
  -labsl_strings_internal -labsl_bad_optional_access -labsl_bad_variant_access
  -labsl_low_level_hash -labsl_base -labsl_log_severity -labsl_spinlock_wait -labsl_int128)
root=$(pwd)
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root" "${srcs[@]}" -o "$work/fuzzer" "${absl_libs[@]}" -lpthread
echo "fuzzing for ${seconds}s with $(ls "$work/corpus" | wc -l) seed inputs"
"$work/fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 "$work/corpus"
