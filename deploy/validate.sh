#!/usr/bin/env bash
# Validates the deployment files (called from .ci/run):
#   - the systemd unit with `systemd-analyze verify`;
#   - the Kubernetes manifests with `kubernetes-validate --strict` (PyPI);
#   - the config inside the ConfigMap with `ecdn-console config check`;
#   - that every path the Containerfile COPYs exists (no container engine
#     is assumed on the CI machine, so the image itself is not built here).
# Installs what it needs (apt-get: systemd; pip: kubernetes-validate).
#
# systemd-analyze verify in a container without systemd as PID 1:
#   - it works offline (no bus needed) but refuses a unit whose ExecStart
#     binary does not exist, so the unit is verified from a temporary copy
#     whose ExecStart points at a stub executable;
#   - --man=no, since Documentation= URLs are not man pages to look up;
#   - it exits 0 on unknown keys and bad values (it only warns, "ignoring"),
#     so any output at all counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

command -v systemd-analyze >/dev/null || { apt-get update && apt-get install -y systemd; }
command -v kubernetes-validate >/dev/null || pip install kubernetes-validate

echo "validate: deploy/systemd/ecdn-console.service"
unit=deploy/systemd/ecdn-console.service
printf '#!/bin/sh\nexit 0\n' >"$tmp/ecdn-console"
chmod +x "$tmp/ecdn-console"
sed "s#/usr/bin/ecdn-console#$tmp/ecdn-console#g" "$unit" >"$tmp/ecdn-console.service"
out=$(systemd-analyze verify --man=no "$tmp/ecdn-console.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
  echo "$out" | sed "s#$tmp/ecdn-console.service#$unit#g" >&2
  echo "validate: $unit has warnings (systemd ignores those lines)" >&2
  exit 1
fi

echo "validate: deploy/kubernetes/*.yaml"
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml

echo "validate: the config in deploy/kubernetes/configmap.yaml"
python3 - deploy/kubernetes/configmap.yaml "$tmp/ecdn-console.toml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(doc["data"]["ecdn-console.toml"])
PY
bin=${ECDN_CONSOLE:-target/debug/ecdn-console}
[ -x "$bin" ] || cargo build -q --bin ecdn-console
"$bin" config check "$tmp/ecdn-console.toml"

echo "validate: deploy/container/Containerfile"
for s in $(awk '$1 == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' deploy/container/Containerfile); do
  [ -e "$s" ] || { echo "validate: the Containerfile copies $s, which does not exist" >&2; exit 1; }
done
echo "validate: ok"
