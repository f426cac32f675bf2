#!/usr/bin/env bash
# End-to-end test of the `farm` image commands as a user runs them: load/save/tag/images/
# history/inspect/rmi, push/pull against a real docker-registry on a loopback port, and
# login/logout against one with htpasswd auth. Checks outputs, not just exit codes; skopeo and
# oci-image-tool check what farm writes.
set -euo pipefail

FARM=$(realpath "$1")
T=${TEST_TMPDIR:-$(mktemp -d)}
export FARM_HOME=$T/home DOCKER_CONFIG=$T/docker
mkdir -p "$FARM_HOME"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
contains() { grep -qF -- "$2" <<<"$1" || fail "expected to find [$2] in:
$1"; }
not_contains() { if grep -qF -- "$2" <<<"$1"; then fail "did not expect [$2] in:
$1"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry DIR [htpasswd-file] -> prints host:port
start_registry() {
  local dir=$1 auth=${2:-} port
  port=$(free_port)
  mkdir -p "$dir/data"
  {
    printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\n'
    printf 'storage: {filesystem: {rootdirectory: %s/data}, delete: {enabled: true}}\n' "$dir"
    printf 'http: {addr: "127.0.0.1:%s", secret: farm-test}\n' "$port"
    [ -n "$auth" ] && printf 'auth: {htpasswd: {realm: farm-test, path: %s}}\n' "$auth"
  } >"$dir/config.yml"
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
    [ "$code" = 200 ] || [ "$code" = 401 ] && { echo "127.0.0.1:$port"; return; }
    sleep 0.05
  done
  cat "$dir/log" >&2
  fail "registry did not start"
}

# A source image made by buildah: busybox, an env, a label, a command.
B=$T/buildah
mkdir -p "$B/tmp" "$B/rootfs/bin"
cp /bin/busybox "$B/rootfs/bin/" && ln -s busybox "$B/rootfs/bin/sh"
buildah_() { env -u DOCKER_CONFIG TMPDIR=$B/tmp HOME=$B buildah --root "$B/root" --runroot "$B/run" --storage-driver vfs "$@"; }
c=$(buildah_ from scratch)
buildah_ copy "$c" "$B/rootfs/" / >/dev/null
buildah_ config --env FOO=bar --cmd '["/bin/sh"]' --label made=buildah "$c"
buildah_ commit -q --format docker "$c" oci-archive:"$T/src.tar" >/dev/null
buildah_ rm "$c" >/dev/null

# --- load, tag, images, history, inspect ---
out=$("$FARM" load -i "$T/src.tar")
contains "$out" "Loaded image ID: sha256:"
id=$(sed -n 's/^Loaded image ID: //p' <<<"$out")
short=${id#sha256:}; short=${short:0:12}
"$FARM" tag "$short" busybox:1
"$FARM" tag busybox:1 example.com/team/busybox:v2
out=$("$FARM" images)
head -1 <<<"$out" | grep -qE '^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$' || fail "images header: $out"
contains "$out" "busybox                    1         $short"
contains "$out" "example.com/team/busybox   v2        $short"
[ "$("$FARM" images -q)" = "$short
$short" ] || fail "images -q: $("$FARM" images -q)"
[ "$("$FARM" images --format '{{.Repository}}:{{.Tag}}' busybox)" = "busybox:1" ] || fail "images --format"
out=$("$FARM" history busybox:1)
head -1 <<<"$out" | grep -qE '^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$' || fail "history header: $out"
contains "$out" "$short"
out=$("$FARM" inspect busybox:1)
python3 - "$out" "$id" <<'PY' || fail "inspect: $out"
import json, sys
j = json.loads(sys.argv[1])[0]
assert j["Id"] == sys.argv[2], j["Id"]
assert sorted(j["RepoTags"]) == ["busybox:1", "example.com/team/busybox:v2"], j["RepoTags"]
assert "FOO=bar" in j["Config"]["Env"], j["Config"]
assert j["Config"]["Labels"]["made"] == "buildah"
assert j["RootFS"]["Type"] == "layers" and len(j["RootFS"]["Layers"]) == 1
PY
[ "$("$FARM" inspect -f '{{.Id}}' busybox:1)" = "$id" ] || fail "inspect -f"

# --- save (docker-archive and OCI), read by skopeo and oci-image-tool; load back ---
"$FARM" save busybox:1 -o "$T/saved.tar"
skopeo --insecure-policy inspect "docker-archive:$T/saved.tar" | grep -q '"made": "buildah"' || fail "skopeo on docker-archive"
"$FARM" save busybox:1 >"$T/saved-stdout.tar"
cmp -s "$T/saved.tar" "$T/saved-stdout.tar" || fail "save is not deterministic"
mkdir -p "$T/oci"
"$FARM" save --format oci -o "$T/oci/" busybox:1
oci-image-tool validate --type image --ref name=1 "$T/oci" >/dev/null || fail "oci-image-tool on farm save --format oci"
"$FARM" save --format oci -o "$T/oci.tar" busybox:1
skopeo --insecure-policy inspect "oci-archive:$T/oci.tar:1" >/dev/null || fail "skopeo on oci archive"

out=$("$FARM" rmi busybox:1)
[ "$out" = "Untagged: busybox:1" ] || fail "rmi of one tag: $out"
out=$("$FARM" rmi example.com/team/busybox:v2)
contains "$out" "Untagged: example.com/team/busybox:v2"
contains "$out" "Deleted: $id"
[ -z "$("$FARM" images -q)" ] || fail "images not empty after rmi"
if out=$("$FARM" rmi nosuch 2>&1); then fail "rmi nosuch succeeded"; fi
contains "$out" "Error: No such image: nosuch:latest"

out=$("$FARM" load <"$T/saved.tar")
[ "$out" = "Loaded image: busybox:1" ] || fail "load from stdin: $out"
# A pipe from another farm process on the same home (which holds the home until it is done).
out=$(timeout 60 "$FARM" save busybox:1 | timeout 60 "$FARM" load)
[ "$out" = "Loaded image: busybox:1" ] || fail "farm save | farm load: $out"
[ "$("$FARM" inspect -f '{{.Id}}' busybox:1)" = "$id" ] || fail "image ID changed by save/load"
out=$("$FARM" load -i "$T/oci/")
contains "$out" "Loaded image: busybox:1"

# --- push and pull through a registry ---
REG=$(start_registry "$T/reg")
"$FARM" tag busybox:1 "$REG/lib/busybox:1"
out=$("$FARM" push "$REG/lib/busybox:1")
contains "$out" "The push refers to repository [$REG/lib/busybox]"
contains "$out" ": Pushed"
contains "$out" "1: digest: sha256:"
digest=$(sed -n 's/^1: digest: \(sha256:[0-9a-f]*\) size: .*/\1/p' <<<"$out")
[ "$(skopeo --insecure-policy inspect --tls-verify=false "docker://$REG/lib/busybox:1" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Digest"])')" = "$digest" ] || fail "skopeo sees another digest"
out=$("$FARM" push "$REG/lib/busybox:1")
contains "$out" ": Layer already exists"

FARM_HOME=$T/home2 "$FARM" images >/dev/null
out=$(FARM_HOME=$T/home2 "$FARM" pull "$REG/lib/busybox:1")
contains "$out" "1: Pulling from lib/busybox"
contains "$out" ": Pull complete"
contains "$out" "Digest: $digest"
contains "$out" "Status: Downloaded newer image for $REG/lib/busybox:1"
[ "$(tail -1 <<<"$out")" = "$REG/lib/busybox:1" ] || fail "pull last line: $out"
out=$(FARM_HOME=$T/home2 "$FARM" pull "$REG/lib/busybox:1")
contains "$out" "Status: Image is up to date for $REG/lib/busybox:1"
[ "$(FARM_HOME=$T/home2 "$FARM" inspect -f '{{.Id}}' "$REG/lib/busybox:1")" = "$id" ] || fail "pulled image ID"
out=$(FARM_HOME=$T/home2 "$FARM" images --digests)
contains "$out" "$digest"
if out=$(FARM_HOME=$T/home2 "$FARM" pull "$REG/lib/nothing:1" 2>&1); then fail "pull of a missing image succeeded"; fi
contains "$out" "not found"

# --- login/logout against htpasswd ---
htpasswd -Bbn farmer s3cret >"$T/htpasswd"
SEC=$(start_registry "$T/sec" "$T/htpasswd")
"$FARM" tag busybox:1 "$SEC/private/busybox:1"
if out=$("$FARM" push "$SEC/private/busybox:1" 2>&1); then fail "push without login succeeded"; fi
contains "$out" "Error:"
if out=$(echo wrong | "$FARM" login -u farmer --password-stdin "$SEC" 2>&1); then fail "login with a wrong password succeeded"; fi
[ ! -f "$DOCKER_CONFIG/config.json" ] || not_contains "$(cat "$DOCKER_CONFIG/config.json")" "$SEC"
out=$(echo s3cret | "$FARM" login -u farmer --password-stdin "$SEC" 2>/dev/null)
[ "$out" = "Login Succeeded" ] || fail "login: $out"
contains "$(cat "$DOCKER_CONFIG/config.json")" "$(printf farmer:s3cret | base64)"
out=$("$FARM" push "$SEC/private/busybox:1")
contains "$out" "1: digest: $digest"
out=$("$FARM" logout "$SEC")
[ "$out" = "Removing login credentials for $SEC" ] || fail "logout: $out"
not_contains "$(cat "$DOCKER_CONFIG/config.json")" "$SEC"
[ "$("$FARM" logout "$SEC")" = "Not logged in to $SEC" ] || fail "second logout"

echo PASS
