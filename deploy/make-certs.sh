#!/usr/bin/env bash
# Makes the farm's TLS certificates and token signing keys with the OpenSSL command line.
# Idempotent: what exists is kept (and said so); run it again to add servers, workers or
# clients. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: deploy/make-certs.sh [OPTIONS]

Creates (once) two certificate authorities and a token signing key, and the certificates
you name. Existing files are kept; run it again to add more.

Options:
  --dir DIR                Output directory (default: ./farm-tls)
  --server NAME[=SAN,...]  A server certificate (repeatable): NAME is its CN and a DNS name;
                           SANs are DNS names or IP addresses (prefix DNS: or IP: to force one),
                           e.g. --server farm-cache=cache.farm.internal,10.0.0.5
  --worker ID              A worker certificate (repeatable), CN=ID, from the worker CA.
                           ID: letters, digits, '.', '_', '-'
  --client NAME            A client certificate (repeatable), CN=NAME, from the farm CA
                           (Bazel's --tls_client_certificate, or a service)
  --jwt-key NAME           Also make token signing key pair jwt/NAME.{key,pub} (repeatable;
                           jwt/signing.{key,pub} is always made)
  --jwt-alg ALG            ES256 (default), RS256 or EdDSA, for keys made by this run
  --key-type ec|rsa        Certificate keys: ec = P-256 (default), rsa = RSA 3072
  --days N                 Validity of new leaf certificates (default 825; CAs: 3650)
  --renew                  Reissue (new key, new certificate) the leaf certificates named on
                           this command line even if they exist
  -h, --help               This text

Layout (keys 0600, certificates 0644):
  ca.crt ca.key            Farm CA: signs server and client certificates. Everyone who
                           connects verifies servers with ca.crt (--tls-ca; Bazel:
                           --tls_certificate).
  worker-ca.crt .key       Worker CA: signs worker certificates only. A certificate from it IS
                           a worker identity (CN = worker id): servers pass it as --worker-ca.
                           Separate from the farm CA so that no server or client certificate
                           can ever pass for a worker; keep worker-ca.key where workers are
                           enrolled, and both CA keys off the servers.
  client-cas.crt           ca.crt + worker-ca.crt: servers' --tls-client-ca (verifies client
                           and worker certificates).
  servers/NAME.crt .key    --tls-cert / --tls-key of farm-cache, farm-scheduler
                           (NAME.sans: the SANs it was made for)
  workers/ID.crt .key      --tls-cert / --tls-key of farm-worker ID
  clients/NAME.crt .key    client certificates (Bazel: --tls_client_certificate/_key)
  jwt/signing.key          Private key that signs bearer tokens (farm token --key); keep it
                           with whoever issues tokens
  jwt/signing.pub          Public key servers verify tokens with (--token-keys); to rotate,
                           put several public keys in one file

Certificates: X.509 v3, SHA-256; server certificates have extendedKeyUsage serverAuth and the
SANs given; worker and client certificates clientAuth only.

Example:
  deploy/make-certs.sh --dir /etc/farm/tls \
    --server farm-cache=cache.farm.internal --server farm-scheduler=sched.farm.internal \
    --worker w1 --worker w2 --client bazel
EOF
}

die() {
  echo "make-certs.sh: $*" >&2
  exit 1
}

dir=./farm-tls
servers=()
workers=()
clients=()
jwt_keys=(signing)
jwt_alg=ES256
key_type=ec
days=825
renew=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --server) [ $# -ge 2 ] || die "--server needs a value"; servers+=("$2"); shift 2 ;;
    --server=*) servers+=("${1#*=}"); shift ;;
    --worker) [ $# -ge 2 ] || die "--worker needs a value"; workers+=("$2"); shift 2 ;;
    --worker=*) workers+=("${1#*=}"); shift ;;
    --client) [ $# -ge 2 ] || die "--client needs a value"; clients+=("$2"); shift 2 ;;
    --client=*) clients+=("${1#*=}"); shift ;;
    --jwt-key) [ $# -ge 2 ] || die "--jwt-key needs a value"; jwt_keys+=("$2"); shift 2 ;;
    --jwt-key=*) jwt_keys+=("${1#*=}"); shift ;;
    --jwt-alg) [ $# -ge 2 ] || die "--jwt-alg needs a value"; jwt_alg=$2; shift 2 ;;
    --jwt-alg=*) jwt_alg=${1#*=}; shift ;;
    --key-type) [ $# -ge 2 ] || die "--key-type needs a value"; key_type=$2; shift 2 ;;
    --key-type=*) key_type=${1#*=}; shift ;;
    --days) [ $# -ge 2 ] || die "--days needs a value"; days=$2; shift 2 ;;
    --days=*) days=${1#*=}; shift ;;
    --renew) renew=1; shift ;;
    *) die "unknown argument \"$1\" (see --help)" ;;
  esac
