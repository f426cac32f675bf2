#!/bin/bash
# Installs Farm's daemons on this machine: binaries to /usr/local/bin, systemd units, and
# example configuration to /etc/farm (existing files are kept). Build first:
#   bazel build //cache/server:farm-cache //scheduler/server:farm-scheduler \
#     //worker/agent:farm-worker //cli:farm
# Then, per role:
#   systemctl enable --now farm-cache                 # the cache host
#   systemctl enable --now farm-scheduler             # the scheduler host
#   systemctl enable --now farm-worker@a farm-worker@b  # each worker host
set -euo pipefail
cd "$(dirname "$0")/.."
bin=bazel-bin
# farm-sandbox: the runner farm and farm-worker start for each RUN step (next to them).
for b in cache/server/farm-cache scheduler/server/farm-scheduler worker/agent/farm-worker \
         cli/farm cli/farm-sandbox; do
  [ -x "$bin/$b" ] || { echo "install.sh: $bin/$b is not built (see the comment above)" >&2; exit 1; }
  install -m 0755 "$bin/$b" /usr/local/bin/
done
install -d /etc/farm
for f in deploy/etc/*.env; do
  [ -e "/etc/farm/$(basename "$f")" ] || install -m 0644 "$f" /etc/farm/
done
install -m 0644 deploy/systemd/*.service /etc/systemd/system/
systemctl daemon-reload 2>/dev/null || true
echo "installed; edit /etc/farm/*.env, then enable the units for this host's role"
