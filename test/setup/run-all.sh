#!/usr/bin/env bash
# The whole suite: Debian packages for the real servers, typecheck, then every test. Ends with one
# plain summary line ("vitest: N passed, N failed, N skipped") that CI systems can read.
#
# Two phases: the tests that flood the gateway with hundreds of hostile connections (test/core/hostile-*)
# run alone after the rest, so that their load never starves another test's timing on a 2-core machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
bash test/setup/install-deps.sh || exit 1
npm run typecheck || exit 1
heavy='test/core/hostile-*.test.ts'
r1=$(mktemp -t vigil-vitest-XXXXXX.json)
r2=$(mktemp -t vigil-vitest-XXXXXX.json)
npx vitest run --exclude "$heavy" --reporter=default --reporter=json --outputFile="$r1"
code1=$?
npx vitest run test/core/hostile- --reporter=default --reporter=json --outputFile="$r2"
code2=$?
node -e '
  let p = 0, f = 0, s = 0;
  for (const file of process.argv.slice(1)) {
    const r = JSON.parse(require("fs").readFileSync(file, "utf8"));
    p += r.numPassedTests; f += r.numFailedTests; s += r.numPendingTests + r.numTodoTests;
  }
  console.log(`vitest: ${p} passed, ${f} failed, ${s} skipped`);
' "$r1" "$r2" || true
rm -f "$r1" "$r2"
[ $code1 -eq 0 ] && [ $code2 -eq 0 ]