done

command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
case "$key_type" in ec | rsa) ;; *) die "--key-type must be ec or rsa, not \"$key_type\"" ;; esac
case "$jwt_alg" in ES256 | RS256 | EdDSA) ;; *) die "--jwt-alg must be ES256, RS256 or EdDSA" ;; esac
[[ "$days" =~ ^[1-9][0-9]*$ ]] || die "--days must be a positive number, not \"$days\""

valid_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ ]]; }
for w in "${workers[@]+"${workers[@]}"}"; do
  valid_name "$w" || die "worker id \"$w\": use 1-128 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
done
for c in "${clients[@]+"${clients[@]}"}"; do
  valid_name "$c" || die "client name \"$c\": use 1-128 of A-Z a-z 0-9 . _ -"
done
for k in "${jwt_keys[@]}"; do
  valid_name "$k" || die "JWT key name \"$k\": use 1-128 of A-Z a-z 0-9 . _ -"
done

umask 077
mkdir -p "$dir" "$dir/servers" "$dir/workers" "$dir/clients" "$dir/jwt"
chmod 0755 "$dir" "$dir/servers" "$dir/workers" "$dir/clients" "$dir/jwt"
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

say() { echo "make-certs.sh: $*"; }

# new_key FILE TYPE: a PKCS#8 PEM private key (ec, rsa, ed25519), mode 0600.
new_key() {
  local out=$1 type=$2 tmp="$work/key.pem"
  case "$type" in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$tmp" 2>/dev/null ;;
    rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$tmp" 2>/dev/null ;;
  esac
  chmod 0600 "$tmp"
  mv -f "$tmp" "$out"
}

# config FILE CN ORG EXT_SECTION_TEXT: an openssl config with the subject and extensions.
config() {
  cat >"$1" <<CFG
[req]
distinguished_name = dn
prompt = no
[dn]
O = $3
CN = $2
[ext]
$4
CFG
}

serial() { echo "0x$(openssl rand -hex 16)"; }

# make_ca NAME CN ORG
make_ca() {
  local name=$1 cn=$2 org=$3
  if [ -f "$dir/$name.crt" ] && [ -f "$dir/$name.key" ]; then
    say "kept $dir/$name.crt"
    return
  fi
  [ -f "$dir/$name.key" ] || new_key "$dir/$name.key" "$key_type"
  config "$work/ca.cnf" "$cn" "$org" "basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash"
  openssl req -new -x509 -key "$dir/$name.key" -config "$work/ca.cnf" -extensions ext \
    -sha256 -days 3650 -set_serial "$(serial)" -out "$work/ca.crt" 2>/dev/null ||
    die "could not make $name.crt"
  chmod 0644 "$work/ca.crt"
  mv -f "$work/ca.crt" "$dir/$name.crt"
  say "made $dir/$name.crt ($cn)"
}

