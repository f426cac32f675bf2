#!/usr/bin/env bash
# farm bake on tests/examples/monorepo (5 services sharing a base stage): the time to bake all
# five after a one-line change to one service's file (only that service's steps should run),
# against a warm home. Reports the median of N rounds; it measures, it does not judge.
#   bench/bake/bake_monorepo.sh [path/to/farm] [rounds]
set -euo pipefail
farm=$(realpath "${1:-bazel-bin/cli/farm}")
rounds=${2:-5}
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FARM_HOME="$work/home"
"$here/tests/examples/busybox-base.sh" "$farm" >"$work/base.log" 2>&1
cp -rL "$here/tests/examples/monorepo" "$work/repo"
cd "$work/repo"
"$farm" bake --progress=quiet >/dev/null  # cold: fills the cache
times=()
for i in $(seq "$rounds"); do
  echo "echo round $i" >>services/search/main.sh
  start=$(date +%s.%N)
  "$farm" bake --progress=plain >"$work/round.log" 2>&1
  end=$(date +%s.%N)
  times+=("$(echo "$end - $start" | bc)")
  ran=$(grep -E '^search +[0-9a-f]{12} ' "$work/round.log" | awk '{print $3}')
  others=$(grep -E '^[a-z]+ +[0-9a-f]{12} ' "$work/round.log" | awk '$1 != "search" {s += $3} END {print s+0}')
  echo "round $i: $(printf '%.3f' "${times[-1]}") s (search ran $ran steps, the others $others)"
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "bake 5 services after a change to one: median $(printf '%.3f' "$median") s over $rounds rounds"
