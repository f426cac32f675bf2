#!/usr/bin/env bash
# Runs every test: installs what is missing, checks formatting, builds, runs `bazel test //...`
# and ends with one line "N passed, N failed" counted from the gtest/Bazel XML of each test.
# Exit status is non-zero if anything failed.
#   tools/test.sh [extra bazel test flags...]
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

format_failed=0
if ! tools/check-format.sh; then
  format_failed=1
fi

bep=$(mktemp /tmp/farm-bep.XXXXXX.json)
bazel test //... --keep_going --build_event_json_file="$bep" "$@"
bazel_rc=$?

python3 tools/count_tests.py "$bep" "$format_failed" "$bazel_rc"
count_rc=$?
rm -f "$bep"
if [ $count_rc -ne 0 ] || [ $bazel_rc -ne 0 ]; then
  exit 1
fi
exit 0