# issue KIND NAME CN ORG CA EXT_TEXT: a leaf certificate signed by CA into KIND/NAME.{crt,key}.
issue() {
  local kind=$1 name=$2 cn=$3 org=$4 ca=$5 ext=$6
  local crt="$dir/$kind/$name.crt" key="$dir/$kind/$name.key"
  if [ "$renew" = 0 ] && [ -f "$crt" ] && [ -f "$key" ]; then
    say "kept $crt"
    if ! openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null; then
      say "warning: $crt expires within 30 days; run again with --renew to reissue it"
    fi
    return 1
  fi
  if [ "$renew" = 1 ] || [ ! -f "$key" ]; then new_key "$key" "$key_type"; fi
  config "$work/leaf.cnf" "$cn" "$org" "$ext"
  openssl req -new -key "$key" -config "$work/leaf.cnf" -out "$work/leaf.csr" 2>/dev/null ||
    die "could not make a request for $crt"
  openssl x509 -req -in "$work/leaf.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" \
    -set_serial "$(serial)" -days "$days" -sha256 -extfile "$work/leaf.cnf" -extensions ext \
    -out "$work/leaf.crt" 2>/dev/null || die "could not sign $crt"
  chmod 0644 "$work/leaf.crt"
  mv -f "$work/leaf.crt" "$crt"
  say "made $crt (CN=$cn)"
}

leaf_key_usage="digitalSignature"
[ "$key_type" = rsa ] && leaf_key_usage="digitalSignature, keyEncipherment"

make_ca ca "Farm CA" "Farm"
make_ca worker-ca "Farm worker CA" "Farm workers"
cat "$dir/ca.crt" "$dir/worker-ca.crt" >"$work/client-cas.crt"
chmod 0644 "$work/client-cas.crt"
if ! cmp -s "$work/client-cas.crt" "$dir/client-cas.crt" 2>/dev/null; then
  mv -f "$work/client-cas.crt" "$dir/client-cas.crt"
  say "made $dir/client-cas.crt"
fi

for spec in "${servers[@]+"${servers[@]}"}"; do
  name=${spec%%=*}
  valid_name "$name" || die "server name \"$name\": use 1-128 of A-Z a-z 0-9 . _ -"
  sans="DNS:$name"
  if [[ "$spec" == *=* ]]; then
    IFS=',' read -r -a extra <<<"${spec#*=}"
    for s in "${extra[@]}"; do
      [ -n "$s" ] || continue
      case "$s" in
        DNS:* | IP:*) sans+=",$s" ;;
        *:* | [0-9]*.[0-9]*.[0-9]*.[0-9]*) sans+=",IP:$s" ;;
        *) sans+=",DNS:$s" ;;
      esac
    done
  fi
  if issue servers "$name" "$name" "Farm" ca "basicConstraints = critical, CA:FALSE
keyUsage = critical, $leaf_key_usage
extendedKeyUsage = serverAuth
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"; then
    echo "$sans" >"$dir/servers/$name.sans"
    chmod 0644 "$dir/servers/$name.sans"
  elif [ "$(cat "$dir/servers/$name.sans" 2>/dev/null)" != "$sans" ]; then
    say "warning: servers/$name.crt was made for SANs" \
      "$(cat "$dir/servers/$name.sans" 2>/dev/null || echo '(unknown)'), not $sans;" \
      "--renew to reissue it"
  fi
done

for w in "${workers[@]+"${workers[@]}"}"; do
  issue workers "$w" "$w" "Farm workers" worker-ca "basicConstraints = critical, CA:FALSE
keyUsage = critical, $leaf_key_usage
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid" || true
done

for c in "${clients[@]+"${clients[@]}"}"; do
  issue clients "$c" "$c" "Farm" ca "basicConstraints = critical, CA:FALSE
keyUsage = critical, $leaf_key_usage
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid" || true
done

case "$jwt_alg" in ES256) jwt_type=ec ;; RS256) jwt_type=rsa2048 ;; EdDSA) jwt_type=ed25519 ;; esac
for k in "${jwt_keys[@]}"; do
  if [ -f "$dir/jwt/$k.key" ] && [ -f "$dir/jwt/$k.pub" ]; then
    say "kept $dir/jwt/$k.key"
    continue
  fi
  [ -f "$dir/jwt/$k.key" ] || new_key "$dir/jwt/$k.key" "$jwt_type"
  openssl pkey -in "$dir/jwt/$k.key" -pubout -out "$work/jwt.pub" 2>/dev/null ||
    die "could not write jwt/$k.pub"
  chmod 0644 "$work/jwt.pub"
  mv -f "$work/jwt.pub" "$dir/jwt/$k.pub"
  say "made $dir/jwt/$k.key and $k.pub (token signing key pair)"
done
