#!/usr/bin/env bash
# Installs what kova's scripts need on a fresh Debian machine, skipping what is present.
set -euo pipefail
packages=(curl ca-certificates procps util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -d /usr/local/go/bin ] && export PATH="/usr/local/go/bin:$PATH"
if ! command -v go >/dev/null; then
  echo "Go 1.25 or newer is needed to build the control plane (kube-apiserver, etcd); install it and retry." >&2
  exit 1
fi
