#!/usr/bin/env bash
# Joins this machine to a control plane as a real kubelet node: Debian's containerd, runc and
# CNI plugins, a kubelet and kube-proxy built from the pinned Kubernetes modules, kova's images
# (and a pause image built here: no registry is reachable) imported into containerd. Everything
# lives in DIR; down.sh undoes it. Settings and pitfalls measured on this machine:
# shared/notes/real-node.md.
# Usage: [NODE_IP=address KUBELET_CLIENT_CA=file] up.sh DIR KUBECONFIG NODE_NAME
# NODE_IP is the Node's InternalIP (pods' status.hostIP); the kubelet picks one when unset.
# KUBELET_CLIENT_CA: see the kubelet's `authentication` below.
set -euo pipefail
dir=$1 kubeconfig=$2 node=$3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/hack/lib/apt.sh"
ensure_packages containerd runc containernetworking-plugins gcc
bin=$(bash "$root/hack/control-plane/build.sh" kubelet kube-proxy kubectl)
cache="${KOVA_CACHE_DIR:-$HOME/.cache/kova}/images"
images=$(nice -n 10 bash "$root/hack/images/build.sh")
log() { echo "kubelet-node: $*" >&2; }

# One node at a time on this machine: the pod CIDR, the bridge, kube-proxy's tables and the
# kubepods cgroups are machine-wide. Past this check the node owns them (down.sh then removes
# them; it leaves them alone for a run refused here).
if pgrep -x kubelet >/dev/null || nft list table ip kube-proxy >/dev/null 2>&1; then
  log "a kubelet or kube-proxy already runs on this machine; stop it first (one node at a time)"
  exit 1
fi
mkdir -p "$dir"
: >"$dir/owns-host"

# The only pod-network range and bridge this node uses (one node at a time on this machine).
POD_CIDR=10.244.250.0/24 BRIDGE=kova-kube0
PAUSE_IMAGE=localhost/kova-pause:1
mkdir -p "$dir"/{containerd,cni,kubelet,kube-proxy,logs}

pause_image() {
  local out="$cache/kova-pause.oci.tar" work="$dir/pause"
  [ "$out" -nt "$here/pause.c" ] && { echo "$out"; return; }
  mkdir -p "$work/rootfs"
  gcc -static -Os -o "$work/rootfs/pause" "$here/pause.c"
  strip "$work/rootfs/pause"
  tar -C "$work/rootfs" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/pause.tar" pause
  node "$root/hack/images/oci-layout.mjs" --out "$work/layout" --name "$PAUSE_IMAGE" --tag 1 \
    --user 65535:65535 --entrypoint '["/pause"]' --layer "$work/pause.tar" \
    --history "hack/kubelet-node/pause.c, static" >/dev/null
  tar -C "$work/layout" --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -cf "$out" .
  echo "$out"
}

cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Pod sandboxes ask for a negative oom_score_adj, which this machine forbids.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
EOF

cat >"$dir/cni/10-kova.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "kova-pods",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_CIDR" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$dir/cni/ipam" }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

# The kubelet sets kernel tunables it wants for pods (panic on oops, memory overcommit, key
# quotas): this machine's values, put back by down.sh.
for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
  echo "$key=$(sysctl -n "$key")"
done >"$dir/sysctl.saved"

kubelet_address=127.0.0.1
[ -n "${KUBELET_CLIENT_CA:-}" ] && kubelet_address=$NODE_IP
cat >"$dir/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$dir/containerd.sock
failSwapOn: false
# The kubelet's own API (kubectl logs and exec, Helm's hook logs) on the Node's address, for the
# API server only: its client certificate, signed by KUBELET_CLIENT_CA, and every request
# authorized by the API server. Without that CA: loopback only, and nobody is let in.
address: $kubelet_address
podLogsDir: $dir/logs/pods
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: "${KUBELET_CLIENT_CA:-}" }
authorization: { mode: Webhook }
# A developer machine's disk is shared: never evict test pods for it.
evictionHard: { memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%" }
imageGCHighThresholdPercent: 100
EOF

# Services (the API server's own, for pods' in-cluster clients) by nftables rules in the host.
cat >"$dir/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: "$kubeconfig" }
hostnameOverride: "$node"
mode: nftables
clusterCIDR: $POD_CIDR
# Leave the host's conntrack table size and timeouts alone.
conntrack: { maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
EOF

containerd --config "$dir/containerd/config.toml" >"$dir/logs/containerd.log" 2>&1 &
echo $! >"$dir/containerd.pid"
ctr() { command ctr -a "$dir/containerd.sock" -n k8s.io "$@"; }
for _ in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
for archive in $(pause_image) $images; do ctr images import "$archive" >/dev/null; done
log "images in containerd: $(ctr images ls -q | grep -v '^sha256:' | tr '\n' ' ')"

"$bin/kubelet" --config="$dir/kubelet/config.yaml" --kubeconfig="$kubeconfig" \
  --hostname-override="$node" --root-dir="$dir/kubelet/root" --cert-dir="$dir/kubelet/pki" \
  --node-labels=compute.kova.dev/hypervisor=true ${NODE_IP:+--node-ip="$NODE_IP"} \
  >"$dir/logs/kubelet.log" 2>&1 &
echo $! >"$dir/kubelet.pid"
"$bin/kube-proxy" --config="$dir/kube-proxy/config.yaml" >"$dir/logs/kube-proxy.log" 2>&1 &
echo $! >"$dir/kube-proxy.pid"
# `kubectl wait` fails at once while the Node does not exist yet.
for _ in $(seq 120); do
  "$bin/kubectl" --kubeconfig="$kubeconfig" wait --for=condition=Ready "node/$node" --timeout=1s \
    >/dev/null 2>&1 && break
  kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null ||
    { log "kubelet exited; the end of its log:"; tail -20 "$dir/logs/kubelet.log" >&2; exit 1; }
  sleep 1
done
"$bin/kubectl" --kubeconfig="$kubeconfig" wait --for=condition=Ready "node/$node" --timeout=1s >/dev/null
log "node $node is Ready"
