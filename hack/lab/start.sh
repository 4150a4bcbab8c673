#!/usr/bin/env bash
# Starts a node lab by hand: `bash hack/lab/start.sh [COUNT | NAME...]` (as root), against the
# control plane of $KUBECONFIG (e.g. `npm start`'s, or one from hack/src/control-plane.ts).
# Runs until Ctrl-C, which stops the lab and leaves nothing behind.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
: "${KUBECONFIG:?set KUBECONFIG to the control plane the lab nodes register with}"
# The agents run from node-agent/dist and the lab from hack/dist: build them first.
(cd "$root" && npx tsc -b)
exec node "$root/hack/dist/lab-cli.js" "$@"
