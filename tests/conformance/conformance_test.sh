#!/usr/bin/env bash
# The differential suite: every case in cases/ is built by a real Docker engine (dockerd 20.10,
# BuildKit) and by `farm build`, both images are saved (`docker save`, `farm save`) and
# compare.py compares them: root filesystem, each layer, config, history; for a failing case,
# that both fail at the same Dockerfile line. See README.md in this directory.
#
#   bazel test //tests/conformance:conformance_test            (as root; tags = ["local"])
#   CONFORMANCE_CASES="copy-chown env-forms" bazel test ...     (only these cases)
#   CONFORMANCE_KEEP=1 ...: keep the work directory (contexts, logs, saved images) for a look
#
# Each case is a directory: Dockerfile (placeholders {{BASE}}, {{ONBUILD_BASE}} and
# {{REGISTRY}} are replaced without changing line numbers), optional context/ (copied),
# setup.sh (run in the copied context: modes, symlinks, archives, odd names), args (build
# flags for both engines, one per line) and fails (the build must fail in both, at the same
# Dockerfile line; a fails file with text in it names a failure that is no line's, such as an
# unknown --target: then both must just fail).
source "$TEST_SRCDIR/farm/tests/conformance/lib.sh"

start_engines || exit 1
log "registry $REG, dockerd $(dk version -f '{{.Server.Version}}'), base $BASE"
if [ "${CONFORMANCE_KEEP:-}" = 1 ]; then
  trap 'log "kept $W"; trap - EXIT; stop_pid "$DOCKERD_PID" dockerd; stop_pid "$REG_PID" registry' EXIT
fi

cases=()
if [ -n "${CONFORMANCE_CASES:-}" ]; then
  read -ra cases <<<"$CONFORMANCE_CASES"
else
  for d in "$HERE"/cases/*/; do cases+=("$(basename "$d")"); done
fi
[ ${#cases[@]} -gt 0 ] || { log "no cases"; exit 1; }

# prepare NAME: the case's context in $W/out/NAME/ctx and its flags in $W/out/NAME/args.
prepare() {
  local name=$1 c="$HERE/cases/$1" o="$W/out/$1"
  mkdir -p "$o/ctx"
  if [ -d "$c/context" ]; then cp -rL "$c/context/." "$o/ctx/"; fi
  if [ -f "$c/Dockerfile" ]; then cp "$c/Dockerfile" "$o/ctx/Dockerfile"; fi
  if [ -f "$c/setup.sh" ]; then
    (cd "$o/ctx" && bash -euo pipefail "$c/setup.sh") >"$o/setup.log" 2>&1 ||
      { echo "setup.sh failed: $(tail -3 "$o/setup.log")" >"$o/error"; return 1; }
  fi
  find "$o/ctx" -type f \( -name '*Dockerfile*' -o -name '*.dockerfile' \) -print0 |
    while IFS= read -r -d '' f; do subst "$f"; done
  : >"$o/args"
  if [ -f "$c/args" ]; then
    grep -v -e '^#' -e '^$' "$c/args" >"$o/args" || true
    subst "$o/args"
  fi
}

# build_case NAME: builds the case with both engines and saves the images.
build_case() {
  local name=$1 o="$W/out/$1"
  prepare "$name" || return 0
  local args=()
  mapfile -t args <"$o/args"
  (cd "$o/ctx" && dk build --network host --progress=plain -t "conformance/$name:docker" \
    "${args[@]}" . >"$o/docker.log" 2>&1)
  echo $? >"$o/docker.rc"
  if [ "$(cat "$o/docker.rc")" = 0 ]; then
    dk save -o "$o/docker.tar" "conformance/$name:docker" >>"$o/docker.log" 2>&1
  elif [ -f "$HERE/cases/$name/fails" ] && [ ! -s "$HERE/cases/$name/fails" ]; then
    docker_fail_line "$name" >"$o/docker.line"
  fi
  # farm processes on one FARM_HOME take turns: the docker builds of other cases overlap.
  (cd "$o/ctx" && "$FARM" build --progress=plain -t "conformance/$name:farm" \
    "${args[@]}" . >"$o/farm.log" 2>&1)
  echo $? >"$o/farm.rc"
  if [ "$(cat "$o/farm.rc")" = 0 ]; then
    "$FARM" save -o "$o/farm.tar" "conformance/$name:farm" >>"$o/farm.log" 2>&1
  fi
}

# error_signature LOG: Docker's error (its last line), without what differs from run to run.
error_signature() {
  grep -v '^[[:space:]]*$' "$1" | tail -1 | sed -E -e 's#/overlay2/[^/ ]+/#/overlay2/*/#g' \
    -e 's#sha256:[0-9a-f]{64}#sha256:*#g' -e 's/^#[0-9]+ //'
}

