#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, Node tests of the addon and plugin entry, and the
# end-to-end tests with the real OpenCode binary. README: "Build and test", command 2 of 2 (`npm test`).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -n "$(ls ./*.node 2>/dev/null)" ] || { echo "test: the native addon is not built; run: bash scripts/setup.sh" >&2; exit 1; }

echo "==> native module: glibc floor; release workflow: actionlint"
if [ "$(uname -s)" = Linux ]; then bash scripts/check-glibc.sh; fi
[ -x .tools/py/bin/actionlint ] || { echo "test: actionlint is not installed; run: bash scripts/setup.sh" >&2; exit 1; }
.tools/py/bin/actionlint -no-color .github/workflows/*.yml

echo "==> cargo test"
cargo test --workspace --locked

echo "==> node tests (addon, plugin entry, real OpenCode end to end)"
node --test --test-concurrency=1 __test__/*.test.mjs
