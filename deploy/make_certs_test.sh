#!/usr/bin/env bash
# make-certs.sh: the files it makes, their modes and X.509 purposes, which CA signs what, and
# that a second run keeps everything. (auth:mtls_test then uses its output in real TLS.)
set -uo pipefail
script="$TEST_SRCDIR/farm/deploy/make-certs.sh"
T="${TEST_TMPDIR:-$(mktemp -d)}/certs"
fails=0
check() {  # check DESCRIPTION COMMAND...
  if "${@:2}" >/dev/null 2>&1; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}
mode() { stat -c %a "$1"; }

"$script" --help | grep -q "Usage: deploy/make-certs.sh" || { echo "FAIL --help"; fails=$((fails + 1)); }
"$script" --dir "$T" --server farm-cache=localhost,127.0.0.1 --worker w1 --client bazel \
  >"$TEST_TMPDIR/run1.log" 2>&1 || { cat "$TEST_TMPDIR/run1.log"; echo "FAIL first run"; exit 1; }

for f in ca.crt ca.key worker-ca.crt worker-ca.key client-cas.crt servers/farm-cache.crt \
  servers/farm-cache.key workers/w1.crt workers/w1.key clients/bazel.crt clients/bazel.key \
  jwt/signing.key jwt/signing.pub; do
  check "$f exists" test -s "$T/$f"
done
for f in ca.key worker-ca.key servers/farm-cache.key workers/w1.key clients/bazel.key jwt/signing.key; do
  check "$f is 0600" test "$(mode "$T/$f")" = 600
done
for f in ca.crt worker-ca.crt client-cas.crt servers/farm-cache.crt workers/w1.crt jwt/signing.pub; do
  check "$f is 0644" test "$(mode "$T/$f")" = 644
done
check "server cert chains to the farm CA, for TLS servers" \
  openssl verify -purpose sslserver -CAfile "$T/ca.crt" "$T/servers/farm-cache.crt"
check "server cert names 127.0.0.1" \
  openssl x509 -in "$T/servers/farm-cache.crt" -noout -checkip 127.0.0.1
check "server cert is not a client cert" \
  bash -c "! openssl verify -purpose sslclient -CAfile '$T/ca.crt' '$T/servers/farm-cache.crt'"
check "worker cert chains to the worker CA, for TLS clients" \
  openssl verify -purpose sslclient -CAfile "$T/worker-ca.crt" "$T/workers/w1.crt"
check "worker cert does not chain to the farm CA" \
  bash -c "! openssl verify -CAfile '$T/ca.crt' '$T/workers/w1.crt'"
check "worker cert CN is the worker id" \
  bash -c "openssl x509 -in '$T/workers/w1.crt' -noout -subject | grep -q 'CN = w1'"
check "client cert chains to the farm CA, for TLS clients" \
  openssl verify -purpose sslclient -CAfile "$T/ca.crt" "$T/clients/bazel.crt"
check "client-cas.crt holds both CAs" \
  bash -c "test \$(grep -c 'BEGIN CERTIFICATE' '$T/client-cas.crt') = 2"
check "JWT key pair matches" \
  bash -c "diff <(openssl pkey -in '$T/jwt/signing.key' -pubout) '$T/jwt/signing.pub'"
check "JWT key is P-256 (ES256)" \
  bash -c "openssl pkey -in '$T/jwt/signing.key' -noout -text | grep -q 'NIST CURVE: P-256'"

# A second run keeps every file byte for byte and adds only what is new.
sums() { (cd "$T" && find . -type f | sort | xargs sha256sum); }
before=$(sums)
"$script" --dir "$T" --server farm-cache=localhost,127.0.0.1 --worker w1 --worker w2 \
  >"$TEST_TMPDIR/run2.log" 2>&1 || { cat "$TEST_TMPDIR/run2.log"; echo "FAIL second run"; exit 1; }
after=$(sums)
check "second run keeps the existing files" \
  bash -c "diff <(echo '$before') <(echo '$after' | grep -v workers/w2)"
check "second run adds w2" test -s "$T/workers/w2.crt"
check "second run says it kept them" grep -q "kept $T/servers/farm-cache.crt" "$TEST_TMPDIR/run2.log"
"$script" --dir "$T" --server farm-cache=other.example >"$TEST_TMPDIR/run3.log" 2>&1
check "changed SANs are warned about" grep -q "warning: servers/farm-cache.crt was made for SANs" \
  "$TEST_TMPDIR/run3.log"
old=$(sha256sum <"$T/servers/farm-cache.crt")
"$script" --dir "$T" --server farm-cache=other.example --renew >/dev/null 2>&1
check "--renew reissues" test "$(sha256sum <"$T/servers/farm-cache.crt")" != "$old"
check "--renew put the new SAN in" \
  bash -c "openssl x509 -in '$T/servers/farm-cache.crt' -noout -ext subjectAltName | grep -q other.example"
check "bad worker ids are refused" bash -c "! '$script' --dir '$T' --worker 'a b'"
check "unknown flags are refused" bash -c "! '$script' --dir '$T' --frobnicate"

echo "$fails failed"
[ "$fails" -eq 0 ]