# docker_fail_line NAME: the Dockerfile line Docker failed at. Docker 20.10 names the line of
# parse errors only, so find it: the shortest prefix of the Dockerfile that makes Docker fail
# with the same error (prefixes before that line build, from Docker's cache).
docker_fail_line() {
  local name=$1 o="$W/out/$1" df="Dockerfile" sig n lo hi mid args=() a
  mapfile -t a <"$o/args"
  for x in "${a[@]}"; do
    case "$x" in
      -f=* | --file=*) df=${x#*=} ;;
      *) args+=("$x") ;;
    esac
  done
  sig=$(error_signature "$o/docker.log")
  n=$(awk 'END { print NR }' "$o/ctx/$df")
  lo=1 hi=$n
  mkdir -p "$o/prefix"
  while [ "$lo" -lt "$hi" ]; do
    mid=$(((lo + hi) / 2))
    head -n "$mid" "$o/ctx/$df" >"$o/prefix/Dockerfile"
    if (cd "$o/ctx" && dk build --network host --progress=plain -f "$o/prefix/Dockerfile" \
      "${args[@]}" . >"$o/prefix/$mid.log" 2>&1); then
      lo=$((mid + 1))
    elif [ "$(error_signature "$o/prefix/$mid.log")" = "$sig" ]; then
      hi=$mid
    else
      lo=$((mid + 1))
    fi
  done
  echo "$lo"
}

# check_case NAME: compares; prints the differences; returns non-zero on an unexplained one.
check_case() {
  local name=$1 c="$HERE/cases/$1" o="$W/out/$1"
  if [ -f "$o/error" ]; then
    echo "  $(cat "$o/error")"
    return 1
  fi
  local drc frc want=0
  drc=$(cat "$o/docker.rc") frc=$(cat "$o/farm.rc")
  [ -f "$c/fails" ] && want=1
  if [ $want = 1 ] && [ "$drc" != 0 ] && [ "$frc" != 0 ]; then
    # A fails file that says something ("no line: ...") is a failure no line is to blame for.
    [ -s "$c/fails" ] && return 0
    python3 "$HERE/compare.py" failure "$name" "$(cat "$o/docker.line")" "$o/farm.log"
    return
  fi
  if [ $want = 0 ] && [ "$drc" = 0 ] && [ "$frc" = 0 ]; then
    python3 "$HERE/compare.py" image "$name" "$o/docker.tar" "$o/farm.tar"
    return
  fi
  # One engine failed (or both succeeded where both should fail): a difference, unless kept.
  python3 "$HERE/compare.py" outcome "$name" "$drc" "$frc" && return 0
  [ "$drc" = 0 ] || tail -6 "$o/docker.log" | sed 's/^/  docker: /'
  [ "$frc" = 0 ] || tail -6 "$o/farm.log" | sed 's/^/  farm: /'
  return 1
}

export -f prepare build_case subst dk error_signature docker_fail_line
export HERE W FARM BASE ONBUILD_BASE REG
start=$SECONDS
mkdir -p "$W/out"
printf '%s\n' "${cases[@]}" | xargs -P 2 -I{} bash -c 'build_case "$1"' _ {}
log "built ${#cases[@]} cases with both engines in $((SECONDS - start))s"

passed=0 failed=0 xml_cases=""
for name in "${cases[@]}"; do
  out=$(check_case "$name" 2>&1)
  rc=$?
  esc=$(xml_escape "$out")
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok   $name"
    xml_cases+="<testcase classname=\"conformance\" name=\"$name\"><system-out>$esc</system-out></testcase>"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    xml_cases+="<testcase classname=\"conformance\" name=\"$name\"><failure message=\"differs from docker\">$esc</failure></testcase>"
  fi
  [ -z "$out" ] || echo "$out"
done
if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="conformance" tests="%d" failures="%d">%s</testsuite></testsuites>\n' \
    $((passed + failed)) "$failed" "$xml_cases" >"$XML_OUTPUT_FILE"
fi
log "$passed cases passed, $failed failed ($((SECONDS - start))s)"
[ "$failed" -eq 0 ]
