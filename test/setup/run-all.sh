#!/usr/bin/env bash
# The whole suite: Debian packages for the real servers, typecheck, then every test. Ends with one
# plain summary line ("vitest: N passed, N failed, N skipped") that CI systems can read.
set -uo pipefail
cd "$(dirname "$0")/../.."
bash test/setup/install-deps.sh || exit 1
npm run typecheck || exit 1
results=$(mktemp -t vigil-vitest-XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile="$results"
code=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$results" || true
rm -f "$results"
exit $code
