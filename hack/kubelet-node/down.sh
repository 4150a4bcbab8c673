#!/usr/bin/env bash
# Undoes up.sh: stops the pods, the kubelet, kube-proxy and containerd, and removes what they
# leave behind (the kubelet's mounts, the pods' network namespaces, the kubepods cgroups, the
# CNI bridge, kube-proxy's nftables tables, containerd's state, the Node) and puts back the
# kernel tunables the kubelet changed.
# Usage: down.sh DIR KUBECONFIG NODE_NAME
set -uo pipefail
dir=$1 kubeconfig=$2 node=$3
bin="${KOVA_CACHE:-$HOME/.cache/kova}/bin"
stop() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}
stop "$dir/kubelet.pid"
stop "$dir/kube-proxy.pid"
owns_host=false
[ -f "$dir/owns-host" ] && owns_host=true
if $owns_host; then
  nft delete table ip kube-proxy 2>/dev/null
  nft delete table ip6 kube-proxy 2>/dev/null
fi
if [ -S "$dir/containerd.sock" ]; then
  ctr() { command ctr -a "$dir/containerd.sock" -n k8s.io "$@"; }
  # Pods' network namespaces, pinned under /run/netns where no CNI DEL will now remove them
  # (nor the host ends of their veths).
  netns=$(for c in $(ctr containers ls -q 2>/dev/null); do ctr containers info "$c"; done |
    grep -o '/var/run/netns/cni-[0-9a-f-]*' | sort -u)
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1; done
  sleep 1
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$task" >/dev/null 2>&1; done
  for c in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$c" >/dev/null 2>&1; done
  for ns in $netns; do umount "$ns" 2>/dev/null; rm -f "$ns"; done
fi
stop "$dir/containerd.pid"
# Innermost first: pod volumes and sandbox namespaces under the kubelet's and containerd's dirs.
findmnt -rn -o TARGET | grep "^$dir/" | sort -r | xargs -r -n1 umount -l
if $owns_host; then
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  ip link delete kova-kube0 2>/dev/null
  [ -f "$dir/sysctl.saved" ] && sysctl -q -p "$dir/sysctl.saved"
fi
rm -rf "$dir"
"$bin/kubectl" --kubeconfig="$kubeconfig" delete node "$node" --ignore-not-found >/dev/null 2>&1
true
