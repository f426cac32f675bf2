#!/usr/bin/env bash
# Lets Debian's Bazel (bazel-bootstrap 4.2.3) speak TLS to a remote cache (grpcs://).
#
# Its bundled netty cannot negotiate ALPN with the JDK's TLS and falls back to OpenSSL through
# netty-tcnative, whose classes Bazel bundles but whose JNI library it does not. Debian ships
# the library (libnetty-tcnative-jni) as libnetty-tcnative.so; netty looks for
# libnetty_tcnative.so, and the library itself refuses to load under a symlinked name
# ("unexpected library path"), so this copies it. Without it, grpcs:// crashes Bazel with
# "Failed to init TLS infrastructure: JDK provider does not support ALPN protocol".
#
#   deploy/bazel-tls-setup.sh [--dir DIR]   # default DIR: ~/.cache/farm/bazel-jni
#
# prints the line to add to ~/.bazelrc (or the workspace's .bazelrc):
#   startup --host_jvm_args=-Djava.library.path=DIR
# Installs libnetty-tcnative-jni with apt-get if it is missing and we are root.
set -euo pipefail
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bazel-tls-setup.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
lib=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)/jni/libnetty-tcnative.so
if [ ! -f "$lib" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq libnetty-tcnative-jni >/dev/null
  else
    echo "bazel-tls-setup.sh: $lib is missing: sudo apt-get install libnetty-tcnative-jni" >&2
    exit 1
  fi
fi
[ -n "$dir" ] || dir="${HOME:?set HOME or pass --dir}/.cache/farm/bazel-jni"
mkdir -p "$dir"
cp "$lib" "$dir/libnetty_tcnative.so.tmp"
mv "$dir/libnetty_tcnative.so.tmp" "$dir/libnetty_tcnative.so"
echo "startup --host_jvm_args=-Djava.library.path=$dir"
