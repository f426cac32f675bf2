#!/usr/bin/env bash
# docker build's flags around the build itself: -q, --iidfile, --metadata-file, -f -, a tar
# context on stdin, --target, --label, --secret (readable in RUN, absent from layers),
# --output oci/docker (checked with skopeo), --push to a registry and pull back, a failing
# step's error block and exit code, --platform errors, and two builds at once in one home.
source "$TEST_SRCDIR/farm/tests/e2e/lib.sh"
busybox_base
export SOURCE_DATE_EPOCH=1700000000  # so that builds of the same inputs compare equal

mkdir -p "$T/ctx"
echo payload >"$T/ctx/file.txt"
echo "s3cr3t-value" >"$T/secret.txt"
cat >"$T/ctx/Dockerfile" <<'DF'
FROM busybox:farm-example AS base
COPY file.txt /file.txt
FROM base AS with-secret
RUN --mount=type=secret,id=token cat /run/secrets/token | sha256sum > /token.sha
FROM base AS final
LABEL stage=final
CMD ["cat", "/file.txt"]
DF

# -q: only the image ID on stdout; --iidfile; --metadata-file.
out=$("$FARM" build -q -t out:1 --iidfile "$T/iid" --metadata-file "$T/meta.json" "$T/ctx" 2>"$T/q.err")
check "-q builds" test $? -eq 0
check "-q prints only the image ID" test "$out" = "$(cat "$T/iid")"
check "iidfile holds a digest" grep -qE '^sha256:[0-9a-f]{64}$' "$T/iid"
check "metadata: config digest" test "$(json "$T/meta.json" 'j["containerimage.config.digest"]')" = "$(cat "$T/iid")"
check "metadata: manifest digest" grep -q '"containerimage.digest": "sha256:' "$T/meta.json"
check "metadata: image name" test "$(json "$T/meta.json" 'j["image.name"]')" = "docker.io/library/out:1"
check "--label lands in the config" build lbl "$T/ctx" -t out:2 --label team=infra
check "label" test "$(json <("$FARM" inspect out:2) 'j[0]["Config"]["Labels"]')" = \
  "{'stage': 'final', 'team': 'infra'}"

# --target and --secret.
check "--target with a secret" build sec "$T/ctx" --target with-secret -t sec:1 \
  --secret "id=token,src=$T/secret.txt"
rm -rf "$T/sec-out"
check "export" build sec-out "$T/ctx" --target with-secret --secret "id=token,src=$T/secret.txt" \
  -o "type=local,dest=$T/sec-out"
check "the secret was readable in RUN" test "$(cut -d' ' -f1 "$T/sec-out/token.sha")" = \
  "$(sha256sum "$T/secret.txt" | cut -d' ' -f1)"
check "the secret is not in the image" test ! -e "$T/sec-out/run/secrets/token"
"$FARM" save -o "$T/sec.tar" sec:1
check "the secret's bytes are in no layer" bash -c "! (mkdir -p '$T/sec-layers' && tar -C '$T/sec-layers' -xf '$T/sec.tar' && for f in \$(find '$T/sec-layers' -type f); do (zcat -f \"\$f\" 2>/dev/null || cat \"\$f\"); done | grep -q s3cr3t-value)"
mkdir -p "$T/req"
printf 'FROM busybox:farm-example\nRUN --mount=type=secret,id=token,required cat /run/secrets/token\n' >"$T/req/Dockerfile"
"$FARM" build --progress=plain "$T/req" >/dev/null 2>"$T/req.log"
check "a missing required secret fails the build" test $? -eq 1
check "and says which" grep -q 'token' "$T/req.log"

# -f - and a tar context on stdin.
check "-f -" bash -c "'$FARM' build --progress=plain -t stdin-df:1 -f - '$T/ctx' < '$T/ctx/Dockerfile' >/dev/null 2>&1"
check "context as a tar on stdin" bash -c "tar -C '$T/ctx' -c . | '$FARM' build --progress=plain -t stdin-ctx:1 - >/dev/null 2>&1"
check "stdin context gives the same image" test "$(json <("$FARM" inspect stdin-ctx:1) 'j[0]["Id"]')" = \
  "$(json <("$FARM" inspect out:1) 'j[0]["Id"]')"

# --output oci / docker, read by skopeo.
check "oci tar" build oci "$T/ctx" -o "type=oci,dest=$T/img.oci.tar"
check "skopeo reads the OCI archive" bash -c "skopeo inspect oci-archive:'$T/img.oci.tar' > '$T/skopeo-oci.json'"
check "docker tar" build dock "$T/ctx" -o "type=docker,dest=$T/img.docker.tar" -t out:1
check "skopeo reads the docker archive" bash -c "skopeo inspect docker-archive:'$T/img.docker.tar' > '$T/skopeo-docker.json'"
# (docker-archive keeps layers uncompressed, so their digests differ from the OCI ones.)
check "same image in both" test "$(json "$T/skopeo-oci.json" '(len(j["Layers"]), j["Env"], j["Labels"])')" = \
  "$(json "$T/skopeo-docker.json" '(len(j["Layers"]), j["Env"], j["Labels"])')"

