#!/usr/bin/env bash
# kova on kind, for a Docker host with KVM (it cannot run on kova's CI machines, which have no
# Docker engine): create the cluster, run libvirtd on the hypervisor nodes, build and load the
# two images, install the chart, wait for both hypervisors to report, copy the test guest onto
# the nodes and run the e2e suites that take any cluster (boot, two-nodes) against it.
# Not verified here: see the README's "kind" section for what was checked instead.
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

# The agent reads node-local images from inside its pod, where only its state dir is mounted.
guest=$(bash "$root/hack/guest/build.sh" | tail -1)
for node in $(kind get nodes --name "$cluster" | grep worker); do
  docker exec "$node" mkdir -p /var/lib/kova/e2e-guest
  docker cp "$guest/." "$node:/var/lib/kova/e2e-guest/"
done
sed "s#$guest#/var/lib/kova/e2e-guest#" "$guest/image.yaml" | kubectl apply -f -

cd "$root"
npm install --no-audit --no-fund
KOVA_TEST_KUBECONFIG=$kubeconfig KOVA_E2E_KUBECONFIG=$kubeconfig KOVA_E2E_NODE_EXEC='docker exec {node}' \
  npm run jest -- e2e/src/boot.test.ts e2e/src/two-nodes.test.ts
