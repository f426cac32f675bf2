#!/usr/bin/env bash
# The tutorial workflow side by side: the same image built by Docker and by farm, then
# images / image ls, history / image history, inspect, tag, rmi, save and load with both
# tools. What must match is the output's shape: headers, columns, JSON keys, messages, and the
# values both have for the same image (history's CREATED BY, the config, tags). Not compared:
# IDs, times, and sizes (README.md, "The tutorial workflow").
#
#   bazel test //tests/conformance:workflow_test          (as root; tags = ["local"])
source "$TEST_SRCDIR/farm/tests/conformance/lib.sh"

start_engines || exit 1
passed=0 failed=0 xml_cases=""

# check NAME COMMAND...: one test case; its output goes to the log and the XML.
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  local esc xname
  esc=$(xml_escape "$out")
  xname=$(xml_escape "$name")
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok   $name"
    xml_cases+="<testcase classname=\"workflow\" name=\"$xname\"/>"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    echo "$out" | sed 's/^/  /'
    xml_cases+="<testcase classname=\"workflow\" name=\"$xname\"><failure message=\"differs from docker\">$esc</failure></testcase>"
  fi
}

# same FILTER ARGS...: `docker ARGS` and `farm ARGS` print the same, once each output went
# through FILTER (a command or function reading stdin; "cat" for none).
same() {
  local filter=$1 d f
  shift
  d=$(dk "$@" 2>&1 | $filter)
  f=$("$FARM" "$@" 2>&1 | $filter)
  if [ "$d" != "$f" ]; then
    diff <(echo "$d") <(echo "$f") | sed 's/^/  /'
    echo "  (< docker, > farm: $*)"
    return 1
  fi
}

