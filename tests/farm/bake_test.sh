#!/usr/bin/env bash
# farm bake --scheduler (issue 15, part 2, on the farm): three targets sharing a base stage and
# one context, baked on a farm on loopback (two workers) with --load. Checks: every image comes
# back and runs; the base stage's step ran once for the three targets (same output in every
# image); the shared context was uploaded by one target and found complete by the others; after
# a change to one target's file only that target's steps run; named contexts (target:, a
# directory, docker-image:// of an image in the farm's store) and dockerfile-inline work there.
source "$TEST_SRCDIR/farm/tests/farm/loopback.sh"
start_farm 2 2

ctx=$T/mono
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
for s in a b c; do echo "service $s v1" >"$ctx/$s.txt"; done
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && cat /proc/sys/kernel/random/uuid > /base-id"]

FROM base AS svc
ARG SVC
COPY $SVC.txt /svc.txt
RUN echo "built $SVC" > /built
CMD ["cat", "/svc.txt", "/built", "/base-id"]
DF
cat >"$ctx/docker-bake.json" <<'JSON'
{
  "group": {"default": {"targets": ["a", "b", "c"]}},
  "target": {
    "_svc": {"context": ".", "target": "svc"},
    "a": {"inherits": ["_svc"], "args": {"SVC": "a"}, "tags": ["svc-a:1"]},
    "b": {"inherits": ["_svc"], "args": {"SVC": "b"}, "tags": ["svc-b:1"]},
    "c": {"inherits": ["_svc"], "args": {"SVC": "c"}, "tags": ["svc-c:1"]}
  }
}
JSON
bake() { (cd "$ctx" && "$FARM" bake --scheduler "$SCHED" --load --progress plain "$@"); }
# row LOG TARGET COLUMN: the summary table's RUN (3) or CACHED (4) for TARGET.
row() { awk -v t="$2" -v c="$3" '$1 == t && NF == 5 {print $c}' "$T/$1"; }

check "farm bake --scheduler --load" sh -c "$(declare -f bake); FARM='$FARM' SCHED='$SCHED' ctx='$ctx' bake >'$T/bake1.log' 2>&1"
check "the summary lists the three targets" \
  test "$(grep -cE '^(a|b|c) +[0-9a-f]{12} ' "$T/bake1.log")" -eq 3
for s in a b c; do
  check "$s: the image came back and runs" \
    sh -c "'$FARM' run --rm svc-$s:1 >'$T/run-$s.txt' && grep -qx 'service $s v1' '$T/run-$s.txt' && grep -qx 'built $s' '$T/run-$s.txt'"
done
check "the base step ran once for the three targets (one base-id in every image)" \
  test "$(tail -qn1 "$T"/run-[abc].txt | sort -u | wc -l)" -eq 1
check "the shared context was uploaded once (the other targets sent nothing)" \
  test "$(grep -c 'uploaded 0 of' "$T/bake1.log")" -eq 2

echo "service b v2" >"$ctx/b.txt"
check "bake after a change to b" sh -c "$(declare -f bake); FARM='$FARM' SCHED='$SCHED' ctx='$ctx' bake >'$T/bake2.log' 2>&1"
check "b's two steps ran again" test "$(row bake2.log b 3)" = 2
for s in a c; do check "$s: nothing ran" test "$(row bake2.log "$s" 3)" = 0; done
check "b's new image came back" sh -c "'$FARM' run --rm svc-b:1 | grep -qx 'service b v2'"

# Named contexts on the farm: a target as another's base (target:), a directory, an image in
# the farm's store (docker-image://), and a dockerfile-inline.
mkdir -p "$ctx/extra"
echo "extra note" >"$ctx/extra/note.txt"
cat >"$ctx/named.json" <<'JSON'
{
  "group": {"default": {"targets": ["tools", "app"]}},
  "target": {
    "tools": {"context": ".", "target": "base"},
    "app": {
      "context": ".",
      "dockerfile-inline": "FROM tools\nCOPY --from=extra note.txt /note.txt\nCOPY --from=img /svc.txt /from-img.txt\nCMD [\"cat\", \"/note.txt\", \"/from-img.txt\"]\n",
      "contexts": {"tools": "target:tools", "extra": "./extra", "img": "docker-image://svc-a:1"},
      "tags": ["app-named:1"]
    }
  }
}
JSON
check "farm bake --scheduler with named contexts and dockerfile-inline" \
  sh -c "cd '$ctx' && '$FARM' bake --scheduler '$SCHED' --load --progress plain -f named.json >'$T/named.log' 2>&1"
check "the image reads the directory context and the image context" \
  test "$("$FARM" run --rm app-named:1 | tr '\n' ' ')" = "extra note service a v1 "
check "and is built on the tools target (its base-id)" \
  test "$("$FARM" run --rm app-named:1 cat /base-id)" = "$(tail -n1 "$T/run-a.txt")"
finish
