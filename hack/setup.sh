#!/usr/bin/env bash
# Everything a fresh clone needs before it can run or test kova; each step skips itself when
# its result is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash hack/install-deps.sh
bash hack/libvirt.sh
source hack/env.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # npm 11 writes only this platform's optional packages into the lock file and then refuses
  # `npm ci` on it; `npm install` installs exactly the locked versions all the same.
  npm install --no-audit --no-fund
fi
# npm runs the binding's build as node-agent's install script; this covers an npm that skipped it.
[ -f node-agent/native/build/Release/kova_libvirt.node ] || (cd node-agent/native && ../../node_modules/.bin/node-gyp rebuild --nodedir=/usr >/dev/null)
bash hack/control-plane/build.sh >/dev/null
npx tsc -b
# `kubectl kova` beside the pinned kubectl, on the PATH line `npm start` prints.
ln -sfn "$root/kubectl-kova/bin/kubectl-kova" "$KOVA_CACHE/bin/kubectl-kova"