# Filters. header: the columns of a table's header (two or more spaces separate them).
header() { head -1 | sed -E 's/ {2,}/|/g; s/ +$//'; }
names() { awk 'NR > 1 { print $1, $2 }'; }
count() { wc -l; }
short_ids() { sed -E 's/^[0-9a-f]{12}$/ID/'; }
no_deleted() { grep -v '^Deleted:'; }
# farm has no daemon: its errors say "Error:" where Docker's daemon answers "Error response
# from daemon:" (the rest of the message must match).
errors() { sed -e 's/^Error response from daemon: /Error: /'; }
# One JSON object per line -> its sorted keys.
json_keys() { python3 -c 'import json,sys
for l in sys.stdin:
    print(sorted(json.loads(l)))'; }

ctx="$W/app"
mkdir -p "$ctx/src"
echo "print me" >"$ctx/src/message.txt"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
WORKDIR /app
COPY src/ ./
RUN cp message.txt copy.txt && echo built > /app/stamp
ENV GREETING=hello APP_HOME=/app
EXPOSE 8080
LABEL org.example.tier=tutorial
CMD ["cat", "/app/message.txt"]
EOF
APP=tutorial/app:1.0
(cd "$ctx" && dk build --network host -q -t $APP . >"$W/docker-build.log" 2>&1) ||
  { tail "$W/docker-build.log"; exit 1; }
(cd "$ctx" && "$FARM" build -q -t $APP . >"$W/farm-build.log" 2>&1) ||
  { tail "$W/farm-build.log"; exit 1; }

# --- images / image ls
check "images: header" same header images
check "images --digests: header" same header images --digests
check "image ls: header" same header image ls
check "images: repository and tag" same names images tutorial/app
check "images -q: 12-hex IDs" bash -c "
  [ \"\$(/usr/bin/docker images -q tutorial/app | grep -cE '^[0-9a-f]{12}\$')\" = 1 ] &&
  [ \"\$('$FARM' images -q tutorial/app | grep -cE '^[0-9a-f]{12}\$')\" = 1 ]"
check "images --no-trunc: sha256 IDs" bash -c "
  /usr/bin/docker images --no-trunc tutorial/app | grep -qE ' sha256:[0-9a-f]{64} ' &&
  '$FARM' images --no-trunc tutorial/app | grep -qE ' sha256:[0-9a-f]{64} '"
check "images --format json: keys" same json_keys images --format '{{json .}}' tutorial/app
check "images --format: fields" same cat images --format '{{.Repository}}:{{.Tag}} {{.Digest}}' tutorial/app

# --- history / image history
check "history: header" same header history $APP
check "history -H=false: header" same header history -H=false $APP
check "image history: header" same header image history $APP
check "history: CREATED BY, COMMENT (--no-trunc)" \
  same cat history --no-trunc --format '{{.CreatedBy}} | {{.Comment}}' $APP
check "history: rows" same count history $APP
check "history -q: the image, then <missing>" same short_ids history -q $APP
check "history --format json: keys" same json_keys history --format '{{json .}}' $APP
check "history: CreatedAt is RFC 3339" bash -c "
  /usr/bin/docker history --format '{{.CreatedAt}}' $APP | grep -qvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\$' && exit 1
  '$FARM' history --format '{{.CreatedAt}}' $APP | grep -qvE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\$' && exit 1
  exit 0"

# --- inspect
inspect_keys() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)[0]
# Docker 20.10 also has Container, ContainerConfig, VirtualSize (API < 1.44; gone since Docker
# 25) and GraphDriver (its storage driver); farm, like Docker 25+ with the containerd image
# store, has Descriptor. See README.md.
top = sorted(set(j) - {"Container", "ContainerConfig", "VirtualSize", "GraphDriver", "Descriptor"})
print("top", top)
print("Config", list(j["Config"]))
print("RootFS", sorted(j["RootFS"]), "Metadata", sorted(j["Metadata"]))
print("layers", len(j["RootFS"]["Layers"]))'
}
check "inspect: JSON keys (Config in Docker's order)" same inspect_keys inspect $APP
check "image inspect: JSON keys" same inspect_keys image inspect $APP
check "inspect: config values" same cat inspect -f \
  '{{.Config.Cmd}} {{json .Config.Env}} {{.Config.WorkingDir}} {{json .Config.ExposedPorts}} {{json .Config.Labels}} {{.Os}}/{{.Architecture}} {{.RepoTags}}' \
  $APP
check "inspect: 4-space indented JSON" bash -c "
  /usr/bin/docker inspect $APP | sed -n 2,3p | grep -q '^        \"Id\"' &&
  '$FARM' inspect $APP | sed -n 2,3p | grep -q '^        \"Id\"'"

# --- tag
check "tag: silent" same cat tag $APP tutorial/app:latest
check "tag: both names listed" same names images tutorial/app
check "tag: an unknown image" same errors tag nosuch:1 tutorial/app:x

# --- save / load, across the tools
dk save -o "$W/docker-save.tar" $APP
"$FARM" save -o "$W/farm-save.tar" $APP
docker_id=$(dk inspect -f '{{.Id}}' $APP)
farm_id=$("$FARM" inspect -f '{{.Id}}' $APP)
check "rmi: untag" same cat rmi tutorial/app:latest
check "rmi: the last tag" same no_deleted rmi $APP
check "rmi: an unknown image" same errors rmi nosuch:1
check "load: docker's archive into farm, farm's into docker" bash -c "
  d=\$(/usr/bin/docker load -i '$W/farm-save.tar') && f=\$('$FARM' load -i '$W/docker-save.tar') &&
  [ \"\$d\" = 'Loaded image: $APP' ] && [ \"\$f\" = 'Loaded image: $APP' ] || { echo \"\$d / \$f\"; exit 1; }"
check "load: the image IDs are kept" bash -c "
  [ \"\$(/usr/bin/docker inspect -f '{{.Id}}' $APP)\" = '$farm_id' ] &&
  [ \"\$('$FARM' inspect -f '{{.Id}}' $APP)\" = '$docker_id' ]"
check "save | load: piped" bash -c "
  d=\$(/usr/bin/docker save $APP | /usr/bin/docker load) &&
  f=\$('$FARM' save $APP | timeout 60 '$FARM' load) && [ \"\$d\" = \"\$f\" ] || { echo \"\$d / \$f\"; exit 1; }"

if [ -n "${XML_OUTPUT_FILE:-}" ]; then
  printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="workflow" tests="%d" failures="%d">%s</testsuite></testsuites>\n' \
    $((passed + failed)) "$failed" "$xml_cases" >"$XML_OUTPUT_FILE"
fi
log "workflow: $passed checks passed, $failed failed"
[ "$failed" -eq 0 ]
