#!/bin/bash
# Debian's Prometheus against a running farm: a generated configuration (the shape of
# deploy/prometheus/prometheus.yml, which promtool checks first) scrapes the three servers'
# --metrics-listen ports on loopback every second. The only worker announces linux/arm64, so
# the amd64 build submitted stays queued: the query API must then return the queue depth and
# age per platform and tenant, the cache's stored bytes and retention, and `up` for all three.
set -uo pipefail
# shellcheck source=tests/ops/lib.sh
source "$TEST_SRCDIR/farm/tests/ops/lib.sh"
PROM=/usr/bin/prometheus
failures=0
checks=0
check() {
  local what=$1
  shift
  checks=$((checks + 1))
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
[ "$(id -u)" = 0 ] || { echo "FATAL: this test needs root (farm-worker)" >&2; exit 1; }
for tool in "$PROM" /usr/bin/promtool curl jq python3; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool is not installed" >&2; exit 1; }
done

check "promtool accepts deploy/prometheus/prometheus.yml" \
  /usr/bin/promtool check config --syntax-only "$R/deploy/prometheus/prometheus.yml"

PROM_PID=
cleanup() {
  [ -n "$PROM_PID" ] && kill -TERM "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
  farm_down
}
trap cleanup EXIT
if ! farm_up --platform linux/arm64; then
  tail -20 "$T"/*.err >&2
  echo "FATAL: the farm did not come up" >&2
  exit 1
fi

# An amd64 build that no worker can take: its first step waits in the queue.
make_context "$T/ctx"
export FARM_HOME="$T/home"
build=$(SOURCE_DATE_EPOCH=0 "$FARM" submit --insecure --scheduler "$SCHED" -d \
  --build-arg NONCE=$$ "$T/ctx" 2>"$T/submit.log")
check "farm submit -d printed a build id (${build:-none})" [ -n "$build" ]
for _ in $(seq 300); do
  curl -s "http://$SCHED_METRICS/metrics" | grep -q '^farm_scheduler_queued_tasks{' && break
  sleep 0.1
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: farm-cache
    static_configs: [{targets: ["$CACHE_METRICS"]}]
  - job_name: farm-scheduler
    static_configs: [{targets: ["$SCHED_METRICS"]}]
  - job_name: farm-worker
    static_configs: [{targets: ["$WORKER_METRICS"]}]
YAML
"$PROM" --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom-data" \
  --web.listen-address="127.0.0.1:$port" >"$T/prometheus.log" 2>&1 &
PROM_PID=$!
API="http://127.0.0.1:$port/api/v1"

# query EXPR: the first sample's value, once the API returns one (within 60 s), else "".
query() {
  local v
  for _ in $(seq 300); do
    v=$(curl -s --get --data-urlencode "query=$1" "$API/query" |
      jq -r 'select(.status == "success") | .data.result[0].value[1] // empty' 2>/dev/null)
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.2
  done
  return 1
}
positive() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }
expect_positive() {
  local v
  v=$(query "$1")
  echo "  $1 = ${v:-<none>}"
  [ -n "$v" ] && positive "$v"
}

for job in farm-cache farm-scheduler farm-worker; do
  check "prometheus scrapes $job (up == 1)" expect_positive "up{job=\"$job\"}"
done
check "queue depth arrived: farm_scheduler_queued_tasks{platform=\"linux/amd64\"} >= 1" \
  expect_positive 'sum by (platform) (farm_scheduler_queued_tasks{platform="linux/amd64"})'
check "queue age arrived: farm_scheduler_queue_oldest_task_age_seconds > 0" \
  expect_positive 'max(farm_scheduler_queue_oldest_task_age_seconds{platform="linux/amd64"})'
check "the queue series has its tenant label" \
  sh -c "curl -s --get --data-urlencode 'query=farm_scheduler_queued_tasks' '$API/query' |
    jq -e '.data.result[0].metric | has(\"tenant\") or (.platform != null)' >/dev/null"
check "cache metrics arrived: farm_cache_stored_bytes > 0" expect_positive 'farm_cache_stored_bytes'
check "cache retention arrived: farm_cache_oldest_blob_age_seconds" \
  sh -c "curl -s --get --data-urlencode 'query=farm_cache_oldest_blob_age_seconds' '$API/query' |
    jq -e '.data.result | length == 1' >/dev/null"
check "cache RPC metrics arrived" expect_positive \
  'sum(farm_grpc_server_handled_total{job="farm-cache",code="OK"})'
check "worker metrics arrived: farm_worker_connected == 1" expect_positive 'farm_worker_connected'
check "workers by platform and state arrived" expect_positive \
  'farm_scheduler_workers{platform="linux/arm64",state="idle"}'

"$FARM" cancel --insecure --scheduler "$SCHED" "$build" >/dev/null 2>&1
echo "$checks checks, $failures failures"
[ "$failures" -eq 0 ]
