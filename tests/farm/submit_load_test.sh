#!/usr/bin/env bash
# farm submit --load and -o (issue 15): a farm on loopback (farm-cache, farm-scheduler, one
# farm-worker; no TLS: loopback only), a client with its own $FARM_HOME. Checks: the image comes
# back tagged and `farm run` runs it; a second --load of the same build fetches nothing; after
# a one-file edit only the changed layer moves; -o type=oci writes an OCI layout tar; --load
# with --detach is refused.
source "$TEST_SRCDIR/farm/tests/farm/loopback.sh"
start_farm 1 2
ctx="$T/ctx"
mkdir -p "$ctx"
cp /bin/busybox "$ctx/busybox"
echo "v1" >"$ctx/app.txt"
cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && echo built > /built"]
COPY app.txt /app.txt
CMD ["/bin/cat", "/app.txt"]
DF
submit() { "$FARM" submit --scheduler "$SCHED" --progress=plain "$@"; }

check "farm submit --load builds and brings the image back" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:1 \
    "$ctx") >'$T/load1.log' 2>&1"
check "it says what it fetched (3 layers)" grep -q "fetched 3 of 3 layers" "$T/load1.log"
check "the image is tagged locally" sh -c "'$FARM' images app:1 | grep -q '^app *1 '"
check "farm run runs it" sh -c "[ \"\$('$FARM' run --rm app:1)\" = v1 ]"
check "and sees the RUN step's file" sh -c "[ \"\$('$FARM' run --rm app:1 cat /built)\" = built ]"

check "a second --load fetches nothing" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:1 \
    "$ctx") >'$T/load2.log' 2>&1"
check "it says all layers were local" grep -q "all 3 layers were local" "$T/load2.log"

echo "v2" >"$ctx/app.txt"
check "after a one-file edit --load works" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" --progress=plain --load -t app:2 \
    "$ctx") >'$T/load3.log' 2>&1"
check "only the changed layer moved" grep -q "fetched 1 of 3 layers" "$T/load3.log"
check "the worker reads context files through its local copy (farm-worker --context-cache-max: DIR/context-cache exists)" \
  sh -c "[ -n \"\$(ls -A '$T/worker1/context-cache' 2>/dev/null)\" ]"
check "the new image runs" sh -c "[ \"\$('$FARM' run --rm app:2)\" = v2 ]"

check "-o type=oci writes an OCI layout tar" \
  sh -c "$(printf '%q ' "$FARM" submit --scheduler "$SCHED" -q -o "type=oci,dest=$T/app.tar" \
    "$ctx") >'$T/oci.log' 2>&1 && tar -tf '$T/app.tar' | grep -qx index.json"
"$FARM" submit --scheduler "$SCHED" --load --detach "$ctx" >"$T/detach.log" 2>&1
rc=$?
check "--load with --detach is refused" [ "$rc" -ne 0 ]
check "naming why" grep -q "cannot be combined" "$T/detach.log"

finish
