#!/usr/bin/env bash
# Installs what kova's scripts need on a fresh Debian machine, skipping what is present.
set -euo pipefail
source "$(dirname "$0")/lib/apt.sh"
# containerd and runc: hack/src/images.test.ts imports and runs the images built here; openssl:
# the certificates of the control plane that runs pods (hack/src/control-plane.ts).
ensure_packages curl ca-certificates procps util-linux cpio kmod make g++ containerd runc openssl
[ -d /usr/local/go/bin ] && export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
  echo "Go 1.25 or newer is needed to build the control plane (kube-apiserver, etcd); install it and retry." >&2
  exit 1
fi
