#!/usr/bin/env bash
# `npm test`: every check and test of the project, against a real local control plane.
# Ends with one line `N passed, N failed` and exits non-zero when anything failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash hack/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
source hack/env.sh

passed=0; failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "check passed: $name"
  else failed=$((failed + 1)); echo "check FAILED: $name"; fi
}
check "typecheck (tsc -b)" npx tsc -b
check "typecheck tests (tsc -p tsconfig.tests.json)" npx tsc -p tsconfig.tests.json
check "lint (eslint)" npx eslint .
check "models match CRDs" node crds/scripts/generate-models.mjs --check
check "format (prettier --check, width 100)" npx prettier --check --log-level warn .

mkdir -p test-results
rm -f test-results/jest.json
node --experimental-vm-modules node_modules/jest/bin/jest.js --json --outputFile=test-results/jest.json "$@"
jest_rc=$?
if [ -s test-results/jest.json ]; then
  read -r jp jf < <(node -e 'const r=require(process.argv[1]); console.log(r.numPassedTests, r.numFailedTests + r.numRuntimeErrorTestSuites)' "$root/test-results/jest.json")
  passed=$((passed + jp)); failed=$((failed + jf))
  [ "$jest_rc" -ne 0 ] && [ "$jf" -eq 0 ] && failed=$((failed + 1))
else
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
