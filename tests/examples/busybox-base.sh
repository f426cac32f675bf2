#!/usr/bin/env bash
# Builds the base image the examples use, busybox:farm-example, with farm itself: FROM scratch,
# Debian's static busybox (package busybox-static) and its applet links. No registry needed.
#   tests/examples/busybox-base.sh [path/to/farm]
set -euo pipefail
farm=${1:-bazel-bin/cli/farm}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp /bin/busybox "$ctx/busybox"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp", "/etc", "/root"]
RUN ["/bin/busybox", "--install", "-s"]
RUN echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
 && echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >> /etc/passwd \
 && echo 'root:x:0:' > /etc/group && echo 'nogroup:x:65534:' >> /etc/group \
 && chmod 1777 /tmp
CMD ["sh"]
DOCKERFILE
SOURCE_DATE_EPOCH=0 "$farm" build --progress=plain -t busybox:farm-example "$ctx"
