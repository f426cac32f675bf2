#!/usr/bin/env bash
# Installs every Debian package Farm needs to build, test and benchmark. Idempotent: when all
# are present it only checks (well under a second) and touches nothing.
#   tools/setup.sh
set -euo pipefail

packages=(
  # build
  bazel-bootstrap g++ clang clang-format libclang-rt-14-dev python3
  protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev libabsl-dev
  librocksdb-dev libssl-dev libarchive-dev libcurl4-openssl-dev nlohmann-json3-dev
  libzstd-dev zlib1g-dev libdeflate-dev libisal-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcap-dev libcivetweb-dev libseccomp-dev libyaml-cpp-dev
  # run and test: sandbox, base images, registries, reference tools (docker.io: the reference
  # engine of tests/conformance, dockerd 20.10 with BuildKit; openssh-client: its ssh-agent)
  iproute2 nftables procps busybox-static debootstrap docker-registry docker.io openssh-client
  apache2-utils skopeo umoci
  oci-image-tool buildah hyperfine bc curl ca-certificates git tar gzip zstd xz-utils bzip2 pigz
  prometheus  # promtool check metrics (common/metrics tests)
  chromium  # headless: the status page test (tests/status)
  # TLS: deploy/make-certs.sh and the auth tests use the openssl command; Debian's Bazel needs
  # netty-tcnative's JNI library for grpcs:// (deploy/bazel-tls-setup.sh)
  openssl libnetty-tcnative-jni
  # other architectures under emulation (tests/e2e:emulation_test)
  qemu-user-static
  # deploy/k8s_manifests_test parses the Kubernetes manifests
  python3-yaml
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${missing[@]}"
