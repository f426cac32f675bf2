#!/usr/bin/env bash
# Cache behaviour of `farm build`, each a check: a second build is all CACHED with the same
# image ID; touching files (mtime only) keeps every step cached; a chmod reruns the steps from
# the COPY of that file (Docker copies permission bits), unless --normalize-permissions (then a
# chmod changes nothing); editing one COPY'd file reruns
# exactly that step and the later ones; --no-cache reruns everything; why-miss names the edited
# file; and with SOURCE_DATE_EPOCH a build from scratch in another home gives the same image ID.
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
busybox_base
export SOURCE_DATE_EPOCH=1700000000

mkdir -p "$T/ctx/sub"
echo alpha >"$T/ctx/a.txt"
echo beta >"$T/ctx/b.txt"
echo gamma >"$T/ctx/sub/c.txt"
cat >"$T/ctx/Dockerfile" <<'DF'
FROM busybox:farm-example
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy && echo built > /b.stamp
COPY sub/ /sub/
DF

check "first build" build b1 "$T/ctx" -t cached:1 --iidfile "$T/id1"
check "first build ran all 5 steps" test "$(run_steps "$T/b1.log")" = 5
check "first build had no hits" test "$(cached_steps "$T/b1.log")" = 1  # only FROM

check "second build" build b2 "$T/ctx" -t cached:1 --iidfile "$T/id2"
check "second build: every step CACHED" test "$(cached_steps "$T/b2.log")" = 6
check "second build: nothing ran" test "$(run_steps "$T/b2.log")" = 0
check "second build: same image ID" test "$(cat "$T/id1")" = "$(cat "$T/id2")"

# mtimes change, content does not.
touch -d '2001-02-03 04:05:06' "$T/ctx/a.txt" "$T/ctx/b.txt" "$T/ctx/sub/c.txt"
check "after touch" build b3 "$T/ctx" --iidfile "$T/id3"
check "after touch: every step CACHED" test "$(cached_steps "$T/b3.log")" = 6
check "after touch: same image ID" test "$(cat "$T/id1")" = "$(cat "$T/id3")"

echo "beta, edited" >"$T/ctx/b.txt"
check "after an edit" build b4 "$T/ctx" --iidfile "$T/id4"
check "after an edit: 2 steps CACHED (+FROM)" test "$(cached_steps "$T/b4.log")" = 3
check "after an edit: exactly 3 steps ran" test "$(run_steps "$T/b4.log")" = 3
for s in 'COPY \["b.txt"\]' 'RUN cat /b.txt' 'COPY \["sub/"\]'; do
  check "after an edit: '$s' ran" grep -qE "^#[0-9]+ \[[0-9]/[0-9]\] $s" "$T/b4.log"
done
check "after an edit: new image ID" test "$(cat "$T/id1")" != "$(cat "$T/id4")"
# The COPYs' files are kept in the file pool (one more name of the layers' inodes), from which
# a rerun COPY links the unchanged ones (worker/copy_test.cc checks the inodes).
check "the copied files are in the file pool, linked from the layers" \
  test "$(find "$FARM_HOME/worker/layers/files" -type f -links +1 | wc -l)" -ge 3

"$FARM" why-miss 'COPY ["b.txt"]' >"$T/why.txt" 2>&1
check "why-miss runs" test $? -eq 0
check "why-miss names the edited file" grep -q "file changed: b.txt" "$T/why.txt"
"$FARM" why-miss 'RUN cat /b.txt' >"$T/why2.txt" 2>&1
check "why-miss points a later step at the first miss" grep -q "an earlier step missed too" "$T/why2.txt"

check "--no-cache" build b5 "$T/ctx" --no-cache --iidfile "$T/id5"
check "--no-cache: same image ID (files linked from the pool archive as written ones)" \
  test "$(cat "$T/id4")" = "$(cat "$T/id5")"
check "--no-cache: every step ran" test "$(run_steps "$T/b5.log")" = 5
check "--no-cache: nothing CACHED but FROM" test "$(cached_steps "$T/b5.log")" = 1
check "after --no-cache: cached again" build b6 "$T/ctx" --iidfile "$T/id6"
check "after --no-cache: every step CACHED" test "$(cached_steps "$T/b6.log")" = 6

