#!/usr/bin/env bash
# farm bake on tests/examples/monorepo (5 services sharing a base stage; the gateway builds on
# the base target and reads a directory context): all 5 images built and runnable, the shared
# base steps ran once, a change to one service's file reruns only that service's steps; the
# Compose file gives the same targets; --print; an HCL file is refused.
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
busybox_base

cp -rL "$TEST_SRCDIR/farm/tests/examples/monorepo" "$T/repo"  # runfiles are symlinks
chmod -R u+w "$T/repo"
cd "$T/repo"

# bake LOG [ARGS...]: farm bake with plain progress into $T/LOG.
bake() {
  local log=$1
  shift
  if ! "$FARM" bake --progress=plain "$@" >"$T/$log.out" 2>"$T/$log"; then
    echo "--- farm bake $* failed; the end of its output:" >&2
    tail -30 "$T/$log" >&2
    return 1
  fi
}
# ran LOG TEXT: how many times a step whose output line says TEXT executed.
ran() { grep -c "^\[[a-z]*\] #[0-9]* [0-9.]* $2\$" "$T/$1" || true; }
# row LOG TARGET COLUMN: the summary table's RUN (3) or CACHED (4) for TARGET.
row() { awk -v t="$2" -v c="$3" '$1 == t && NF == 5 {print $c}' "$T/$1"; }

check "bake all" bake first.log
check "the shared base step ran once (5 targets want it)" test "$(ran first.log 'building base')" -eq 1
for s in api auth billing search gateway; do
  check "$s: its own step ran" test "$(ran first.log "building $s")" -eq 1
  check "$s: image exists" "$FARM" inspect "monorepo/$s:latest" >/dev/null
  check "$s: image runs" sh -c "'$FARM' run --rm monorepo/$s:latest | grep -q '$s service: common library v1'"
  check "$s: progress lines are prefixed" grep -q "^\[$s\] #" "$T/first.log"
done
check "gateway read the shared directory context" sh -c "'$FARM' run --rm monorepo/gateway:latest | grep -q 'welcome to the monorepo'"
check "the summary lists every target" test "$(grep -cE '^(api|auth|billing|search|gateway|base) +[0-9a-f]{12} ' "$T/first.log")" -eq 6

# One service's file changes: only its steps run.
echo 'echo "search v2"' >>services/search/main.sh
check "bake after a change to search" bake second.log
check "search's steps ran again" test "$(row second.log search 3)" -eq 2
for s in api auth billing gateway base; do
  check "$s: nothing ran" test "$(row second.log "$s" 3)" -eq 0
done
check "the base step did not run" test "$(ran second.log 'building base')" -eq 0
check "search has the change" sh -c "'$FARM' run --rm monorepo/search:latest | grep -q 'search v2'"

# TAG from the environment overrides the variable's default.
TAG=v9 "$FARM" bake --print api >"$T/print.json" 2>"$T/print.err"
check "--print" test $? -eq 0
check "--print: buildx's shape, variables from the environment" \
  test "$(json "$T/print.json" 'j["target"]["api"]["tags"][0]')" = "monorepo/api:v9"
check "--print: inherits applied" \
  test "$(json "$T/print.json" 'j["target"]["api"]["labels"]["org.example.repo"]')" = "monorepo"
check "--print: the group" test "$(json "$T/print.json" 'j["group"]["default"]["targets"]')" = "['api']"

# The Compose file describes the same services.
check "bake from compose.yaml" bake compose.log -f compose.yaml
for s in api auth billing search gateway base; do
  check "compose: $s built, nothing ran (same steps as the bake file's)" test "$(row compose.log "$s" 3)" = 0
done
check "compose: the base step did not run" test "$(ran compose.log 'building base')" -eq 0

# HCL: a clear refusal.
cp docker-bake.json docker-bake.hcl
"$FARM" bake >"$T/hcl.out" 2>"$T/hcl.err"
check "an HCL file fails" test $? -ne 0
check "the HCL error says how to convert" grep -q 'HCL bake files are not supported: convert it with `docker buildx bake --print' "$T/hcl.err"
rm docker-bake.hcl

finish
