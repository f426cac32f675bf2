#!/usr/bin/env bash
# Prints the farm's Kubernetes Secrets (YAML, for `kubectl apply -f -`) from the files
# deploy/make-certs.sh made and the scheduler's token towards farm-cache:
#   deploy/make-certs.sh --dir tls \
#     --server farm-cache=farm-cache.farm.svc,farm-cache.farm.svc.cluster.local \
#     --server farm-scheduler=farm-scheduler.farm.svc,farm-scheduler.farm.svc.cluster.local \
#     --client farm-scheduler
#   farm token mint --key tls/jwt/signing.key --sub farm-scheduler --read '*' --write '*' \
#     --ttl 365d > scheduler-cache.token
#   deploy/k8s/make-secrets.sh --tls-dir tls --scheduler-token scheduler-cache.token | kubectl apply -f -
# Secrets (each server mounts only its own):
#   farm-cache-tls       farm-cache: tls.crt tls.key client-cas.crt worker-ca.crt token-keys.pub
#   farm-scheduler-tls   farm-scheduler: the same, plus ca.crt, cache-client.crt/.key, cache.token
#   farm-ca              ca.crt: workers verify the servers with it
#   farm-worker-enroll   worker-ca.crt worker-ca.key: the worker pods' init container issues
#                        each pod's worker certificate with it (whoever can read this Secret
#                        can make worker identities: restrict who may read Secrets in the
#                        namespace)
#   farm-registry-auth   config.json: the scheduler's registry credentials (--docker-config
#                        FILE; optional)
set -euo pipefail

die() { echo "make-secrets.sh: $*" >&2; exit 1; }

tls=""
token=""
namespace=farm
docker_config=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) sed -n '2,23s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --tls-dir) [ $# -ge 2 ] || die "--tls-dir needs a value"; tls=$2; shift 2 ;;
    --scheduler-token) [ $# -ge 2 ] || die "--scheduler-token needs a value"; token=$2; shift 2 ;;
    --namespace) [ $# -ge 2 ] || die "--namespace needs a value"; namespace=$2; shift 2 ;;
    --docker-config) [ $# -ge 2 ] || die "--docker-config needs a value"; docker_config=$2; shift 2 ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
done
[ -n "$tls" ] || die "--tls-dir is required (deploy/make-certs.sh's --dir)"
[ -n "$token" ] || die "--scheduler-token is required (farm token mint ... --sub farm-scheduler)"

# secret NAME KEY=FILE...: one Secret document.
secret() {
  local name=$1
  shift
  local spec key file
  for spec in "$@"; do
    file=${spec#*=}
    [ -s "$file" ] || die "$file is missing or empty (needed for Secret $name)"
  done
  printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\n' \
    "$name" "$namespace"
  printf '  labels:\n    app.kubernetes.io/part-of: farm\ntype: Opaque\ndata:\n'
  for spec in "$@"; do
    key=${spec%%=*}
    file=${spec#*=}
    printf '  %s: %s\n' "$key" "$(base64 -w0 <"$file")"
  done
}

secret farm-cache-tls \
  tls.crt="$tls/servers/farm-cache.crt" tls.key="$tls/servers/farm-cache.key" \
  client-cas.crt="$tls/client-cas.crt" worker-ca.crt="$tls/worker-ca.crt" \
  token-keys.pub="$tls/jwt/signing.pub"
secret farm-scheduler-tls \
  tls.crt="$tls/servers/farm-scheduler.crt" tls.key="$tls/servers/farm-scheduler.key" \
  client-cas.crt="$tls/client-cas.crt" worker-ca.crt="$tls/worker-ca.crt" \
  token-keys.pub="$tls/jwt/signing.pub" ca.crt="$tls/ca.crt" \
  cache-client.crt="$tls/clients/farm-scheduler.crt" \
  cache-client.key="$tls/clients/farm-scheduler.key" cache.token="$token"
secret farm-ca ca.crt="$tls/ca.crt"
secret farm-worker-enroll worker-ca.crt="$tls/worker-ca.crt" worker-ca.key="$tls/worker-ca.key"
if [ -n "$docker_config" ]; then
  secret farm-registry-auth config.json="$docker_config"
fi
