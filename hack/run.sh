#!/usr/bin/env bash
# `npm start`: sets up what is missing, then runs a local kova until Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/hack/setup.sh"
source "$root/hack/env.sh"
exec node "$root/hack/dist/cli/run.js"