# Permission bits are copied (as docker build does), so they are part of the key: a chmod
# reruns COPY b.txt and what follows. With --normalize-permissions (0644/0755) it does not.
check "normalized" build n1 "$T/ctx" --normalize-permissions --iidfile "$T/idn1"
check "normalized: its own keys (the layer options differ)" test "$(run_steps "$T/n1.log")" = 5
chmod 600 "$T/ctx/b.txt"
check "after chmod 600" build b3m "$T/ctx" --iidfile "$T/id3m"
check "after chmod 600: COPY a.txt and its RUN CACHED (+FROM)" test "$(cached_steps "$T/b3m.log")" = 3
check "after chmod 600: COPY b.txt and what follows ran" test "$(run_steps "$T/b3m.log")" = 3
check "after chmod 600: a new image ID" test "$(cat "$T/id6")" != "$(cat "$T/id3m")"
check "after chmod 600, normalized" build n2 "$T/ctx" --normalize-permissions --iidfile "$T/idn2"
check "after chmod 600, normalized: every step CACHED" test "$(cached_steps "$T/n2.log")" = 6
check "after chmod 600, normalized: same image ID" test "$(cat "$T/idn1")" = "$(cat "$T/idn2")"
chmod 644 "$T/ctx/b.txt"

# Reproducible: the same inputs in a fresh home (nothing cached) give the same image ID.
FIRST_HOME=$FARM_HOME
export FARM_HOME="$T/home2"
busybox_base
check "fresh home" build b7 "$T/ctx" --iidfile "$T/id7"
check "fresh home: everything ran" test "$(run_steps "$T/b7.log")" = 5
check "fresh home: same image ID (reproducible layers and config)" \
  test "$(cat "$T/id4")" = "$(cat "$T/id7")"
export FARM_HOME=$FIRST_HOME

# RUN steps are started by farm-sandbox, the small runner next to farm, not by farm itself.
mkdir -p "$T/slow"
printf 'FROM busybox:farm-example\nRUN sleep 2 && echo slept > /slept\n' >"$T/slow/Dockerfile"
build slow "$T/slow" --no-cache &
slow=$!
runner=""
for _ in $(seq 100); do
  pid=$(pgrep -x farm-sandbox | head -1)
  [ -n "$pid" ] && runner=$(readlink "/proc/$pid/exe") && [ -n "$runner" ] && break
  sleep 0.05
done
wait "$slow"
check "RUN steps run under farm-sandbox (found: '$runner')" test "${runner##*/}" = farm-sandbox

# Without SOURCE_DATE_EPOCH a fully cached rebuild is still the same image: history and image
# times are those of the cached steps (as BuildKit keeps them), not the time of the rebuild.
unset SOURCE_DATE_EPOCH
mkdir -p "$T/times"
printf 'FROM busybox:farm-example\nRUN date +%%s > /t\nENV A=1\n' >"$T/times/Dockerfile"
check "no epoch: first build" build t1 "$T/times" --iidfile "$T/idt1"
sleep 1.1  # a time taken from the clock would differ now
check "no epoch: rebuild" build t2 "$T/times" --iidfile "$T/idt2"
check "no epoch: rebuild all CACHED" test "$(run_steps "$T/t2.log")" = 0
check "no epoch: a fully cached rebuild has the same image ID" \
  test "$(cat "$T/idt1")" = "$(cat "$T/idt2")"
check "no epoch: --no-cache" build t3 "$T/times" --no-cache --iidfile "$T/idt3"
check "no epoch: a rerun step is a new image" test "$(cat "$T/idt1")" != "$(cat "$T/idt3")"
export SOURCE_DATE_EPOCH=1700000000

# A build waiting for the home lock (another farm process has it) hashes its context once it
# has the lock: a file edited meanwhile is copied as it is then, not refused as changed.
mkdir -p "$T/holder" "$T/waiter"
printf 'FROM busybox:farm-example\nRUN sleep 2\n' >"$T/holder/Dockerfile"
printf 'FROM busybox:farm-example\nCOPY f /f\nRUN cat /f\n' >"$T/waiter/Dockerfile"
echo before >"$T/waiter/f"
build holder "$T/holder" --no-cache &
holder=$!
sleep 0.5 # the holder has the lock: it is running its RUN
build waiter "$T/waiter" --no-cache &
waiter=$!
sleep 0.5
echo after >"$T/waiter/f"
check "the build holding the home lock" wait "$holder"
check "the build that waited for the lock" wait "$waiter"
check "it copied the file as it was when it got the lock" grep -qE ' after$' "$T/waiter.log"

# The build records that why-miss uses are listed by farm builds.
check "farm builds lists the builds" test "$("$FARM" builds -n 0 | tail -n +2 | wc -l)" -ge 7

finish