# --push to a local registry (random loopback port), then pull into a fresh home.
start_registry
trap 'kill $reg_pid 2>/dev/null' EXIT
check "--push" build push "$T/ctx" -t "127.0.0.1:$port/farm/out:1" --push
check "the registry has it" bash -c "curl -fsS http://127.0.0.1:$port/v2/farm/out/tags/list | grep -q '\"1\"'"
(
  export FARM_HOME="$T/home-pull"
  "$FARM" pull "127.0.0.1:$port/farm/out:1" >"$T/pull.log" 2>&1 && "$FARM" run "127.0.0.1:$port/farm/out:1" >"$T/pull.run"
)
check "pulled image runs" test "$(cat "$T/pull.run" 2>/dev/null)" = payload

# A failing step: exit code 1 and BuildKit's error block.
mkdir -p "$T/bad"
printf 'FROM busybox:farm-example\nRUN echo about to fail\nRUN echo some output && exit 3\nRUN echo never\n' >"$T/bad/Dockerfile"
"$FARM" build --progress=plain "$T/bad" >/dev/null 2>"$T/bad.log"
check "failing build exits 1" test $? -eq 1
check "error block: the step" grep -qF ' > [3/4] RUN echo some output && exit 3:' "$T/bad.log"
check "error block: its output" grep -qx 'some output' "$T/bad.log"
check "error block: the line" grep -qF '   3 | >>> RUN echo some output && exit 3' "$T/bad.log"
check "error block: exit code" grep -qF 'did not complete successfully: exit code: 3' "$T/bad.log"
check "later steps did not run" bash -c "! grep -q 'RUN echo never$' <(grep DONE -B0 '$T/bad.log')"

# (linux/arm64 may run here under emulation: tests/e2e:emulation_test; sparc64 has no emulator)
check "--platform of an architecture this host cannot run is a clear error" bash -c \
  "'$FARM' build --platform linux/sparc64 '$T/ctx' 2>&1 | grep -q 'no emulator is known'"

# Two builds at once in the same home: both succeed (the second waits for the first).
mkdir -p "$T/par1" "$T/par2"
printf 'FROM busybox:farm-example\nRUN echo one > /one && sleep 1\n' >"$T/par1/Dockerfile"
printf 'FROM busybox:farm-example\nRUN echo two > /two && sleep 1\n' >"$T/par2/Dockerfile"
"$FARM" build --progress=plain -t par:1 "$T/par1" >/dev/null 2>"$T/par1.log" &
p1=$!
"$FARM" build --progress=plain -t par:2 "$T/par2" >/dev/null 2>"$T/par2.log" &
p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
check "concurrent build 1" test $r1 -eq 0
check "concurrent build 2" test $r2 -eq 0
check "both images exist" bash -c "'$FARM' run par:1 cat /one && '$FARM' run par:2 cat /two"

# --build-context: a directory (its own .dockerignore) and an image, as buildx takes them.
mkdir -p "$T/named/extra" "$T/named/ctx"
echo "from the extra context" >"$T/named/extra/note.txt"
echo "secret" >"$T/named/extra/ignored.txt"
echo "ignored.txt" >"$T/named/extra/.dockerignore"
cat >"$T/named/ctx/Dockerfile" <<'DF'
FROM base
COPY --from=extra / /extra/
CMD ["cat", "/extra/note.txt"]
DF
check "farm build --build-context NAME=DIR and NAME=docker-image://REF" build named "$T/named/ctx" \
  --build-context "extra=$T/named/extra" --build-context base=docker-image://busybox:farm-example -t named:1
check "COPY --from the directory context" test "$("$FARM" run --rm named:1)" = "from the extra context"
check "its .dockerignore applied" sh -c "! '$FARM' run --rm named:1 ls /extra | grep -q ignored.txt"
check "FROM the image context" sh -c "'$FARM' run --rm named:1 ls /bin/busybox >/dev/null"
"$FARM" build -q --build-context "extra=https://example.invalid/x.tar" "$T/named/ctx" >/dev/null 2>"$T/named-bad.log"
check "a URL context is refused, naming the flag" grep -q "^ERROR: --build-context extra=https" "$T/named-bad.log"
"$FARM" build -q --build-context "extra=$T/named/nope" "$T/named/ctx" >/dev/null 2>"$T/named-missing.log"
check "a missing directory is refused" grep -q "is not a directory" "$T/named-missing.log"
finish
