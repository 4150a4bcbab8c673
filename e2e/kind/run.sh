#!/usr/bin/env bash
# kova on kind, for a Docker host with KVM (it cannot run on kova's CI machines, which have no
# Docker engine): create the cluster, run libvirtd on the hypervisor nodes, build and load the
# two images, install the chart and wait for both hypervisors to report. Not yet verified on a
# Docker host; the e2e suite itself still drives the local stack (hack/src/local-kova.ts).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${KOVA_KIND_CLUSTER:-kova-e2e}
tag=e2e
for tool in docker kind helm kubectl; do command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }; done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --config "$root/e2e/kind/kind-config.yaml"
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
kind get kubeconfig --name "$cluster" > "$kubeconfig"
export KUBECONFIG=$kubeconfig

for node in $(kind get nodes --name "$cluster" | grep worker); do
  docker exec "$node" bash -c 'command -v libvirtd >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvirt-daemon-system qemu-system-x86 >/dev/null); pgrep -x virtlogd >/dev/null || virtlogd -d; pgrep -x libvirtd >/dev/null || libvirtd -d'
done

docker build -f "$root/operator/Dockerfile" -t "ghcr.io/kova-dev/kova-operator:$tag" "$root"
docker build -f "$root/node-agent/Dockerfile" -t "ghcr.io/kova-dev/kova-node-agent:$tag" "$root"
kind load docker-image --name "$cluster" "ghcr.io/kova-dev/kova-operator:$tag" "ghcr.io/kova-dev/kova-node-agent:$tag"

helm upgrade --install kova "$root/charts/kova" --namespace kova-system --create-namespace \
  --set image.tag="$tag" --set image.pullPolicy=Never --wait --timeout 5m

kubectl wait --for=jsonpath='{.status.capacity.vcpus}' hypervisor --all --timeout=120s
kubectl get hypervisors
